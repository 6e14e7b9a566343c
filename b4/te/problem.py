"""TE problems: sites, directed edges and flow groups, read from JSON or YAML and validated.

File format::

    {"sites": ["A", "B", ...],
     "edges": [{"src": "A", "dst": "B", "capacity": 10, "cost": 1}, ...],
     "flow_groups": [{"name": "FG1", "src": "A", "dst": "B",
                      "apps": [{"name": "App1", "weight": 10, "demand": 15}, ...]}, ...],
     "max_tunnels": 4, "quantum": 0.25}

``cost`` defaults to 1, ``max_tunnels`` to 4 and ``quantum`` to 1/4 (0 means unquantized);
``name`` and ``description`` are free text. Every problem is checked when it is built, and
anything wrong raises :class:`ProblemError` with one line naming the file and the problem.
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from routerlab.errors import UserError

from b4.te.flow_group import Application, FlowGroup

DEFAULT_MAX_TUNNELS = 4
DEFAULT_QUANTUM = 0.25


class ProblemError(UserError, ValueError):
    """A TE problem that cannot be solved as given (the message is one line): bad input the
    user can fix, so the ``routerlab`` CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class Edge:
    """A directed site-to-site edge (B4 aggregates a site pair's trunks into one edge)."""

    src: str
    dst: str
    capacity: float
    cost: float = 1.0


def check_quantum(quantum: float, where: str = "quantum") -> float:
    """Return ``quantum`` if it is 0 (unquantized) or 1/n for a whole n, else raise ProblemError."""
    if isinstance(quantum, bool) or not isinstance(quantum, (int, float)) or not math.isfinite(quantum):
        raise ProblemError(f"{where} must be a number, got {quantum!r}")
    if quantum == 0:
        return 0.0
    if not 0 < quantum <= 1:
        raise ProblemError(f"{where} must be 0 or in (0, 1], got {quantum}")
    n = round(1 / quantum)
    # Split weights are whole multiples of the quantum that sum to 1, so 1/quantum must be whole.
    if abs(n * quantum - 1) > 1e-9:
        raise ProblemError(f"{where} must be 1/n for a whole n (e.g. 0.25), got {quantum}")
    return float(quantum)


def check_max_tunnels(k: Any, where: str = "max_tunnels") -> int:
    """Return ``k`` if it is a whole number >= 1, else raise ProblemError."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ProblemError(f"{where} must be a whole number >= 1, got {k!r}")
    return k


@dataclass(frozen=True)
class Problem:
    """A validated TE problem: sites, directed edges and flow groups."""

    sites: tuple[str, ...]
    edges: tuple[Edge, ...]
    flow_groups: tuple[FlowGroup, ...]
    max_tunnels: int = DEFAULT_MAX_TUNNELS
    quantum: float = DEFAULT_QUANTUM
    name: str = ""
    description: str = ""
    source: str = field(default="<problem>", compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<problem>") -> Problem:
        """Build and validate a problem from the parsed file format; errors name ``source``."""
        try:
            return _from_dict(data, source)
        except ProblemError as e:
            msg = str(e)
            raise ProblemError(msg if msg.startswith(f"{source}: ") else f"{source}: {msg}") from None

    def to_dict(self) -> dict[str, Any]:
        """The problem in the file format (round-trips through :meth:`from_dict`)."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        out["sites"] = list(self.sites)
        out["edges"] = [{"src": e.src, "dst": e.dst, "capacity": _num(e.capacity), "cost": _num(e.cost)}
                        for e in self.edges]
        out["flow_groups"] = [
            {"name": g.name, "src": g.src, "dst": g.dst,
             "apps": [{"name": a.name, "weight": _num(a.weight), "demand": _num(a.demand)} for a in g.apps]}
            for g in self.flow_groups]
        out["max_tunnels"] = self.max_tunnels
        out["quantum"] = self.quantum
        return out

    # -- lookups --------------------------------------------------------------------------
    @property
    def total_demand(self) -> float:
        """Sum of every flow group's demand."""
        return math.fsum(g.demand for g in self.flow_groups)

    def edge_index(self) -> dict[tuple[str, str], int]:
        """Map ``(src, dst)`` to the edge's position in :attr:`edges`."""
        return {(e.src, e.dst): i for i, e in enumerate(self.edges)}


