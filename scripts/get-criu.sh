#!/usr/bin/env bash
# Obtain a CRIU that works on the running kernel, for VROOM's live router migration.
#
#   sudo scripts/get-criu.sh [--force] [--no-self-test]
#
# 1. A system `criu` (on PATH) is used when `criu check` and routerlab's socket self-test
#    (dump/restore of a process with an established TCP connection in a netns) both pass:
#    /opt/routerlab/criu/bin/criu becomes a link to it.
# 2. Otherwise Debian unstable's criu 4.2.x (bookworm's 3.17 fails `criu check` on this
#    kernel; 4.1.1 cannot dump inet sockets on kernels >= 6.16) and the dependency closure it
#    has in sid (sid's libc6 included) are fetched with a private apt configuration under
#    /opt/routerlab/apt-sid (the system's apt sources, lists and cache stay untouched),
#    unpacked with `dpkg -x` into /opt/routerlab/criu/root, and run by the wrapper
#    /opt/routerlab/criu/bin/criu through that prefix's own ld-linux --library-path.
#    sid's libc is never installed system-wide.
# What was chosen is recorded in /opt/routerlab/criu/SOURCE. Idempotent: a run that finds a
# working CRIU already in place changes nothing (feature results are cached in
# /run/routerlab/criu-features.json). --force refetches from sid.
# The Debian mirror is the system's own (scripts/debian-suite.sh says how it is found);
# GET_CRIU_MIRROR=URI overrides it.
# --print-mirror prints the mirror, where it came from and the proxy settings, and exits.
# --no-self-test (image builds, where dumping a process is not allowed): skip the system criu
# (it cannot be tested) and the self-test; fetch and unpack sid's criu, check only that its
# loader finds every library, and leave status=untested for the next normal run to test
# (exit status 0 then means "unpacked", not "works").
# Exit status: 0 with a working CRIU, 1 without one (VROOM live migration is then missing
# and `routerlab doctor` says so), 2 on bad usage.
set -euo pipefail

PREFIX=/opt/routerlab/criu
APTDIR=/opt/routerlab/apt-sid
SUITE=sid
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T0=$(date +%s.%N)

FORCE=0
SELFTEST=1
PRINT_MIRROR=0
for a in "$@"; do
    case $a in
        --force) FORCE=1 ;;
        --no-self-test) SELFTEST=0 ;;
        --print-mirror) PRINT_MIRROR=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "usage: $0 [--force] [--no-self-test] [--print-mirror]" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- the system's apt setup
# shellcheck source=scripts/debian-suite.sh
. "$REPO/scripts/debian-suite.sh"
choose_mirror "${GET_CRIU_MIRROR:-}" GET_CRIU_MIRROR
if [ "$PRINT_MIRROR" = 1 ]; then
    printf 'mirror=%s\nfrom=%s\n' "$MIRROR" "$MIRROR_FROM"
    [ -z "$PROXY" ] || printf '%s\n' "$PROXY" | sed 's/^/proxy: /'
    exit 0
fi

