"""`routerlab cli` VERB commands: argument handling (no namespaces needed)."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console as RichConsole

from routerlab.daemons import BgpNeighbor, Interface, RouterSpec
from routerlab.errors import UserError
from routerlab import systems
from routerlab.lab import RouterlabCLI, lab_class
from verb import lab


def test_params_are_typed():
    assert lab.parse_params(["prefix=10.1.0.0/24", "stop_s=0.5", "n=3", "prefixes=a,b"]) == \
        {"prefix": "10.1.0.0/24", "stop_s": 0.5, "n": 3, "prefixes": ["a", "b"]}
    for bad in ("oops", "=1", "prefix="):
        with pytest.raises(UserError, match="expected key=value"):
            lab.parse_params([bad])


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


BGP_ONLY = RouterSpec("r1", "10.255.0.1", 65001, interfaces=[Interface("e0", "10.0.0.1/24")],
                      bgp_neighbors=[BgpNeighbor("10.0.0.2", 65002)])


class FakeRouter:
    """What the lab commands ask of a bug-tolerant router, without namespaces."""

    names = ("r0", "r1", "r2")
    config = SimpleNamespace(implementations=("frr", "bird", "gobgp"))

    def __init__(self):
        self.modes = []

    def set_mode(self, mode):
        self.modes.append(mode)

    def replica(self, name):
        return SimpleNamespace(generation=1, impl=dict(zip(self.names, self.config.implementations))[name])

    def status(self):
        rec = {"replica": "r1", "reason": "daemon exited (bird)", "impl_before": "bird", "impl_after": "bird",
               "duration_s": 187.4, "restart_s": 1.23}
        return {"mode": "continuous-majority", "master": {"fib": "r0", "updates": "r0"},
                "replicas": {"r0": {"impl": "frr", "state": "voting", "generation": 1, "uptime_s": 7385.0},
                             "r1": {"impl": "bird", "state": "voting", "generation": 2, "uptime_s": 1.2326500415802002},
                             "r2": {"impl": "gobgp", "state": "starting", "generation": 1, "uptime_s": None}},
                "disagreements": {}, "neighbors": {}, "fib_routes": 3, "fib_errors": 0, "recoveries": [rec]}


def _running() -> tuple[lab.VerbCommands, FakeRouter]:
    c = _cmds(BGP_ONLY)
    router = FakeRouter()
    c.network.verb_routers = {"r1": {"router": router, "faults": []}}
    return c, router


@pytest.mark.parametrize("line, message", [
    ("router r1", "usage"),  # not a subcommand (was a TypeError)
    ('status "r1', "No closing quotation"),
    ("status r1 --yaml", "usage: verb status"),
    ("mode r1", "usage: verb mode"),
    ("mode r1 fastest", "unknown mode 'fastest' .*continuous-majority"),
    ("fault r1", "faults: crash"),
    ("fault r1 gremlins r0", "faults: crash"),
    ("fault r1 wrong-next-hop", "wrong-next-hop needs prefix=P gateway=G"),
    ("fault r1 wrong-next-hop bird", r"wrong-next-hop needs prefix=P gateway=G \(missing: prefix, gateway\)"),
    ("fault r1 wrong-next-hop bird prefix=10.1.0.0/24", r"\(missing: gateway\)"),
    ("fault r1 wrong-next-hop bird prefix=10.1.0/33 gateway=10.0.0.2", "prefix: '10.1.0/33' is not an IPv4 prefix"),
    ("fault r1 wrong-next-hop bird prefix=10.1.0.0/24 gateway=10.0.0.300", "gateway: '10.0.0.300' is not an IPv4"),
    ("fault r1 wrong-next-hop bird prefix=10.1.0.0/24 gw=10.0.0.2", r"\(unknown: gw\)"),
    ("fault r1 crash bird now", "expected key=value, got 'now'"),
    ("fault r1 crash bird n=1", r"crash takes no parameters \(unknown: n\)"),
    ("fault r1 slow r1 stop_s=abc", "stop_s: 'abc' is not a number of seconds"),
    ("fault r1 corrupt-update r0 kind=as-set", "kind: 'as-set' is not one of as-path, next-hop"),
    ("fault r1 crash r7", "unknown replica 'r7'"),
    ("fault r1 missing-route gobgp prefix=10.1.0.0/24", "missing-route on r2: .*kernel FIB"),
    ("clear r1 now", "usage: verb clear"),
    ("stop r1 now", "usage: verb stop"),
])
def test_bad_input_is_one_user_error(line, message):
    c, _ = _running()
    with pytest.raises(UserError, match=message):
        c.do_verb(line)
    assert c.network.verb_routers["r1"]["faults"] == []


def test_unknown_mode_is_refused_before_the_daemon_stops():
    c = _cmds(BGP_ONLY)
    c.network.router("r1").daemon.stop = lambda: pytest.fail("the daemon was stopped")
    with pytest.raises(UserError, match="unknown mode 'majority'"):
        c.do_verb("start r1 majority")


def test_mode_by_name():
    c, router = _running()
    c.do_verb("mode r1 wait-for-consensus")
    assert router.modes == ["wait-for-consensus"]


def test_status_durations_read_as_durations():
    c, _ = _running()
    out = io.StringIO()
    c.console = RichConsole(file=out, width=200)
    c.do_verb("status r1")
    text = out.getvalue()
    assert "2 h 03 min" in text and "1.2 s" in text and "1.2326" not in text
    assert "3 min 07 s" in text  # the recovery's duration
    assert "injected faults: none" in text
