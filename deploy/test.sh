#!/usr/bin/env bash
# The test command. Installs what the tests need, starts PostgreSQL, RabbitMQ and the targets'
# engines (each script is idempotent), then runs pytest with any arguments given:
#   deploy/test.sh                 # everything
#   deploy/test.sh tests/test_api.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh dev
eval "$(deploy/services.sh orchestration orchestration-test)"
for engine in deploy/container-engine.sh deploy/slurm-cluster.sh; do
  if [ -x "$engine" ]; then eval "$("$engine" start)"; fi
done
exec .venv/bin/python -m pytest "$@"
