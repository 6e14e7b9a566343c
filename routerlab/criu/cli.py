"""The command line: ``python -m routerlab.criu {features,selftest}``."""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from routerlab.criu.detect import features, socket_selftest
from routerlab.criu.locate import find_criu
from routerlab.criu.probes import _probe_main

DESCRIPTION = ("CRIU for VROOM: find a working binary, detect the features live migration needs, "
               "dump/restore.")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m routerlab.criu {features,selftest}`; exit 0 when CRIU can migrate a router."""
    ap = argparse.ArgumentParser(prog="python -m routerlab.criu", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="detect (or read cached) CRIU features")
    f.add_argument("--refresh", action="store_true", help="ignore the cache")
    f.add_argument("--json", action="store_true")
    f.add_argument("--criu", help="CRIU binary (default: the usual lookup)")
    s = sub.add_parser("selftest", help="dump/restore a process with a TCP connection in a netns")
    s.add_argument("--criu")
    p = sub.add_parser("_probe")  # internal: run probes in this process, print JSON
    p.add_argument("--criu", required=True)
    p.add_argument("which", nargs="+", choices=("socket_dump", "netlink_groups_gt32"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if a.cmd == "_probe":
        print(json.dumps(_probe_main(a.criu, a.which)))
        return 0
    if a.cmd == "selftest":
        res = socket_selftest(a.criu)
        print(f"{'ok' if res.ok else 'FAIL'} {res.name}: {res.detail}")
        if not res.ok and res.hint:
            print(f"   -> {res.hint}")
        return 0 if res.ok else 1
    path = a.criu or find_criu()
    feats = features(refresh=a.refresh, criu_path=path)
    if a.json:
        print(json.dumps({"criu": path, "features": {n: x.to_dict() for n, x in feats.items()}},
                         indent=1))
    else:
        print(f"criu: {path or 'none'}")
        for x in feats.values():
            print(f"  {'ok  ' if x.ok else 'MISS'} {x.name:<20} {x.detail}")
            if not x.ok and x.hint:
                print(f"       {'':<20} -> {x.hint}")
    return 0 if feats["check"].ok and feats["socket_dump"].ok else 1
