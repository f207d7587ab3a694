#!/usr/bin/env bash
# The images docker-compose.yml runs, built on this machine: for CI and any host that reaches
# no container registry (Podman's compose support, podman-compose, needs no Docker engine).
#
#   eval "$(deploy/compose-images.sh)"    build what is missing; print the ORCH_*_IMAGE lines
#
# With a registry, none of this is needed: compose pulls postgres:15 and rabbitmq:3.12 and
# builds the app image from deploy/Dockerfile. Without one, the same three roles come from a
# Debian root file system (debootstrap from Debian's mirror, then `podman import`):
#   orchestration/compose-debian:<hash>    minbase with python3 and python3-venv
#   orchestration/compose-postgres:<hash>  Debian's postgresql, an entrypoint honouring the
#                                          official image's POSTGRES_USER/_PASSWORD/_DB, PGDATA
#   orchestration/compose-rabbitmq:<hash>  Debian's rabbitmq-server, listening as the official
#                                          image does, its data in /var/lib/rabbitmq
#   orchestration/compose-app:<hash>       deploy/Dockerfile on the Debian root (pip from PyPI)
# Each tag is a content hash of what goes into it, so an image is built once and rebuilt only
# when its inputs change; the debootstrapped root is kept as a tarball under var/compose-images/.
# Installs podman-compose, debootstrap and the CNI dnsname plugin (service names resolve on a
# compose network) from Debian's packages, as root. Logs go to stderr and var/compose-images/.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE=var/compose-images
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}  # Python 3.11 and PostgreSQL 15, as the official images
PACKAGES=(podman podman-compose debootstrap golang-github-containernetworking-plugin-dnsname)
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)

say() { echo "compose-images: $*" >&2; }
die() { say "error: $*"; exit 1; }

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]}"
  "${APT[@]}" install "${missing[@]}" >&2 || { "${APT[@]}" update >&2 && "${APT[@]}" install "${missing[@]}" >&2; }
}

hash_of() {  # hash_of FILE...: a short content hash of the files (with their names) and of
  local file  # the base image they are built on
  { echo "$DEBIAN_IMAGE"; for file in "$@"; do printf '%s\n' "$file"; cat "$file"; done; } \
    | sha256sum | cut -c1-16
}

# What the app image is built from: the files deploy/Dockerfile copies, as git tracks them
# (or as they are, outside a git checkout).
app_inputs() {
  local paths=(pyproject.toml README.md manage.py orchestration apps workers client pipelines
               deploy/Dockerfile 'deploy/compose/*.py')
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard -- "${paths[@]}" | sort
  else
    find "${paths[@]}" -type f ! -path '*/__pycache__/*' | sort
  fi
}

build() {  # build IMAGE CONTEXT_FILE [podman build args...]: podman build unless it exists
  local image=$1 file=$2; shift 2
  if podman image exists "$image"; then return; fi
  say "building $image (log: $STATE/build.log)"
  podman build --network host --quiet -f "$file" -t "$image" "$@" . >>"$STATE/build.log" 2>&1 \
    || { tail -n 30 "$STATE/build.log" >&2; die "building $image failed"; }
}

debian_image() {
  local tag tarball root
  # What debootstrap is asked for: a change here makes a new root.
  local include=python3,python3-venv,ca-certificates
  tag=$(echo "$SUITE $MIRROR $include policy-rc.d" | sha256sum | cut -c1-16)
  DEBIAN_IMAGE=localhost/orchestration/compose-debian:$tag
  podman image exists "$DEBIAN_IMAGE" && return
  tarball=$STATE/debian-$SUITE-$tag.tar
  if [ ! -s "$tarball" ]; then
    root=$STATE/debian-root.tmp
    rm -rf "$root"
    say "debootstrap $SUITE minbase from $MIRROR (a minute or two)"
    debootstrap --variant=minbase --include="$include" \
      "$SUITE" "$root" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    # As Debian's official images: packages installed later start no service.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    echo "deb $MIRROR $SUITE main" >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  podman import --quiet --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' "$tarball" "$DEBIAN_IMAGE" >/dev/null
  say "imported $DEBIAN_IMAGE"
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root (Podman's images are root's here)"
  mkdir -p "$STATE"
  install_packages
  debian_image
  local base=(--build-arg "BASE_IMAGE=$DEBIAN_IMAGE")
  POSTGRES_IMAGE=localhost/orchestration/compose-postgres:$(hash_of deploy/compose/postgres.Containerfile deploy/compose/postgres-entrypoint.sh)
  RABBITMQ_IMAGE=localhost/orchestration/compose-rabbitmq:$(hash_of deploy/compose/rabbitmq.Containerfile deploy/compose/rabbitmq-entrypoint.sh)
  local inputs
  mapfile -t inputs < <(app_inputs)
  APP_IMAGE=localhost/orchestration/compose-app:$(hash_of "${inputs[@]}")
  build "$POSTGRES_IMAGE" deploy/compose/postgres.Containerfile "${base[@]}"
  build "$RABBITMQ_IMAGE" deploy/compose/rabbitmq.Containerfile "${base[@]}"
  local pip_ca=()  # the CA bundle this host's pip trusts (PIP_CERT), for pip in the build
  if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    pip_ca=(--volume "$PIP_CERT:/run/pip-ca.pem:ro" --build-arg PIP_CERT=/run/pip-ca.pem)
  fi
  build "$APP_IMAGE" deploy/Dockerfile --build-arg "PYTHON_IMAGE=$DEBIAN_IMAGE" "${pip_ca[@]}"
  say "ready"
  echo "export ORCH_POSTGRES_IMAGE=$POSTGRES_IMAGE"
  echo "export ORCH_RABBITMQ_IMAGE=$RABBITMQ_IMAGE"
  echo "export ORCH_IMAGE=$APP_IMAGE"
}

main "$@"
