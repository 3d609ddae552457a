"""Run tags (a contract: the UI, launchers and concurrency limits rely on them)."""

from dicom_pipeline.defs.run_log import with_run_logger

STUDY_UID = "dicom/study_uid"
ORTHANC_ID = "dicom/orthanc_id"
CORRELATION_ID = "dicom/correlation_id"
TRIGGER = "dicom/trigger"
REQUEST_ID = "dicom/request_id"
WORKER = "dicom/worker"  # host:pid of the process that executed the run
TRACEPARENT = "dicom/traceparent"  # W3C trace context of the study's trace (dicom_pipeline/tracing.py)


def study_run_tags(orthanc_id: str, correlation_id: str, trigger: str, study_uid: str | None = None) -> dict[str, str]:
    tags = {ORTHANC_ID: orthanc_id, CORRELATION_ID: correlation_id, TRIGGER: trigger}
    if study_uid:
        tags[STUDY_UID] = study_uid
    return tags


def study_run_config(orthanc_id: str, correlation_id: str | None, trigger: str) -> dict[str, object]:
    config: dict[str, object] = {"orthanc_study_id": orthanc_id, "trigger": trigger}
    if correlation_id:
        config["correlation_id"] = correlation_id
    # The study's identity is the extract op's config (the launchpad shows it); every op and
    # the failure hook read it from the run's config (defs/ops.py, study_command).
    # Every launcher (sensors, webhook, CLI) writes it here, with the runs' logger selected.
    return with_run_logger({"ops": {"extract_study": {"config": config}}})