step() { printf '[get-criu] %s\n' "$*"; }
die() {
    printf '[get-criu] ERROR: %s\n' "$*" >&2
    printf '[get-criu] no working CRIU: VROOM live migration will be reported missing by `routerlab doctor`\n' >&2
    exit 1
}
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || { echo "[get-criu] ERROR: must run as root" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (this is $(uname -m))"

mkdir -p /opt/routerlab
# One run at a time: several engineers may run setup on one machine.
exec 9>/opt/routerlab/.get-criu.lock
flock -w 600 9 || die "another get-criu.sh run holds /opt/routerlab/.get-criu.lock"
rm -rf "$PREFIX".new.* "$PREFIX".old.*  # left by a run that was killed (we hold the lock)

# The self-test is routerlab.criu (standard library only): the virtualenv's Python if it
# exists yet, else the system's.
if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=$(command -v python3) || die "python3 not found"; fi

# works CRIU [--refresh]: criu check + socket self-test (+ the other feature probes, all
# cached per binary and kernel); prints the results indented, succeeds if CRIU is usable.
works() {
    local out rc=0
    out=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m routerlab.criu features --criu "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/[get-criu]     /'
    return $rc
}

version_of() { "$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1; }

write_source() {  # write_source FILE key=value...
    local f=$1; shift
    { echo "# Written by routerlab scripts/get-criu.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"; printf '%s\n' "$@"; } > "$f.tmp"
    mv -f "$f.tmp" "$f"
}

set_status() {  # rewrites SOURCE only when the status changes
    grep -qx "status=$1" "$PREFIX/SOURCE" || sed -i "s/^status=.*/status=$1/" "$PREFIX/SOURCE"
}

# Swap a freshly built prefix into place (under the lock; the old one goes away after).
swap_in() {
    local new=$1 old="$PREFIX.old.$$"
    if [ -e "$PREFIX" ] || [ -L "$PREFIX" ]; then mv "$PREFIX" "$old"; fi
    mv "$new" "$PREFIX"
    rm -rf "$old"
}

# ---------------------------------------------------------------- 1. a system criu?
SYS=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v "^$PREFIX" | paste -sd:) command -v criu || true)
[ -n "$SYS" ] && SYS=$(readlink -f "$SYS")
case $SYS in "$PREFIX"/*) SYS= ;; esac  # a link to our own wrapper is not a system criu
if [ "$SELFTEST" = 0 ]; then
    step "no self-test: not considering a system criu${SYS:+ ($SYS)}; the next normal run may choose it"
elif [ -n "$SYS" ]; then
    SYSVER=$(version_of "$SYS")
    step "system criu: $SYS (version ${SYSVER:-unknown})"
    if works "$SYS"; then
        cur=$(readlink "$PREFIX/bin/criu" 2>/dev/null || true)
        if [ "$cur" = "$SYS" ] && grep -qx 'source=system' "$PREFIX/SOURCE" 2>/dev/null; then
            step "already set up: $PREFIX/bin/criu -> $SYS (system criu $SYSVER) [$(elapsed) s]"
            exit 0
        fi
        new="$PREFIX.new.$$"
        rm -rf "$new"; mkdir -p "$new/bin"
        ln -s "$SYS" "$new/bin/criu"
        write_source "$new/SOURCE" source=system "version=$SYSVER" "binary=$SYS" \
            "wrapper=$PREFIX/bin/criu" "kernel=$(uname -r)" status=ok
        swap_in "$new"
        step "chose the system criu $SYSVER: $PREFIX/bin/criu -> $SYS [$(elapsed) s]"
        exit 0
    fi
    step "system criu $SYSVER does not work on kernel $(uname -r): trying Debian $SUITE's"
else
    step "system criu: none on PATH"
fi

# ---------------------------------------------------------------- 2. already installed?
if [ "$SELFTEST" = 0 ] && [ "$FORCE" = 0 ] && [ -x "$PREFIX/bin/criu" ]; then
    step "already in place: $PREFIX/bin/criu ($(sed -n 's/^source=//p' "$PREFIX/SOURCE" 2>/dev/null)); not self-tested [$(elapsed) s]"
    exit 0
fi
if [ "$FORCE" = 0 ] && [ -x "$PREFIX/bin/criu" ] && grep -qx "source=$SUITE" "$PREFIX/SOURCE" 2>/dev/null; then
    VER=$(sed -n 's/^version=//p' "$PREFIX/SOURCE")
    step "found $SUITE criu $VER in $PREFIX: checking it"
    if works "$PREFIX/bin/criu"; then
        set_status ok
        step "already set up: $PREFIX/bin/criu ($SUITE criu $VER) [$(elapsed) s]"
        exit 0
    fi
    step "the installed $SUITE criu no longer works here: fetching again"
fi

# ---------------------------------------------------------------- 3. fetch from sid
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "apt-get/dpkg-deb not found"
[ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"

step "private apt configuration for Debian $SUITE in $APTDIR"
private_apt "$APTDIR" "$SUITE"
step "mirror $MIRROR (from $MIRROR_FROM)${PROXY:+, through the proxy set in the system apt configuration}"
step "apt-get update ($SUITE main from $MIRROR)"
suite_update || die "could not read Debian $SUITE's package index from $MIRROR"

CANDIDATE=$(suite_apt apt-cache policy criu | sed -n 's/^ *Candidate: *//p')
case $CANDIDATE in ''|'(none)') die "Debian $SUITE has no criu package" ;; esac
dpkg --compare-versions "$CANDIDATE" ge 4.2 ||
    die "Debian $SUITE's criu is $CANDIDATE; 4.2 or newer is needed on kernel $(uname -r)"
step "$SUITE has criu $CANDIDATE"

# The dependency closure (Depends and Pre-Depends only), computed from sid's index:
# criu, libc6, libcompel1, libnet9, libnftables1, libgnutls30t64, ... whatever sid says now.
PKGS=$(suite_apt apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances criu | grep -v '^[[:space:]<]' | sort -u)
[ -n "$PKGS" ] || die "could not resolve criu's dependencies in $SUITE"
step "dependency closure: $(echo $PKGS | wc -w) packages: $(echo $PKGS)"

