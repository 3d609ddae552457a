#!/usr/bin/env bash
# `make dev`: the stack, demo studies, then Dagster webserver + daemon, a Celery run worker and
# the webhook in the foreground. Ctrl-C stops the four processes started here (the stack keeps running:
# `make stack-down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

"$BIN/dicom-pipeline" stack up
set -a
# shellcheck disable=SC1091
. .stack/stack.env
set +a
export DAGSTER_HOME="$PWD/dagster_home"

if [ "$("$BIN/dicom-pipeline" stack status --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["services"]["orthanc"]["running"])')" = "True" ]; then
  "$BIN/dicom-pipeline" seed --studies 4 --instances 3 --seed 1 >/dev/null && echo "demo studies sent to Orthanc"
fi

DAGSTER_PORT="${DICOM_PIPELINE_DAGSTER_PORT:-13000}"
WEBHOOK_PORT="${DICOM_PIPELINE_WEBHOOK_PORT:-18000}"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap cleanup EXIT INT TERM

# Each in a session of its own: Ctrl-C reaches only this script, which then stops them with
# SIGTERM in order (otherwise the daemon's code server dies first and its last sensor ticks
# print tracebacks while everything shuts down).
setsid "$BIN/dagster-webserver" -w workspace.yaml -h 127.0.0.1 -p "$DAGSTER_PORT" &
pids+=($!)
setsid "$BIN/dagster-daemon" run -w workspace.yaml &
pids+=($!)
# One Celery run worker (two processes); more hosts: `dicom-pipeline worker` there (README).
setsid "$BIN/dicom-pipeline" worker --concurrency 2 &
pids+=($!)
setsid "$BIN/uvicorn" --factory webhook.main:app --host 127.0.0.1 --port "$WEBHOOK_PORT" --no-access-log &
pids+=($!)

sleep 3
cat <<MSG

  Dagster UI      http://127.0.0.1:${DAGSTER_PORT}
  Webhook API     http://127.0.0.1:${WEBHOOK_PORT}/docs
  Orthanc         ${DICOM_PIPELINE_ORTHANC_URL}  (user ${DICOM_PIPELINE_ORTHANC_USERNAME:-dicom-pipeline}; password in .stack/stack.env)

  Ctrl-C stops Dagster, the worker and the webhook; 'make stack-down' stops the services.
MSG
wait
