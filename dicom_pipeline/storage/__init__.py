"""Raw DICOM storage behind one small interface, chosen by DICOM_PIPELINE_STORAGE_URL."""

from dicom_pipeline.storage.base import RawStore
from dicom_pipeline.storage.factory import raw_store_from_settings, raw_store_from_url

__all__ = ["RawStore", "raw_store_from_settings", "raw_store_from_url"]
