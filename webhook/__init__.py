"""FastAPI webhook service that turns Orthanc notifications into ingestion runs."""
