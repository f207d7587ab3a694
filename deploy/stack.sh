#!/usr/bin/env bash
# Start, stop or show the orchestration processes on this machine:
#   web (gunicorn), control consumer, beat, and one worker per pool of ORCH_POOLS.
#   deploy/stack.sh start | stop | status   (status exits 1 when a process of the stack is not
#   running or a part is down, as `manage.py health` and GET /api/health/ report it)
#   ORCH_POOLS="local docker-main" deploy/stack.sh start      (default: local)
# Settings come from the environment (.env, env.template); with none set, the embedded
# default is used: SQLite and the embedded broker (a SQLite file) under var/, no server needed.
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

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

launch() {
  local name=$1; shift
  if running "$name"; then echo "  $name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  echo "  $name started (pid $!, log $LOGS/$name.log)"
}

start() {
  "$PY" manage.py migrate --noinput -v0
  "$PY" manage.py collectstatic --noinput -v0
  "$PY" manage.py load_pipelines
  # Keep-alive past gunicorn's 2 s: a client posting every 2 s otherwise reuses a connection
  # the server is closing at that moment and gets a reset for its POST.
  launch web "$PY" -m gunicorn orchestration.wsgi --bind "127.0.0.1:$PORT" --workers 2 \
    --threads 4 --keep-alive 30 --access-logfile - --graceful-timeout 5
  launch control "$PY" -m celery -A orchestration worker --queues=control --pool=threads \
    --concurrency=4 --hostname="control@%h" --without-gossip --without-mingle --loglevel=INFO
  launch beat "$PY" -m celery -A orchestration beat --loglevel=INFO \
    --schedule="var/celerybeat-schedule"
  for pool in $POOLS; do
    launch "worker-$pool" "$PY" -m workers --pool "$pool"
  done
}

services() {  # everything with a pid file, workers first
  for pid in "$RUN"/worker-*.pid; do [ -e "$pid" ] && basename "$pid" .pid; done
  echo beat control web
}

stop() {
  for name in $(services); do
    if running "$name"; then
      kill "$(cat "$RUN/$name.pid")" && echo "  $name stopped"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {  # each pid's state, then the health of every part: non-zero when one is down
  local rc=0
  for name in $(services); do
    if running "$name"; then echo "  $name running (pid $(cat "$RUN/$name.pid"))"
    else echo "  $name not running"; rc=1; fi
  done
  "$PY" manage.py health || rc=1
  return $rc
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
