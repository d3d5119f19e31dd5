#!/usr/bin/env bash
# `make bench`: start the same test servers as `make test` (for the Kafka/ES figures), then run the harness.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash deploy/test-services.sh start)"
trap 'bash deploy/test-services.sh stop >/dev/null 2>&1 || true' EXIT
.venv/bin/python -m bench.harness "$@"
