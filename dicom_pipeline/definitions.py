"""The Dagster code location: `dagster-webserver -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from dicom_pipeline.defs.backfill import backfill_by_study_date
from dicom_pipeline.defs.backstop import dead_letter_backstop
from dicom_pipeline.defs.change_feed import orthanc_change_feed
from dicom_pipeline.defs.jobs import ingest_study, outbox_relay, outbox_relay_schedule
from dicom_pipeline.defs.lineage import LINEAGE_SPECS
from dicom_pipeline.defs.reaper import dead_run_reaper
from dicom_pipeline.defs.reconcile import reconcile, reconcile_schedule
from dicom_pipeline.defs.resources import IngestionResource

defs = dg.Definitions(
    assets=LINEAGE_SPECS,
    jobs=[ingest_study, outbox_relay, reconcile, backfill_by_study_date],
    schedules=[outbox_relay_schedule, reconcile_schedule],
    sensors=[orthanc_change_feed, dead_letter_backstop, dead_run_reaper],
    # Op outputs (which hold patient names from the headers) stay in memory: nothing with
    # PHI is pickled into Dagster's storage. Re-execute a study run as a whole.
    resources={"ingestion": IngestionResource(), "io_manager": dg.mem_io_manager},
)
