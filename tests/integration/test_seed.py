"""`dicom-pipeline seed` creates exactly what it was asked for, by REST and by C-STORE."""

from __future__ import annotations

import datetime as dt

import pytest
from dicom_pipeline_dev.http import ServiceSession
from dicom_pipeline_dev.seed.runner import seed_studies
from dicom_pipeline_dev.seed.synth import SeedPlan

from dicom_pipeline.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("via", ["rest", "cstore"])
def test_seed_creates_requested_studies_series_and_instances(
    stack_settings: Settings, orthanc: ServiceSession, via: str
) -> None:
    plan = SeedPlan(
        studies=3,
        modalities=("CT", "MR", "DX"),
        series_per_study=2,
        instances_per_series=3,
        rows=64,
        columns=64,
        dates=(dt.date(2023, 5, 17),),
        seed=100 + len(via),
    )
    seeded = seed_studies(stack_settings, plan, via="rest" if via == "rest" else "cstore")
    assert len(seeded) == 3
    expected_shape = {"CT": (2, 6), "MR": (2, 6), "DX": (1, 1)}
    for study in seeded:
        info = orthanc.get(f"/studies/{study.orthanc_id}").json()
        assert info["MainDicomTags"]["StudyInstanceUID"] == study.study_instance_uid
        assert info["MainDicomTags"]["StudyDate"] == "20230517"
        instances = orthanc.get(f"/studies/{study.orthanc_id}/instances").json()
        assert (len(info["Series"]), len(instances)) == expected_shape[study.modality]


@pytest.mark.parametrize(
    ("charset", "expected_names"),
    [
        ("ISO_IR 100", {"Müller^Jürgen", "Ångström^Åsa", "García^José", "Øvergård^Søren"}),
        ("ISO_IR 192", {"Müller^Jürgen", "Dvořák^Antonín", "Łukasiewicz^Żaneta", "山田^太郎", "Παπαδόπουλος^Νίκος"}),
    ],
)
def test_seeded_non_ascii_names_read_back_correctly_from_orthanc(
    stack_settings: Settings, orthanc: ServiceSession, charset: str, expected_names: set[str]
) -> None:
    plan = SeedPlan(
        studies=2, modalities=("CR",), rows=16, columns=16, charsets=(charset,), seed=300 + int(charset.split()[-1])
    )
    for study in seed_studies(stack_settings, plan):
        tags = orthanc.get(f"/studies/{study.orthanc_id}").json()["PatientMainDicomTags"]
        assert tags["PatientName"] in expected_names
        instance_id = orthanc.get(f"/studies/{study.orthanc_id}/instances").json()[0]["ID"]
        charset_tag = orthanc.get(f"/instances/{instance_id}/content/0008-0005").text.strip("\x00 ")
        assert charset_tag == charset


def test_same_seed_gives_the_same_study_uids(stack_settings: Settings) -> None:
    from dicom_pipeline_dev.seed.synth import plan_studies

    plan = SeedPlan(studies=4, seed=9)
    assert [s.study_uid for s in plan_studies(plan)] == [s.study_uid for s in plan_studies(plan)]
    assert len({s.study_uid for s in plan_studies(plan)}) == 4
