"""Measurements on a running B4 deployment: per-flow-group throughput, per-tunnel bytes
(the encap switch's select-group bucket counters), link utilization, which tunnel a probe
takes, and probe loss across events."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from b4 import flows as of
from b4.deploy import B4Deployment
from b4.model import FlowGroupConfig, Wan
from b4.traffic import FlowGroupTraffic, FlowSpec
from routerlab.traffic import Probe

log = logging.getLogger(__name__)

TRAFFIC_PORT = 5001


def fg_hosts(wan: Wan, fg: FlowGroupConfig) -> tuple[Any, Any]:
    """The source and sink host of a flow group (its sites' first hosts)."""
    return wan.hosts_of(fg.fg.src)[0], wan.hosts_of(fg.fg.dst)[0]


def app_flows(wan: Wan, rates: dict[tuple[str, str], float] | None = None, *, size: int = 1400,
              sources: int = 2048) -> list[FlowSpec]:
    """One flow per application; ``rates[(fg, app)]`` in Mbit/s (default: the demand)."""
    out = []
    n = 0
    for f in wan.flow_groups:
        src, dst = fg_hosts(wan, f)
        for a in f.fg.apps:
            rate = a.demand if rates is None else rates.get((f.name, a.name), 0.0)
            if rate <= 0:
                continue
            n += 1
            out.append(FlowSpec(n, f"{f.name}/{a.name}", src.host, dst.host, dst.ip, rate, TRAFFIC_PORT, size=size,
                                src_prefix=f.src_prefix, sources=sources, src_ip=src.ip, dscp=f.dscp))
    return out


def allocated_app_rates(wan: Wan, alloc: Any) -> dict[tuple[str, str], float]:
    """Each application's share of its flow group's allocation (its bandwidth function at the
    flow group's fair share): what B4's bandwidth enforcer would let it send."""
    rates = {}
    for fa in alloc:
        fg = wan.flow_group(fa.name).fg
        for app, r in fg.app_bandwidths(fa.fair_share).items():
            rates[(fa.name, app)] = r
    return rates


@dataclass
class ThroughputResult:
    seconds: float
    flow_mbps: dict[str, float]                    # "FG/App" -> Mbit/s received
    fg_mbps: dict[str, float]                      # flow group -> Mbit/s received
    fg_sent_mbps: dict[str, float]
    tunnel_bytes: dict[str, dict[str, int]]        # flow group -> tunnel path -> bytes at encap
    link_mbps: dict[str, float]                    # "A->B" -> Mbit/s on the wire
    extra: dict[str, Any] = field(default_factory=dict)
    # Per flow ("FG/App"), packets in the window: what its rate asks for (nominal), what its
    # sender offered (from the sequence numbers received) and what arrived.
    nominal_pkts: dict[str, float] = field(default_factory=dict)
    offered_pkts: dict[str, int] = field(default_factory=dict)
    received_pkts: dict[str, int] = field(default_factory=dict)

    def tunnel_share(self, fg: str) -> dict[str, float]:
        t = self.tunnel_bytes.get(fg, {})
        total = sum(t.values())
        return {p: b / total for p, b in t.items()} if total else {}

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "flow_mbps": self.flow_mbps, "fg_mbps": self.fg_mbps,
                "fg_sent_mbps": self.fg_sent_mbps, "tunnel_bytes": self.tunnel_bytes,
                "tunnel_share": {fg: self.tunnel_share(fg) for fg in self.tunnel_bytes},
                "link_mbps": self.link_mbps, "nominal_pkts": self.nominal_pkts,
                "offered_pkts": self.offered_pkts, "received_pkts": self.received_pkts, **self.extra}


