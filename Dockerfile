# The dicom-pipeline image: Dagster code location, webserver, daemon and webhook.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DAGSTER_HOME=/opt/dagster/home
WORKDIR /opt/dicom-pipeline

COPY pyproject.toml README.md ./
COPY dicom_pipeline ./dicom_pipeline
COPY webhook ./webhook
COPY dagster_home/dagster.yaml /opt/dagster/home/dagster.yaml
COPY deploy/workspace.docker.yaml ./workspace.yaml
# The runtime user owns DAGSTER_HOME (Dagster writes its logs and local state there) and /data.
RUN pip install --no-cache-dir . && useradd --system --uid 10001 dicom \
    && mkdir -p /data /opt/dagster/home && chown -R dicom /data /opt/dagster/home
USER dicom
