"""`dicom-pipeline seed`: plan studies, build them lazily and send them to Orthanc."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from pydicom.dataset import Dataset

from dicom_pipeline.settings import Settings
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.seed.send import send_cstore, upload_rest
from dicom_pipeline_dev.seed.synth import SeedPlan, StudySpec, build_instances, plan_studies


@dataclass(frozen=True)
class SeededStudy:
    study_instance_uid: str
    orthanc_id: str
    modality: str
    study_date: str
    series: int
    instances: int


def orthanc_client(settings: Settings, timeout: float = 60.0) -> ServiceSession:
    return ServiceSession(
        base_url=settings.orthanc_url,
        auth=(settings.orthanc_username, settings.orthanc_password.get_secret_value()),
        timeout=timeout,
        headers={"Accept-Encoding": "identity"},
    )


def seed_studies(
    settings: Settings,
    plan: SeedPlan,
    via: Literal["rest", "cstore"] = "rest",
    on_instance: Callable[[], None] | None = None,
) -> list[SeededStudy]:
    specs = plan_studies(plan)
    seeded = []
    with orthanc_client(settings) as client:
        for spec in specs:
            instances = _counting(build_instances(spec, plan.seed), on_instance)
            if via == "rest":
                upload_rest(client, instances)
            else:
                send_cstore("127.0.0.1", settings.orthanc_dicom_port, instances)
            seeded.append(describe_study(client, spec))
    return seeded


def _counting(instances: Iterator[Dataset], on_instance: Callable[[], None] | None) -> Iterator[Dataset]:
    for ds in instances:
        yield ds
        if on_instance is not None:
            on_instance()


def lookup_study_id(client: ServiceSession, study_uid: str) -> str:
    """Orthanc's id of the study with this Study Instance UID."""
    response = client.post("/tools/lookup", data=study_uid)
    response.raise_for_status()
    return str(next(item["ID"] for item in response.json() if item["Type"] == "Study"))


def describe_study(client: ServiceSession, spec: StudySpec) -> SeededStudy:
    """Look the seeded study up in Orthanc by its Study Instance UID."""
    return SeededStudy(
        study_instance_uid=spec.study_uid,
        orthanc_id=lookup_study_id(client, spec.study_uid),
        modality=spec.modality,
        study_date=spec.study_date.isoformat(),
        series=spec.series_count,
        instances=spec.series_count * spec.instances_per_series,
    )
