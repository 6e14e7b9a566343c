"""routerlab.criu without CRIU or root: arguments, log parsing, the feature cache, lookup."""
from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from routerlab import criu
from routerlab.criu import Feature, detect, locate


# ------------------------------------------------------------------ argument building

def test_dump_args_for_migration() -> None:
    args = criu.dump_args(1234, "/img", netns_inode=4026532177, netns_key="r1")
    assert args[:3] == ["dump", "--tree", "1234"]
    assert args[args.index("--images-dir") + 1] == "/img"
    assert "--tcp-established" in args and "--file-locks" in args
    assert args[args.index("--external") + 1] == "net[4026532177]:r1"
    assert "--leave-running" not in args and "--shell-job" not in args
    assert "--network-lock" not in args  # CRIU's own default unless asked


def test_dump_args_options_and_extra_args_last() -> None:
    args = criu.dump_args(7, Path("/i"), leave_running=True, shell_job=True,
                          network_lock="nftables", tcp_established=False, file_locks=False,
                          external=["unix[123]"], verbosity=2, log_file="d.log",
                          extra_args=["--ghost-limit", "10M"])
    assert "--leave-running" in args and "--shell-job" in args
    assert args[args.index("--network-lock") + 1] == "nftables"
    assert "--tcp-established" not in args and "--file-locks" not in args
    assert args[args.index("--external") + 1] == "unix[123]"
    assert args[args.index("--log-file") + 1] == "d.log" and "-v2" in args
    assert args[-2:] == ["--ghost-limit", "10M"]


@pytest.mark.parametrize("kw", [{"network_lock": "ebtables"}, {"verbosity": 5}])
def test_dump_args_rejects_bad_options(kw: dict) -> None:
    with pytest.raises(ValueError):
        criu.dump_args(1, "/i", **kw)


def test_dump_args_rejects_bad_pid() -> None:
    with pytest.raises(ValueError):
        criu.dump_args(0, "/i")


def test_restore_args_inherit_fds_sorted_and_detached() -> None:
    args = criu.restore_args("/img", inherit_fds={9: "rlnet", 5: "tty"},
                             network_lock="nftables")
    assert args[0] == "restore"
    assert "--restore-detached" in args
    assert args[args.index("--pidfile") + 1] == "restore.pid"
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--inherit-fd"]
    assert pairs == ["fd[5]:tty", "fd[9]:rlnet"]
    assert "--tcp-established" in args and "--file-locks" in args
    assert args[args.index("--network-lock") + 1] == "nftables"


def test_restore_args_foreground_without_pidfile() -> None:
    args = criu.restore_args("/img", detach=False, pidfile=None, extra_args=["--x"])
    assert "--restore-detached" not in args and "--pidfile" not in args
    assert args[-1] == "--x"


def test_resource_args() -> None:
    assert criu.external_netns_arg(42) == f"net[42]:{criu.NETNS_KEY}"
    assert criu.inherit_fd_arg(3, "k") == "fd[3]:k"


# ------------------------------------------------------------------ output and log parsing

def test_parse_version() -> None:
    assert criu.parse_version("Version: 4.2.1\n") == "4.2.1"
    assert criu.parse_version("Version: 3.17.1\nGitID: v3.17\n") == "3.17.1"
    assert criu.parse_version("garbage") is None


LOG = """\
(00.000010) Version: 4.2.1 (gitid 0)
(00.051139) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.065242) sockets: Searching for socket 0x94a0 family 16
(00.065248) Error (criu/sk-netlink.c:133): netlink: 8 1
(00.065249) Error (criu/sk-netlink.c:134): netlink: The netlink socket 0x94a0 has more than 32 groups
(00.065251) ----------------------------------------
(00.065266) Error (criu/cr-dump.c:1545): Dump files (pid: 8915) failed with -1
(00.103124) Error (criu/cr-dump.c:1975): Dumping FAILED.
"""


def test_first_error_skips_benign_and_joins_one_message() -> None:
    err = criu.first_error(LOG.splitlines())
    assert err is not None
    assert "RLIMIT_NOFILE" not in err
    assert err.startswith("Error (criu/sk-netlink.c:133)")
    assert "has more than 32 groups" in err
    assert "Dumping FAILED" not in err


def test_first_error_none_without_errors() -> None:
    assert criu.first_error(["(00.1) all fine", "Looks good."]) is None


