"""The programmable transport: a circuit re-patched from one router port to another, with no
carrier change on the neighbour's side (a few seconds).

Namespaces ra and rb both hold 10.94.0.1/24 on eth0 (the same router interface at two places,
as in a migration); neighbour n (10.94.0.2) is patched to ra, then re-patched to rb."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import Netns, run
from routerlab.ovs import bridges_named, dump_flows
from vroom.transport import Transport

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, OVS)"),
]


@pytest.fixture
def setup() -> Iterator[tuple[Transport, dict[str, Netns], dict[str, int]]]:
    if run(["ovs-vsctl", "-t", "5", "show"], check=False).returncode != 0:
        pytest.skip("Open vSwitch is not running")
    px = f"tvt{secrets.token_hex(2)}"
    tr = Transport(f"{px}tr")
    made: dict[str, Netns] = {}
    try:
        tr.create()
        ports = {}
        for name, addr in (("ra", "10.94.0.1/24"), ("rb", "10.94.0.1/24"), ("n", "10.94.0.2/24")):
            ns = made[name] = Netns.create(f"{px}-{name}")
            ports[name] = tr.attach(ns, "eth0", f"{px}{name}", mac=None)
            ns.ip("addr", "add", addr, "dev", "eth0")
        # tell ra and rb apart by a second address
        made["ra"].ip("addr", "add", "10.94.1.1/32", "dev", "lo")
        made["rb"].ip("addr", "add", "10.94.1.2/32", "dev", "lo")
        yield tr, made, ports
    finally:
        tr.delete()
        for ns in made.values():
            ns.delete()
        assert not bridges_named([f"{px}tr"])


def carrier_changes(ns: Netns, ifname: str) -> int:
    # `ip netns exec` mounts the namespace's own sysfs (fine for a one-shot read)
    r = run(["ip", "netns", "exec", ns.name, "cat", f"/sys/class/net/{ifname}/carrier_changes"])
    return int(r.stdout)


def reaches(ns: Netns, ip: str, timeout: float = 8.0) -> bool:
    """Whether `ns` gets a ping answer from `ip` within `timeout` (ARP may need retries)."""
    try:
        wait_for(lambda: ns.run(["ping", "-c1", "-W1", ip], check=False).returncode == 0, timeout,
                 interval=0, what=f"{ns.name} reaching {ip}")
        return True
    except ExpectTimeout:
        return False


def unreachable(ns: Netns, ip: str) -> bool:
    return ns.run(["ping", "-c2", "-W1", ip], check=False).returncode != 0


def test_repatch_moves_the_circuit_without_carrier_loss(setup) -> None:
    tr, ns, ports = setup
    n = ns["n"]
    n.ip("route", "add", "10.94.1.0/24", "via", "10.94.0.1")
    assert unreachable(n, "10.94.0.1")  # no circuit yet: the transport delivers nothing
    tr.patch("r:eth0", ports["n"], ports["ra"])
    assert reaches(n, "10.94.1.1") and unreachable(n, "10.94.1.2")
    before = carrier_changes(n, "eth0")
    secs = tr.repatch("r:eth0", ports["rb"])
    assert secs < 2
    n.ip("neigh", "flush", "dev", "eth0")  # rb has its own MAC in this test
    assert reaches(n, "10.94.1.2") and unreachable(n, "10.94.1.1")
    assert carrier_changes(n, "eth0") == before
    flows = {(f.match, f.actions) for f in dump_flows(tr.name)}
    assert (f"in_port={ports['n']}", f"output:{ports['rb']}") in flows
    assert not any(f"in_port={ports['ra']}" == m for m, _ in flows)
    assert tr.repatches[-1]["to"] == ports["rb"]


def test_repatch_refuses_a_busy_port(setup) -> None:
    tr, ns, ports = setup
    tr.patch("r:eth0", ports["n"], ports["ra"])
    with pytest.raises(ValueError, match="already in a circuit"):
        tr.repatch("r:eth0", ports["n"])
