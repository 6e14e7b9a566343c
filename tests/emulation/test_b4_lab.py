"""`routerlab cli b4-example` with a command script: te, link, ofc and ops commands."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.emulation.conftest import REPO, ROUTERLAB

pytestmark = pytest.mark.emulation

SCRIPT = """\
te show
link A B down
te show
link A B up
te off
te on
te algorithm exact
te algorithm
te algorithm b4
te algorithm lp
ofc kill A
ofc status
ops 5
link A Z down
te bogus
"""


def test_b4_lab_commands(tmp_path):
    script = tmp_path / "cmds"
    script.write_text(SCRIPT)
    prefix = f"tb4{uuid.uuid4().hex[:3]}-"
    r = subprocess.run(ROUTERLAB + ["cli", "b4-example", "--prefix", prefix, "--script", str(script)],
                       cwd=REPO, capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "200"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "A-B 0.50 (L1000)" in out and "A-D-C 1.00" in out          # te show: splits and labels
    assert "links (down: A-B)" in out and "A-C-B 1.00" in out          # the failure re-routed FG1
    assert "TE off: converged" in out and "TE on: converged" in out
    # te algorithm: exact's allocation installed (quantized to 1/2: 10 Mbit/s, its LP's splits round
    # worse than b4's on this example), then back to b4's 12.5
    assert "TE algorithm exact: 10.00 Mbit/s allocated, converged" in out, out[-3000:]
    assert "TE algorithm: exact" in out and "TE algorithm b4: 12.50 Mbit/s allocated, converged" in out
    assert "unknown TE algorithm 'lp'" in out
    assert "is master after" in out                                     # ofc kill: the standby took over
    assert "acked" in out                                               # ops
    assert "no WAN link A-Z" in out and "usage: te show" in out         # bad input: one line, CLI survives
    # everything the lab created is gone
    assert prefix not in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
