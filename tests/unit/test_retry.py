"""The one retry policy, by behaviour: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import pytest

from dicom_pipeline.errors import InvalidDicom, OrthancUnavailable
from dicom_pipeline.ingestion.retry import RetryPolicy, StepFailed


class Flaky:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _policy(random_value: float = 0.5, **kwargs: float) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    return RetryPolicy(sleep=slept.append, random=lambda: random_value, **kwargs), slept  # type: ignore[arg-type]


def test_transient_errors_are_retried_with_doubling_delays_until_success() -> None:
    policy, slept = _policy()
    fn = Flaky(OrthancUnavailable("down"), OrthancUnavailable("down"), OrthancUnavailable("down"))
    assert policy.call("extract_study", fn) == "ok"
    assert fn.calls == 4
    # random() = 0.5 is the middle of the jitter band: the nominal 1, 2, 4 s.
    assert slept == [1.0, 2.0, 4.0]


def test_delays_are_capped_and_jittered_within_the_band() -> None:
    low, _ = _policy(random_value=0.0, max_attempts=6, max_delay=4.0)
    high, _ = _policy(random_value=1.0, max_attempts=6, max_delay=4.0)
    assert list(low.delays()) == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert list(high.delays()) == [1.5, 3.0, 6.0, 6.0, 6.0]


def test_transient_error_gives_up_after_the_last_attempt_with_the_count() -> None:
    policy, slept = _policy(max_attempts=3)
    fn = Flaky(*[OrthancUnavailable("down")] * 5)
    with pytest.raises(StepFailed) as failed:
        policy.call("extract_study", fn)
    assert (failed.value.step, failed.value.attempts, fn.calls) == ("extract_study", 3, 3)
    assert isinstance(failed.value.cause, OrthancUnavailable)
    assert len(slept) == 2


def test_permanent_error_is_not_retried() -> None:
    policy, slept = _policy()
    fn = Flaky(InvalidDicom("not DICOM", instance="abc"))
    with pytest.raises(StepFailed) as failed:
        policy.call("extract_study", fn)
    assert (failed.value.attempts, fn.calls, slept) == (1, 1, [])


def test_a_bug_is_not_retried() -> None:
    policy, slept = _policy()
    fn = Flaky(KeyError("oops"))
    with pytest.raises(StepFailed) as failed:
        policy.call("persist_metadata", fn)
    assert isinstance(failed.value.cause, KeyError)
    assert (failed.value.attempts, slept) == (1, [])
