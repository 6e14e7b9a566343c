"""The TE database (TED): per-site tunnel, tunnel-group and flow-group entries, and their diff.

B4's TE server keeps, for every site, the TE entries that site's switches should hold: a
*tunnel* entry at every site on a tunnel's path (encap at the head, transit in the middle,
decap at the tail), a *tunnel group* entry at the encap site (the tunnel's weighted split),
and a *flow group* entry at the encap site (the ACL match that points at its tunnel group).
The desired TED, built from a TE allocation, is diffed against the installed one into one
add/modify/delete op per entry, ordered so that nothing ever points at a missing entry:

    add/modify: tunnel -> tunnel group -> flow group      (phases 0, 1, 2)
    delete:     flow group -> tunnel group -> tunnel      (phases 3, 4, 5)

Entries are plain JSON-able dicts holding only what the data plane needs (so a site
controller can rebuild them from its switches after a failover); identity is ``(kind, id)``
with ids ``T<label>``, ``G<group id>`` and ``F<flow-group id>``. Names and paths for people
live in `TedMeta`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

TUNNEL, TUNNEL_GROUP, FLOW_GROUP = "tunnel", "tunnel_group", "flow_group"
KINDS = (TUNNEL, TUNNEL_GROUP, FLOW_GROUP)
ADD, MODIFY, DELETE = "add", "modify", "delete"
ACTIONS = (ADD, MODIFY, DELETE)
ROLES = ("encap", "transit", "decap")

#: Phase of an (action, kind): every op of phase p is acked before any op of phase p+1 is sent.
PHASES: dict[tuple[str, str], int] = {
    (ADD, TUNNEL): 0, (MODIFY, TUNNEL): 0,
    (ADD, TUNNEL_GROUP): 1, (MODIFY, TUNNEL_GROUP): 1,
    (ADD, FLOW_GROUP): 2, (MODIFY, FLOW_GROUP): 2,
    (DELETE, FLOW_GROUP): 3, (DELETE, TUNNEL_GROUP): 4, (DELETE, TUNNEL): 5,
}
NUM_PHASES = 6

#: OpenFlow MPLS labels are 20 bits; 0-15 are reserved.
MIN_LABEL, MAX_LABEL = 16, (1 << 20) - 1
#: Tunnel-group ids (the site controller maps them into its own OpenFlow group-id range).
MAX_GROUP_ID = 0xFFFF

Key = tuple[str, str]  # (kind, id)
Ted = dict[Key, dict[str, Any]]  # one site's entries


class TedError(ValueError):
    """A malformed TE entry (the message names it)."""


def tunnel_id(label: int) -> str:
    return f"T{label}"


def group_id_str(gid: int) -> str:
    return f"G{gid}"


def fg_id_str(fid: int) -> str:
    return f"F{fid}"


def tunnel_entry(label: int, role: str, next_hop: str | None) -> dict[str, Any]:
    """A tunnel at one site: its label, the site's role on it, and the next site (None at decap)."""
    return {"label": int(label), "role": role, "next_hop": next_hop}


