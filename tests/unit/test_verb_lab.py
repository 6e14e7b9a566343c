"""`routerlab cli` VERB commands: argument handling (no namespaces needed)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from routerlab.daemons import BgpNeighbor, Interface, RouterSpec
from routerlab.errors import UserError
from routerlab import systems
from routerlab.lab import RouterlabCLI, lab_class
from verb import lab


def test_params_are_typed():
    assert lab.parse_params(["prefix=10.1.0.0/24", "stop_s=0.5", "n=3", "prefixes=a,b"]) == \
        {"prefix": "10.1.0.0/24", "stop_s": 0.5, "n": 3, "prefixes": ["a", "b"]}
    with pytest.raises(ValueError):
        lab.parse_params(["oops"])


def test_declared_as_the_verb_systems_lab_commands():
    cls = lab_class(systems.get("verb"))
    assert issubclass(cls, RouterlabCLI) and hasattr(cls, "do_verb")


class Console:
    def __init__(self):
        self.lines = []

    def print(self, *a, **k):
        self.lines.append(" ".join(map(str, a)))


def _cmds(spec: RouterSpec) -> lab.VerbCommands:
    c = lab.VerbCommands()
    node = SimpleNamespace(daemon=SimpleNamespace(spec=spec), netns=None)
    c.network = SimpleNamespace(router=lambda name: node)
    c.console = Console()
    return c


def test_usage_and_refusals():
    ospf = RouterSpec("r1", "10.255.0.1", 65001, interfaces=[Interface("e0", "10.0.0.1/24", ospf_area="0")],
                      bgp_neighbors=[BgpNeighbor("10.0.0.2", 65002)])
    c = _cmds(ospf)
    with pytest.raises(UserError, match="usage"):
        c.do_verb("start")
    with pytest.raises(UserError, match="BGP-only"):
        c.do_verb("start r1")
    with pytest.raises(UserError, match="not a bug-tolerant router"):
        c.do_verb("status r1")
