"""The system plugin interface: systems are found through the `routerlab.systems` entry
point, a lab gets only the commands of the system that built it, and its teardown runs
however the lab ends (no root needed)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from routerlab import systems
from routerlab.errors import UserError
from routerlab.experiments import BENCHMARKS, EXPERIMENTS, load_all
from routerlab.lab import RouterlabCLI, lab_class, serve_lab
from routerlab.systems import System


def test_the_three_systems_are_found_through_the_entry_point() -> None:
    found = systems.systems()
    assert {"b4", "verb", "vroom"} <= set(found)
    for name, s in found.items():
        assert isinstance(s, System) and s.name == name and s.description


def test_each_lab_gets_only_its_own_systems_commands() -> None:
    own = {"b4": "do_te", "vroom": "do_migrate", "verb": "do_verb"}
    for name, cmd in own.items():
        cls = lab_class(systems.get(name))
        assert issubclass(cls, RouterlabCLI) and hasattr(cls, cmd)
        assert not [c for other, c in own.items() if other != name and hasattr(cls, c)], name
    plain = lab_class(None)
    assert plain is RouterlabCLI and not any(hasattr(plain, c) for c in own.values())


def test_experiments_come_from_the_systems_declarations() -> None:
    load_all()
    assert {"ospf-ring", "b4-example", "vroom-maintenance", "verb-masking"} <= set(EXPERIMENTS)
    assert "te" in BENCHMARKS


def test_a_topology_names_its_system() -> None:
    topo = SimpleNamespace(name="t", params={"system": "vroom"})
    assert systems.for_topology(topo).name == "vroom"  # type: ignore[arg-type, union-attr]  # a stand-in topology
    assert systems.for_topology(SimpleNamespace(name="t", params={})) is None  # type: ignore[arg-type]  # a stand-in topology
    with pytest.raises(UserError, match="unknown system 'nope'.*known: b4, verb, vroom"):
        systems.for_topology(SimpleNamespace(name="t", params={"system": "nope"}))  # type: ignore[arg-type]  # a stand-in topology


def test_serve_lab_runs_the_systems_teardown_then_stops(tmp_path, monkeypatch) -> None:
    calls: list[str] = []
    fake = System(name="fake", description="a test system",
                  lab_teardown=lambda network: calls.append(f"teardown {network.tag}"))
    monkeypatch.setattr(systems, "_loaded", {**systems.systems(), "fake": fake})
    script = tmp_path / "script"
    script.write_text("help\n")
    network = SimpleNamespace(net={}, tag="n1")
    with open("/dev/null") as stdin:
        rc = serve_lab(network, lambda: calls.append("stop"), console=Console(file=open("/dev/null", "w")),
                       script=str(script), system="fake", stdin=stdin)
    assert rc == 0 and calls == ["teardown n1", "stop"]


def test_a_failing_lab_still_tears_down(tmp_path, monkeypatch) -> None:
    calls: list[str] = []

    def boom(base: type) -> type:
        class Broken(base):
            def __init__(self, *a, **k):
                raise RuntimeError("lab crashed")
        return Broken

    fake = System(name="fake", description="d", lab_commands=boom,
                  lab_teardown=lambda network: calls.append("teardown"))
    monkeypatch.setattr(systems, "_loaded", {**systems.systems(), "fake": fake})
    with pytest.raises(RuntimeError, match="lab crashed"):
        serve_lab(SimpleNamespace(net={}), lambda: calls.append("stop"), console=Console(),
                  script=None, system="fake")
    assert calls == ["teardown", "stop"]