def tunnel_group_entry(gid: int, buckets: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """A tunnel group: OpenFlow group id and ``(label, weight)`` buckets (weights in quanta)."""
    return {"group_id": int(gid),
            "buckets": [{"tunnel": tunnel_id(lbl), "weight": int(w)} for lbl, w in sorted(buckets)]}


def flow_group_entry(fid: int, src: str, dst: str, tg: int, dscp: int | None = None) -> dict[str, Any]:
    """A flow group's ACL entry: source and destination site prefixes, optional DSCP."""
    return {"fg_id": int(fid), "src": str(src), "dst": str(dst), "dscp": dscp, "tunnel_group": group_id_str(tg)}


def check_entry(kind: str, eid: str, entry: Any) -> None:
    """Raise TedError unless ``entry`` is a well-formed entry of ``kind`` called ``eid``."""
    where = f"{kind} {eid}"
    if kind not in KINDS:
        raise TedError(f"unknown entry kind {kind!r}")
    if not isinstance(entry, Mapping):
        raise TedError(f"{where}: entry must be an object")

    def need_int(name: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
        v = entry.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise TedError(f"{where}: {name} must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    if kind == TUNNEL:
        label = need_int("label", MIN_LABEL, MAX_LABEL)
        if eid != tunnel_id(label):
            raise TedError(f"{where}: id does not match label {label}")
        if entry.get("role") not in ROLES:
            raise TedError(f"{where}: role must be one of {', '.join(ROLES)}")
        nh = entry.get("next_hop")
        if (entry["role"] == "decap") != (nh is None) or (nh is not None and not isinstance(nh, str)):
            raise TedError(f"{where}: next_hop must be a site name except at decap")
    elif kind == TUNNEL_GROUP:
        gid = need_int("group_id", 1, MAX_GROUP_ID)
        if eid != group_id_str(gid):
            raise TedError(f"{where}: id does not match group_id {gid}")
        buckets = entry.get("buckets")
        if not isinstance(buckets, list) or not buckets:
            raise TedError(f"{where}: buckets must be a non-empty list")
        for b in buckets:
            if not isinstance(b, Mapping) or not isinstance(b.get("tunnel"), str):
                raise TedError(f"{where}: bad bucket {b!r}")
            w = b.get("weight")
            if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 0xFFFF:
                raise TedError(f"{where}: bucket weight must be 1..65535, got {w!r}")
    else:
        fid = need_int("fg_id", 1, 2**24 - 1)
        if eid != fg_id_str(fid):
            raise TedError(f"{where}: id does not match fg_id {fid}")
        from ipaddress import IPv4Network

        for f in ("src", "dst"):
            try:
                IPv4Network(entry.get(f))
            except (ValueError, TypeError):
                raise TedError(f"{where}: {f} must be an IPv4 prefix, got {entry.get(f)!r}") from None
        d = entry.get("dscp")
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 63):
            raise TedError(f"{where}: dscp must be 0..63 or null")
        if not isinstance(entry.get("tunnel_group"), str):
            raise TedError(f"{where}: tunnel_group must be a group id")


@dataclass(frozen=True)
class OpTemplate:
    """What a diff says must happen to one entry at one site (no sequence id yet)."""

    site: str
    action: str
    kind: str
    id: str
    entry: dict[str, Any] | None  # None on delete

    @property
    def key(self) -> Key:
        return (self.kind, self.id)

    @property
    def phase(self) -> int:
        return PHASES[(self.action, self.kind)]


def _kind_rank(kind: str) -> int:
    return KINDS.index(kind)


def diff_site(site: str, installed: Mapping[Key, Mapping[str, Any]],
              desired: Mapping[Key, Mapping[str, Any]]) -> list[OpTemplate]:
    """The ops that turn ``installed`` into ``desired`` at one site, in install order."""
    ops = []
    for key, entry in desired.items():
        have = installed.get(key)
        if have is None:
            ops.append(OpTemplate(site, ADD, key[0], key[1], dict(entry)))
        elif dict(have) != dict(entry):
            ops.append(OpTemplate(site, MODIFY, key[0], key[1], dict(entry)))
    for key in installed:
        if key not in desired:
            ops.append(OpTemplate(site, DELETE, key[0], key[1], None))
    return order_ops(ops)


def diff(installed: Mapping[str, Mapping[Key, Any]], desired: Mapping[str, Mapping[Key, Any]]) -> list[OpTemplate]:
    """Ops for every site, ordered by phase (then site, kind, id)."""
    sites = sorted(set(installed) | set(desired))
    ops: list[OpTemplate] = []
    for s in sites:
        ops.extend(diff_site(s, installed.get(s, {}), desired.get(s, {})))
    return order_ops(ops)


def order_ops(ops: Iterable[OpTemplate]) -> list[OpTemplate]:
    """Tunnel -> tunnel group -> flow group on add/modify, the reverse on delete."""
    return sorted(ops, key=lambda o: (o.phase, o.site, _kind_rank(o.kind), o.id))


# --------------------------------------------------------------------------- building

@dataclass
class TedMeta:
    """Stable id assignment (persisted by the TE server so ids survive restarts and failovers)
    and the human names behind them."""

    labels: dict[str, int] = field(default_factory=dict)        # "A-C-B" -> MPLS label
    group_ids: dict[str, int] = field(default_factory=dict)     # flow group name -> TG group id
    fg_ids: dict[str, int] = field(default_factory=dict)        # flow group name -> numeric id
    first_label: int = 1000
    first_group: int = 1

    def label(self, path: Iterable[str]) -> int:
        p = "-".join(path)
        if p not in self.labels:
            self.labels[p] = max(self.labels.values(), default=self.first_label - 1) + 1
            if self.labels[p] > MAX_LABEL:
                raise TedError("out of MPLS labels")
        return self.labels[p]

    def group_id(self, fg: str) -> int:
        if fg not in self.group_ids:
            self.group_ids[fg] = max(self.group_ids.values(), default=self.first_group - 1) + 1
            if self.group_ids[fg] > MAX_GROUP_ID:
                raise TedError("out of tunnel-group ids")
        return self.group_ids[fg]

    def fg_id(self, fg: str) -> int:
        if fg not in self.fg_ids:
            self.fg_ids[fg] = max(self.fg_ids.values(), default=0) + 1
        return self.fg_ids[fg]

    def path_of(self, label: int) -> str | None:
        for p, lbl in self.labels.items():
            if lbl == label:
                return p
        return None

    def fg_name(self, fid: int) -> str | None:
        for n, i in self.fg_ids.items():
            if i == fid:
                return n
        return None

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "group_ids": self.group_ids, "fg_ids": self.fg_ids}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TedMeta":
        return cls(labels={k: int(v) for k, v in d.get("labels", {}).items()},
                   group_ids={k: int(v) for k, v in d.get("group_ids", {}).items()},
                   fg_ids={k: int(v) for k, v in d.get("fg_ids", {}).items()})


@dataclass(frozen=True)
class FlowGroupSpec:
    """What the TED needs to know about a flow group besides its tunnel group."""

    name: str
    src: str
    dst: str
    src_prefix: str
    dst_prefix: str
    dscp: int | None = None


def weights_in_quanta(weights: Iterable[float], quantum: float) -> list[int]:
    """Split ratios as integer bucket weights: multiples of the quantum, or per-mille when
    unquantized (0); a tunnel group whose every weight rounds to 0 keeps its largest."""
    ws = list(weights)
    scale = (1.0 / quantum) if quantum > 0 else 1000.0
    out = [int(round(w * scale)) for w in ws]
    if ws and not any(out):
        out[max(range(len(ws)), key=lambda i: ws[i])] = 1
    return out


def build_desired(tunnel_groups: Mapping[str, list[tuple[tuple[str, ...], float]]],
                  flow_groups: Mapping[str, FlowGroupSpec], quantum: float,
                  meta: TedMeta) -> dict[str, Ted]:
    """Per-site desired TEDs from tunnel groups ``{fg name: [(site path, split), ...]}``.

    Only tunnels with a positive quantized weight are installed (a zero-weight tunnel carries
    nothing, so its transit and decap entries would be dead state)."""
    out: dict[str, Ted] = {}
    for name in sorted(tunnel_groups):
        fg = flow_groups[name]
        tg = tunnel_groups[name]
        weights = weights_in_quanta([w for _, w in tg], quantum)
        buckets = []
        for (path, _), w in zip(tg, weights):
            if w <= 0:
                continue
            if len(path) < 2 or path[0] != fg.src or path[-1] != fg.dst:
                raise TedError(f"flow group {name}: tunnel {'-'.join(path)} does not join {fg.src} to {fg.dst}")
            label = meta.label(path)
            buckets.append((label, w))
            for i, site in enumerate(path):
                role = "encap" if i == 0 else ("decap" if i == len(path) - 1 else "transit")
                nh = path[i + 1] if i + 1 < len(path) else None
                out.setdefault(site, {})[(TUNNEL, tunnel_id(label))] = tunnel_entry(label, role, nh)
        gid = meta.group_id(name)
        fid = meta.fg_id(name)
        site = out.setdefault(fg.src, {})
        site[(TUNNEL_GROUP, group_id_str(gid))] = tunnel_group_entry(gid, buckets)
        site[(FLOW_GROUP, fg_id_str(fid))] = flow_group_entry(fid, fg.src_prefix, fg.dst_prefix, gid, fg.dscp)
    return out


# --------------------------------------------------------------------------- JSON

def ted_to_json(ted: Mapping[Key, Any]) -> dict[str, dict[str, Any]]:
    """``{kind: {id: entry}}`` (JSON objects cannot have tuple keys)."""
    out: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    for (kind, eid), entry in sorted(ted.items()):
        out[kind][eid] = entry
    return out


def ted_from_json(d: Mapping[str, Mapping[str, Any]]) -> Ted:
    ted: Ted = {}
    for kind, entries in d.items():
        if kind not in KINDS:
            raise TedError(f"unknown entry kind {kind!r}")
        for eid, entry in entries.items():
            check_entry(kind, eid, entry)
            ted[(kind, eid)] = dict(entry)
    return ted


def references(ted: Mapping[Key, Mapping[str, Any]]) -> dict[Key, set[Key]]:
    """Which entries each entry is referenced by (tunnel <- group, group <- flow group)."""
    refs: dict[Key, set[Key]] = {}
    for key, e in ted.items():
        if key[0] == TUNNEL_GROUP:
            for b in e["buckets"]:
                refs.setdefault((TUNNEL, b["tunnel"]), set()).add(key)
        elif key[0] == FLOW_GROUP:
            refs.setdefault((TUNNEL_GROUP, e["tunnel_group"]), set()).add(key)
    return refs
