#!/usr/bin/env bash
# Make PostgreSQL and RabbitMQ ready for orchestration on this machine, idempotently:
# install them (Debian, as root) if missing, start them if stopped, create the database, a
# RabbitMQ vhost and its users per role (deploy/broker-users.sh: the control plane's and each
# pool's, which deploy/stack.sh starts the parts as). Prints the settings to export (the broker
# URL is guest's, on this machine only: for tools and tests, not for the parts of the stack).
# Used by deploy/test.sh and .ci/run.
#   deploy/services.sh [DB_NAME] [VHOST]
set -euo pipefail
DB_NAME=${1:-orchestration}
VHOST=${2:-orchestration}
APT="apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "services: $*" >&2; }

ensure_installed() {  # ensure_installed COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return
  say "installing ${*:2}"
  as_root env DEBIAN_FRONTEND=noninteractive $APT "${@:2}" >/dev/null \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive $APT "${@:2}" >/dev/null; }
}

wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}

# --- PostgreSQL -------------------------------------------------------------------------------
ensure_installed psql postgresql postgresql-client
PG_VERSION=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  say "starting PostgreSQL $PG_VERSION"
  as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start || true
  wait_for 60 pg_isready -h 127.0.0.1 -q || { say "PostgreSQL did not start"; exit 1; }
fi
PSQL="psql -h 127.0.0.1 -U postgres -tAq"
if ! $PSQL -c "select 1" >/dev/null 2>&1; then  # no trust auth on TCP: go through the socket
  PSQL="as_root su postgres -c"
  $PSQL "psql -tAq -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  export PGPASSWORD=postgres
  PSQL="psql -h 127.0.0.1 -U postgres -tAq"
fi
if [ "$($PSQL -c "select 1 from pg_database where datname='$DB_NAME'")" != 1 ]; then
  $PSQL -c "CREATE DATABASE \"$DB_NAME\"" && say "created database $DB_NAME"
fi

# --- RabbitMQ ---------------------------------------------------------------------------------
ensure_installed rabbitmq-server rabbitmq-server
if ! as_root rabbitmqctl -q status >/dev/null 2>&1; then
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_for 120 as_root rabbitmqctl -q await_startup || { say "RabbitMQ did not start"; exit 1; }
fi
if ! as_root rabbitmqctl -q list_vhosts | grep -qx "$VHOST"; then
  as_root rabbitmqctl -q add_vhost "$VHOST"
  as_root rabbitmqctl -q set_permissions -p "$VHOST" guest ".*" ".*" ".*"
  say "created vhost $VHOST"
fi
"$(dirname "$0")/broker-users.sh" "$VHOST" >/dev/null  # their URLs stay in var/broker-users/

cat <<ENV
export DATABASE_URL=postgres://postgres${PGPASSWORD:+:$PGPASSWORD}@127.0.0.1:5432/$DB_NAME
export ORCH_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/$VHOST
ENV
