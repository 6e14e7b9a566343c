"""`routerlab clean` after a crash removes the root-namespace link the crashed run created,
but not a link someone else created later under the same name."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.emulation.conftest import REPO, ROUTERLAB

CREATE = """
import os, sys
from routerlab.netns import create_veth
create_veth(sys.argv[1], sys.argv[2])
os._exit(0)   # a crash: no teardown, the session file stays
"""


def _link(name: str) -> dict | None:
    r = subprocess.run(["ip", "-j", "link", "show", "dev", name], capture_output=True, text=True)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


def test_clean_spares_a_foreign_link_with_a_recorded_name(uid, tmp_path):
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(tmp_path / "state"))
    a, b = f"tra{uid}", f"trb{uid}"
    other = f"tro{uid}"
    try:
        subprocess.run([sys.executable, "-c", CREATE, a, b], cwd=REPO, env=env, check=True)
        assert _link(a) is not None
        # someone else's link takes the name after our crash
        subprocess.run(["ip", "link", "del", a], check=True)
        subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", other], check=True)
        r = subprocess.run(ROUTERLAB + ["clean"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _link(a) is not None, "a foreign link with a recorded name was removed"
        # and a link that is still ours is removed
        subprocess.run([sys.executable, "-c", CREATE, f"trc{uid}", f"trd{uid}"], cwd=REPO, env=env,
                       check=True)
        subprocess.run(ROUTERLAB + ["clean"], cwd=REPO, env=env, check=True, capture_output=True,
                       timeout=120)
        assert _link(f"trc{uid}") is None
    finally:
        for name in (a, f"trc{uid}"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
