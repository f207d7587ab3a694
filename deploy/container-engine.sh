#!/usr/bin/env bash
# A container engine that serves the Docker Engine API, for the docker target and its tests.
#
#   deploy/container-engine.sh [start]   install Podman, configure it, start its API service
#                                        and build the example images; prints the DOCKER_HOST
#                                        line on stdout (everything else goes to stderr), so
#                                        `eval "$(deploy/container-engine.sh)"` sets it.
#   deploy/container-engine.sh stop      stop the service this script started (pid file)
#
# Idempotent: every step skips what is already there, so a second run takes about a second.
# Runs as root on Debian 12, without a terminal. Podman comes from Debian's packages; runc is
# its runtime (crun 1.8 fails on hybrid cgroup hierarchies). No registry is needed: the images
# are made from local root file systems with `podman import`.
#
# Environment: PODMAN_SOCKET (default /run/podman/podman.sock), DEBIAN_MIRROR (for the Python
# image's debootstrap, default http://deb.debian.org/debian), DEBIAN_SUITE (default: this
# system's codename, else bookworm).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive CI=true

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$ROOT/var/container-engine
SOCKET=${PODMAN_SOCKET:-/run/podman/podman.sock}
# The service and its socket belong to the machine, not to one checkout: its pid file sits
# beside the socket, so any checkout's script can stop (or restart) the service one of them
# started, and still nothing else.
PIDFILE=${PODMAN_PIDFILE:-$(dirname "$SOCKET")/orchestration-service.pid}
LOGFILE=$STATE/podman.log
CONF=/etc/containers/containers.conf
CONF_MARK="# Written by orchestration's deploy/container-engine.sh"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")}
SUITE=${SUITE:-bookworm}
PACKAGES=(podman runc conmon catatonit containernetworking-plugins iptables
          busybox-static debootstrap curl ca-certificates)
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)
BUSYBOX_IMAGE=orchestration/busybox:latest
PYTHON_IMAGE=orchestration/python:latest
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "container-engine: $*" >&2; }
die() { say "error: $*"; exit 1; }

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    if ! apt-get install -s -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        "${APT[@]}" update >&2
    fi
    # runc is named in the same transaction, so it (not crun) satisfies podman's runtime.
    "${APT[@]}" install "${missing[@]}" >&2
}

# Container ulimits above this shell's hard limits make runc fail ("error setting rlimit
# type 7"): root in this environment cannot raise them, so clamp to what we have.
clamp() {
    local hard=$1 cap=$2
    if [ "$hard" = unlimited ] || [ "$hard" -gt "$cap" ]; then echo "$cap"; else echo "$hard"; fi
}

write_config() {
    local nofile nproc extra="" want
    nofile=$(clamp "$(ulimit -Hn)" 1048576)
    nproc=$(clamp "$(ulimit -Hu)" 32768)
    if [ ! -d /run/systemd/system ]; then  # no systemd: no cgroup manager or journal to use
        extra=$'cgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    fi
    want="$CONF_MARK; a second run rewrites it.
[containers]
default_ulimits = [
  \"nofile=$nofile:$nofile\",
  \"nproc=$nproc:$nproc\",
]

[engine]
runtime = \"runc\"
$extra"
    want=$(printf '%s' "$want")  # as $(cat) reads it back: no trailing newlines
    if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$want" ]; then
        return 1
    fi
    mkdir -p "$(dirname "$CONF")"
    if [ -f "$CONF" ] && ! grep -qF "$CONF_MARK" "$CONF" && [ ! -e "$CONF.before-orchestration" ]
    then
        cp -p "$CONF" "$CONF.before-orchestration"
        say "kept the previous $CONF as $CONF.before-orchestration"
    fi
    printf '%s\n' "$want" >"$CONF"
    say "wrote $CONF (nofile=$nofile, nproc=$nproc, runtime runc)"
}

answers() {
    curl -sf --max-time 3 --unix-socket "$SOCKET" http://engine/_ping >/dev/null 2>&1
}

# The pid in our pid file, if that process is still the service we started.
our_pid() {
    local pid
    [ -s "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "system service --time=0 unix://$SOCKET" \
        || return 1
    echo "$pid"
}

start_service() {
    local pid i
    if answers; then
        return
    fi
    if ! pid=$(our_pid); then
        mkdir -p "$STATE" "$(dirname "$SOCKET")" "$(dirname "$PIDFILE")"
        [ -S "$SOCKET" ] && rm -f "$SOCKET"  # left by a service that is gone (nothing answers)
        say "starting podman system service on unix://$SOCKET (log: $LOGFILE)"
        # From /: the service outlives this checkout, and conmon cannot start containers from
        # a deleted working directory ("write child: broken pipe").
        (cd / && exec setsid podman system service --time=0 "unix://$SOCKET" </dev/null \
            >>"$LOGFILE" 2>&1) &
        pid=$!
        echo "$pid" >"$PIDFILE"
    fi
    for i in $(seq 1 150); do
        answers && return
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    tail -n 20 "$LOGFILE" >&2 || true
    die "the engine did not answer on $SOCKET"
}

stop_service() {
    local pid i
    if ! pid=$(our_pid); then
        rm -f "$PIDFILE"
        say "no engine started by this script is running; nothing to stop"
        return
    fi
    say "stopping podman system service (pid $pid)"
    kill -TERM "$pid"
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$PIDFILE"
}

image_exists() { podman image exists "$1"; }

import_rootfs() {  # tarball image command [more --change values]
    local tarball=$1 image=$2 cmd=$3 changes=() change
    shift 3
    for change in "CMD $cmd" "ENV $PATH_ENV" "$@"; do changes+=(--change "$change"); done
    podman import --quiet "${changes[@]}" "$tarball" "$image" >/dev/null
    say "imported $image"
}

build_busybox() {
    image_exists "$BUSYBOX_IMAGE" && return
    local root applet
    root=$(mktemp -d "$STATE/busybox-root.XXXXXX")
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev}
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list-full); do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" --numeric-owner -cf "$STATE/busybox-rootfs.tar" .
    rm -rf "$root"
    import_rootfs "$STATE/busybox-rootfs.tar" "$BUSYBOX_IMAGE" '["/bin/sh"]'
}

# A Debian minbase root with python3. debootstrap takes about a minute, so its result is kept
# as a tarball under var/ and later runs only import it (or skip it when the image exists).
build_python() {
    image_exists "$PYTHON_IMAGE" && return
    local tarball=$STATE/python-$SUITE-minbase.tar root
    if [ ! -s "$tarball" ]; then
        root=$STATE/python-root.tmp
        rm -rf "$root"
        say "debootstrap $SUITE minbase with python3 from $MIRROR (about a minute)"
        debootstrap --variant=minbase --include=python3 "$SUITE" "$root" "$MIRROR" \
            >"$STATE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
            "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
        tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    import_rootfs "$tarball" "$PYTHON_IMAGE" '["python3"]' "ENV PYTHONUNBUFFERED=1"
}

start() {
    [ "$(id -u)" = 0 ] || die "run as root (Podman's API service is started for root)"
    mkdir -p "$STATE"
    install_packages
    if write_config && pid=$(our_pid); then  # a changed config takes a restart to apply
        stop_service
    fi
    start_service
    build_busybox
    build_python
    say "ready"
    echo "export DOCKER_HOST=unix://$SOCKET"
}

case "${1:-start}" in
    start) start ;;
    stop) stop_service ;;
    *) die "usage: $0 [start|stop]" ;;
esac
