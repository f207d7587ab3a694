#!/usr/bin/env bash
# The test command. Installs what the tests need, starts PostgreSQL, RabbitMQ and the targets'
# engines (Podman, Slurm 22.05 and 24.11) and a headless browser (each script is idempotent), builds the compose images when
# the compose test runs, then runs pytest with any arguments given:
#   deploy/test.sh                 # everything
#   deploy/test.sh tests/test_api.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh dev
eval "$(deploy/services.sh orchestration orchestration-test)"
# Slurm 22.05 from the host's packages and 24.11 from a Debian 13 root file system (made once
# per checkout, reused after): the Slurm tests run on both.
for engine in deploy/container-engine.sh deploy/slurm-cluster.sh deploy/slurm24-cluster.sh; do
  started=$SECONDS
  if [ -x "$engine" ]; then eval "$("$engine" start)"; fi
  echo "test: $engine ready in $((SECONDS - started)) s" >&2
done
eval "$(deploy/browser.sh)"  # chromium and its driver, for the admin's browser test

compose_test_runs() {  # no path given (everything), or a path that holds the compose test
  local arg path given=0 test
  test=$(realpath tests/e2e/test_compose.py)
  for arg in "$@"; do
    path=${arg%%::*}
    case $arg in -*) continue ;; esac
    [ -e "$path" ] || continue
    given=1
    path=$(realpath "$path")
    if [ "$test" = "$path" ] || [[ $test == "$path"/* ]]; then return 0; fi
  done
  [ $given = 0 ]
}
# The compose file's images, built once (deploy/compose-images.sh keeps them by content hash).
if compose_test_runs "$@"; then eval "$(deploy/compose-images.sh)"; fi
exec .venv/bin/python -m pytest "$@"
