#!/usr/bin/env bash
# Obtain a GoBGP recent enough for VERB's full-table runs.
#
#   sudo scripts/get-gobgp.sh [--force]
#
# GoBGP before 3.24 allocates a zeroed slice for a full 4 KiB UPDATE's NLRIs (~800 entries)
# for every UPDATE it sends, however few prefixes it carries (fixed upstream in 3.24: "Adjust
# size of packing slice before allocating"). Debian bookworm's gobgpd is 3.10: measured with
# perf during a 1,000,000-prefix VERB load, that allocation and the garbage collection it
# causes were about half of gobgpd's CPU.
# 1. An installed gobgpd of 3.24 or newer is kept (Debian trixie and later, recent Ubuntu).
# 2. Otherwise Debian trixie's gobgpd package (3.36: gobgpd and the gobgp client; it needs
#    only libc6 >= 2.34, which bookworm has) is fetched with a private apt configuration under
#    /opt/routerlab/apt-trixie (scripts/debian-suite.sh: the system's Debian mirror and proxy;
#    the system's apt sources, lists and cache stay untouched), its signature checked by apt
#    against Debian's keyring, and installed with dpkg -i in place of the older package.
# GET_GOBGP_MIRROR=URI overrides the mirror. --force fetches and installs trixie's even when
# the installed one is recent enough.
# Exit status: 0 with gobgpd >= 3.24 installed, 1 without (GoBGP still works, only slower
# with a full table; `routerlab doctor` warns), 2 on bad usage.
set -euo pipefail

MIN=3.24  # as GobgpDaemon.recommended (routerlab/daemons/gobgp.py), which doctor checks
APTDIR=/opt/routerlab/apt-trixie
SUITE=trixie
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

FORCE=0
for a in "$@"; do
    case $a in
        --force) FORCE=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "usage: $0 [--force]" >&2; exit 2 ;;
    esac
done

step() { printf '[get-gobgp] %s\n' "$*"; }
die() {
    printf '[get-gobgp] ERROR: %s\n' "$*" >&2
    printf '[get-gobgp] GoBGP stays at %s: VERB works, its GoBGP replica is only slower with a full table\n' \
        "${HAVE:-none}" >&2
    exit 1
}
installed() { gobgpd --version 2>/dev/null | sed -n 's/.*version *\([0-9][0-9.]*\).*/\1/p' | head -n1; }

[ "$(id -u)" = 0 ] || { echo "[get-gobgp] ERROR: must run as root" >&2; exit 1; }
HAVE=$(installed || true)
if [ "$FORCE" = 0 ] && [ -n "$HAVE" ] && dpkg --compare-versions "$HAVE" ge "$MIN"; then
    step "gobgpd $HAVE (>= $MIN): ok"
    exit 0
fi
step "gobgpd ${HAVE:-not installed}: fetching Debian $SUITE's (>= $MIN needed for full tables)"
[ "$(dpkg --print-architecture)" = amd64 ] || die "only amd64 is supported (this is $(dpkg --print-architecture))"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "apt-get/dpkg-deb not found"

# shellcheck source=scripts/debian-suite.sh
. "$REPO/scripts/debian-suite.sh"
[ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
choose_mirror "${GET_GOBGP_MIRROR:-}" GET_GOBGP_MIRROR
mkdir -p /opt/routerlab
exec 9>/opt/routerlab/.get-gobgp.lock
flock -w 600 9 || die "another get-gobgp.sh run holds /opt/routerlab/.get-gobgp.lock"

step "private apt configuration for Debian $SUITE in $APTDIR; mirror $MIRROR (from $MIRROR_FROM)"
private_apt "$APTDIR" "$SUITE"
suite_update || die "could not read Debian $SUITE's package index from $MIRROR"
CANDIDATE=$(suite_apt apt-cache policy gobgpd | sed -n 's/^ *Candidate: *//p')
case $CANDIDATE in ''|'(none)') die "Debian $SUITE has no gobgpd package" ;; esac
dpkg --compare-versions "$CANDIDATE" ge "$MIN" || die "Debian $SUITE's gobgpd is $CANDIDATE, older than $MIN"

find "$APTDIR/debs" -name '*.deb' -delete
if ! out=$(cd "$APTDIR/debs" && suite_apt apt-get -q download gobgpd 2>&1); then
    printf '%s\n' "$out" | tail -n 5 >&2
    die "downloading gobgpd $CANDIDATE from $SUITE failed"
fi
suite_forget_index
DEB=$(find "$APTDIR/debs" -name 'gobgpd_*.deb' | head -n1)
[ -n "$DEB" ] || die "apt-get download left no gobgpd .deb in $APTDIR/debs"
step "installing $(basename "$DEB") (Depends: $(dpkg-deb -f "$DEB" Depends))"
# dpkg refuses it if this system's libc is older than the package needs
if ! out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$DEB" 2>&1); then
    printf '%s\n' "$out" | tail -n 5 >&2
    die "dpkg -i $(basename "$DEB") failed"
fi
HAVE=$(installed || true)
[ -n "$HAVE" ] && dpkg --compare-versions "$HAVE" ge "$MIN" || die "gobgpd --version says '${HAVE:-nothing}' after the install"
step "gobgpd $HAVE installed from Debian $SUITE"
