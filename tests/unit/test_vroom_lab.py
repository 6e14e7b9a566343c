"""The lab's VROOM commands (migrate, where, prs) against a fake network, no root needed."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from routerlab.lab import RouterlabCLI
from vroom.lab import vroom_commands
from vroom.migrate import MigrationRefused, MigrationReport
from vroom.phases import Phase, PhaseRecord, Status


class FakeVroom:
    def __init__(self) -> None:
        pr_a = SimpleNamespace(name="A", bridge_name="tvA", n_ports=4, free_ports=lambda: 1,
                               hypervisors={"r1": object()})
        pr_b = SimpleNamespace(name="B", bridge_name="tvB", n_ports=4, free_ports=lambda: 4,
                               hypervisors={})
        self.prs = {"A": pr_a, "B": pr_b}
        self.vrs = {"r1": SimpleNamespace(pr=pr_a, ns=SimpleNamespace(name="tv-r1-A"),
                                          impl="bird", pid=1234, migrations=0)}
        self.calls: list[tuple[str, str]] = []

    def migrate(self, vr: str, pr: str) -> MigrationReport:
        self.calls.append((vr, pr))
        if pr not in self.prs:
            raise MigrationRefused(f"unknown physical router {pr!r}")
        rep = MigrationReport(vr, "A", pr, ok=True, total_s=1.5)
        rep.phases = [PhaseRecord(p.value, p, Status.DONE, 0.1) for p in Phase]
        rep.cp = SimpleNamespace(freeze_s=0.2)  # type: ignore[assignment]  # a stand-in: the CLI reads only freeze_s
        rep.clone = {"routes": 7, "total_s": 0.05}
        return rep


def run_script(tmp_path, lines: list[str]) -> tuple[str, FakeVroom]:
    vroom = FakeVroom()
    network = SimpleNamespace(net={}, vroom=vroom)
    script = tmp_path / "script"
    script.write_text("\n".join(lines) + "\n")
    console = Console(record=True, width=120)
    with pytest.MonkeyPatch.context() as mp, open("/dev/null") as stdin:
        # the lab's `migrate` command calls vroom.migrate.migrate(net, VR, PR)
        mp.setattr("vroom.lab.migrate", lambda net, vr, pr: net.migrate(vr, pr))
        # (Mininet's CLI polls its stdin even for a script)
        vroom_commands(RouterlabCLI)(network, console=console, script=str(script), stdin=stdin)
    return console.export_text(), vroom


def test_migrate_where_prs(tmp_path) -> None:
    out, vroom = run_script(tmp_path, ["migrate r1 B", "where", "prs"])
    assert vroom.calls == [("r1", "B")]
    assert "r1: A -> B" in out and "control-plane-migration" in out
    assert "control-plane freeze 0.200 s" in out and "(7 routes)" in out
    assert "tv-r1-A" in out and "tvB" in out


def test_refusals_and_usage_are_one_line_errors(tmp_path) -> None:
    out, vroom = run_script(tmp_path, ["migrate r1 Z", "migrate r1"])
    assert "error: refused: unknown physical router 'Z'" in out
    assert "error: usage: migrate VR PR" in out
