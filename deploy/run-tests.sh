#!/usr/bin/env bash
# `make test`: lint, type-check, start test servers (unless real ones are given), run the suite, stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== ruff"; $BIN/ruff check .
echo "== mypy (core, api)"; $BIN/mypy
echo "== test services"
eval "$(bash deploy/test-services.sh start)"
trap 'bash deploy/test-services.sh stop >/dev/null 2>&1 || true' EXIT
mkdir -p test-artifacts
echo "== pytest"
$BIN/python -m pytest -q -p no:cacheprovider "$@"
