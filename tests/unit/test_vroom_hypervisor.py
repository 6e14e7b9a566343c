"""DataPlaneHypervisor's removal of a VR's share, against a recorded model of the bridge
(no Open vSwitch): a big share goes in bounded OpenFlow transactions.

ovs-vswitchd's main thread runs OpenFlow and polls every userspace bridge's ports, so one
transaction deleting 250,000 flows (measured: a bundled ``flow delete reg0=N``, a plain
non-strict delete or deleting the bridge) stops forwarding on every bridge of the machine
for ~3.8 s. A vroom-cloning run cleaning up its 250,000-route VR did that to a concurrent
vroom-maintenance (94-100% of a 10,000 packets/s probe lost, its data-plane limit read as
5,000 packets/s)."""
from __future__ import annotations

import pytest

from vroom import hypervisor as hvmod
from vroom.binding import PortBinding, binding_flows
from vroom.flows import Bucket, Flow, Group, Tables, install_bundle
from vroom.hypervisor import DataPlaneHypervisor, apply_paced
from vroom.translate import Translation

REMOVE_CHUNK: int = getattr(hvmod, "REMOVE_CHUNK", 2_500)  # flows per removal transaction
VR = 3
BINDINGS = [PortBinding("eth0", 0, "02:00:00:03:00:00", phys_port=1, vr_port=11),
            PortBinding("eth1", 1, "02:00:00:03:00:01", phys_port=2, vr_port=12)]


class FakeBridge:
    """The bridge's flows and groups, changed by the bundle lines the hypervisor sends;
    records how many flows each transaction removed."""

    def __init__(self, *tables: Tables, fail: bool = False):
        self.flows = {f.match_text(): f for t in tables for f in t.flows.values()}
        self.groups = {g for t in tables for g in t.groups}
        self.removed_per_call: list[int] = []
        self.fail = fail

    def apply(self, bridge: str, lines: list[str]) -> tuple[int, float]:
        if self.fail:
            raise RuntimeError("ovs-ofctl: br0 is not a bridge or a socket")
        removed = 0
        for ln in lines:
            kind, verb, arg = ln.split(" ", 2)
            if (kind, verb) == ("flow", "delete_strict"):
                removed += self.flows.pop(arg, None) is not None
            elif (kind, verb) == ("flow", "delete"):  # non-strict: every flow with these terms
                terms = set(arg.split(","))
                gone = [k for k, f in self.flows.items() if terms <= set(f.match)]
                for k in gone:
                    del self.flows[k]
                removed += len(gone)
            elif (kind, verb) == ("group", "delete"):
                self.groups.discard(int(arg.split("=", 1)[1]))
            else:
                raise AssertionError(f"unexpected line {ln!r}")
        self.removed_per_call.append(removed)
        return len(lines), 0.0


def share(n_routes: int) -> tuple[Tables, Tables]:
    """A VR's routing table (n_routes LPM flows, two groups) and its binding flows."""
    routes = Tables()
    for gid in ((VR << 24) | 1, (VR << 24) | 2):
        routes.groups[gid] = Group(gid, "indirect", (Bucket(("drop",)),))
    for i in range(n_routes):
        f = Flow(1, 1048, (f"reg0={VR}", "ip", f"nw_dst=20.{i >> 8 & 255}.{i & 255}.0/24"),
                 (f"group:{(VR << 24) | 1 + i % 2}",))
        routes.flows[(f.table, f.priority, f.match)] = f
    return routes, binding_flows(VR, BINDINGS)


@pytest.fixture
def hv():
    h = DataPlaneHypervisor(VR, "br0", "nowhere", BINDINGS)
    yield h
    h.close()


def _install(h: DataPlaneHypervisor, n_routes: int, monkeypatch, **kw) -> FakeBridge:
    routes, binding = share(n_routes)
    h._routes, h._binding = routes, binding
    bridge = FakeBridge(routes, binding, **kw)
    monkeypatch.setattr(hvmod, "apply_changes", bridge.apply)
    return bridge


def test_a_big_share_is_removed_in_bounded_transactions(hv, monkeypatch) -> None:
    n = 5 * REMOVE_CHUNK + 7
    bridge = _install(hv, n, monkeypatch)
    hv.remove_all()
    assert not bridge.flows and not bridge.groups  # everything gone, groups included
    assert len(bridge.removed_per_call) >= 6
    assert max(bridge.removed_per_call) <= REMOVE_CHUNK  # no transaction stalls the switch
    assert not hv._routes.flows and not hv._binding.flows