def _num(x: float) -> float | int:
    """Write whole numbers as integers so files stay as people wrote them."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def load_problem(path: str | Path) -> Problem:
    """Read a problem from a JSON or YAML file; any problem raises ProblemError naming the file."""
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ProblemError(f"{src}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProblemError(f"{src}: cannot read: {_one_line(e)}") from None
    data = parse_problem_text(text, src)
    return Problem.from_dict(data, src)


def parse_problem_text(text: str, source: str) -> Any:
    """Parse JSON (or YAML, by suffix or when the text is not JSON) into plain data."""
    is_yaml = source.endswith((".yaml", ".yml"))
    if not is_yaml:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            if source.endswith(".json") or text.lstrip().startswith(("{", "[")):
                raise ProblemError(f"{source}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or _one_line(e)
        raise ProblemError(f"{source}: malformed YAML: {problem}{where}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


_TOP_KEYS = {"sites", "edges", "flow_groups", "max_tunnels", "quantum", "name", "description"}
_EDGE_KEYS = {"src", "dst", "capacity", "cost"}
_FG_KEYS = {"name", "src", "dst", "apps"}
_APP_KEYS = {"name", "weight", "demand"}


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ProblemError(f"{where} must be a finite number, got {v!r}")
    return float(v)


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ProblemError(f"{where} must be a non-empty string, got {v!r}")
    return v


def _mapping(v: Any, where: str, allowed: set[str], required: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ProblemError(f"{where} must be an object, got {type(v).__name__}")
    unknown = sorted(set(map(str, v)) - allowed)
    if unknown:
        raise ProblemError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    for k in required:
        if k not in v:
            raise ProblemError(f"{where}: missing {k!r}")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise ProblemError(f"{where} must be a list, got {type(v).__name__}")
    return v


def _from_dict(data: Any, source: str) -> Problem:
    if data is None:
        raise ProblemError("empty file")
    top = _mapping(data, "problem", _TOP_KEYS, ("sites", "edges", "flow_groups"))
    sites = tuple(_name(s, f"sites[{i}]") for i, s in enumerate(_list(top["sites"], "sites")))
    edges = []
    for i, e in enumerate(_list(top["edges"], "edges")):
        where = f"edges[{i}]"
        e = _mapping(e, where, _EDGE_KEYS, ("src", "dst", "capacity"))
        src, dst = _name(e["src"], f"{where}.src"), _name(e["dst"], f"{where}.dst")
        where = f"edge {src}->{dst}"
        edges.append(Edge(src, dst, _number(e["capacity"], f"{where}: capacity"),
                          _number(e.get("cost", 1), f"{where}: cost")))
    fgs = []
    for i, g in enumerate(_list(top["flow_groups"], "flow_groups")):
        where = f"flow_groups[{i}]"
        g = _mapping(g, where, _FG_KEYS, ("name", "src", "dst", "apps"))
        name = _name(g["name"], f"{where}.name")
        where = f"flow group {name}"
        apps = []
        for j, a in enumerate(_list(g["apps"], f"{where}: apps")):
            aw = f"{where}: apps[{j}]"
            a = _mapping(a, aw, _APP_KEYS, ("name", "weight", "demand"))
            aname = _name(a["name"], f"{aw}.name")
            aw = f"{where}: app {aname}"
            apps.append(Application(aname, _number(a["weight"], f"{aw}: weight"),
                                    _number(a["demand"], f"{aw}: demand")))
        fgs.append(FlowGroup(name, _name(g["src"], f"{where}.src"), _name(g["dst"], f"{where}.dst"), tuple(apps)))
    max_tunnels = check_max_tunnels(top.get("max_tunnels", DEFAULT_MAX_TUNNELS))
    quantum = check_quantum(top.get("quantum", DEFAULT_QUANTUM))
    name = top.get("name", "")
    desc = top.get("description", "")
    if not isinstance(name, str) or not isinstance(desc, str):
        raise ProblemError("name and description must be strings")
    return Problem(sites, tuple(edges), tuple(fgs), max_tunnels, quantum, name, desc, source)


def _validate(p: Problem) -> None:
    """Check names, numbers and reachability; raise ProblemError naming the first problem."""
    pre = f"{p.source}: "
    seen: set[str] = set()
    for s in p.sites:
        if s in seen:
            raise ProblemError(f"{pre}duplicate site {s!r}")
        seen.add(s)
    if not p.sites:
        raise ProblemError(f"{pre}no sites")
    adj: dict[str, list[str]] = {s: [] for s in p.sites}
    edge_seen: set[tuple[str, str]] = set()
    for e in p.edges:
        where = f"{pre}edge {e.src}->{e.dst}"
        for end in (e.src, e.dst):
            if end not in adj:
                raise ProblemError(f"{where}: unknown site {end!r}")
        if e.src == e.dst:
            raise ProblemError(f"{where}: an edge must join two different sites")
        if (e.src, e.dst) in edge_seen:
            raise ProblemError(f"{where}: duplicate edge (merge parallel trunks into one edge)")
        edge_seen.add((e.src, e.dst))
        if not math.isfinite(e.capacity) or e.capacity < 0:
            raise ProblemError(f"{where}: negative capacity {e.capacity:g}" if e.capacity < 0
                               else f"{where}: capacity must be finite")
        if not math.isfinite(e.cost) or e.cost < 0:
            raise ProblemError(f"{where}: negative cost {e.cost:g}" if e.cost < 0 else f"{where}: cost must be finite")
        adj[e.src].append(e.dst)
    fg_seen: set[str] = set()
    reach: dict[str, set[str]] = {}
    for g in p.flow_groups:
        where = f"{pre}flow group {g.name}"
        if g.name in fg_seen:
            raise ProblemError(f"{pre}duplicate flow group {g.name!r}")
        fg_seen.add(g.name)
        for end in (g.src, g.dst):
            if end not in adj:
                raise ProblemError(f"{where}: unknown site {end!r}")
        if g.src == g.dst:
            raise ProblemError(f"{where}: source and destination are the same site {g.src!r}")
        if not g.apps:
            raise ProblemError(f"{where}: no applications")
        app_seen: set[str] = set()
        for a in g.apps:
            if a.name in app_seen:
                raise ProblemError(f"{where}: duplicate application {a.name!r}")
            app_seen.add(a.name)
            if not a.weight > 0 or not math.isfinite(a.weight):
                raise ProblemError(f"{where}: application {a.name}: weight must be > 0, got {a.weight:g}")
            if not a.demand >= 0 or not math.isfinite(a.demand):
                raise ProblemError(f"{where}: application {a.name}: negative demand {a.demand:g}")
        if g.src not in reach:
            reach[g.src] = _reachable(adj, g.src)
        if g.dst not in reach[g.src]:
            raise ProblemError(f"{where}: no path from {g.src} to {g.dst}")


def _reachable(adj: Mapping[str, list[str]], src: str) -> set[str]:
    seen = {src}
    todo = deque([src])
    while todo:
        u = todo.popleft()
        for v in adj[u]:
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return seen
