#!/usr/bin/env python3
"""CRIU socket self-test: dump and restore a process holding an established TCP connection
inside a private network namespace, then check the connection still carries data.

    sudo scripts/criu-selftest.py [--criu PATH]      # exit 0 if it works

Also `--all` to show every VROOM-relevant CRIU feature (`python -m routerlab.criu features`).
The work is done by routerlab.criu (standard library only, so this runs before the
virtualenv exists); everything it creates (namespace rlcriu-<random>, its processes,
images) is removed again, even on failure.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routerlab import criu

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--all" in args:
        args.remove("--all")
        sys.exit(criu.main(["features", "--refresh", *args]))
    sys.exit(criu.main(["selftest", *args]))
