"""Route flows sent over OpenFlow directly (`vroom.ofwire`) are the flows ovs-ofctl installs
from their text: a real bridge dumps the same entries (a few seconds)."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from routerlab.ovs import Bridge, ofctl, ofctl_file
from vroom.flows import Flow
from vroom.ofwire import add_flows, delete_flows

pytestmark = [pytest.mark.emulation,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (OVS)")]

GID = 0x05000001


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    br = Bridge.create(f"tow{secrets.token_hex(3)}")
    try:
        ofctl("add-group", br.name, f"group_id={GID},type=indirect,bucket=actions=drop")
        yield br
    finally:
        br.delete()


def _table1(br: Bridge) -> list[str]:
    return sorted(ln.strip() for ln in ofctl("--no-stats", "dump-flows", br.name, "table=1").splitlines()
                  if "table=1" in ln)


def test_direct_install_equals_ovs_ofctl(bridge: Bridge) -> None:
    flows = [Flow(1, 1000 + 2 * n, ("reg0=5", "ip", f"nw_dst={p}"), (f"group:{GID}",))
             for n in (8, 16, 23, 24) for p in
             [f"{20 + i}.{n}.{2 * i}.0/{n}" if n >= 23 else
              f"{20 + i}.{n}.0.0/{n}" if n == 16 else f"{20 + i}.0.0.0/{n}"
              for i in range(20)]]  # canonical, as the kernel's prefixes are
    flows += [Flow(1, 1064, ("reg0=5", "ip", "nw_dst=9.9.9.9"), (f"group:{GID}",)),
              Flow(1, 1000, ("reg0=5", "ip"), (f"group:{GID}",))]
    other = Flow(1, 1, ("reg0=5",), ("goto_table:2",))
    n, left = add_flows(bridge.name, [*flows, other], chunk=30, connections=3)  # 3 x 3 bundles
    assert (n, left) == (len(flows), [other])
    direct = _table1(bridge)
    assert len(direct) == len(flows)
    ofctl("del-flows", bridge.name, "table=1")
    ofctl_file("add-flows", bridge.name, [f.text() for f in flows], bundle=True)
    assert direct == _table1(bridge)
    ofctl("add-flow", bridge.name, "table=1,priority=1,reg0=5,actions=goto_table:2")
    # the /32 (no mask) and the default route (no destination) are delete shapes of their own
    n, left = delete_flows(bridge.name, [*flows[:50], *flows[-2:], other], chunk=20, pause_max_s=0.01)
    assert (n, left) == (52, [other])
    after = _table1(bridge)
    assert len(after) == len(flows) - 52 + 1 and all(
        f"nw_dst={flows[0].match[2][7:]} " not in ln and "nw_dst=9.9.9.9 " not in ln
        and "priority=1000," not in ln for ln in after)
