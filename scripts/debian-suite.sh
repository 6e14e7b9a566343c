# Sourced (not run) by scripts/get-criu.sh and scripts/get-gobgp.sh: fetching packages of
# another Debian suite (sid, trixie) through a private apt configuration, so neither the
# system's apt sources, lists and cache nor its hooks are touched.
#
# The Debian mirror is the system's own: the first Debian archive source (not the security
# archive) apt uses, from its sources.list, sources.list.d/*.list and deb822 *.sources
# (`URIs:`); http://deb.debian.org/debian only when there is none (an override variable
# named by the caller, e.g. GET_CRIU_MIRROR=URI, wins over both). apt's proxy settings
# (`apt-config dump`: Acquire::*::Proxy*) and its auth.conf are used too: the private apt
# configuration would otherwise not see them.
#
#   choose_mirror "${GET_X_MIRROR:-}" GET_X_MIRROR   -> MIRROR, MIRROR_FROM, PROXY
#   private_apt DIR SUITE                            -> DIR/apt.conf; suite_apt CMD... runs in it
#   suite_update                                     -> reads SUITE's index (1 when it cannot)

DEFAULT_MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Suites of the Debian archive (a source for another distribution or vendor is not a mirror
# of it; the security archive carries no sid).
DEBIAN_SUITES='^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable|experimental)(-updates|-backports|-backports-sloppy|-proposed-updates)?$'

# system_mirror: "URI<TAB>FILE" of the first Debian archive source apt reads (sources.list,
# then sources.list.d/ in name order, one-line *.list and deb822 *.sources alike); nothing
# when there is none.
system_mirror() {
    local sl='' sp='' f
    eval "$(apt-config shell sl Dir::Etc::sourcelist/f sp Dir::Etc::sourceparts/d 2>/dev/null)" || true
    sl=${sl:-/etc/apt/sources.list}
    sp=${sp:-/etc/apt/sources.list.d/}
    for f in "$sl" "${sp%/}"/*; do
        [ -f "$f" ] && [ -r "$f" ] || continue
        case $f in
            "$sl"|*.list) awk -v re="$DEBIAN_SUITES" -v file="$f" '
                { sub(/#.*/, ""); gsub(/\[[^]]*\]/, " ") }
                $1 == "deb" && $3 ~ re && $2 ~ /^(https?|mirror[+a-z]*):/ && $2 !~ /security/ {
                    u = $2; sub(/\/+$/, "", u); print u "\t" file; exit }' "$f" ;;
            *.sources) awk -v re="$DEBIAN_SUITES" -v file="$f" '
                BEGIN { RS = "" }
                {
                    n = split($0, line, "\n"); types = uris = suites = ""; enabled = "yes"
                    for (i = 1; i <= n; i++) {
                        if (line[i] ~ /^[ \t#]/ || index(line[i], ":") == 0) continue
                        k = tolower(substr(line[i], 1, index(line[i], ":") - 1))
                        v = substr(line[i], index(line[i], ":") + 1)
                        if (k == "types") types = v; else if (k == "uris") uris = v
                        else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
                    }
                    if (enabled ~ /no/ || (" " types " ") !~ /[ \t]deb[ \t]/) next
                    ns = split(suites, s, /[ \t]+/); ok = 0
                    for (i = 1; i <= ns; i++) if (s[i] ~ re) ok = 1
                    if (!ok) next
                    nu = split(uris, u, /[ \t]+/)
                    for (i = 1; i <= nu; i++)
                        if (u[i] ~ /^(https?|mirror[+a-z]*):/ && u[i] !~ /security/) {
                            x = u[i]; sub(/\/+$/, "", x); print x "\t" file; exit
                        }
                }' "$f" ;;
            *) continue ;;
        esac
    done | head -n1
}

# apt_proxy: the system's proxy settings for apt (Acquire::http::Proxy, per-host ones,
# Proxy-Auto-Detect, ...), as apt.conf lines.
apt_proxy() {
    apt-config dump 2>/dev/null | grep -E '^Acquire::(https?|ftp)::(Proxy|Proxy-Auto-Detect|ProxyAutoDetect)(::[^ ]+)? ' || true
}

