#!/usr/bin/env bash
# One RabbitMQ user per role on a vhost, idempotently (rabbitmqctl, as root):
#   deploy/broker-users.sh [VHOST [POOL...]]   (default: orchestration, every pool of
#                                               $ORCH_PIPELINES_DIR/pools, else pipelines/pools)
# - <vhost>.control: the control plane (web, control consumer, beat). It declares every pool's
#   queues and publishes to them, declares and consumes `control`, and may use Celery's own
#   names (the `celeryev` event exchange, `*.celery.pidbox` remote control).
# - <vhost>.pool.<name>: the workers of one pool. They declare and consume only pool.<name>
#   and pool.<name>.<host>, and publish only to the `control` exchange: never to another pool,
#   never through the default exchange, never reading `control`.
# A password is made once (random) and kept in var/broker-users/<vhost> (mode 0600, a line per
# role: role user password); delete a line to give that user a new one on the next run.
# Prints one ORCH_BROKER_URL line per role, for the .env of the host that runs it (the host and
# port are ORCH_BROKER_URL's when it names RabbitMQ, else 127.0.0.1:5672). deploy/stack.sh
# starts each part as its role when ORCH_BROKER_URL names the vhost.
set -euo pipefail
cd "$(dirname "$0")/.."
VHOST=${1:-orchestration}
shift || true
POOLS_DIR=${ORCH_PIPELINES_DIR:-pipelines}/pools
NAME_RE='^[a-z0-9][a-z0-9_-]{0,99}$'  # a pool's name, as apps/pipelines/definitions.py checks it

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "broker-users: $*" >&2; }

# The users' names and their file are made from the vhost; "/" and the like become "_".
PREFIX=$(printf '%s' "$VHOST" | tr -c 'A-Za-z0-9_-' '_')
USERS_FILE=var/broker-users/$PREFIX

pools() {  # the pools named on the command line, else every pool definition's name
  if [ $# -gt 0 ]; then printf '%s\n' "$@"; return; fi
  [ -d "$POOLS_DIR" ] || { say "no pool definitions in $POOLS_DIR: name the pools"; exit 2; }
  sed -n "s/^name:[[:space:]]*[\"']\{0,1\}\([^\"'[:space:]]*\).*/\1/p" "$POOLS_DIR"/*.yaml
}

# --- the permissions of each role: configure, write, read (regexes on queue AND exchange names)
# A name grants the same right on a queue and on an exchange of that name, and Celery names a
# queue's exchange after the queue: so a worker may write to `control` (publish to the
# exchange) but never read it (read would also let it consume the queue).
CELERY_OWN='celeryev|(.+\.)?celery\.pidbox'
CONTROL_PERMS=("^(control|pool\..+|$CELERY_OWN)$"
               "^(amq\.default|control|pool\..+|$CELERY_OWN)$"
               "^(control|pool\..+|$CELERY_OWN)$")
pool_perms() {  # pool_perms POOL: its queues pool.<name> and pool.<name>.<host>, and `control`
  local own="pool\.$1(\.[^.]+)?"
  POOL_PERMS=("^$own$" "^(control|$own)$" "^$own$")
}

new_password() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

broker_address() {  # host:port of ORCH_BROKER_URL when it names RabbitMQ
  local url=${ORCH_BROKER_URL:-}
  case $url in
    amqp://*|amqps://*|pyamqp://*) url=${url#*://}; url=${url%%/*}; echo "${url##*@}" ;;
    *) echo 127.0.0.1:5672 ;;
  esac
}

password_of() {  # password_of ROLE: from the users file, if it is there
  [ -f "$USERS_FILE" ] && awk -v role="$1" '$1 == role { print $3; exit }' "$USERS_FILE"
}

ensure_user() {  # ensure_user ROLE USER CONFIGURE WRITE READ
  local role=$1 user=$2 password
  password=$(password_of "$role" || true)
  if ! grep -qx "$user" <<<"$EXISTING"; then
    password=${password:-$(new_password)}
    as_root rabbitmqctl -q add_user "$user" <<<"$password" >/dev/null
    say "created user $user"
  elif [ -z "$password" ]; then  # the file lost it: a new one, so the file is right again
    password=$(new_password)
    as_root rabbitmqctl -q change_password "$user" <<<"$password" >/dev/null
    say "new password for $user"
  fi
  if ! grep -qxF "$user"$'\t'"$3"$'\t'"$4"$'\t'"$5" <<<"$GRANTED"; then
    as_root rabbitmqctl -q set_permissions -p "$VHOST" "$user" "$3" "$4" "$5" >/dev/null
    say "permissions of $user on $VHOST: configure $3 write $4 read $5"
  fi
  printf '%s %s %s\n' "$role" "$user" "$password" >>"$NEW_FILE"
  printf '# %s\nORCH_BROKER_URL=amqp://%s:%s@%s/%s\n' "$role" "$user" "$password" \
    "$(broker_address)" "$VHOST"
}

mapfile -t POOLS < <(pools "$@")
for pool in "${POOLS[@]}"; do
  [[ $pool =~ $NAME_RE ]] || { say "pool name ${pool@Q} is not a pool's name ($NAME_RE)"; exit 2; }
done
as_root rabbitmqctl -q list_vhosts | grep -qx "$VHOST" \
  || { say "no vhost $VHOST: deploy/services.sh DB_NAME $VHOST makes it"; exit 2; }
EXISTING=$(as_root rabbitmqctl -q list_users | cut -f1)
GRANTED=$(as_root rabbitmqctl -q list_permissions -p "$VHOST")  # user, configure, write, read

umask 077
mkdir -p "$(dirname "$USERS_FILE")"
NEW_FILE=$(mktemp "$USERS_FILE.XXXXXX")
trap 'rm -f "$NEW_FILE"' EXIT
echo "# deploy/broker-users.sh: the broker users of vhost $VHOST (role user password)" >"$NEW_FILE"
ensure_user control "$PREFIX.control" "${CONTROL_PERMS[@]}"
for pool in "${POOLS[@]}"; do
  pool_perms "$pool"
  ensure_user "pool.$pool" "$PREFIX.pool.$pool" "${POOL_PERMS[@]}"
done
# Roles of pools not named this time keep their line (their users are left as they are).
if [ -f "$USERS_FILE" ]; then
  awk 'NR == FNR { seen[$1] = 1; next } !/^#/ && !($1 in seen)' "$NEW_FILE" "$USERS_FILE" \
    >>"$NEW_FILE"
fi
mv "$NEW_FILE" "$USERS_FILE"
trap - EXIT
say "users of vhost $VHOST in $USERS_FILE"
