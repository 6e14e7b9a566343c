"""`routerlab bench cluster`: the ring and Abilene split over two servers (Mininet Cluster
Edition) beside the same networks on one machine.

"Server 2" is an OpenSSH server this benchmark starts on 127.0.0.2 with keys of its own
(`routerlab.loopback_sshd`), reached over root ssh as another machine would be; both
"servers" share this machine's 2 cores, so the split costs what the ssh tunnels and the
remote control path cost, not what a second machine would add. Measured per network: build
time, convergence time from daemon start (every adjacency Full, every prefix in every FIB),
a 1,000 packets/s probe across the server boundary in steady state, TCP throughput across
the servers (the ring without link shaping, iperf3), and what is left afterwards."""
from __future__ import annotations

import logging
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from routerlab.experiments import RunContext, experiment
from routerlab.network import Network
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import Topology, load_topology, topology_from_dict

log = logging.getLogger(__name__)

SERVER = "127.0.0.2"
#: Abilene's western half on server 2: hNYCM -> hLOSA crosses the servers
ABILENE_WEST = ("STTL", "SNVA", "LOSA", "DNVR", "KSCY", "HSTN", "hLOSA")
RING_REMOTE = ("r3", "r4", "h2")


def split(name: str, remote: tuple[str, ...], *, unshaped: bool = False) -> Topology:
    """Shipped topology `name` with the nodes `remote` on server 2 (`unshaped`: links
    without their bandwidth limit, to see what the tunnels carry)."""
    d = load_topology(name).to_dict()
    d["name"] = f"{name}-split" + ("-unshaped" if unshaped else "")
    for n in remote:
        d["nodes"][n]["server"] = SERVER
    if unshaped:
        for ln in d["links"]:
            ln.pop("bw", None)
    return topology_from_dict(d, f"{name} split")


def _leftovers(prefix: str, ssh_config: str) -> list[str]:
    from routerlab.ssh import SshHost

    # server 2 has a /run (so a /run/netns) of its own: asked over ssh
    there = SshHost(SERVER, ssh_config, persist=False).run("ip netns list", check=False).stdout
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split() + there.split()
    procs = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout.splitlines()
    return [n for n in ns if n.startswith(prefix)] + [p for p in procs if prefix in p or "Tunnel=Ethernet" in p]


def _one(topo: Topology, cluster: bool, src: str, dst: str, ssh_config: str, probe_s: float,
         ctx: RunContext, iperf_pair: tuple[str, str] | None = None) -> dict[str, Any]:
    from routerlab.cluster import ClusterNetwork

    prefix = f"cb{secrets.token_hex(2)}-"
    net: Network = (ClusterNetwork(topo, prefix=prefix, ssh_config=ssh_config) if cluster
                    else Network(topo, prefix=prefix))
    out: dict[str, Any] = {"network": topo.name, "cluster": cluster}
    t0 = time.monotonic()
    try:
        net.start(progress=lambda m, f: ctx.step(f"{topo.name}: {m}"))
        out["build_s"] = time.monotonic() - t0
        out["routers"] = len(net.routers)
        out["converge_s"] = net.wait_converged(timeout=180)
        r = net.probe(src, dst, probe_s, 1000)
        out.update(probe_sent=r.sent, probe_lost=r.lost, probe_max_gap_ms=r.max_gap_ms,
                   probe_p99_ms=r.latency_p99_ms)
        if iperf_pair:
            from routerlab.traffic import iperf

            server, client = iperf_pair  # the server here, the client on server 2
            res = iperf(net.host(server), net.host(client), net.address(server), 5.0)
            out["tcp_mbps"] = res["throughput_mbps"]
    finally:
        t1 = time.monotonic()
        net.stop()
        out["stop_s"] = time.monotonic() - t1
    out["left"] = _leftovers(prefix, ssh_config)
    return out


@experiment("cluster", "ring and Abilene split over two servers (loopback sshd) vs one machine",
            kind="bench", headline=False)
