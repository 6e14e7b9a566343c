"""`routerlab doctor` on daemon versions: a daemon older than its recommended version is a
warning with what to do, not a failure. No root needed."""
from __future__ import annotations

import pytest

from routerlab import doctor
from routerlab.daemons import GobgpDaemon


@pytest.mark.parametrize("version, than, older", [
    ("3.10.0", "3.24", True), ("3.24.0", "3.24", False), ("3.36.0", "3.24", False),
    ("10.0", "9.99", False), ("8.4.4-1", "8.4.4", False), ("2.0.12", "2.17", True)])
def test_older(version, than, older):
    assert doctor._older(version, than) is older


def test_an_old_gobgp_is_a_warning_that_names_the_fix(monkeypatch):
    monkeypatch.setattr("routerlab.daemons.DAEMONS", [GobgpDaemon])
    monkeypatch.setattr(GobgpDaemon, "version", classmethod(lambda cls: "3.10.0"))
    (c,) = doctor.check_daemons()
    assert (c.status, c.detail) == ("warn", "3.10.0 (older than 3.24)")
    assert "scripts/get-gobgp.sh" in c.action
    monkeypatch.setattr(GobgpDaemon, "version", classmethod(lambda cls: "3.36.0"))
    (c,) = doctor.check_daemons()
    assert (c.status, c.detail, c.action) == ("ok", "3.36.0", "")
