"""`make bench` / `make bench-quick`: every figure printed and appended to bench/RESULTS.md."""

from __future__ import annotations

import argparse
import time

from bench.archive import backfill_rate, reconcile_cost, sensor_tick
from bench.common import record
from bench.daemon import idle_cost, idle_relay_runs, latency, sustained
from bench.throughput import backfill_throughput, memory, run_throughput, throughput
from dicom_pipeline.settings import get_settings

SECTIONS = (
    "throughput",
    "run",
    "backfill-large",
    "memory",
    "backfill",
    "sensor",
    "reconcile",
    "idle",
    "idle-cost",
    "latency",
    "sustained",
)


def show(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for name, value in rows:
        print(f"{name}: {value}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes in all")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated sections: {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args()
    chosen = set(filter(None, args.only.split(","))) or set(SECTIONS)
    settings = get_settings()
    seed = int(time.time())
    quick = args.quick
    rows: list[tuple[str, str]] = []
    notes: list[str] = []

    figures = {"ratio": 1.0}
    if "throughput" in chosen:
        throughput_rows, figures = throughput(settings, 120 if quick else 600, seed)
        rows += show(throughput_rows)
    if "run" in chosen:
        rows += show(run_throughput(settings, 120 if quick else 600, seed + 500))
    if "backfill-large" in chosen:
        rows += show(backfill_throughput(settings, 4, 60 if quick else 150, seed + 600))
    if "memory" in chosen:
        rows += show(memory(settings, [100, 400] if quick else [500, 2000], seed))
    if "backfill" in chosen:
        rows += show(backfill_rate(settings, 200 if quick else 1000, seed))
    if "sensor" in chosen:
        rows += show(sensor_tick(settings, 2000 if quick else 10_000, seed + 7))
    if "reconcile" in chosen:
        rows += show(reconcile_cost(settings, [2000, 5000] if quick else [10_000, 50_000], seed + 11))
    if "idle" in chosen:
        rows += show(idle_relay_runs(settings, 10 if quick else 60))
    if "idle-cost" in chosen:
        rows += show(idle_cost(settings, 60 if quick else 300))
    if "latency" in chosen:
        rows += show(latency(settings, 5 if quick else 20, seed + 100, webhook=True))
        rows += show(latency(settings, 5 if quick else 20, seed + 200, webhook=False))
    if "sustained" in chosen:
        rows += show(sustained(settings, 60, seed + 300, workers=1))
        rows += show(sustained(settings, 60, seed + 400, workers=2))
    notes.append("ratios compare against a baseline measured in the same run (curl; small archive)")
    notes.append(f"Orthanc StableAge (not part of these figures): {settings.orthanc_stable_age} s")
    if figures["ratio"] < 0.5:
        notes.append("throughput target not met: see the profile section of RESULTS.md")
    text = record("bench-quick" if quick else "bench", rows, notes)
    print(text)


if __name__ == "__main__":
    main()
