"""Interface counters of nodes living in routerlab namespaces."""
from __future__ import annotations

import json
from typing import Any

def tx_packets(node: Any, intf: str) -> int:
    """Packets sent so far by interface `intf` of a node living in a routerlab namespace
    (``node.netns``). /sys/class/net shows the root namespace's devices: ask the
    namespace's own netlink."""
    out = node.netns.run(["ip", "-j", "-s", "link", "show", "dev", intf]).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])
