#!/bin/sh
# As the official rabbitmq image's entrypoint: the server runs as rabbitmq, which owns its data.
set -eu
if [ "${1:-}" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
  mkdir -p /var/lib/rabbitmq
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
fi
# Debian's /usr/sbin/rabbitmq-server sends the node's output to /var/log/rabbitmq/startup_log:
# the server itself logs to the console, as the official image's does.
if [ "${1:-}" = rabbitmq-server ]; then
  shift
  exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
