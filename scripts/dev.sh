#!/usr/bin/env bash
# `make dev`: the stack, demo studies, then Dagster webserver + daemon, a Celery run worker and
# the webhook in the foreground. Ctrl-C stops the four processes started here (the stack keeps running:
# `make stack-down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

"$BIN/dicom-pipeline" stack up
# The stack's settings, except those the caller set (tests/e2e/test_first_start.py runs
# this script on a fresh Dagster database).
while IFS='=' read -r key value; do
  case "$key" in '' | '#'*) continue ;; esac
  [ -n "${!key+x}" ] || export "$key=$value"
done < .stack/stack.env
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/dagster_home}"

if [ "$("$BIN/dicom-pipeline" stack status --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["services"]["orthanc"]["running"])')" = "True" ]; then
  "$BIN/dicom-pipeline" seed --studies 4 --instances 3 --seed "${DEV_SEED:-1}" --json >.stack/demo-studies.json &&
    echo "demo studies sent to Orthanc (.stack/demo-studies.json)"
fi

DAGSTER_PORT="${DICOM_PIPELINE_DAGSTER_PORT:-13000}"
WEBHOOK_PORT="${DICOM_PIPELINE_WEBHOOK_PORT:-18000}"
pids=()
cleanup() {
  # Once: Ctrl-C runs this, then the script's exit would run it again, and a second SIGTERM
  # can cut a process's own shutdown short (a Dagster process then ends "Aborted!").
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap cleanup EXIT INT TERM

# Every process writes JSON lines (Dagster's daemon and webserver too: their logging is
# their own, `--log-format json`). In a terminal they are shown through `dicom-pipeline
# logs`, one console format for all; otherwise (CI, a file, a collector) as JSON.
export DICOM_PIPELINE_LOG_FORMAT=json
show() {
  # Ctrl-C reaches these too (they are this script's); they end when their process does, so
  # its last lines (its shutdown) are still shown.
  trap '' INT
  if [ -t 1 ]; then "$BIN/dicom-pipeline" logs --process "$1" --level "${DEV_LOG_LEVEL:-info}"; else cat; fi
}

# Each in a session of its own: Ctrl-C reaches only this script, which then stops them with
# SIGTERM in order (otherwise the daemon's code server dies first and its last sensor ticks
# print tracebacks while everything shuts down).
setsid "$BIN/dagster-webserver" -w workspace.yaml -h 127.0.0.1 -p "$DAGSTER_PORT" --log-format json --code-server-log-level warning \
  > >(show webserver) 2>&1 &
pids+=($!)
setsid "$BIN/dagster-daemon" run -w workspace.yaml --log-format json > >(show daemon) 2>&1 &
pids+=($!)
# One Celery run worker (two processes); more hosts: `dicom-pipeline worker` there (README).
setsid "$BIN/dicom-pipeline" worker --concurrency 2 > >(show worker) 2>&1 &
pids+=($!)
# The webhook once Dagster answers: Orthanc's calls for the demo studies would otherwise
# find no Dagster to launch on and wait, with a warning, for the next attempt.
"$BIN/python" - "$DAGSTER_PORT" <<'PY'
import sys, time, requests
for _ in range(240):
    try:
        requests.get(f"http://127.0.0.1:{sys.argv[1]}/server_info", timeout=1)
        break
    except requests.RequestException:
        time.sleep(0.5)
PY
setsid "$BIN/uvicorn" --factory webhook.main:app --host 127.0.0.1 --port "$WEBHOOK_PORT" --no-access-log \
  > >(show webhook) 2>&1 &
pids+=($!)

cat <<MSG

  Dagster UI      http://127.0.0.1:${DAGSTER_PORT}
  Webhook API     http://127.0.0.1:${WEBHOOK_PORT}/docs
  Orthanc         ${DICOM_PIPELINE_ORTHANC_URL}  (user ${DICOM_PIPELINE_ORTHANC_USERNAME:-dicom-pipeline}; password in .stack/stack.env)

  Ctrl-C stops Dagster, the worker and the webhook; 'make stack-down' stops the services.
MSG
wait
