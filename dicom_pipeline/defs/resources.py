"""Dagster resources: thin handles on the process's composition root."""

from __future__ import annotations

import dagster as dg

from dicom_pipeline.runtime import Runtime, get_runtime


class IngestionResource(dg.ConfigurableResource):
    """Orthanc, PostgreSQL, the raw store and Kafka, configured by the settings object."""

    def runtime(self) -> Runtime:
        return get_runtime()
