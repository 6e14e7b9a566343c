"""Fixtures shared by the unit tests."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from routerlab import runner


@pytest.fixture
def runner_without_host(monkeypatch):
    """`routerlab.runner` runs an experiment without touching the machine: no run lock
    under /run, no sweep of this session's namespaces (nothing to sweep, and no root)."""
    monkeypatch.setattr(runner, "RunLock", contextlib.nullcontext)
    monkeypatch.setattr(runner.registry, "clean_current_session", lambda: SimpleNamespace(total=0))
