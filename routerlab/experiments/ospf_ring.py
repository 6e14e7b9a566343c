"""`ospf-ring`: converge the 4-router OSPF ring, fail the link a probe uses, restore it.

Measures how long the ring takes to converge from daemon start (every adjacency Full and
host-to-host reachability), and the forwarding gap and loss a 1,000 packets/s probe sees
when the link it crosses goes down (carrier loss, so OSPF reacts without waiting for the
dead interval)."""
from __future__ import annotations

import logging
import time

from routerlab.expect import wait_for
from routerlab.experiments import RunContext, experiment
from routerlab.network import Network
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import load_topology
from routerlab.traffic import Probe, arrival_series, tx_packets

log = logging.getLogger(__name__)

RATE_PPS = 1000
# Steady state: no SPF and no new LSA for longer than the FRR driver's longest SPF/LSA hold
# (`timers throttle spf 0 50 1000`, `timers throttle lsa all 1000`).
QUIET_S = 1.5


def used_ring_link(net: Network, router: str, seconds: float = 1.0) -> str:
    """The neighbour whose link carries the probe out of `router` (by tx counters, since
    equal-cost paths make the route table ambiguous)."""
    node = net.router(router)
    ifaces = [i for i in net.topo.interfaces(router) if net.topo.node(i.peer).role == "router"]
    before = {i.name: tx_packets(node, i.name) for i in ifaces}
    time.sleep(seconds)  # the counting window itself
    delta = {i.peer: tx_packets(node, i.name) - before[i.name] for i in ifaces}
    peer, n = max(delta.items(), key=lambda kv: kv[1])
    if n < seconds * RATE_PPS * 0.5:
        raise RuntimeError(f"probe traffic not seen leaving {router} ({delta})")
    return peer


@experiment("ospf-ring", "4-router OSPF ring: convergence time and failover gap under a 1,000 pps probe",
            options={"prefix": "prefix of the run's namespace, link and bridge names (rl-)"})
def run_ospf_ring(ctx: RunContext) -> Result:
    hold_s = 2.0 if ctx.quick else 4.0
    res = Result("ospf-ring")
    topo = load_topology("ring")
    # One expensive ring link makes the h1 -> h2 path unique (r1-r2-r3), so failing it needs
    # an OSPF recomputation; with equal costs ECMP would hide the failover entirely.
    backup = topo.link_between("r4", "r1")
    backup.cost = 3 * backup.cost
    net = Network(topo, prefix=ctx.options.get("prefix", "rl-"))
    try:
        ctx.step("building the ring", 0.05)
        net.start(progress=lambda m, f: ctx.step(m))
        ctx.step("waiting for OSPF to converge", 0.2)
        conv_adj = net.wait_converged(timeout=90)
        h1, h2 = net.host("h1"), net.host("h2")
        dst = net.address("h2")
        wait_for(lambda: "1 received" in h1.cmd(f"ping -c1 -W1 {dst}"), 60, interval=0.1,
                 what="h1 to reach h2")
        started = net.daemon_start_time
        assert started is not None  # set by net.start()
        convergence_s = time.monotonic() - started
        # Measure failover in steady state: right after convergence the SPF hold time is
        # still escalated (up to 1 s) by the start-up's SPF runs, which would add up to a
        # second to the first failure's recovery. Steady = no SPF run and no new LSA on any
        # router for longer than the throttles' longest hold.
        ctx.step(f"converged in {convergence_s:.1f} s; waiting for OSPF to be quiet", 0.35)
        wait_for(lambda: all(r.daemon.ospf_quiet_s() >= QUIET_S for r in net.routers.values()),
                 60, interval=0.2, what="OSPF quiet on every router")
        steady_s = time.monotonic() - started
        ctx.step("steady; starting the probe", 0.4)

        probe = Probe(h1, h2, dst, rate_pps=RATE_PPS)
        probe.start()
        try:
            peer = used_ring_link(net, "r1")
            a, b = net.router("r1"), net.router(peer)
            ctx.step(f"failing link r1-{peer} for {hold_s:.0f} s", 0.5)
            t_down = time.time()
            net.net.configLinkStatus(a.name, b.name, "down")
            time.sleep(hold_s)  # the outage's length is the experiment's parameter
            net.net.configLinkStatus(a.name, b.name, "up")
            t_up = time.time()
            ctx.step("link restored; waiting for the adjacency", 0.7)
            reconverge_s = net.wait_converged(timeout=60)
            del reconverge_s
            t_reconv = time.time()
            time.sleep(1.0)  # keep probing a moment after repair to see any second gap
        finally:
            pr = probe.stop()
            probe.close()
        restore_full_s = t_reconv - t_up

        assert probe.sender_report is not None and probe.log is not None  # set by probe.stop()
        series = arrival_series(probe.sender_report, probe.log, bin_s=0.05)
        plot(ctx.out_dir / "probe.png",
             {"received per 50 ms": ([t for t, _ in series], [c for _, c in series])},
             f"h1 -> h2 probe at {RATE_PPS} pps; link r1-{peer} down at "
             f"{t_down - pr.started_at:.2f} s for {hold_s:.0f} s", "time (s)", "packets per 50 ms",
             kind="step")
        res.plots.append(("Probe packets received per 50 ms around the link failure", "probe.png"))

        res.add_metric("convergence_s", "OSPF ring convergence (daemon start to Full + reachable)",
                       "s", round(convergence_s, 2), None, "< 30 s", convergence_s < 30)
        res.add_metric("failover_gap_ms", "longest probe gap when the used link fails", "ms",
                       round(pr.max_gap_ms, 1), None, "< 1000 ms (carrier loss, hello 1 s / dead 4 s)",
                       pr.max_gap_ms < 1000)
        res.add_metric("packets_lost", "probe packets lost over the whole failure", "packets",
                       pr.lost, None, "<= gap x rate", pr.lost <= max(1, pr.max_gap_ms) * RATE_PPS / 1000 + 5)
        res.add_section("Setup", (
            f"Topology `ring` (4 FRR routers, OSPF hello {topo.ospf.hello} s / dead {topo.ospf.dead} s, "
            f"10 Mbit/s links; the r4-r1 link's cost raised to {backup.cost} so that the probe's "
            f"path is unique and failing it needs an OSPF recomputation). Probe h1 -> h2, "
            f"{RATE_PPS} packets/s, 64-byte UDP. The link r1-{peer} "
            f"(the one the probe used) was held down {hold_s:.0f} s with both ends' carrier off, then "
            f"restored. Adjacencies were Full {conv_adj:.1f} s after the daemons started; the "
            f"failure came in steady state (no SPF run and no new LSA on any router for "
            f"{QUIET_S:g} s, reached {steady_s:.1f} s after the start: right after convergence "
            f"the SPF hold time is still escalated to 1 s by the start-up's SPF runs); "
            f"after repair the adjacency was Full again in {restore_full_s:.1f} s."))
        res.add_section("Probe", markdown_table(
            ("sent", "received", "lost", "reordered", "duplicated", "longest gap (ms)", "gaps"),
            [(pr.sent, pr.received, pr.lost, pr.reordered, pr.duplicated, round(pr.max_gap_ms, 1),
              "; ".join(f"{g.duration_ms:.0f} ms at {g.start_s:.2f} s" for g in pr.gaps) or "none")]))
        res.raw = {"probe": pr.to_json(), "failed_link": ["r1", peer], "hold_s": hold_s,
                   "convergence_s": convergence_s, "adjacency_convergence_s": conv_adj,
                   "restore_full_s": restore_full_s, "steady_s": steady_s}
    finally:
        net.stop()
    return res
