"""Importing topohub networks (Internet Topology Zoo, SNDlib) as OSPF topologies."""
from __future__ import annotations

import difflib
import itertools
import logging
import re
import unicodedata
from typing import Any

from routerlab.topology.model import MAX_NODE_NAME, Topology, TopologyError
from routerlab.topology.validate import _Builder

log = logging.getLogger(__name__)

TOPOHUB_PREFIXES = {"zoo": "topozoo", "sndlib": "sndlib"}


def list_topohub(group: str = "topozoo") -> list[str]:
    """Network names topohub ships in ``group`` (topozoo or sndlib)."""
    import importlib.resources

    import topohub

    folder = importlib.resources.files(topohub) / "data" / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _short_name(name: str, taken: set[str], maxlen: int = 8) -> str:
    """A node name from a city name: ASCII letters/digits, at most ``maxlen``, unique."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9]", "", ascii_)
    if not base or not base[0].isalpha():
        base = "n" + base
    base = base[:maxlen]
    cand = base
    for k in itertools.count(2):
        if cand.lower() not in taken:
            break
        suffix = str(k)
        cand = base[: maxlen - len(suffix)] + suffix
    taken.add(cand.lower())
    return cand


def import_topohub(key: str, *, daemon: str = "frr", bw: float | None = None, hosts: bool = False) -> Topology:
    """Import a topohub network (``topozoo/Abilene``, ``sndlib/polska``) as an OSPF topology.

    Every node becomes a ``daemon`` router in area 0 (hello 1 s, dead 4 s); names are
    shortened city names (at most 8 characters, unique; the original is in
    ``node.params['name']``); link costs are distances in km (at least 1); ``bw`` (Mbit/s)
    shapes every link; ``hosts`` adds one host ``h<router>`` per router.
    """
    group, _, name = key.partition("/")
    prefix = next((p for p, g in TOPOHUB_PREFIXES.items() if g == group), group)
    source = f"{prefix}:{name}"
    try:
        available = list_topohub(group)
    except (FileNotFoundError, NotADirectoryError):
        raise TopologyError(source, None, f"topohub has no group {group!r}") from None
    match = next((n for n in available if n.lower() == name.lower()), None)
    if match is None:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else f"; {len(available)} available"
        raise TopologyError(source, None, f"unknown topohub network {name!r}{hint}")
    import topohub

    source = f"{prefix}:{match}"  # the canonical spelling, whatever case was asked for
    data = topohub.get(f"{group}/{match}")
    taken: set[str] = set()
    names: dict[str, str] = {}
    nodes: dict[str, Any] = {}
    for n in data["nodes"]:
        short = _short_name(str(n.get("name") or f"n{n['id']}"), taken)
        names[str(n["id"])] = short
        nodes[short] = {"params": {"name": n.get("name"), "topohub_id": n["id"], "pos": n.get("pos")}}
    links: list[dict[str, Any]] = []
    for e in data["edges"]:
        link: dict[str, Any] = {"a": names[str(e["source"])], "b": names[str(e["target"])]}
        if e.get("dist") is not None:
            link["cost"] = max(1, min(65535, round(e["dist"])))
        links.append(link)
    if hosts:
        for r in list(nodes):
            h = _short_name(f"h{r}", taken, maxlen=MAX_NODE_NAME)
            nodes[h] = {"role": "host"}
            links.append({"a": r, "b": h})
    topo_name = re.sub(r"[^A-Za-z0-9_.-]", "", f"{prefix}-{match}")
    raw: dict[str, Any] = {
        "name": topo_name,
        "description": f"{match} from topohub ({group}), imported as an OSPF network",
        "defaults": {"daemon": daemon, **({"bw": bw} if bw is not None else {})},
        "ospf": {"area": 0, "hello": 1, "dead": 4},
        "nodes": nodes, "links": links, "params": {"topohub": f"{group}/{match}"}}
    topo = _Builder(source).build(raw, topo_name)
    log.info("imported %s: %d routers, %d links", source, len(topo.routers()), len(topo.links))
    return topo