@dataclass
class DeliveryCheck:
    """Whether a throughput window measured the network or the machine.

    Only for traffic every link can carry (each flow at its share of a feasible allocation):
    then a working network delivers what the senders offer, and a shortfall means packets were
    lost to the machine -- ovs-vswitchd's main thread, which serves every userspace bridge on
    the host, stalling while someone else reconfigures OVS; its shared send socket full; or
    senders starved of CPU -- not to routing. Such a window says nothing about TE vs shortest
    paths and must not be reported as if it did."""

    offered_ratio: float      # packets the senders offered / what their rates ask for
    delivered_ratio: float    # packets received / packets offered
    worst_flow: str
    worst_flow_delivered: float
    lost_pkts: int
    ok: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"offered_ratio": round(self.offered_ratio, 4), "delivered_ratio": round(self.delivered_ratio, 4),
                "worst_flow": self.worst_flow, "worst_flow_delivered": round(self.worst_flow_delivered, 4),
                "lost_pkts": self.lost_pkts, "ok": self.ok, "reason": self.reason}


MIN_DELIVERED = 0.97  # a 4 s window losing more than ~120 ms of traffic on every flow is not a measurement
MIN_OFFERED = 0.95


def check_delivery(r: ThroughputResult, min_delivered: float = MIN_DELIVERED,
                   min_offered: float = MIN_OFFERED) -> DeliveryCheck:
    """Judge a window of feasible traffic (see `DeliveryCheck`)."""
    nominal = sum(r.nominal_pkts.values())
    offered = sum(r.offered_pkts.values())
    received = sum(min(r.received_pkts.get(f, 0), n) for f, n in r.offered_pkts.items())
    off_ratio = offered / nominal if nominal else 0.0
    del_ratio = received / offered if offered else 0.0
    worst, worst_ratio = "-", 1.0
    for f, n in r.offered_pkts.items():
        ratio = min(r.received_pkts.get(f, 0), n) / n if n else 0.0
        if ratio < worst_ratio:
            worst, worst_ratio = f, ratio
    why = []
    if not offered:
        why.append("no traffic offered in the window")
    if off_ratio < min_offered:
        why.append(f"senders offered only {100 * off_ratio:.1f}% of their rates (CPU-starved)")
    if offered and del_ratio < min_delivered:
        why.append(f"the datapath lost {100 * (1 - del_ratio):.1f}% of what was offered on traffic every link "
                   f"can carry (worst flow {worst} {100 * worst_ratio:.1f}% delivered)")
    return DeliveryCheck(off_ratio, del_ratio, worst, worst_ratio, offered - received, not why,
                         "; ".join(why) or "ok")


def tg_bucket_paths(dep: B4Deployment, show: dict[str, Any] | None = None) -> dict[str, tuple[Any, int, list[str]]]:
    """Per flow group: (its encap switches, OpenFlow group id, tunnel path of each bucket in
    order), from what the TE server has installed."""
    show = show or dep.show()
    paths_by_label = {lbl: p for p, lbl in show["labels"].items()}
    out = {}
    for f in dep.wan.flow_groups:
        gid = show["group_ids"].get(f.name)
        if gid is None:
            continue
        entry = show["installed"].get(f.fg.src, {}).get("tunnel_group", {}).get(f"G{gid}")
        if entry is None:
            continue
        sws = dep.wan.config.sites[f.fg.src].switches
        out[f.name] = (sws, of.tg_gid(gid), [paths_by_label.get(int(b["tunnel"][1:]), b["tunnel"]) for b in entry["buckets"]])
    return out


def _bucket_bytes(dep: B4Deployment, buckets: dict[str, tuple[Any, int, list[str]]]) -> dict[str, dict[str, int]]:
    """Bytes per tunnel of each flow group, summed over its site's encap switches."""
    stats: dict[str, dict[int, list[tuple[int, int]]]] = {}
    out: dict[str, dict[str, int]] = {}
    for fg, (sws, gid, paths) in buckets.items():
        total = {p: 0 for p in paths}
        for sw in sws:
            if sw not in stats:
                stats[sw] = dep.net.group_stats(sw)
            counts = stats[sw].get(gid, [])
            for i, p in enumerate(paths):
                total[p] += counts[i][1] if i < len(counts) else 0
        out[fg] = total
    return out


