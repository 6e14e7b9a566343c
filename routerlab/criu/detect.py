"""Which VROOM-relevant features this machine's CRIU has (`features`), measured by `criu
check` and the probes and cached per CRIU binary and kernel in
``/run/routerlab/criu-features.json`` so ``routerlab doctor`` stays fast."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from routerlab.criu.dump import Criu
from routerlab.criu.locate import HINT_GET_CRIU, Feature, find_criu
from routerlab.criu.probes import run_probes
from routerlab.statedir import STATE_DIR

log = logging.getLogger(__name__)

CACHE_PATH = STATE_DIR / "criu-features.json"
CACHE_FORMAT = 1
FEATURE_NAMES = ("check", "socket_dump", "netlink_groups_gt32", "soft_dirty", "lazy_pages")


def _missing(detail: str, hint: str) -> dict[str, Feature]:
    return {n: Feature(n, False, detail, hint) for n in FEATURE_NAMES}


def cache_key(criu_path: str, version: str) -> dict[str, Any]:
    """What identifies a result: the binary (path, version, file identity) and the kernel."""
    real = os.path.realpath(criu_path)
    try:
        st = os.stat(real)
        ident = [st.st_size, st.st_mtime_ns, st.st_ino]
    except OSError:
        ident = []
    u = os.uname()
    # get-criu.sh replaces the whole prefix when it refetches, so the wrapper's own file
    # identity changes whenever the binary behind it does.
    return {"criu": criu_path, "realpath": real, "version": version, "file": ident,
            "kernel": f"{u.release} {u.version}"}


def _key_id(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_cache(path: Path, key: Mapping[str, Any]) -> dict[str, Feature] | None:
    """Cached features for exactly this key, or None (missing, stale, other format, corrupt)."""
    try:
        data = json.loads(path.read_text())
        entry = data["entries"][_key_id(key)]
        if data.get("format") != CACHE_FORMAT or entry.get("key") != dict(key):
            return None
        feats = {n: Feature.from_dict(d) for n, d in entry["features"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if set(feats) != set(FEATURE_NAMES):
        return None
    return {n: feats[n] for n in FEATURE_NAMES}


def save_cache(path: Path, key: Mapping[str, Any], feats: Mapping[str, Feature]) -> None:
    """Add this key's results to the cache file (atomically; other keys are kept)."""
    try:
        data = json.loads(path.read_text())
        if (not isinstance(data, dict) or data.get("format") != CACHE_FORMAT
                or not isinstance(data.get("entries"), dict)):
            raise ValueError
    except (OSError, ValueError):
        data = {"format": CACHE_FORMAT, "entries": {}}
    data["entries"][_key_id(key)] = {"key": dict(key), "time": time.time(),
                                     "features": {n: f.to_dict() for n, f in feats.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".criu-features.")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the results from non-root doctor runs
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot write CRIU feature cache %s: %s", path, e)


def detect_features(criu: Criu) -> dict[str, Feature]:
    """Measure every feature now (no cache). Needs root."""
    ok, detail = criu.check()
    feats = {"check": Feature("check", ok, f"criu {criu.version or '?'} check: {detail}",
                              "" if ok else "this CRIU does not work on this kernel; "
                              + HINT_GET_CRIU)}
    if ok:
        feats.update(run_probes(criu.path))
    else:
        for n in ("socket_dump", "netlink_groups_gt32"):
            feats[n] = Feature(n, False, "not tried: `criu check` fails", feats["check"].hint)
    ok, detail = criu.check("mem_dirty_track")
    feats["soft_dirty"] = Feature(
        "soft_dirty", ok, f"memory dirty tracking: {detail}",
        "" if ok else "no iterative pre-copy (criu pre-dump): migration falls back to "
        "stall-and-copy; needs a kernel with CONFIG_MEM_SOFT_DIRTY")
    ok, detail = criu.check("uffd-noncoop")
    feats["lazy_pages"] = Feature(
        "lazy_pages", ok, f"userfaultfd (uffd-noncoop): {detail}",
        "" if ok else "no post-copy (--lazy-pages): migration uses stall-and-copy; needs "
        "a kernel with CONFIG_USERFAULTFD")
    return {n: feats[n] for n in FEATURE_NAMES}


def features(refresh: bool = False, criu_path: str | None = None,
             cache_path: Path | None = None) -> dict[str, Feature]:
    """Each VROOM-relevant CRIU feature on this machine, cached per CRIU binary and kernel."""
    path = criu_path or find_criu()
    if not path:
        return _missing("no CRIU found (ROUTERLAB_CRIU, /opt/routerlab/criu/bin/criu, PATH)",
                        HINT_GET_CRIU)
    criu = Criu(path)
    cache = cache_path or CACHE_PATH
    key = cache_key(path, criu.version)
    if not refresh:
        cached = load_cache(cache, key)
        if cached is not None:
            return cached  # also readable without root
    if os.geteuid() != 0:
        return _missing(f"not measured: CRIU needs root ({path})",
                        "run as root (or once `sudo routerlab doctor` to fill the cache)")
    feats = detect_features(criu)
    save_cache(cache, key, feats)
    return feats


def socket_selftest(criu_path: str | None = None) -> Feature:
    """The TCP-socket dump/restore self-test alone, uncached (runs in a child subreaper)."""
    path = criu_path or find_criu()
    if not path:
        return Feature("socket_dump", False, "no CRIU found", HINT_GET_CRIU)
    return run_probes(path, ("socket_dump",))["socket_dump"]
