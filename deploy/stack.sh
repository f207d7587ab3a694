#!/usr/bin/env bash
# Start, stop or show the orchestration processes on this machine:
#   web (gunicorn), control consumer, beat (python -m orchestration web|control|beat), and one
#   worker per pool of ORCH_POOLS (python -m workers).
#   deploy/stack.sh start | stop | status   (status exits 1 when a process of the stack is not
#   running or a part is down, as `manage.py health` and GET /api/health/ report it)
#   ORCH_POOLS="local docker-main" deploy/stack.sh start      (default: local)
# Workers get the control plane's ORCH_STORAGE_URL (default: file:// under var/storage), where
# they read datasets and store outputs.
# Settings come from the environment (.env, env.template); with none set, the embedded
# default is used: SQLite and the embedded broker (a SQLite file) under var/, no server needed.
# On RabbitMQ, when deploy/broker-users.sh made the users of ORCH_BROKER_URL's vhost
# (var/broker-users/<vhost>), each part connects as its role: the web, the control consumer and
# the beat as <vhost>.control, a pool's worker as <vhost>.pool.<name>; a pool with no user of
# its own is refused. Without that file, every part uses ORCH_BROKER_URL as it is.
# Each process's pid is kept in var/run/<name>.pid and its output in var/log/<name>.log;
# stop signals only those pids.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PORT=${ORCH_PORT:-8000}
POOLS=${ORCH_POOLS:-local}
RUN=var/run
LOGS=var/log
mkdir -p "$RUN" "$LOGS"

# --- broker users per role -------------------------------------------------------------------
broker_url() {  # ORCH_BROKER_URL as every process reads it: the environment, then .env
  "$PY" -c 'import os; from workers.environment import load_env; load_env()
print(os.environ.get("ORCH_BROKER_URL", ""))'
}

storage_url() {  # ORCH_STORAGE_URL as the control plane reads it (default: var/storage)
  "$PY" -c 'from workers.environment import load_env; load_env()
from workers.staging import storage_url; print(storage_url())'
}

USERS_FILE=
find_broker_users() {  # USERS_FILE: the users' file of ORCH_BROKER_URL's vhost, if RabbitMQ's
  BROKER_URL=$(broker_url)
  case $BROKER_URL in amqp://*|amqps://*|pyamqp://*) ;; *) return 0 ;; esac
  local rest=${BROKER_URL#*://}
  authority=${rest%%/*}
  path=${rest#"$authority"}
  vhost=${path#/}; vhost=${vhost%%\?*}; vhost=${vhost//%2[Ff]//}; vhost=${vhost:-/}
  # named after the vhost as deploy/broker-users.sh names it
  local file
  file=var/broker-users/$(printf '%s' "$vhost" | tr -c 'A-Za-z0-9_-' '_')
  if [ -e "$file" ]; then USERS_FILE=$file; fi
}

role_url() {  # role_url ROLE: ORCH_BROKER_URL with the user and password of ROLE
  local login
  login=$(awk -v role="$1" '$1 == role { print $2 ":" $3; exit }' "$USERS_FILE")
  [ -n "$login" ] || return 1
  echo "${BROKER_URL%%://*}://$login@${authority##*@}$path"
}

as_role() {  # as_role ROLE COMMAND...: run COMMAND with ROLE's broker URL, if users are made
  if [ -z "$USERS_FILE" ]; then "${@:2}"; return; fi
  local url
  url=$(role_url "$1") || {
    echo "stack: no broker user for $1 in $USERS_FILE: make it with" \
      "deploy/broker-users.sh $vhost [POOL...]" >&2
    return 1
  }
  ORCH_BROKER_URL=$url "${@:2}"
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

launch() {
  local name=$1; shift
  if running "$name"; then echo "  $name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  echo "  $name started (pid $!, log $LOGS/$name.log)"
}

start() {
  find_broker_users
  if [ -n "$USERS_FILE" ]; then  # every role has its user, or nothing starts
    as_role control true
    for pool in $POOLS; do as_role "pool.$pool" true; done
    echo "  broker users of $USERS_FILE: the control plane's, and each pool's own"
  fi
  as_role control "$PY" -m orchestration prepare  # migrate, collect static, load pipelines
  # Each part's command line is in orchestration/__main__.py (python -m orchestration --help).
  as_role control launch web "$PY" -m orchestration web --port "$PORT"
  as_role control launch control "$PY" -m orchestration control
  as_role control launch beat "$PY" -m orchestration beat
  # Workers reach datasets and keep outputs in the control plane's store: the same URL.
  local storage
  storage=$(storage_url)
  for pool in $POOLS; do
    ORCH_STORAGE_URL=$storage as_role "pool.$pool" launch "worker-$pool" \
      "$PY" -m workers --pool "$pool"
  done
}

services() {  # everything with a pid file, workers first
  for pid in "$RUN"/worker-*.pid; do [ -e "$pid" ] && basename "$pid" .pid; done
  echo beat control web
}

stop() {  # SIGTERM to each part, then wait until it has exited (at most a minute each): a
          # start right after must not meet the old parts still using the broker and the files
  local name pid
  for name in $(services); do
    if running "$name"; then
      pid=$(cat "$RUN/$name.pid")
      kill "$pid"
      for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then echo "  $name still stopping (pid $pid)"
      else echo "  $name stopped"; fi
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {  # each pid's state, then the health of every part: non-zero when one is down
  local rc=0
  find_broker_users
  for name in $(services); do
    if running "$name"; then echo "  $name running (pid $(cat "$RUN/$name.pid"))"
    else echo "  $name not running"; rc=1; fi
  done
  as_role control "$PY" manage.py health || rc=1
  return $rc
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
