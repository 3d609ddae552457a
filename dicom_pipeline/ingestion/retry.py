"""The one retry policy of ingestion: transient errors only, exponential backoff with jitter.

Every caller of "ingest a study" (a study run, backfill, reconcile, the CLI) goes through
this. A permanent error (bad input) or an unexpected exception (a bug) is not retried:
repeating it cannot help, and it would only delay the dead letter that says why.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from dicom_pipeline.errors import PipelineError

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, PipelineError) and exc.transient


class StepFailed(Exception):
    """A step gave up: `cause` is the last error, `attempts` how many times it ran."""

    def __init__(self, step: str, cause: BaseException, attempts: int) -> None:
        super().__init__(f"{step} failed after {attempts} attempt(s): {type(cause).__name__}: {cause}")
        self.step, self.cause, self.attempts = step, cause, attempts


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 8.0
    # Each delay is scaled by a factor drawn from [1 - jitter, 1 + jitter], so workers that
    # failed together (Orthanc restarted under all of them) do not retry in lockstep.
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def delays(self) -> Iterator[float]:
        """The pause before attempt 2, 3, ...: base * 2^(n-1), capped, then jittered."""
        for attempt in range(1, self.max_attempts):
            nominal = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
            yield nominal * (1 - self.jitter + 2 * self.jitter * self.random())

    def call(self, step: str, fn: Callable[[], T]) -> T:
        """fn's result; StepFailed once a permanent error, a bug, or the last attempt fails."""
        delays = self.delays()
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as exc:
                delay = next(delays, None) if is_transient(exc) else None
                if delay is None:
                    raise StepFailed(step, exc, attempt) from exc
                log.warning(
                    "transient failure, retrying",
                    extra={"step": step, "attempt": attempt, "delay_s": round(delay, 2), "error": str(exc)[:300]},
                )
                self.sleep(delay)
                attempt += 1


DEFAULT_POLICY = RetryPolicy()
