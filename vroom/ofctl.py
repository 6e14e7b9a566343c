"""Sending bundles of flow and group changes to a bridge, and reading its tables back.

`routerlab.ovs.Bridge` installs flows in bulk; the hypervisor also needs groups in the same
atomic transaction, which ``ovs-ofctl bundle`` (flows and groups, one commit) provides.
"""
from __future__ import annotations

import logging
from typing import Iterable

from routerlab.ovs import ofctl, ofctl_file

from .flows import flows_from_dump

log = logging.getLogger(__name__)


def send_bundle(bridge: str, lines: Iterable[str], timeout: float = 600, *,
                command: str = "bundle") -> tuple[int, float]:
    """Apply ``ovs-ofctl bundle`` lines atomically; returns (line count, seconds).

    `command` "add-flows" / "add-groups" sends plain flow or group lines with
    ``--bundle add-flows`` / ``--bundle add-groups`` instead: for a bulk install that is
    faster (250,000 LPM flows: 1.7-2.5 s against 2.6-2.8 s with ``bundle``, measured here)."""
    # ``bundle`` is atomic by itself; the other commands need --bundle to be
    return ofctl_file(command, bridge, lines, bundle=command != "bundle", timeout=timeout,
                      skip_empty=True)


def apply_changes(bridge: str, lines: list[str], timeout: float = 600) -> tuple[int, float]:
    """Send ``ovs-ofctl bundle`` lines; when they only add (a repopulation, a table that
    grows) they go as ``--bundle add-groups`` then ``--bundle add-flows``, which is faster
    for bulk; anything with a deletion or modification goes as one atomic ``bundle``."""
    if not lines:
        return 0, 0.0
    if all(ln.startswith(("flow add ", "group add ")) for ln in lines):
        groups = [ln[6:] for ln in lines if ln.startswith("group add ")]
        flows = [ln[5:] for ln in lines if ln.startswith("flow add ")]
        ng, sg = send_bundle(bridge, groups, timeout, command="add-groups")
        nf, sf = send_bundle(bridge, flows, timeout, command="add-flows")
        return ng + nf, sg + sf
    return send_bundle(bridge, lines, timeout)


def dump_flows(bridge: str) -> list[tuple[int, int, str, str]]:
    """(table, priority, match, actions) of every flow of the bridge."""
    return flows_from_dump(ofctl("dump-flows", "--no-stats", bridge, timeout=300).splitlines())


def dump_group_ids(bridge: str) -> list[int]:
    out = []
    for ln in ofctl("dump-groups", bridge).splitlines():
        ln = ln.strip()
        if ln.startswith("group_id="):
            out.append(int(ln.split(",", 1)[0].split("=", 1)[1]))
    return out


def flows_of_vr(bridge: str, vr_id: int, ports: Iterable[int] = ()) -> list[tuple]:
    """The flows on `bridge` that belong to VR `vr_id` (its registers or its ports)."""
    ports = {int(p) for p in ports}
    mine = []
    for f in dump_flows(bridge):
        terms = f[2].split(",")
        if f"reg0={hex(vr_id)}" in terms or f"reg0={vr_id}" in terms:
            mine.append(f)
        elif any(t.startswith("in_port=") and int(t[8:]) in ports for t in terms
                 if t[8:].isdigit()):
            mine.append(f)
        elif f"load:{hex(vr_id)}->NXM_NX_REG0[]" in f[3]:
            mine.append(f)
    return mine