def test_log_tail_keeps_the_cause_when_it_scrolled_out(tmp_path: Path) -> None:
    p = tmp_path / "dump.log"
    p.write_text(LOG + "\n".join(f"(01.0) noise {i}" for i in range(50)) + "\n")
    tail = criu.log_tail(p, n=10)
    assert "more than 32 groups" in tail[0]
    assert tail[-1] == "(01.0) noise 49"
    assert criu.log_tail(tmp_path / "missing.log") == []


def test_criu_error_message(tmp_path: Path) -> None:
    e = criu.CriuError("dump", 1, tmp_path / "dump.log", LOG.splitlines())
    assert "criu dump failed (exit 1)" in str(e)
    assert "more than 32 groups" in str(e) and "dump.log" in str(e)
    t = criu.CriuError("restore", None, None, [], "stderr line\n")
    assert "timed out" in str(t) and "stderr line" in str(t)


def test_groups_from_bitmap() -> None:
    raw = (1 << 0 | 1 << 31).to_bytes(4, sys.byteorder) + (1 << 0).to_bytes(4, sys.byteorder)
    assert criu.groups_from_bitmap(raw) == {1, 32, 33}
    assert criu.groups_from_bitmap(b"") == set()


def test_read_source(tmp_path: Path) -> None:
    p = tmp_path / "SOURCE"
    p.write_text("# comment\nsource=sid\nversion=4.2.1\npackages=a=1 b=2\n")
    assert criu.read_source(p) == {"source": "sid", "version": "4.2.1", "packages": "a=1 b=2"}
    assert criu.read_source(tmp_path / "none") == {}


# ------------------------------------------------------------------ feature cache

def _feats(ok: bool = True) -> dict[str, Feature]:
    return {n: Feature(n, ok, f"detail {n}", "" if ok else "do x") for n in criu.FEATURE_NAMES}


KEY = {"criu": "/x/criu", "realpath": "/x/criu", "version": "4.2.1", "file": [1, 2, 3],
       "kernel": "6.18 #1"}


def test_cache_roundtrip_in_feature_order(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "criu-features.json"
    criu.save_cache(path, KEY, _feats())
    got = criu.load_cache(path, KEY)
    assert got == _feats()
    assert list(got) == list(criu.FEATURE_NAMES)


def test_cache_is_per_key_and_keeps_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    other = dict(KEY, kernel="6.1 #1")
    criu.save_cache(path, KEY, _feats(True))
    criu.save_cache(path, other, _feats(False))
    assert criu.load_cache(path, KEY) == _feats(True)
    assert criu.load_cache(path, other) == _feats(False)
    assert criu.load_cache(path, dict(KEY, version="4.1.1")) is None
    assert len(json.loads(path.read_text())["entries"]) == 2


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"format": 1}',
                                     '{"format": 99, "entries": {}}'])
