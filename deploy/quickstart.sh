#!/usr/bin/env bash
# The quick start: install, start the whole product on this machine, and run a pipeline
# (`hello` by default) end to end through the REST API with a bearer token.
#   deploy/quickstart.sh [PIPELINE [CONFIG_JSON]]
#   ORCH_POOLS="local docker-main" deploy/quickstart.sh hello-docker '{"name": "container"}'
#
# With no settings it uses the embedded default, which needs no server: SQLite and a
# embedded broker (one SQLite file) under var/. Set DATABASE_URL and ORCH_BROKER_URL (see env.template) to
# run the same on PostgreSQL and RabbitMQ. Stop everything with: deploy/stack.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${ORCH_PORT:-8000}
URL="http://127.0.0.1:$PORT"
PY=.venv/bin/python
PIPELINE=${1:-hello}
CONFIG=${2:-}
if [ -z "$CONFIG" ]; then
  if [ "$PIPELINE" = hello ]; then CONFIG="{\"name\": \"${USER:-world}\"}"; else CONFIG="{}"; fi
fi
export ORCH_POOLS=${ORCH_POOLS:-local}
json() { "$PY" -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

echo "== installing (first run only)"
deploy/bootstrap.sh dev

echo "== starting web, control consumer, beat and workers of: $ORCH_POOLS"
export ORCH_PORT=$PORT
deploy/stack.sh start

if [ ! -f var/admin-password ]; then
  "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' >var/admin-password
  DJANGO_SUPERUSER_PASSWORD=$(cat var/admin-password) \
    "$PY" manage.py createsuperuser --noinput --username admin --email admin@localhost \
    >/dev/null 2>&1 || true
fi

echo "== waiting for the API and a live worker of each pool"
live_pools() {
  curl -sf "$URL/api/health/" | json "sum(1 for p in '$ORCH_POOLS'.split() if d['pools'].get(p))" \
    2>/dev/null || echo 0
}
wanted=$(echo "$ORCH_POOLS" | wc -w)
for _ in $(seq 1 120); do
  [ "$(live_pools)" -ge "$wanted" ] && break
  sleep 0.5
done
[ "$(live_pools)" -ge "$wanted" ] || { echo "the stack did not come up; see var/log/" >&2; exit 1; }

if [ ! -s var/quickstart-client.env ]; then
  "$PY" manage.py create_client "quickstart-$(date +%s)" --format env >var/quickstart-client.env
fi
# shellcheck disable=SC1091
. var/quickstart-client.env

echo "== getting a token (client credentials) and submitting $PIPELINE"
TOKEN=$(curl -sf -u "$ORCH_CLIENT_ID:$ORCH_CLIENT_SECRET" -d grant_type=client_credentials \
  "$URL/o/token/" | json 'd["access_token"]')
AUTH="Authorization: Bearer $TOKEN"
BODY=$(PIPELINE=$PIPELINE CONFIG=$CONFIG "$PY" -c \
  'import json, os; print(json.dumps({"pipeline": os.environ["PIPELINE"], "used_config": json.loads(os.environ["CONFIG"])}))')
ID=$(curl -sf -H "$AUTH" -H "Content-Type: application/json" -d "$BODY" "$URL/api/processes/" \
  | json 'd["id"]') || { echo "the API refused: $(curl -s -H "$AUTH" -H "Content-Type: application/json" -d "$BODY" "$URL/api/processes/")" >&2; exit 1; }
echo "process $ID"

for _ in $(seq 1 600); do
  STATUS=$(curl -sf -H "$AUTH" "$URL/api/processes/$ID/status/")
  [ "$(echo "$STATUS" | json 'd["finished"]')" = True ] && break
  sleep 0.5
done
echo "status: $STATUS"
echo "history:"
curl -sf -H "$AUTH" "$URL/api/processes/$ID/events/" \
  | json '"\n".join("  %s  %9s -> %-9s %s" % (e["time"], e["from"] or "-", e["to"], e["source"]) for e in d)'
echo "logs:"
curl -sf -H "$AUTH" "$URL/api/processes/$ID/logs/" | json 'd["text"]' | sed 's/^/  /'

cat <<EOT
== done
API:    $URL/api/   (client id and secret in var/quickstart-client.env)
Admin:  $URL/admin/   login: admin   password: $(cat var/admin-password 2>/dev/null || echo "(set with manage.py changepassword admin)")
Stop:   deploy/stack.sh stop
EOT
[ "$(echo "$STATUS" | json 'd["state"]')" = SUCCEEDED ]