def measure_throughput(dep: B4Deployment, flows: list[FlowSpec], *, warmup: float = 2.0, seconds: float = 8.0,
                       during: Callable[[], None] | None = None) -> ThroughputResult:
    """Run the flows, measure a window after ``warmup``: received rates, tunnel bytes, links."""
    show = dep.show()
    buckets = tg_bucket_paths(dep, show)
    with FlowGroupTraffic(dep.net, flows) as tr:
        time.sleep(warmup)  # the measurement window starts when queues have settled
        a = tr.snapshot()
        b0 = _bucket_bytes(dep, buckets)
        l0 = dep.net.link_tx_bytes()
        if during is not None:
            during()
        time.sleep(max(0.0, seconds - (time.time() - a["time"])))
        b = tr.snapshot()
        b1 = _bucket_bytes(dep, buckets)
        l1 = dep.net.link_tx_bytes()
        w = tr.window(a, b)
        sent = tr.stop()
    dt = w.seconds
    names = {f.id: f.name for f in flows}
    flow_mbps = {names[i]: w.mbps.get(i, 0.0) for i in names}
    fg_mbps: dict[str, float] = {}
    fg_sent: dict[str, float] = {}
    for f in flows:
        fg = f.name.split("/")[0]
        fg_mbps[fg] = fg_mbps.get(fg, 0.0) + w.mbps.get(f.id, 0.0)
        fg_sent[fg] = fg_sent.get(fg, 0.0) + f.rate_mbps
    tunnel_bytes = {fg: {p: b1[fg][p] - b0[fg].get(p, 0) for p in b1[fg]} for fg in b1}
    link_mbps = {f"{x}->{y}": (l1[(x, y)] - l0[(x, y)]) * 8 / dt / 1e6 for (x, y) in l1}
    return ThroughputResult(dt, flow_mbps, fg_mbps, fg_sent, tunnel_bytes, link_mbps,
                            {"sent": {names[k]: v for k, v in sent.items() if k in names}},
                            nominal_pkts={f.name: f.pps * dt for f in flows},
                            offered_pkts={f.name: w.offered.get(f.id, 0) for f in flows},
                            received_pkts={f.name: w.packets.get(f.id, 0) for f in flows})


def probe_tunnel(dep: B4Deployment, fg: str, seconds: float = 1.0) -> str | None:
    """The tunnel (site path) a running probe of flow group ``fg`` takes: the bucket of its
    tunnel group that counted packets during ``seconds``."""
    buckets = tg_bucket_paths(dep)
    if fg not in buckets:
        return None
    sel = {fg: buckets[fg]}
    a = _bucket_bytes(dep, sel)[fg]
    time.sleep(seconds)
    b = _bucket_bytes(dep, sel)[fg]
    delta = {p: b[p] - a.get(p, 0) for p in b}
    best = max(delta.items(), key=lambda kv: kv[1]) if delta else (None, 0)
    return best[0] if best[1] > 0 else None


def reference_probe(dep: B4Deployment, avoid_sites: set[str]) -> Probe | None:
    """A probe between two hosts whose shortest path avoids ``avoid_sites``' TE entries: it
    only uses LPM entries no TE event touches (None if there is no such pair)."""
    from routerlab.traffic import Probe

    cfg = dep.wan.config
    encaps = {f.fg.src for f in dep.wan.flow_groups}
    for src in sorted(cfg.sites):
        if src in encaps or src in avoid_sites:
            continue
        for dst in sorted(cfg.sites):
            if dst == src or dst in avoid_sites:
                continue
            s, d = dep.wan.hosts_of(src)[0], dep.wan.hosts_of(dst)[0]
            return Probe(dep.net.host(s.host), dep.net.host(d.host), d.ip, rate_pps=1000, name="b4-ref")
    return None
