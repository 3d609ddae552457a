"""The composition root: one place that wires settings to adapters, once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from sqlalchemy import Engine

from dicom_pipeline.db.engine import engine_for, upgrade_schema
from dicom_pipeline.domain.events import StudyEventContext
from dicom_pipeline.errors import PermanentError
from dicom_pipeline.ingestion.readers import InstanceReaders
from dicom_pipeline.kafka.producer import EventProducer
from dicom_pipeline.orthanc.client import OrthancClient
from dicom_pipeline.settings import Settings, get_settings
from dicom_pipeline.storage import RawStore, raw_store_from_settings


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        url = self.settings.database_url.get_secret_value()
        # Migrations run before the first use, so a fresh database just works.
        upgrade_schema(url)
        return engine_for(url)

    @cached_property
    def raw_store(self) -> RawStore:
        return raw_store_from_settings(self.settings)

    @cached_property
    def producer(self) -> EventProducer:
        return EventProducer.from_settings(self.settings)

    @cached_property
    def instance_readers(self) -> InstanceReaders | None:
        """Reader processes for this process's runs (None: threads of this process read);
        started by the first study that needs them, then kept warm."""
        return InstanceReaders(self.settings) if self.settings.reader_processes > 0 else None

    def orthanc(self) -> OrthancClient:
        return OrthancClient.from_settings(self.settings)

    @property
    def staging_root(self) -> Path:
        path = self.settings.staging_dir.resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run_staging(self, run_id: str | None) -> Path:
        """Scratch space of one run: removed when the run ends, or by the reaper if its worker died."""
        return self.staging_root / (run_id or "outside-runs")

    def event_context(self, *, run_id: str | None, correlation_id: str, trigger: str) -> StudyEventContext:
        key = self.settings.phi_hash_key.get_secret_value()
        if self.settings.event_phi_profile == "minimal" and not key:
            raise PermanentError(
                "event_phi_profile=minimal needs DICOM_PIPELINE_PHI_HASH_KEY to pseudonymise patient ids"
            )
        return StudyEventContext(
            run_id=run_id,
            correlation_id=correlation_id,
            trigger=trigger,
            topic=self.settings.kafka_topic,
            phi_profile=self.settings.event_phi_profile,
            phi_hash_key=key.encode(),
            storage_backend=self.raw_store.backend,
            storage_location=self.raw_store.location(),
        )


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    return Runtime(get_settings())


def reset_runtime() -> None:
    """Forget cached settings and adapters (tests change the environment between cases)."""
    get_settings.cache_clear()
    get_runtime.cache_clear()
