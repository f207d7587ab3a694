#!/bin/bash
# The `broker-users` service of docker-compose.yml, in the RabbitMQ image: once the node
# (RABBITMQ_NODENAME) is up, its vhost, and a user per role made by deploy/broker-users.sh
# (the control plane's, and each pool's named here), their passwords kept in that script's
# file (a volume). The official image's guest, which it lets in from any address, is deleted:
# every part logs in as its role, and rabbitmqctl (the Erlang cookie) is the admin's way in.
#   deploy/compose/broker-users.sh VHOST POOL...
set -euo pipefail
VHOST=$1
shift
for _ in $(seq 1 120); do
  rabbitmqctl -q await_startup >/dev/null 2>&1 && break
  sleep 1
done
rabbitmqctl -q await_startup
rabbitmqctl -q list_vhosts | grep -qx "$VHOST" || rabbitmqctl -q add_vhost "$VHOST"
if rabbitmqctl -q list_users | cut -f1 | grep -qx guest; then
  rabbitmqctl -q delete_user guest >/dev/null
  echo "broker-users: deleted guest" >&2
fi
# Its standard output holds the passwords (URLs for a .env): not for the container's log.
"$(dirname "$0")/../broker-users.sh" "$VHOST" "$@" >/dev/null