def test_cache_corrupt_or_foreign_is_a_miss(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    assert criu.load_cache(path, KEY) is None
    criu.save_cache(path, KEY, _feats())  # and is replaced by a good one
    assert criu.load_cache(path, KEY) == _feats()


def test_cache_with_missing_feature_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    feats = _feats()
    del feats["lazy_pages"]
    criu.save_cache(path, KEY, feats)
    assert criu.load_cache(path, KEY) is None


def test_cache_key_tracks_binary_and_kernel(tmp_path: Path) -> None:
    exe = tmp_path / "criu"
    exe.write_text("#!/bin/sh\n")
    k1 = criu.cache_key(str(exe), "4.2.1")
    assert k1["kernel"] == f"{os.uname().release} {os.uname().version}"
    exe.write_text("#!/bin/sh\n# changed\n")
    assert criu.cache_key(str(exe), "4.2.1") != k1


# ------------------------------------------------------------------ lookup and features

def _exe(path: Path, body: str = "exit 0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_criu_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _exe(tmp_path / "env" / "criu")
    pref = _exe(tmp_path / "opt" / "bin" / "criu")
    onpath = _exe(tmp_path / "path" / "criu")
    monkeypatch.setattr(locate, "PREFIX_CRIU", pref)
    monkeypatch.setenv("PATH", str(onpath.parent))
    monkeypatch.setenv(criu.ENV_CRIU, str(env))
    assert criu.find_criu() == str(env)
    monkeypatch.setenv(criu.ENV_CRIU, str(tmp_path / "nonexistent"))
    assert criu.find_criu() == str(pref)
    monkeypatch.delenv(criu.ENV_CRIU)
    monkeypatch.setattr(locate, "PREFIX_CRIU", tmp_path / "none")
    assert criu.find_criu() == str(onpath)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert criu.find_criu() is None


def test_features_without_criu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "find_criu", lambda: None)
    feats = criu.features()
    assert list(feats) == list(criu.FEATURE_NAMES)
    assert all(not f.ok and "no CRIU" in f.detail and "get-criu.sh" in f.hint
               for f in feats.values())


def test_feature_dict_roundtrip() -> None:
    f = Feature("socket_dump", False, "d", "h")
    assert Feature.from_dict(f.to_dict()) == f


# ------------------------------------------------------------------ the wrapper, on a fake criu

FAKE = """\
# A fake criu: records its arguments and the targets of its open fds, then acts by verb.
echo "$@" > "$FAKE_DIR/args"
ls -l /proc/$$/fd/ > "$FAKE_DIR/fds" 2>&1
case "$1" in
  --version) echo "Version: 9.9.9" ;;
  check) [ "$3" = mem_dirty_track ] && { echo "Warn  (criu/cr-check.c:824): Dirty tracking is OFF."; exit 1; }
         echo "Looks good." ;;
  dump) [ -n "$FAKE_FAIL" ] && { printf '(00.1) Error (criu/x.c:1): it broke\\n' > "$FAKE_DIR/img/dump.log"; exit 1; } ;;
  restore) echo 4242 > "$FAKE_DIR/img/restore.pid" ;;
esac
exit 0
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> criu.Criu:
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    (tmp_path / "img").mkdir()
    return criu.Criu(_exe(tmp_path / "criu", FAKE))


def test_fake_version_and_check(fake: criu.Criu) -> None:
    assert fake.version == "9.9.9"
    assert fake.check() == (True, "Looks good.")
    ok, detail = fake.check("mem_dirty_track")
    assert not ok and detail == "Dirty tracking is OFF."


def test_dump_own_netns_is_not_declared_external(fake: criu.Criu, tmp_path: Path) -> None:
    run = fake.dump(os.getpid(), tmp_path / "img")
    recorded = (tmp_path / "args").read_text().split()
    assert recorded[:3] == ["dump", "--tree", str(os.getpid())]
    assert "--external" not in recorded  # our own namespace: nothing to declare
    assert recorded[recorded.index("--network-lock") + 1] == criu.DEFAULT_NETWORK_LOCK
    assert run.log_path == tmp_path / "img" / "dump.log" and run.seconds >= 0


def test_dump_failure_raises_with_log_tail(fake: criu.Criu, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(criu.CriuError) as ei:
        fake.dump(os.getpid(), tmp_path / "img", network_lock="iptables")
    assert ei.value.returncode == 1
    assert "it broke" in str(ei.value) and ei.value.log_tail


def test_restore_hands_the_netns_fd_to_criu(fake: criu.Criu, tmp_path: Path) -> None:
    run = fake.restore(tmp_path / "img", netns="/proc/self/ns/net", netns_key="r9",
                       extra_args=["--lazy-pages"])
    assert run.pid == 4242
    recorded = (tmp_path / "args").read_text().split()
    inherit = recorded[recorded.index("--inherit-fd") + 1]
    fd = int(inherit[len("fd["):inherit.index("]")])
    assert inherit.endswith("]:r9")
    # The fd CRIU is told about is really open in CRIU's process, on a net namespace.
    fds = (tmp_path / "fds").read_text()
    assert any(line.split()[-3] == str(fd) and "net:[" in line
               for line in fds.splitlines() if "->" in line)
    assert recorded[-1] == "--lazy-pages"


def test_features_without_root_read_the_cache_only(fake: criu.Criu, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cache = tmp_path / "cache.json"
    feats = criu.features(criu_path=fake.path, cache_path=cache)
    assert all(not f.ok and "needs root" in f.detail for f in feats.values())
    criu.save_cache(cache, criu.cache_key(fake.path, "9.9.9"), _feats())
    assert criu.features(criu_path=fake.path, cache_path=cache) == _feats()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o644


# ------------------------------------------------------------------ scripts/get-criu.sh
GET_CRIU = Path(__file__).resolve().parents[2] / "scripts" / "get-criu.sh"


def _print_mirror(tmp_path: Path, sources: dict[str, str], extra: str = "",
                  env: dict[str, str] | None = None) -> dict[str, list[str]]:
    """get-criu.sh --print-mirror against an apt configuration in `tmp_path` (APT_CONFIG)."""
    import shutil
    import subprocess

    if shutil.which("apt-config") is None:
        pytest.skip("apt-config is not installed")
    etc = tmp_path / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "apt.conf.d").mkdir()
    for name, text in sources.items():
        (etc / name).write_text(text)
    conf = tmp_path / "apt.conf"
    conf.write_text(f'Dir::Etc "{etc}/";\nDir::Etc::main "apt.conf";\n'
                    f'Dir::Etc::parts "apt.conf.d";\n{extra}')
    r = subprocess.run(["bash", str(GET_CRIU), "--print-mirror"], capture_output=True, text=True,
                       env={**os.environ, "APT_CONFIG": str(conf), **(env or {})}, timeout=30)
    assert r.returncode == 0, r.stderr
    out: dict[str, list[str]] = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition("=" if not line.startswith("proxy: ") else " ")
        out.setdefault(k.rstrip(":"), []).append(v)
    return out


def test_get_criu_takes_the_debian_mirror_from_the_system_apt_sources(tmp_path: Path) -> None:
    sources = {
        "sources.list": "# deb http://commented.example/debian bookworm main\n"
                        "deb http://security.debian.org/debian-security bookworm-security main\n"
                        "deb-src http://src.example/debian bookworm main\n",
        "sources.list.d/a-vendor.list":
            "deb [arch=amd64 signed-by=/k.gpg] https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
        "sources.list.d/b.sources":
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb deb-src\n# a comment\nURIs: http://mirror.example.org/debian/ http://two.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\nSigned-By:\n -----BEGIN PGP-----\n .\n"
            " x: y\n -----END PGP-----\n\n"
            "Types: deb\nURIs: http://mirror.example.org/debian-security\nSuites: bookworm-security\n"}
    proxy = ('Acquire::http::Proxy "http://proxy.example:3128/";\n'
             'Acquire::http::Proxy::deb.example.org "DIRECT";\n')
    out = _print_mirror(tmp_path, sources, proxy)
    assert out["mirror"] == ["http://mirror.example.org/debian"]
    assert out["from"] == [str(tmp_path / "etc" / "sources.list.d" / "b.sources")]
    assert out["proxy"] == ['Acquire::http::Proxy "http://proxy.example:3128/";',
                            'Acquire::http::Proxy::deb.example.org "DIRECT";']


def test_get_criu_mirror_from_a_one_line_list_or_the_default(tmp_path: Path) -> None:
    out = _print_mirror(tmp_path / "a", {"sources.list": "deb [ trusted=yes ] http://m.example/debian/ sid main\n"})
    assert out["mirror"] == ["http://m.example/debian"] and "proxy" not in out
    out = _print_mirror(tmp_path / "b", {"sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n"})
    assert out["mirror"] == ["http://deb.debian.org/debian"] and out["from"][0].startswith("default")
    out = _print_mirror(tmp_path / "c", {}, env={"GET_CRIU_MIRROR": "http://override.example/debian/"})
    assert out["mirror"] == ["http://override.example/debian"]


def test_lazy_pages_args_serve_the_images() -> None:
    args = criu.lazy_pages_args("/img")
    assert args[0] == "lazy-pages"
    assert args[args.index("--images-dir") + 1] == "/img"
    assert args[args.index("--log-file") + 1] == "lazy-pages.log"


def _fake_criu(tmp_path: Path, body: str) -> criu.Criu:
    exe = tmp_path / "criu"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return criu.Criu(exe)


def test_serve_lazy_pages_waits_until_it_listens(tmp_path: Path) -> None:
    # a stand-in for `criu lazy-pages`: says it listens on --status-fd (the last argument)
    # after a moment, then serves
    c = _fake_criu(tmp_path, 'for a; do fd=$a; done; sleep 0.2; printf "\\0" > /proc/self/fd/$fd\n'
                             'exec sleep 30\n')
    img = tmp_path / "img"
    img.mkdir()
    (img / criu.LAZY_PAGES_SOCKET).touch()  # a stale socket of an earlier restore is removed
    seen: list[int] = []
    t0 = time.monotonic()
    p = c.serve_lazy_pages(img, started=lambda q: seen.append(q.pid))
    try:
        assert time.monotonic() - t0 >= 0.2 and p.poll() is None and seen == [p.pid]
        assert not (img / criu.LAZY_PAGES_SOCKET).exists()
    finally:
        p.kill()
        p.wait()


def test_serve_lazy_pages_that_never_listens_raises(tmp_path: Path) -> None:
    c = _fake_criu(tmp_path, 'echo "Error (criu/uffd.c:1): no uffd" > "$3/lazy-pages.log"; exit 1\n')
    img = tmp_path / "img"
    img.mkdir()
    with pytest.raises(criu.CriuError, match="lazy-pages failed.*no uffd"):
        c.serve_lazy_pages(img, timeout=5)
