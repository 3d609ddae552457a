"""How the study job's ops hand values to each other: in memory, plus a durable copy in
PostgreSQL of what a re-execution needs.

A run re-executed from a failed op ("Re-execute from failure" in the UI) loads its inputs
from the run that produced them, possibly in another process on another worker host. So
the two values that cross an op boundary and cannot be read again cheaply, the extraction
(every new instance's header, the reason the files need not be downloaded again) and the
persist step's outcome, are also written to `run_step_output` in the pipeline's database,
which every host reaches. As JSON (pydantic), not pickle: loading a value cannot run code.
Inside one run the in-memory copy serves, so nothing is read back.

The copies of a run go when its study is done (`forget_run_outputs`, the publish op);
failed runs' copies stay for a re-execution until the purge schedule removes them.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import OrderedDict
from typing import Any

import dagster as dg
from pydantic import TypeAdapter
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert

from dicom_pipeline.db.engine import transaction
from dicom_pipeline.db.models import RunStepOutput
from dicom_pipeline.db.repository import VersionOutcome
from dicom_pipeline.errors import PermanentError
from dicom_pipeline.ingestion.study import Extraction

STEP_OUTPUTS = "study_step_outputs"  # the IO manager's resource key
# Outputs with a durable copy, by output name, and the type their JSON is read back as.
DURABLE: dict[str, TypeAdapter[Any]] = {
    "extraction": TypeAdapter(Extraction),
    "outcome": TypeAdapter(VersionOutcome | None),
}
# A run process executes one run at a time; a few runs' values are plenty.
_MEMORY_RUNS = 4
_memory: OrderedDict[str, dict[tuple[str, str], Any]] = OrderedDict()


class StepOutputGone(PermanentError):
    """An input's producing run left no copy (its study finished, or it was purged)."""


def _remember(run_id: str, key: tuple[str, str], value: Any) -> None:
    _memory.setdefault(run_id, {})[key] = value
    _memory.move_to_end(run_id)
    while len(_memory) > _MEMORY_RUNS:
        _memory.popitem(last=False)


class StudyStepOutputs(dg.IOManager):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        run_id = context.run_id
        _remember(run_id, (context.step_key, context.name), obj)
        adapter = DURABLE.get(context.name)
        if adapter is None:
            return
        run = context.step_context.dagster_run
        payload = zlib.compress(adapter.dump_json(obj), 1)
        row = {
            "run_id": run_id,
            "step_key": context.step_key,
            "output_name": context.name,
            "root_run_id": run.root_run_id or run_id,
            "payload": payload,
        }
        statement = insert(RunStepOutput).values(**row)
        with transaction(self.engine) as session:
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["run_id", "step_key", "output_name"], set_={"payload": payload}
                )
            )

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        assert upstream is not None and upstream.run_id is not None
        key = (upstream.step_key, upstream.name)
        remembered = _memory.get(upstream.run_id, {})
        if key in remembered:
            return remembered[key]
        adapter = DURABLE.get(upstream.name)
        payload = None
        if adapter is not None:
            with transaction(self.engine) as session:
                payload = session.scalar(
                    select(RunStepOutput.payload).where(
                        RunStepOutput.run_id == upstream.run_id,
                        RunStepOutput.step_key == upstream.step_key,
                        RunStepOutput.output_name == upstream.name,
                    )
                )
        if adapter is None or payload is None:
            raise StepOutputGone(
                f"the output {upstream.name!r} of {upstream.step_key} in run {upstream.run_id} is no longer kept; "
                "re-execute the whole run"
            )
        return adapter.validate_json(zlib.decompress(payload))


def forget_run_outputs(engine: Engine, run: dg.DagsterRun) -> None:
    """The study of this run lineage is done: no re-execution needs its copies."""
    with transaction(engine) as session:
        session.execute(delete(RunStepOutput).where(RunStepOutput.root_run_id == (run.root_run_id or run.run_id)))


def purge_step_outputs(engine: Engine, older_than: dt.datetime) -> int:
    """Copies failed runs left behind, once no one re-executes them any more."""
    with transaction(engine) as session:
        result = session.execute(delete(RunStepOutput).where(RunStepOutput.created_at < older_than))
        return int(getattr(result, "rowcount", 0) or 0)


@dg.io_manager(required_resource_keys={"ingestion"}, description="Study ops' values: memory plus a PostgreSQL copy.")
def study_step_outputs(init_context: dg.InitResourceContext) -> StudyStepOutputs:
    return StudyStepOutputs(init_context.resources.ingestion.runtime().engine)
