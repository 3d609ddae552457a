"""Ingest one study in a fresh process; print its wall time and the process's peak RSS."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def descendants_peak_kb() -> list[int]:
    """Peak resident memory (VmHWM) of every live descendant: the instance readers and the
    fork server that starts them."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    peaks = []
    for pid in found:
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
