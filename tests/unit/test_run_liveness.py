"""Which STARTED runs have a dead worker: silent past the limit, twice in a row."""

from __future__ import annotations

import datetime as dt

from dicom_pipeline.run_liveness import DeadRunDetector, StartedRun

NOW = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


detector = DeadRunDetector(dead_after_seconds=60)


def test_a_run_is_silent_when_its_last_beat_or_else_its_start_is_older_than_the_limit() -> None:
    runs = [
        StartedRun("beating", ago(600)),
        StartedRun("stopped-beating", ago(600)),
        StartedRun("never-beat-just-started", ago(30)),
        StartedRun("never-beat-long-ago", ago(61)),
        StartedRun("no-start-time", None),
    ]
    beats = {"beating": ago(5), "stopped-beating": ago(90)}

    silent = detector.silent(runs, beats, NOW)

    assert silent == {"stopped-beating": ago(90).isoformat(), "never-beat-long-ago": ago(61).isoformat()}


def test_a_silent_run_is_dead_only_when_the_previous_look_saw_the_same_last_sign_of_life() -> None:
    first_look = {"a": ago(90).isoformat()}
    dead, remember = detector.judge(first_look, {})
    assert dead == [] and remember == first_look

    dead, remember = detector.judge(first_look, remember)
    assert dead == ["a"] and remember == {}


def test_a_run_that_beat_between_two_looks_is_not_dead() -> None:
    # The worker could not reach PostgreSQL for a while, then beat once it could: its last
    # beat moved, so the second look does not confirm the first.
    dead, remember = detector.judge({"a": ago(70).isoformat()}, {"a": ago(90).isoformat()})
    assert dead == [] and remember == {"a": ago(70).isoformat()}
