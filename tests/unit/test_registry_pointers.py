"""A session kept in another state directory is found from the home one through a pointer."""
from __future__ import annotations

import os
import time

import pytest

from routerlab import registry


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    home, private = tmp_path / "home" / "sessions", tmp_path / "private" / "sessions"
    monkeypatch.setattr(registry, "HOME_SESSIONS_DIR", home)
    monkeypatch.setattr(registry, "SESSIONS_DIR", private)
    return home, private


def test_a_session_elsewhere_leaves_a_pointer_that_close_drops(dirs):
    home, private = dirs
    s = registry.Session.create("t")
    [pointer] = home.glob("*.elsewhere")
    assert pointer.read_text().strip() == str(s.path.resolve())
    s.close()
    assert not s.path.exists() and not pointer.exists()


def test_home_lists_a_pointed_session_and_cleans_its_directory(dirs, monkeypatch):
    home, private = dirs
    s = registry.Session.create("t")
    run_dir = private.parent / "vroom" / "xp1234"
    s.add("dir", str(run_dir))
    run_dir.mkdir(parents=True)
    monkeypatch.setattr(registry, "SESSIONS_DIR", home)   # a plain `routerlab clean`
    assert registry.session_files() == [s.path]
    rep = registry.clean()
    # under the session's own state directory, so ours although not under the home one
    assert rep.removed["dir"] == [str(run_dir)]
    assert not run_dir.exists() and not s.path.exists()
    assert not list(home.glob("*.elsewhere"))


def test_the_private_directory_does_not_follow_pointers(dirs):
    home, private = dirs
    other = registry.Session(private.parent.parent / "other" / "sessions" / "x.jsonl")
    other.path.parent.mkdir(parents=True)
    other._append(other._header())
    registry._write_pointer(other.path)
    mine = registry.Session.create("t")
    assert registry.session_files() == [mine.path]


def test_a_dangling_pointer_goes_only_once_it_is_old(dirs, monkeypatch):
    home, private = dirs
    home.mkdir(parents=True)
    young, old = home / "a.elsewhere", home / "b.elsewhere"
    young.write_text(str(private / "a.jsonl") + "\n")  # being created: file not there yet
    old.write_text(str(private / "b.jsonl") + "\n")
    past = time.time() - 2 * registry.POINTER_GRACE_S
    os.utime(old, (past, past))
    monkeypatch.setattr(registry, "SESSIONS_DIR", home)
    assert registry.session_files() == []
    assert young.exists() and not old.exists()