# choose_mirror OVERRIDE OVERRIDE_NAME: sets MIRROR and MIRROR_FROM (the override if set,
# else the system's Debian mirror, else the default) and PROXY.
choose_mirror() {
    local found
    if [ -n "$1" ]; then
        MIRROR=${1%/} MIRROR_FROM=$2
    else
        found=$(system_mirror)
        if [ -n "$found" ]; then
            MIRROR=${found%%$'\t'*} MIRROR_FROM=${found#*$'\t'}
        else
            MIRROR=$DEFAULT_MIRROR MIRROR_FROM='default: no Debian archive in the system apt sources'
        fi
    fi
    PROXY=$(apt_proxy)
}

# private_apt DIR SUITE: an apt world in DIR for SUITE main from $MIRROR. APT_CONFIG is read
# before anything else and points every directory (sources, apt.conf.d, preferences, lists,
# cache, dpkg status) into DIR; DIR/debs is where `suite_apt apt-get download` should run.
private_apt() {
    local dir=$1 suite=$2 netrc='' netrcparts='' auth=''
    SUITE_APTDIR=$dir
    mkdir -p "$dir"/etc/{apt.conf.d,sources.list.d,preferences.d,trusted.gpg.d} \
             "$dir"/state/lists/partial "$dir"/cache/archives/partial "$dir/debs"
    : > "$dir/state/status"
    # check-valid-until=no: the registry mirror reachable here can lag sid by weeks, past
    # the Release file's 7-day Valid-Until; signatures are still checked against Debian's
    # keyring.
    echo "deb [check-valid-until=no signed-by=$KEYRING] $MIRROR $suite main" > "$dir/etc/sources.list"
    # the system's auth.conf (a mirror that needs a login) and proxy settings, carried over
    eval "$(apt-config shell netrc Dir::Etc::netrc/f netrcparts Dir::Etc::netrcparts/d 2>/dev/null)" || true
    [ -z "$netrc" ] || auth="Dir::Etc::netrc \"$netrc\";"
    [ -z "$netrcparts" ] || auth="$auth${auth:+ }Dir::Etc::netrcparts \"$netrcparts\";"
    cat > "$dir/apt.conf" <<EOF
Dir::Etc "$dir/etc/";
Dir::Etc::main "apt.conf";
Dir::Etc::parts "apt.conf.d";
Dir::Etc::sourcelist "sources.list";
Dir::Etc::sourceparts "sources.list.d";
Dir::Etc::preferences "preferences";
Dir::Etc::preferencesparts "preferences.d";
Dir::Etc::trusted "trusted.gpg";
Dir::Etc::trustedparts "trusted.gpg.d";
Dir::State "$dir/state/";
Dir::State::status "$dir/state/status";
Dir::Cache "$dir/cache/";
Dir::Cache::srcpkgcache "";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
$auth
$PROXY
EOF
    # apt fetches as the unprivileged _apt user: let it write where it downloads.
    if id _apt >/dev/null 2>&1; then
        chown _apt "$dir/state/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
    fi
}

suite_apt() { APT_CONFIG="$SUITE_APTDIR/apt.conf" "$@"; }

# suite_update: apt-get update of the private configuration; on failure prints apt's last
# errors to stderr and returns 1 (apt-get update only warns, exit 0, when it cannot fetch:
# the index itself is looked for).
suite_update() {
    local out
    rm -f "$SUITE_APTDIR"/state/lists/*_Packages* "$SUITE_APTDIR"/state/lists/*Release*
    out=$(suite_apt apt-get -q update 2>&1) || true
    if printf '%s\n' "$out" | grep -q '^E:' || ! compgen -G "$SUITE_APTDIR/state/lists/*_Packages*" >/dev/null; then
        printf '%s\n' "$out" | grep -E '^(E|W|Err):' | tail -n 5 | sed 's/^/    /' >&2
        return 1
    fi
}

# suite_forget_index: the big index files are only needed to fetch again.
suite_forget_index() {
    rm -f "$SUITE_APTDIR"/state/lists/*_Packages* "$SUITE_APTDIR"/state/lists/*Release* "$SUITE_APTDIR"/cache/*.bin
}
