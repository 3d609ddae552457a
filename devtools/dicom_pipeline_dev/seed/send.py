"""Sends synthetic instances to Orthanc, by REST upload or by DICOM C-STORE."""

from __future__ import annotations

import io
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    MRImageStorage,
)

from dicom_pipeline.errors import OrthancError
from dicom_pipeline_dev.http import ServiceSession


def dataset_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def upload_rest(client: ServiceSession, instances: Iterable[Dataset]) -> list[str]:
    """POST each instance to /instances; returns Orthanc's instance ids."""
    ids = []
    for ds in instances:
        response = client.post("/instances", data=dataset_bytes(ds), headers={"Content-Type": "application/dicom"})
        if response.status_code != 200:
            raise OrthancError(f"Orthanc refused instance {ds.SOPInstanceUID}: HTTP {response.status_code}")
        ids.append(response.json()["ID"])
    return ids


def send_cstore(host: str, port: int, instances: Iterable[Dataset], called_aet: str = "ORTHANC") -> int:
    """C-STORE each instance over one association, as a modality would; returns the count."""
    ae = AE(ae_title="DICOMPIPELINE")
    for context in (
        CTImageStorage,
        MRImageStorage,
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
    ):
        ae.add_requested_context(context)
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        raise OrthancError(f"no DICOM association with {called_aet} at {host}:{port}")
    sent = 0
    try:
        for ds in instances:
            status = assoc.send_c_store(ds)
            if status is None or getattr(status, "Status", 0xFFFF) != 0x0000:
                raise OrthancError(f"C-STORE of {ds.SOPInstanceUID} failed with status {status}")
            sent += 1
    finally:
        assoc.release()
    return sent