def run_cluster(ctx: RunContext) -> Result:
    from routerlab.loopback_sshd import LoopbackSshd, missing

    res = Result("cluster")
    why = missing()
    if why:
        res.ok, res.error = False, f"no loopback ssh server: {why}"
        return res
    keys = tempfile.TemporaryDirectory(prefix="routerlab-sshd-")  # keys never land in results
    sshd = LoopbackSshd(Path(keys.name) / "sshd")
    probe_s = 5.0 if ctx.quick else 10.0
    rows: list[dict[str, Any]] = []
    try:
        sshd.start()
        cfg = str(sshd.ssh_config)
        cases = [(load_topology("ring"), False, "h1", "h2", None),
                 (split("ring", RING_REMOTE), True, "h1", "h2", None),
                 (load_topology("abilene"), False, "hNYCM", "hLOSA", None),
                 (split("abilene", ABILENE_WEST), True, "hNYCM", "hLOSA", None),
                 (split("ring", RING_REMOTE, unshaped=True), True, "h1", "h2", ("h1", "h2"))]
        for topo, cluster, src, dst, pair in cases:
            rows.append(_one(topo, cluster, src, dst, cfg, probe_s, ctx, pair))
            log.info("%s", rows[-1])
    finally:
        sshd.stop()
        keys.cleanup()
    by = {r["network"]: r for r in rows}
    ring1, ring2, ab1, ab2 = by["ring"], by["ring-split"], by["abilene"], by["abilene-split"]
    tcp = by["ring-split-unshaped"]
    left = sum(len(r["left"]) for r in rows)
    res.add_metric("ring_split_converge_s", "ring split over 2 servers: convergence after daemon start", "s",
                   round(ring2["converge_s"], 2))
    res.add_metric("ring_single_converge_s", "ring on one machine: convergence after daemon start", "s",
                   round(ring1["converge_s"], 2))
    res.add_metric("abilene_split_converge_s", "Abilene split over 2 servers: convergence", "s",
                   round(ab2["converge_s"], 2))
    res.add_metric("abilene_single_converge_s", "Abilene on one machine: convergence", "s",
                   round(ab1["converge_s"], 2))
    lost = ring2["probe_lost"] + ab2["probe_lost"]
    res.add_metric("cross_server_probe_lost", "probe packets lost across servers (1,000 pps, steady state)",
                   "packets", lost, goal="0", met=lost == 0)
    res.add_metric("cross_server_tcp_mbps", "TCP across servers (ssh tunnel, unshaped ring)", "Mbit/s",
                   round(tcp.get("tcp_mbps", 0.0), 1))
    res.add_metric("leftovers", "namespaces and processes left after stop", "items", left, goal="0",
                   met=left == 0)
    res.add_section("Runs", markdown_table(
        ["network", "servers", "build s", "converge s", "probe sent", "lost", "max gap ms", "p99 ms",
         "TCP Mbit/s", "stop s", "left"],
        [[r["network"], 2 if r["cluster"] else 1, round(r["build_s"], 1), round(r["converge_s"], 1),
          r["probe_sent"], r["probe_lost"], round(r["probe_max_gap_ms"], 1), round(r["probe_p99_ms"] or 0, 2),
          round(r["tcp_mbps"], 1) if "tcp_mbps" in r else "", round(r["stop_s"], 1), len(r["left"])]
         for r in rows]))
    nets = ["ring", "abilene"]
    xs = [by[n]["routers"] for n in nets]  # bars labelled by routers: 4 (ring), 12 (Abilene)
    for key, caption, fname in (("converge_s", "convergence after daemon start", "converge.png"),
                                ("build_s", "build time (namespaces, links, tunnels)", "build.png")):
        plot(ctx.out_dir / fname,
             {"one machine": (xs, [by[n][key] for n in nets]),
              "two servers (ssh tunnels)": (xs, [by[f"{n}-split"][key] for n in nets])},
             caption, "routers (ring, Abilene)", "seconds", kind="bar")
        res.plots.append((caption, fname))
    res.raw = {"runs": rows}
    return res
