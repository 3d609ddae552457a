"""When the periodic pass looks for deletions nobody announced (pure logic)."""

from __future__ import annotations

import pytest

from dicom_pipeline.ingestion.deletion_check import Totals, deletion_check_reason

RECORDED = Totals(studies=10, instances=100)


@pytest.mark.parametrize(
    "in_orthanc",
    [Totals(9, 90), Totals(10, 99), Totals(11, 99), Totals(9, 140)],
    ids=["a study gone", "an instance gone", "an instance gone behind a new study", "a study gone behind arrivals"],
)
def test_orthanc_short_of_the_database_looks_at_once_whatever_the_interval(in_orthanc: Totals) -> None:
    reason = deletion_check_reason(in_orthanc, RECORDED, seconds_since_last=1.0, interval=600.0)

    assert reason is not None and f"{in_orthanc.studies} studies / {in_orthanc.instances} instances" in reason


def test_equal_totals_need_no_look_even_when_the_interval_has_passed() -> None:
    assert deletion_check_reason(RECORDED, RECORDED, seconds_since_last=None, interval=600.0) is None
    assert deletion_check_reason(RECORDED, RECORDED, seconds_since_last=10_000.0, interval=600.0) is None


@pytest.mark.parametrize(
    ("seconds_since_last", "looks"),
    [(None, True), (599.0, False), (600.0, True), (3600.0, True)],
    ids=["never looked", "inside the interval", "interval reached", "long since"],
)
def test_totals_that_arrivals_may_explain_are_looked_at_once_per_interval(
    seconds_since_last: float | None, looks: bool
) -> None:
    reason = deletion_check_reason(Totals(12, 130), RECORDED, seconds_since_last=seconds_since_last, interval=600.0)

    assert (reason is not None) is looks
    if looks:
        assert reason is not None and "may hide behind arrivals" in reason
