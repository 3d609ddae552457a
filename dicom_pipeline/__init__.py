"""dicom-pipeline: Orthanc -> PostgreSQL metadata, raw DICOM storage and Kafka events, on Dagster."""

__version__ = "0.1.0"
