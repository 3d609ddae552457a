#!/usr/bin/env bash
# `make test`: lint and types, then the whole suite against the real stack, then stack down.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

# The suite starts from empty services (no study, queue or Dagster run of an earlier run)
# and leaves none behind for the next `make dev`; whatever happens below, even a failed
# `stack up`, the stack's processes do not outlive the test run.
# The compose file is checked with `docker-compose config` (no Docker engine needed); install
# the tool where it is missing, as the stack installs its services.
if ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  else
    echo "docker-compose is missing: sudo apt-get install -y docker-compose" >&2
    exit 1
  fi
fi
"$BIN/dicom-pipeline" stack down --purge >/dev/null
trap '"$BIN/dicom-pipeline" stack down --purge' EXIT
# Lint and types meanwhile: the stack's start is mostly waiting for its JVMs (~40 s), mypy's
# first run about as long.
lint_log=$(mktemp)
make --no-print-directory lint VENV="${VENV:-.venv}" >"$lint_log" 2>&1 &
lint_pid=$!
if ! "$BIN/dicom-pipeline" stack up; then
  # CI shows only what is printed: the services' own logs say why one did not start.
  for log in .stack/*/*.log; do
    [ -f "$log" ] && { echo "== tail of $log" >&2; tail -n 40 "$log" >&2; }
  done
  wait "$lint_pid"
  exit 1
fi
wait "$lint_pid"
lint_status=$?
cat "$lint_log"
rm -f "$lint_log"
[ "$lint_status" -eq 0 ] || exit 1

# The suite's temporary files (e2e process logs among them) go under .stack, so the audit
# below finds every log this run produced, and the purge at the end removes them.
"$BIN/pytest" --basetemp "$PWD/.stack/pytest" "$@"
status=$?
if [ "$status" -eq 5 ]; then
  # pytest's 5 means no test was collected: a suite that ran nothing has not passed.
  echo "pytest collected no tests: failing the run" >&2
  exit 1
fi
# Every log of the run (services, Dagster, workers, webhook, the suite's own JSON log):
# no patient name, birth date or secret, whatever order the tests ran in.
"$BIN/python" -m tests.audit_logs .stack || status=1
exit "$status"
