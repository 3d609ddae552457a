"""The short soak (#20): bench/soak.py's workload, nemesis and checker in CI.

Every fault kind once, one every 15 s, while studies arrive by REST and C-STORE, grow, are
sent again, deleted (whole and by instance) and a few arrive bad. The checker's verdict must
be clean: nothing lost, no version with two event ids, nothing out of order or unannounced,
no false dead letter, no unfinished webhook request, no file missing, no staging left.
`make soak` runs the same for as long as asked (30 minutes for the figures in RESULTS.md).
"""

from __future__ import annotations

import time

import pytest

from bench.soak import FAULT_KINDS, run_soak
from dicom_pipeline.settings import Settings

pytestmark = pytest.mark.e2e

FAULT_EVERY = 15.0
# One fault of each kind, the last one well before the workload ends, so it hits studies in
# flight rather than a quiet system. The interval runs from the end of a fault, and a
# service's restart takes up to ~12 s (Kafka): four of them add a minute.
WORKLOAD_SECONDS = FAULT_EVERY * (len(FAULT_KINDS) + 1) + 60
CONVERGE_TIMEOUT = 420.0
# A deletion whose notice a fault lost is looked for at once when Orthanc's totals fall short
# of the database's; when Orthanc also holds studies nobody recorded or refused (this suite's
# shared Orthanc does; a site does while arrivals are in flight), the totals cannot say, and
# the periodic look (RECONCILE_DELETION_CHECK_SECONDS, 600 s by default) is what finds it. Seen
# in CI on 2026-12-07: two such deletions waited out the whole window. Here the periodic look
# runs well inside the window, so the test still asks that every lost deletion be found by it.
DELETION_CHECK_SECONDS = 120.0
# Then what the night would bring: the nightly full reconciliation, if the end state still
# differs this long after the last fault. Seen in CI on 2026-12-07 (seed 1796662137, after
# the looks above): a lost instance deletion whose -1 another study's +1 offset, so Orthanc's
# totals equalled the database's and neither look was due; only the full scan finds that.
# The verdict is the end state after every net the system has; the figures say which.
NIGHTLY_AFTER = 150.0


def test_a_short_soak_with_every_fault_kind_loses_and_doubles_nothing(stack_settings: Settings) -> None:
    seed = int(time.time())
    result = run_soak(
        stack_settings,
        WORKLOAD_SECONDS,
        FAULT_EVERY,
        seed=seed,
        converge_timeout=CONVERGE_TIMEOUT,
        deletion_check_seconds=DELETION_CHECK_SECONDS,
        # The suite's Orthanc holds other tests' studies, some the pipeline cannot record;
        # they hid a lost instance deletion for the whole window in CI (2026-12-07, seed
        # 1796652864, with the 120 s look): the soak starts from an Orthanc equal to the DB.
        empty_orthanc_first=True,
        nightly_after=NIGHTLY_AFTER,
    )
    figures = "\n".join(f"{name}: {value}" for name, value in result.rows)

    # The nemesis really hit every part (a kind it could not inflict would prove nothing),
    # and each while the workload was sending and deleting studies around it.
    inflicted = [fault for fault in result.faults_amid_work(FAULT_EVERY) if not fault.detail.startswith("(")]
    assert sorted({fault.kind for fault in inflicted}) == sorted(FAULT_KINDS), figures
    assert result.verdict.passed, f"seed {seed}\n{figures}"
    assert result.converged_after is not None, f"seed {seed}\n{figures}"