def test_a_small_share_goes_in_one_transaction(hv, monkeypatch) -> None:
    bridge = _install(hv, 40, monkeypatch)
    hv.remove_all()
    assert not bridge.flows and not bridge.groups
    assert len(bridge.removed_per_call) == 1


def test_close_removes_a_big_share_first_and_leaves_a_small_one(monkeypatch) -> None:
    """Deleting the bridge next would stall ovs-vswitchd as one big delete does."""
    big = DataPlaneHypervisor(VR, "br0", "nowhere", BINDINGS)
    bridge = _install(big, 2 * REMOVE_CHUNK, monkeypatch)
    big.close()
    assert not bridge.flows and max(bridge.removed_per_call) <= REMOVE_CHUNK
    small = DataPlaneHypervisor(VR, "br0", "nowhere", BINDINGS)
    bridge = _install(small, 10, monkeypatch)
    small.close()
    assert bridge.flows and bridge.removed_per_call == []  # unchanged behaviour


def test_close_survives_a_bridge_already_gone(monkeypatch) -> None:
    h = DataPlaneHypervisor(VR, "br0", "nowhere", BINDINGS)
    _install(h, 2 * REMOVE_CHUNK, monkeypatch, fail=True)
    h.close()  # logs, does not raise


def test_a_big_install_goes_in_bounded_transactions_in_order(monkeypatch) -> None:
    """A cloned million-route table must not stop the shared switch for seconds: every
    transaction holds at most INSTALL_CHUNK lines, and the lines keep their (safe) order."""
    routes, binding = share(3 * 1000 + 5)
    lines = install_bundle(routes) + install_bundle(binding)
    calls: list[list[str]] = []
    monkeypatch.setattr(hvmod, "apply_changes",
                        lambda bridge, ls: (calls.append(list(ls)), (len(ls), 0.0))[1])
    n, _ = apply_paced("br0", lines, chunk=1000, pause_s=0)
    assert n == len(lines) and len(calls) == 4
    assert max(map(len, calls)) <= 1000
    assert [ln for c in calls for ln in c] == lines  # groups first, as given
    calls.clear()
    apply_paced("br0", lines[:999], chunk=1000, pause_s=0)
    assert len(calls) == 1  # a small change stays one atomic transaction


def test_install_lines_are_the_flows_text() -> None:
    routes, binding = share(10)
    assert [ln for ln in install_bundle(routes.merged(binding)) if ln.startswith("flow ")] == \
        [f"flow add {f.text()}" for f in routes.merged(binding).flows.values()]


def test_routes_quiet_counts_from_the_last_route_change_only(hv, monkeypatch) -> None:
    """Convergence waits for the route flows to rest (`vroom.topo.FIB_QUIET_S`): a sync that
    changes a route restarts the count; one that only changes bindings, or nothing, does not."""
    routes, binding = share(4)
    tables = [routes]
    monkeypatch.setattr(hvmod.fib, "read_snapshot", lambda ns: None)
    monkeypatch.setattr(hvmod, "route_tables",
                        lambda vr, ifindex, snap, groups: Translation(tables[-1], routes=len(tables[-1].flows)))
    monkeypatch.setattr(hvmod, "apply_changes", lambda bridge, lines: (len(lines), 0.0))
    clock = [100.0]
    monkeypatch.setattr(hvmod.time, "monotonic", lambda: clock[0])
    assert hv.routes_quiet_s() == float("inf")
    hv.sync()  # the first table: a change
    clock[0] = 103.0
    assert hv.routes_quiet_s() == 3.0
    hv.sync()  # nothing new
    hv.set_bindings(BINDINGS[:1])  # a binding change (a link moving) is not a route change
    assert hv.routes_quiet_s() == 3.0
    changed = Tables(flows=dict(routes.flows), groups=dict(routes.groups))
    del changed.flows[next(iter(changed.flows))]  # an ECMP route replaced, a prefix withdrawn
    tables.append(changed)
    hv.sync()
    clock[0] = 103.5
    assert hv.routes_quiet_s() == 0.5