step "apt-get download into $APTDIR/debs"
find "$APTDIR/debs" -name '*.deb' -delete
# shellcheck disable=SC2086
if ! out=$(cd "$APTDIR/debs" && suite_apt apt-get -q download $PKGS 2>&1); then
    printf '%s\n' "$out" | tail -n 5 >&2
    die "downloading criu and its libraries from $SUITE failed"
fi

new="$PREFIX.new.$$"
rm -rf "$new"; mkdir -p "$new/root" "$new/bin"
trap 'rm -rf "$new"' EXIT
step "dpkg -x into $PREFIX/root"
VERSIONS=()
for deb in "$APTDIR"/debs/*.deb; do
    dpkg-deb -x "$deb" "$new/root"
    VERSIONS+=("$(dpkg-deb -f "$deb" Package)=$(dpkg-deb -f "$deb" Version)")
done

REAL=usr/sbin/criu
[ -x "$new/root/$REAL" ] || die "the criu package has no /$REAL"
# The loader as a real file (its symlinks may be absolute and would lead to the system's).
LOADER=$(cd "$new/root" && find . -type f -name 'ld-linux-x86-64.so.2' | sed 's|^\./||' | head -n1)
[ -n "$LOADER" ] || die "sid's libc6 has no ld-linux-x86-64.so.2"
LIBDIRS=$(cd "$new/root" && find . -maxdepth 4 \( -type f -o -type l \) -name 'lib*.so*' -printf '%h\n' |
          sed 's|^\./||' | sort -u | grep -v gconv || true)
LIBPATH=$(for d in $LIBDIRS; do printf '%s:' "$PREFIX/root/$d"; done | sed 's/:$//')
NEWLIBPATH=$(for d in $LIBDIRS; do printf '%s:' "$new/root/$d"; done | sed 's/:$//')
# Every library must come from the prefix: a system one would mix two libcs.
LIST=$("$new/root/$LOADER" --library-path "$NEWLIBPATH" --list "$new/root/$REAL" 2>&1) ||
    die "sid's loader cannot load criu: $(printf '%s' "$LIST" | tail -n1)"
if printf '%s\n' "$LIST" | grep -q 'not found'; then
    die "libraries missing from the prefix: $(printf '%s\n' "$LIST" | grep 'not found' | tr -s ' \t' ' ')"
fi
if printf '%s\n' "$LIST" | grep '=>' | grep -v 'linux-vdso' | grep -vq "$new/root/"; then
    die "criu would load system libraries: $(printf '%s\n' "$LIST" | grep '=>' | grep -v "$new/root/" | tr -s ' \t' ' ')"
fi

cat > "$new/bin/criu" <<EOF
#!/bin/sh
# Written by routerlab scripts/get-criu.sh: Debian $SUITE's criu $CANDIDATE run with its own
# libc through its own loader (never installed system-wide). See $PREFIX/SOURCE.
exec "$PREFIX/root/$LOADER" --library-path "$LIBPATH" --argv0 criu "$PREFIX/root/$REAL" "\$@"
EOF
chmod 755 "$new/bin/criu"
write_source "$new/SOURCE" "source=$SUITE" "version=${CANDIDATE%%-*}" "package=criu $CANDIDATE" \
    "binary=$PREFIX/root/$REAL" "wrapper=$PREFIX/bin/criu" "loader=$PREFIX/root/$LOADER" \
    "library_path=$LIBPATH" "mirror=$MIRROR $SUITE main" "mirror_from=$MIRROR_FROM" "kernel=$(uname -r)" \
    "packages=${VERSIONS[*]}" status=untested
swap_in "$new"
trap - EXIT
# The big index files are only needed to fetch again; keep the .debs.
suite_forget_index

if [ "$SELFTEST" = 0 ]; then
    step "unpacked Debian $SUITE criu $CANDIDATE into $PREFIX (status=untested: the next run without --no-self-test tests it) [$(elapsed) s]"
    exit 0
fi
step "self-test of $SUITE criu $CANDIDATE"
if ! works "$PREFIX/bin/criu" --refresh; then
    set_status failed
    die "Debian $SUITE's criu $CANDIDATE is installed in $PREFIX but fails the self-test on kernel $(uname -r)"
fi
set_status ok
step "chose Debian $SUITE criu $CANDIDATE: $PREFIX/bin/criu [$(elapsed) s]"
