#!/usr/bin/env bash
# `make test`: lint and types, then the whole suite against the real stack, then stack down.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

# Whatever happens below, even a failed `stack up`, the stack's processes do not outlive
# the test run.
trap '"$BIN/dicom-pipeline" stack down' EXIT
if ! "$BIN/dicom-pipeline" stack up; then
  # CI shows only what is printed: the services' own logs say why one did not start.
  for log in .stack/*/*.log; do
    [ -f "$log" ] && { echo "== tail of $log" >&2; tail -n 40 "$log" >&2; }
  done
  exit 1
fi

make --no-print-directory lint VENV="${VENV:-.venv}" || exit 1

"$BIN/pytest" "$@"
status=$?
if [ "$status" -eq 5 ]; then
  # pytest's 5 means no test was collected: a suite that ran nothing has not passed.
  echo "pytest collected no tests: failing the run" >&2
  exit 1
fi
exit "$status"
