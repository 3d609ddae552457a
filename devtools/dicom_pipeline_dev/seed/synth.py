"""Builds synthetic DICOM studies with pydicom: realistic structure, sizes and character sets."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

SOP_CLASS_BY_MODALITY = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
}
MULTI_SERIES_MODALITIES = {"CT", "MR"}

# Names that need each character set: Latin-1 covers Western European accents,
# UTF-8 (ISO_IR 192) anything, including ideographic names.
NAMES_BY_CHARSET = {
    "ISO_IR 100": ["Müller^Jürgen", "Ångström^Åsa", "García^José", "Øvergård^Søren"],
    "ISO_IR 192": ["Müller^Jürgen", "Dvořák^Antonín", "Łukasiewicz^Żaneta", "山田^太郎", "Παπαδόπουλος^Νίκος"],
}
BODY_PARTS = {"CT": ["CHEST", "ABDOMEN", "HEAD"], "MR": ["BRAIN", "KNEE", "SPINE"], "CR": ["CHEST"], "DX": ["HAND"]}


@dataclass(frozen=True)
class StudySpec:
    """What one synthetic study should contain."""

    modality: str
    study_date: dt.date
    series_count: int
    instances_per_series: int
    rows: int
    columns: int
    charset: str
    patient_name: str
    patient_id: str
    study_uid: str
    series_uids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeedPlan:
    """Options of `dicom-pipeline seed`."""

    studies: int = 3
    modalities: tuple[str, ...] = ("CT", "MR", "CR", "DX")
    series_per_study: int = 2
    instances_per_series: int = 3
    rows: int = 512
    columns: int = 512
    dates: tuple[dt.date, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    charsets: tuple[str, ...] = ("ISO_IR 192", "ISO_IR 100")
    seed: int = 0


def plan_studies(plan: SeedPlan) -> list[StudySpec]:
    """Decide every study's shape from the plan; the same seed gives the same studies."""
    rng = random.Random(plan.seed)  # noqa: S311 - reproducible test data, not secrets
    specs = []
    for index in range(plan.studies):
        modality = plan.modalities[index % len(plan.modalities)]
        multi = modality in MULTI_SERIES_MODALITIES
        charset = plan.charsets[index % len(plan.charsets)]
        entropy = f"dicom-pipeline-seed:{plan.seed}:{index}"
        series_count = plan.series_per_study if multi else 1
        specs.append(
            StudySpec(
                modality=modality,
                study_date=_pick_date(plan, index, rng),
                series_count=series_count,
                instances_per_series=plan.instances_per_series if multi else 1,
                rows=plan.rows,
                columns=plan.columns,
                charset=charset,
                patient_name=rng.choice(NAMES_BY_CHARSET[charset]),
                patient_id=f"SEED{plan.seed:04d}{index:05d}",
                study_uid=generate_uid(entropy_srcs=[entropy, "study"]),
                series_uids=[generate_uid(entropy_srcs=[entropy, "series", str(s)]) for s in range(series_count)],
            )
        )
    return specs


def _pick_date(plan: SeedPlan, index: int, rng: random.Random) -> dt.date:
    if plan.dates:
        return plan.dates[index % len(plan.dates)]
    if plan.date_from and plan.date_to:
        span = (plan.date_to - plan.date_from).days
        return plan.date_from + dt.timedelta(days=rng.randint(0, max(span, 0)))
    return dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 365))


def build_instances(spec: StudySpec, seed: int = 0) -> Iterator[Dataset]:
    """Yield the study's instances one at a time, so a large study never sits in memory."""
    digest = hashlib.sha256(f"{spec.study_uid}:{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    for series_index, series_uid in enumerate(spec.series_uids):
        for number in range(1, spec.instances_per_series + 1):
            sop_uid = generate_uid(entropy_srcs=[spec.study_uid, series_uid, str(number)])
            yield _instance(spec, series_index, series_uid, number, sop_uid, rng)


def _instance(
    spec: StudySpec, series_index: int, series_uid: str, number: int, sop_uid: str, rng: np.random.Generator
) -> Dataset:
    sop_class = SOP_CLASS_BY_MODALITY[spec.modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = spec.charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = spec.patient_id[-8:]
    ds.StudyDate = spec.study_date.strftime("%Y%m%d")
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.StudyDescription = f"Synthetic {spec.modality} study"
    ds.ReferringPhysicianName = "Référent^Claire"
    ds.Modality = spec.modality
    ds.SeriesNumber = series_index + 1
    ds.SeriesDescription = f"{spec.modality} series {series_index + 1}"
    ds.BodyPartExamined = BODY_PARTS[spec.modality][series_index % len(BODY_PARTS[spec.modality])]
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = rng.integers(0, 4096, size=(spec.rows, spec.columns), dtype=np.uint16).tobytes()
    return ds
