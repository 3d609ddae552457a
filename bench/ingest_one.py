"""Ingest one study in a fresh process; print its wall time and the process's peak RSS."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from dicom_pipeline_dev.stack.process import descendants


def descendants_peak_kb() -> list[int]:
    """Peak resident memory (VmHWM) of every live descendant: the instance readers and the
    fork server that starts them."""
    peaks = []
    for pid in descendants(os.getpid()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
    return peaks


def main() -> None:
    # Imported here, not at the top: the instance readers import the main module, and
    # should weigh what they weigh under a worker, not carry Dagster for the benchmark.
    import dagster as dg

    from dicom_pipeline.local_runs import ingest_in_process

    orthanc_id = sys.argv[1]
    started = time.perf_counter()
    summary = ingest_in_process(orthanc_id, trigger="bench", instance=dg.DagsterInstance.ephemeral())
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    others = descendants_peak_kb()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_kb / 1024,
                "readers_peak_rss_mb": max(others, default=0) / 1024,
                "total_peak_rss_mb": (peak_kb + sum(others)) / 1024,
                "status": summary["status"],
            }
        )
    )


if __name__ == "__main__":
    main()
