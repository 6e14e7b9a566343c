"""A recorded root-namespace link is ours only while its ifindex matches the record."""
from __future__ import annotations

from routerlab import registry


def _lo_ifindex() -> int:
    return registry.link_ifindex("lo")


def test_link_with_the_recorded_ifindex_is_ours():
    assert registry.link_is_ours({"kind": "link", "name": "lo", "ifindex": _lo_ifindex()})


def test_link_recreated_under_the_same_name_is_not_ours():
    assert not registry.link_is_ours({"kind": "link", "name": "lo", "ifindex": _lo_ifindex() + 10_000})


def test_record_written_before_creation_falls_back_to_the_name():
    assert registry.link_is_ours({"kind": "link", "name": "lo"})
    assert not registry.link_is_ours({"kind": "link", "name": "rl-no-such-link"})


def test_the_ifindex_record_replaces_the_name_only_one(tmp_path):
    path = tmp_path / "s.jsonl"
    s = registry.Session(path)
    s.add("link", "lo")               # before creation
    s.link_created("lo")              # after: with its ifindex
    live = registry.live_resources(path)
    assert live == [{"op": "add", "kind": "link", "name": "lo", "ifindex": _lo_ifindex()}]


def test_a_session_file_removed_under_a_live_session_keeps_its_owner(tmp_path):
    path = tmp_path / "s.jsonl"
    s = registry.Session(path)
    s._append(s._header())
    s.add("dir", str(tmp_path / "a"))
    s.release("dir", str(tmp_path / "a"))
    path.unlink()                     # e.g. cleaned while nothing of it was live
    s.add("dir", str(tmp_path / "b"))
    assert registry.session_owner(path) == (s.owner_pid, registry.proc_start_time(s.owner_pid))
    assert registry.session_alive(path)
    assert [r["name"] for r in registry.live_resources(path)] == [str(tmp_path / "b")]
