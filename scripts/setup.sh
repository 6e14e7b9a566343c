#!/usr/bin/env bash
# routerlab setup: installs everything routerlab needs and starts what must run.
# Idempotent: a second run checks, finds everything in place, and changes nothing.
#   - Debian packages (Open vSwitch, Mininet's mnexec, FRR, BIRD 2, GoBGP, ExaBGP, ...)
#   - a CRIU that works on the running kernel (scripts/get-criu.sh)
#   - GoBGP 3.24 or newer (scripts/get-gobgp.sh: Debian trixie's where the system's is older)
#   - Open vSwitch started (userspace datapath; no kernel module needed)
#   - root-namespace frr/bird/zookeeper services stopped (they are not routerlab's routers)
#   - the virtualenv .venv/ with pinned Python dependencies and routerlab installed (editable)
#
#   sudo scripts/setup.sh            a machine or VM: install, then start and check everything
#   scripts/setup.sh --image         building an image (docker build; also ROUTERLAB_SETUP_MODE=image):
#                                    packages, CRIU files and .venv only. Starts no service
#                                    (package scripts are kept from starting theirs too), sets
#                                    no sysctl and skips CRIU's self-test, all of which need a
#                                    running, privileged container: the normal mode does them
#                                    there (`make test` runs it). Any failure fails the build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

MODE=${ROUTERLAB_SETUP_MODE:-normal}
for a in "$@"; do
  case $a in
    --image) MODE=image ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "usage: $0 [--image]" ;;
  esac
done
case $MODE in normal|image) ;; *) die "ROUTERLAB_SETUP_MODE must be normal or image, not '$MODE'" ;; esac
[ "$MODE" = normal ] || say "image mode: installing only (no services, no sysctls, no CRIU self-test)"

[ "$(id -u)" = 0 ] || die "run as root (sudo make test / sudo scripts/setup.sh): routerlab creates namespaces and bridges"

# ---------------------------------------------------------------- Debian packages
PACKAGES=(
  openvswitch-switch openvswitch-common mininet
  frr bird2 gobgpd exabgp
  iproute2 iputils-ping ethtool iptables nftables tcpdump iperf3 procps psmisc socat
  zookeeperd python3-venv ca-certificates
  openssh-server sudo   # cluster mode: servers reach each other by root ssh (cluster code runs sudo -E mnexec)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$MODE" = image ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    # Keep the packages' maintainer scripts from starting OVS, FRR, ZooKeeper... in the build
    # (Debian's docker images ship this file already; this covers any other base).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages: all ${#PACKAGES[@]} present"
fi

# ---------------------------------------------------------------- GoBGP >= 3.24
# bookworm's gobgpd 3.10 spends about half its CPU on one allocation per UPDATE it sends
# once it carries a full table; Debian trixie's is installed in its place.
"$ROOT/scripts/get-gobgp.sh" ||
  say "warning: gobgpd older than 3.24 kept: VERB works, its GoBGP replica is slower with a full table"

# ---------------------------------------------------------------- services
# Packages may have started root-namespace daemons; routerlab's routers live in namespaces and
# its ZooKeeper instances are private, so stop the system ones (only these named services).
# (Image mode: nothing was started.)
if [ "$MODE" = normal ]; then
for svc in frr bird zookeeper gobgpd exabgp; do
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    if systemctl is-active --quiet "$svc" 2>/dev/null; then
      say "stopping system service $svc"; systemctl stop "$svc" || true
    fi
    if systemctl is-enabled --quiet "$svc" 2>/dev/null; then systemctl disable --quiet "$svc" || true; fi
  fi
done
if [ -x /usr/lib/frr/frrinit.sh ] && [ -f /var/run/frr/watchfrr.pid ] && kill -0 "$(cat /var/run/frr/watchfrr.pid)" 2>/dev/null; then
  say "stopping the root-namespace FRR service"; /usr/lib/frr/frrinit.sh stop >/dev/null 2>&1 || true
fi
fi

# Routers run their daemons as root (CRIU needs that to dump them); FRR then insists that
# root be in its vty group.
if getent group frrvty >/dev/null && ! id -nG root | tr ' ' '\n' | grep -qx frrvty; then
  say "adding root to group frrvty (FRR daemons run as root in routerlab)"
  usermod -aG frrvty root
fi

# ---------------------------------------------------------------- Open vSwitch
# The userspace datapath sends every port's packets through one socket whose buffer is the
# default size; shaped (HTB) queues count against it, and a small buffer makes OVS drop sends
# on unrelated ports. Larger defaults (applied to an OVS started after this) avoid that.
# Image mode: sysctls and a running OVS belong to the container, not the image; the normal
# mode sets and starts them when the container runs.
if [ "$MODE" = normal ]; then
for key in net.core.wmem_default net.core.rmem_default; do
  if [ "$(sysctl -n "$key" 2>/dev/null)" != 8388608 ]; then
    sysctl -qw "$key=8388608" || say "warning: cannot set $key (OVS may drop under load)"
  fi
done
if ! ovs-vsctl -t 3 show >/dev/null 2>&1; then
  say "starting Open vSwitch (userspace datapath)"
  /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 \
    || /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random
  ovs-vsctl -t 5 show >/dev/null || die "Open vSwitch did not start; see /var/log/openvswitch/"
else
  say "Open vSwitch: running"
fi
fi

# ---------------------------------------------------------------- CRIU
if [ "$MODE" = image ]; then
  # Fetch and unpack only: the self-test dumps a process, which needs a privileged container.
  "$ROOT/scripts/get-criu.sh" --no-self-test || die "could not install CRIU into the image (see above)"
elif ! "$ROOT/scripts/get-criu.sh"; then
  say "warning: no working CRIU; VROOM live migration is unavailable (routerlab doctor says why)"
fi

# ---------------------------------------------------------------- Python
PY=""
for cand in python3.11 /usr/bin/python3.11 "$HOME/.pyenv/versions/3.11"*/bin/python3.11; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    PY="$(command -v "$cand")"; break
  fi
done
[ -n "$PY" ] || die "Python 3.11 is needed (Mininet breaks on 3.12+): install python3.11 and python3.11-venv"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  say "creating $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.routerlab-installed"
want="$(cat "$ROOT/requirements.txt" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing pinned Python dependencies into .venv"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT"
  echo "$want" > "$stamp"
else
  say "Python dependencies: up to date"
fi
# Mininet's Python module comes from Debian's package (PyPI's is a 2019 pre-release without
# mnexec); link just that package into the virtualenv.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$(readlink "$site/mininet" 2>/dev/null)" != /usr/lib/python3/dist-packages/mininet ]; then
  ln -sfn /usr/lib/python3/dist-packages/mininet "$site/mininet"
fi
"$VENV/bin/python" -c 'import mininet.net, routerlab' || die "the virtualenv is broken; remove .venv and rerun"
say "ready: $VENV/bin/routerlab"
