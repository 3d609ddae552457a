"""Ingest one study in a fresh process; print its wall time and the process's peak RSS."""

from __future__ import annotations

import json
import resource
import sys
import time

import dagster as dg

from dicom_pipeline.local_runs import ingest_in_process


def main() -> None:
    orthanc_id = sys.argv[1]
    started = time.perf_counter()
    summary = ingest_in_process(orthanc_id, trigger="bench", instance=dg.DagsterInstance.ephemeral())
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "status": summary["status"]}))


if __name__ == "__main__":
    main()
