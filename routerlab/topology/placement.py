"""Placement of nodes on servers (Mininet Cluster Edition): a `server:` per node, or a placer
named in the topology's `params` (``params: {placer: bin, servers: [localhost, 10.0.0.2]}``).

Pure logic, checked by the validator like every other field. `localhost` is the machine that
runs routerlab; any other server is reached by root ssh. A placer places only the nodes that
name no server themselves. Placers (the words of Mininet's cluster.py):

- ``bin``: routers, externals and switches in even, contiguous bins in breadth-first order
  from the first node (so neighbours share a server and few links cross servers); each host
  goes with the node it is linked to (Mininet's SwitchBinPlacer).
- ``round-robin``: every node on the next server in turn (most links cross servers: a stress
  test of the tunnels, Mininet's RoundRobinPlacer).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

LOCALHOST = "localhost"
PLACERS = ("bin", "round-robin")

# a hostname (RFC 1123 labels) or a dotted quad; what ssh and `getent ahostsv4` accept
_SERVER_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")


def server_problem(v: Any) -> str | None:
    """Why `v` is not a server name (None: it is one)."""
    if not isinstance(v, str) or not _SERVER_RE.match(v):
        return f"server must be a host name or IPv4 address such as 10.0.0.2 or localhost, got {v!r}"
    return None


def placer_problem(params: dict[str, Any]) -> tuple[str, str] | None:
    """(key, why) when the topology's `params` name a placer wrongly (None: fine or none)."""
    if "placer" not in params and "servers" not in params:
        return None
    placer, servers = params.get("placer"), params.get("servers")
    if placer not in PLACERS:
        return "placer", f"params: placer must be one of {', '.join(PLACERS)}, got {placer!r}"
    if not isinstance(servers, list) or not servers:
        return "servers", "params: a placer needs servers, a list of host names (localhost first)"
    for s in servers:
        why = server_problem(s)
        if why:
            return "servers", f"params: servers: {why}"
    if len(set(servers)) != len(servers):
        return "servers", "params: servers lists a server twice"
    return None


def _bfs(nodes: list[str], neighbors: Callable[[str], Iterable[str]]) -> list[str]:
    seen: list[str] = []
    for start in nodes:
        if start in seen:
            continue
        queue = [start]
        seen.append(start)
        while queue:
            n = queue.pop(0)
            for m in neighbors(n):
                if m not in seen and m in nodes:
                    seen.append(m)
                    queue.append(m)
    return seen


def place(nodes: dict[str, str], links: list[tuple[str, str]], fixed: dict[str, str],
          placer: str | None, servers: list[str]) -> dict[str, str]:
    """{node: server} for every node: `fixed` (a node's own `server:`) first, then `placer`
    over `servers` for the rest, else localhost. `nodes` maps name to role."""
    out = dict(fixed)
    rest = [n for n in nodes if n not in fixed]
    if placer is None or not rest:
        return {n: out.get(n, LOCALHOST) for n in nodes}
    adj: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in links:
        adj[a].append(b)
        adj[b].append(a)
    if placer == "round-robin":
        for i, n in enumerate(rest):
            out[n] = servers[i % len(servers)]
    else:  # bin
        core = _bfs([n for n in rest if nodes[n] != "host"], lambda n: adj[n])
        q, r = divmod(len(core), len(servers))
        tickets = [s for i, s in enumerate(servers) for _ in range(q + (1 if i < r else 0))]
        out.update(zip(core, tickets, strict=True))
        for n in rest:
            if nodes[n] == "host":
                attached = [m for m in adj[n] if m in out]
                out[n] = out[attached[0]] if attached else servers[0]
    return {n: out.get(n, LOCALHOST) for n in nodes}
