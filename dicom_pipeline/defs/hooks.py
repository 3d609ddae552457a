"""The study job's failure hook: a failed op's dead letter, on `dicom.metadata.dlq`.

It fires once per failed op, after the step's retries (the use case's one RetryPolicy ran
inside the op), and writes the letter through the one writer (`give_up`), which also sends
it to the DLQ topic and marks the webhook request failed. Where no hook runs (a killed
worker, a terminated run, a failure before any step) or the hook itself failed (Dagster
records HOOK_ERRORED and nothing else), the run-failure backstop writes the letter; it
skips runs that have one, so one failed attempt never gets two.
"""

from __future__ import annotations

import dagster as dg

from dicom_pipeline.defs import tags
from dicom_pipeline.defs.ops import study_command
from dicom_pipeline.ingestion.retry import StepFailed
from dicom_pipeline.ingestion.study import give_up
from dicom_pipeline.logs import bound_correlation_id


@dg.failure_hook(name="dead_letter_on_failure", required_resource_keys={"ingestion"})
def dead_letter_on_failure(context: dg.HookContext) -> None:
    run = context.instance.get_run_by_id(context.run_id)
    if run is None:  # cannot happen for a run that is executing this hook
        return
    command = study_command(run)
    error = context.op_exception
    # A StepFailed says which step gave up and after how many attempts; anything else (a
    # bug, an input Dagster could not load) failed once, in this op.
    failure = (
        error if isinstance(error, StepFailed) else StepFailed(context.op.name, error or Exception("op failed"), 1)
    )
    # The writer's own "dead letter recorded" warning reaches the run's log (python_logs).
    with bound_correlation_id(command.correlation_id):
        give_up(context.resources.ingestion.runtime(), command, failure, study_uid=run.tags.get(tags.STUDY_UID))
