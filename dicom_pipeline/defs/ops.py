"""The study op: one Dagster step that runs the use case "ingest a study".

One op rather than four: retries, the dead letter and the staging cleanup belong to the
study as a whole, and live in the use case that every caller shares (README, "How a study
is ingested"). The steps stay visible in the run: a log line and a lineage
materialization as each completes. It is also cheaper: every Dagster step writes its own
events, which a warm worker otherwise spends most of a small study's run on.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from dicom_pipeline.defs import lineage, tags
from dicom_pipeline.defs.resources import IngestionResource
from dicom_pipeline.domain.identifiers import correlation_id_or_new
from dicom_pipeline.ingestion.study import IngestStudy, ingest_study

STUDY_OP = "ingest_orthanc_study"


class IngestStudyConfig(dg.Config):
    orthanc_study_id: str = Field(description="Orthanc's id of the study (five groups of 8 hex digits).")
    correlation_id: str | None = Field(default=None, description="Carried into logs, rows and Kafka headers.")
    trigger: str = Field(default="manual", description="What asked for this run: sensor, webhook, cli, backfill...")


class _RunProgress:
    """Turns the use case's stage reports into run tags, log lines and materializations."""

    def __init__(self, context: dg.OpExecutionContext, correlation_id: str) -> None:
        self.context = context
        self.correlation_id = correlation_id

    def __call__(self, stage: str, facts: Mapping[str, Any]) -> None:
        context, cid = self.context, self.correlation_id
        if stage == "extracted":
            # Known from here on, so even a run that fails later names its study.
            context.instance.add_run_tags(context.run_id, {tags.STUDY_UID: str(facts["study_uid"])})
            context.log.info(
                f"extracted study {facts['study_uid']}: {facts['downloaded']} downloaded, "
                f"{facts['reused']} already stored (correlation_id={cid})"
            )
        elif stage == "stored":
            context.log.info(
                f"stored {facts['written']} object(s), {facts['unchanged']} already identical, "
                f"{facts['bytes_written']} bytes (correlation_id={cid})"
            )
            if facts["written"]:
                self._materialize(lineage.RAW_STORE, facts, "study_uid", "written", "bytes_written")
        elif stage == "persisted":
            context.log.info(
                f"study {facts['study_instance_uid']} {facts['status']}: version {facts['version']}, "
                f"{facts['added']} added, {facts['removed']} removed (correlation_id={cid})"
            )
            if facts["status"] in ("created", "updated", "deleted") and facts["event_id"]:
                self._materialize(lineage.METADATA_TABLES, facts, "study_instance_uid", "version", "status", "added")
        elif stage == "published":
            context.log.info(f"published {facts['events_published']} event(s) for {facts['study_instance_uid']}")
            if facts["events_published"]:
                self._materialize(
                    lineage.EVENTS_TOPIC, facts, "study_instance_uid", "version", "event_id", "events_published"
                )

    def _materialize(self, key: dg.AssetKey, facts: Mapping[str, Any], *names: str) -> None:
        metadata = {name: facts[name] if facts[name] is not None else "" for name in names}
        self.context.log_event(
            dg.AssetMaterialization(key, metadata={**metadata, "correlation_id": self.correlation_id})
        )


@dg.op(name=STUDY_OP, tags={"kind": "orthanc"})
def ingest_orthanc_study(
    context: dg.OpExecutionContext, config: IngestStudyConfig, ingestion: IngestionResource
) -> dg.Output[dict[str, object]]:
    """Extract -> store raw -> persist metadata -> publish event, for one Orthanc study."""
    runtime = ingestion.runtime()
    run_tags = context.run.tags
    correlation_id = correlation_id_or_new(config.correlation_id or run_tags.get(tags.CORRELATION_ID))
    command = IngestStudy(
        orthanc_id=config.orthanc_study_id,
        trigger=config.trigger,
        correlation_id=correlation_id,
        run_id=context.run_id,
        request_id=run_tags.get(tags.REQUEST_ID),
    )
    result = ingest_study(runtime, command, on_stage=_RunProgress(context, correlation_id))
    summary = result.summary()
    if result.failed:
        # The use case has written the dead letter; the run fails without retrying (the
        # use case already retried what was transient).
        raise dg.Failure(
            description=str(result.error),
            metadata={"dead_letter_id": str(result.dead_letter_id), "correlation_id": correlation_id},
            allow_retries=False,
        )
    return dg.Output(summary, metadata={k: str(v) for k, v in summary.items()})
