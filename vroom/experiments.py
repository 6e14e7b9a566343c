"""VROOM experiments: `routerlab run vroom-core-failure | vroom-cloning | vroom-power`, each
with ``--quick`` (sizes in each docstring); vroom-maintenance is in `vroom.maintenance`.

Every experiment builds its own VROOM network under a fresh prefix, runs, and tears it
down; results go through `routerlab.report` (summary.json with the metric ids of issue 5,
report.md with the paper's numbers beside ours, raw.json, PNG plots).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from routerlab.expect import ExpectTimeout, wait_for
from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import load_topology

from .measure import loadavg, probe_loss, probes, run_prefix
from .migrate import migrate
from .topo import TopoNetwork, sessions_reset

log = logging.getLogger(__name__)

PAPER_CLONE_250K_S = 20.0  # software data plane: "over 20 s" for 250k routes


# --------------------------------------------------------------------------- cloning

def _announce_until(ext: Any, hv: Any, prefixes: list[str], want_routes: int,
                    timeout: float) -> float:
    """Announce `prefixes` from ExaBGP and wait until the VR's data plane carries at least
    `want_routes` routes; returns the seconds it took."""
    t0 = time.monotonic()
    if prefixes:
        ext.announce(prefixes)
    try:
        wait_for(lambda: hv.last is not None and hv.last.routes >= want_routes, timeout,
                 interval=0.5, retry_on=(), what=f"{want_routes} routes in the data plane")
    except ExpectTimeout:
        got = hv.last.routes if hv.last else 0
        raise TimeoutError(f"only {got} of {want_routes} routes reached the data plane "
                           f"after {timeout:.0f} s") from None
    return time.monotonic() - t0


def _prefixes(start: int, stop: int) -> list[str]:
    """The start..stop-1-th /24 of 11.0.0.0/8 and up (the injected table)."""
    return [f"{11 + i // 65536}.{(i // 256) % 256}.{i % 256}.0/24" for i in range(start, stop)]


def _clone_standalone(net: Any, vr_name: str, pr_name: str) -> dict[str, Any]:
    """Clone VR's data plane onto another physical router's bridge from its FIB (bind its
    interfaces there, bulk repopulate, time it), then remove the copy."""
    from .hypervisor import DataPlaneHypervisor

    vr, pr = net.vrs[vr_name], net.prs[pr_name]
    pr.portmap.bind(vr.name, [i.name for i in vr.interfaces])
    hv = DataPlaneHypervisor(vr.vr_id, pr.bridge_name, vr.ns.name,
                             pr.bindings(vr, with_vr_ports=False), name=f"{vr.name}-clone")
    try:
        return hv.repopulate().to_json()
    finally:
        hv.remove_all()
        hv.close()
        pr.portmap.unbind(vr.name)


@experiment("vroom-cloning",
            "data-plane cloning time vs routes (1k-250k, injected over BGP by ExaBGP): the "
            "target physical router repopulated from the migrated VR's FIB")
def run_cloning(ctx: RunContext) -> Result:
    """VR r1 (BIRD, AS 65000) learns N /24 prefixes from ExaBGP (AS 65100) over eBGP; BIRD
    puts them in r1's kernel FIB and the data-plane hypervisor on r1's bridge. r1 is then
    live-migrated to the other physical router; the cloning time is the target's bulk
    repopulation from r1's FIB there (read FIB + translate + install). N = 1k, 10k, 100k,
    250k (cumulative). --quick: N = 1k, 10k, 250k placed directly in r1's FIB (`ip -batch`;
    BGP and BIRD take ~75 s to carry 250k routes here) and cloned onto the other physical
    router without migrating r1 (the same repopulation code path)."""
    from routerlab.daemons import BgpNeighbor, ExabgpDaemon, Interface, RouterSpec

    from .network import VroomNetwork

    sizes = [1000, 10000, 250000] if ctx.quick else [1000, 10000, 100000, 250000]
    res = Result("vroom-cloning")
    net = VroomNetwork(run_prefix("c"))
    ext = None
    rows: list[dict[str, Any]] = []
    try:
        ctx.step("building: two physical routers, r1 (BIRD) and an ExaBGP peer", 0.02)
        net.add_physical_router("A", ports=2)
        net.add_physical_router("B", ports=2)
        net.add_virtual_router("r1", RouterSpec(
            name="r1", router_id="10.255.98.1", asn=65000, loopback="10.255.98.1/32",
            interfaces=[Interface("eth0", "10.98.0.1/30")],
            bgp_neighbors=[BgpNeighbor("10.98.0.2", 65100, hold=30, keepalive=10)]))
        ns = net.add_namespace("ext")
        net.connect("r1", "eth0", ns, "eth0")
        ext = ExabgpDaemon(RouterSpec(
            name="ext", router_id="10.98.0.2", asn=65100,
            interfaces=[Interface("eth0", "10.98.0.2/30")],
            bgp_neighbors=[BgpNeighbor("10.98.0.1", 65000, hold=30, keepalive=10)]))
        ext.start(ns, net.run_root / "ext")
        net.place("r1", "A")
        net.tunnel("A", "B")
        wait_for(lambda: any(s.established for s in ext.bgp_sessions()), 60, retry_on=(),
                 what="BGP r1-ext up")
        base = net.hypervisor("r1").sync().routes
        announced = 0
        for k, n in enumerate(sizes):
            ctx.step(f"{'placing' if ctx.quick else 'injecting'} {n:,} routes", 0.05 + 0.9 * k / len(sizes))
            t0 = time.monotonic()
            if ctx.quick:
                vr_ns = net.vrs["r1"].ns
                vr_ns.run(["ip", "-batch", "-"], timeout=600, input="".join(
                    f"route add {p} via 10.98.0.2 proto static\n"
                    for p in _prefixes(announced, n)))
                inject_s = time.monotonic() - t0
            else:
                inject_s = _announce_until(ext, net.hypervisor("r1"), _prefixes(announced, n),
                                           base + n, timeout=120 + n / 1000)
            announced = n
            time.sleep(2.0)  # let the last syncs settle before measuring
            load = loadavg()
            if ctx.quick:
                ctx.step(f"cloning {n:,} routes onto B", None)
                hv_a = net.hypervisor("r1")
                _announce_until(ext, hv_a, [], base + n, timeout=120 + n / 1000)
                hv_a.pause()  # as in a migration: the old data plane does not compete
                try:
                    clone = _clone_standalone(net, "r1", "B")
                finally:
                    hv_a.resume()
                rows.append({"routes": n, "clone": clone,
                             "freeze_s": None, "image_bytes": None, "migration_s": None,
                             "inject_s": round(inject_s, 1), "loadavg": load,
                             "bgp_state_after": ext.bgp_sessions()[0].state,
                             "bgp_connections": ext.bgp_sessions()[0].established_count})
                continue
            ctx.step(f"migrating r1 with {n:,} routes", None)
            target = "B" if net.vrs["r1"].pr.name == "A" else "A"
            rep = migrate(net, "r1", target)
            sess = ext.bgp_sessions()[0]
            rows.append({"routes": n, "clone": rep.clone, "freeze_s": rep.freeze_s,
                         "image_bytes": rep.cp.image_bytes if rep.cp else None,
                         "migration_s": round(rep.total_s, 2), "inject_s": round(inject_s, 1),
                         "loadavg": load, "phases": rep.phase_seconds(),
                         "bgp_state_after": sess.state, "bgp_connections": sess.established_count})
            log.info("%d routes: cloning %.2f s (%s), freeze %.3f s", n, rep.clone["total_s"],
                     rep.clone, rep.freeze_s or -1)
    finally:
        if ext is not None:
            ext.stop()
        net.stop()
    by_n = {r["routes"]: r for r in rows}
    c250 = by_n.get(250000, {}).get("clone", {}).get("total_s")
    res.add_metric("clone_250k_s", "data-plane cloning, 250k routes", "s", c250,
                   paper=PAPER_CLONE_250K_S, goal="< 5", met=c250 is not None and c250 < 5)
    freezes = [r["freeze_s"] for r in rows if r["freeze_s"] is not None]
    if freezes:
        res.add_metric("clone_freeze_s_max", "control-plane freeze while carrying these "
                       "tables (max)", "s", round(max(freezes), 3), goal="reported")
    res.add_metric("bgp_kept", "BGP session kept through every migration", "",
                   all(r["bgp_state_after"] == "Established" and r["bgp_connections"] == 1
                       for r in rows), goal="yes", met=all(
                           r["bgp_state_after"] == "Established" and r["bgp_connections"] == 1
                           for r in rows))
    res.raw.update({"rows": rows, "sizes": sizes})
    how = ("routes placed directly in r1's FIB, cloned without a migration (--quick)"
           if ctx.quick else "routes injected over BGP by ExaBGP, cloned by migrating r1")
    res.add_section("Cloning time by table size", "Cloning = the target bridge repopulated "
                    "from the VR's kernel FIB: read (`ip -o route`), translate to LPM flows "
                    "and next-hop groups, install in bulk (`ovs-ofctl --bundle`). "
                    f"Here: {how}. Load average (1 min) at each measurement shown: the "
                    "machine is shared and timings scale with it.\n\n"
                    + markdown_table(("routes", "read s", "translate s", "install s",
                                      "cloning s", "freeze s", "image MB", "migration s",
                                      "load avg"),
                                     [(r["routes"], r["clone"]["read_s"],
                                       r["clone"]["translate_s"], r["clone"]["install_s"],
                                       r["clone"]["total_s"], r["freeze_s"],
                                       round((r["image_bytes"] or 0) / 1e6, 1),
                                       r["migration_s"], r["loadavg"]) for r in rows]))
    try:
        xs = [r["routes"] for r in rows]
        plot(ctx.out_dir / "cloning.png",
             {"cloning (total)": (xs, [r["clone"]["total_s"] for r in rows]),
              "install": (xs, [r["clone"]["install_s"] for r in rows]),
              "read + translate": (xs, [r["clone"]["read_s"] + r["clone"]["translate_s"]
                                        for r in rows])},
             f"Data-plane cloning time (paper: > {PAPER_CLONE_250K_S:.0f} s for 250k)",
             "routes", "seconds", logx=True)
        res.plots.append(("Cloning time vs routes", "cloning.png"))
    except Exception as e:
        log.warning("plots: %s", e)
    return res


# --------------------------------------------------------------------------- core failure

@experiment("vroom-core-failure",
            "migrate a core (OSPF-only) VR while a link elsewhere fails mid-migration; "
            "adjacencies must stay up; OSPF retransmissions counted on the wire")
def run_core_failure(ctx: RunContext) -> Result:
    """Abilene as in vroom-maintenance; the core router KSCY (BIRD, OSPF only: DNVR, HSTN,
    IPLS) moves to a spare physical router KC2. During its control-plane freeze (the worst
    moment) the STTL-SNVA link fails (STTL's interface goes down), so new LSAs flood towards
    the frozen KSCY. tcpdump on each neighbour's link to KSCY counts LSA retransmissions
    (the same LSA instance sent twice by one router); probes hLOSA <-> hNYCM run throughout.
    Three runs (KSCY there and back, the link restored between runs). --quick: one run on
    the 4-router ring instead (r2 moves, r3-r4 fails, probes h1 <-> h2)."""
    runs = 1 if ctx.quick else 3
    res = Result("vroom-core-failure")
    if ctx.quick:
        topo = load_topology("ring")
        vr, spare, fail_a, fail_b = "r2", "S2", "r3", "r4"
        pairs = [("h1", "h2"), ("h2", "h1")]
    else:
        topo = load_topology("abilene")
        vr, spare, fail_a, fail_b = "KSCY", "KC2", "STTL", "SNVA"
        pairs = [("hNYCM", "hLOSA"), ("hLOSA", "hNYCM")]
    fail_if = topo.link_between(fail_a, fail_b).end(fail_a).intf
    nbs = [n for n in topo.neighbors(vr) if topo.node(n).role == "router"]
    ctx.step(f"building {topo.name}: every router a VR on its own physical router", 0.02)
    tn = TopoNetwork(topo, run_prefix("f"), impl={vr: "bird"}, spare={spare: vr})
    records: list[dict[str, Any]] = []
    try:
        from .ospfwire import LsaCapture, retransmissions

        tn.start(progress=lambda m: ctx.step(m, None))
        tn.wait_converged(timeout=180)
        tn.wait_reachable(*pairs[0])
        home = tn.home[vr]
        tn.net.tunnel(home, spare)
        vr_rid = str(topo.node(vr).router_id)
        for i in range(runs):
            ctx.step(f"run {i + 1}/{runs}: migrating {vr}, failing {fail_a}-{fail_b}",
                     0.1 + 0.85 * i / runs)
            target = spare if tn.net.vrs[vr].pr.name == home else home  # type: ignore[union-attr]  # a running VR has its router
            caps = {}
            for nb in nbs:
                caps[nb] = LsaCapture(tn.net.vrs[nb].ns, topo.link_between(nb, vr).end(nb).intf)  # type: ignore[arg-type]  # running: ns set
                caps[nb].start()
            time.sleep(0.5)
            before = tn.neighbour_view(vr)
            failed_at: list[float] = []

            def fail_link(m: Any, failed_at: list[float] = failed_at) -> None:
                tn.net.vrs[fail_a].ns.ip("link", "set", fail_if, "down")  # type: ignore[union-attr]  # a running VR has its namespace
                failed_at.append(time.monotonic())

            t0 = time.monotonic()
            with probes(tn, pairs) as ps:
                time.sleep(1.0)
                rep = migrate(tn.net, vr, target, hooks={"before-restore": fail_link})
                time.sleep(topo.ospf.dead + 3.0)  # the failure detected and flooded, SPF run
            after = tn.neighbour_view(vr)
            resets = sessions_reset(before, after, time.monotonic() - t0)
            sends = {nb: c.stop() for nb, c in caps.items()}
            rx = {}
            for nb, ss in sends.items():
                per = retransmissions(ss)
                nb_ip = str(topo.link_between(nb, vr).end(nb).address.ip)  # type: ignore[union-attr]  # router links are addressed
                vr_ip = str(topo.link_between(nb, vr).end(vr).address.ip)  # type: ignore[union-attr]  # router links are addressed
                rx[nb] = {"to_vr": per.get(nb_ip, {}), "from_vr": per.get(vr_ip, {})}
            lost, gap, sent = probe_loss(ps)
            records.append({"run": i + 1, "from": rep.source, "to": target,
                            "resets": resets, "retransmissions": rx,
                            "freeze_s": rep.freeze_s, "total_s": round(rep.total_s, 3),
                            "link_failed_after_s": round(failed_at[0] - t0, 3) if failed_at else None,
                            "packets_lost": lost, "longest_gap_ms": round(gap, 1),
                            "packets_sent": sent, "phases": rep.phase_seconds(),
                            "before": before, "after": after, "vr_router_id": vr_rid})
            log.info("core-failure run %d: resets %s, retransmissions %s, lost %d",
                     i + 1, resets or "none", rx, lost)
            tn.net.vrs[fail_a].ns.ip("link", "set", fail_if, "up")  # type: ignore[union-attr]  # a running VR has its namespace
            tn.wait_converged(timeout=90)
            tn.wait_reachable(*pairs[0])
    finally:
        tn.stop()
    lost_adj = sum(len(r["resets"]) for r in records)
    to_vr = [v["to_vr"].get("retransmissions", 0) for r in records
             for v in r["retransmissions"].values()]
    max_lsa = max([v["to_vr"].get("max_per_lsa", 0) for r in records
                   for v in r["retransmissions"].values()], default=0)
    res.add_metric("adjacencies_lost", "adjacencies lost (all neighbours, all runs)", "",
                   lost_adj, paper=0, goal="0", met=lost_adj == 0)
    res.add_metric("ospf_retransmissions_max_per_lsa", "OSPF retransmissions of one LSA to "
                   "the migrating router (max)", "", max_lsa, paper=1, goal="<= 1",
                   met=max_lsa <= 1)
    res.add_metric("ospf_retransmissions_total", "LSA retransmissions to the migrating "
                   "router (all neighbours, all runs)", "", sum(to_vr), goal="reported")
    res.add_metric("packets_lost_total", "probe packets lost (2 x 1,000 pps)", "packets",
                   sum(r["packets_lost"] for r in records), goal="reported")
    res.raw.update({"runs": records, "vr": vr, "failed_link": f"{fail_a}-{fail_b}",
                    "topology": topo.name})
    res.add_section("Runs", f"{vr} moves while {fail_a}'s interface to {fail_b} goes down "
                    "during the control-plane freeze. Retransmissions: LSA instances a router "
                    "sent more than once on its link with the migrating router (tcpdump).\n\n"
                    + markdown_table(
                        ("run", "move", "freeze s", "adjacencies lost", "retransmissions to "
                         f"{vr} (per neighbour)", f"by {vr}", "probe lost"),
                        [(r["run"], f"{r['from']}->{r['to']}", r["freeze_s"],
                          len(r["resets"]),
                          ", ".join(f"{nb}: {v['to_vr'].get('retransmissions', 0)}"
                                    for nb, v in r["retransmissions"].items()),
                          sum(v["from_vr"].get("retransmissions", 0)
                              for v in r["retransmissions"].values()),
                          r["packets_lost"]) for r in records]))
    return res


# --------------------------------------------------------------------------- power

@experiment("vroom-power",
            "power savings: consolidate VRs onto fewer physical routers when traffic is low, "
            "spread them out again, under 1,000 pps probes")
def run_power(ctx: RunContext) -> Result:
    """The 4-router OSPF ring (every router a BIRD VR on its own physical router P1-P4;
    hosts h1 at r1 and h2 at r3). Consolidation: r2 moves onto P1 and r4 onto P3, so two
    physical routers carry the whole network and P2, P4 could be powered down; then both
    move back. Probes h1 <-> h2 (1,000 packets/s each way) run through each phase. Two
    cycles; --quick: one."""
    cycles = 1 if ctx.quick else 2
    res = Result("vroom-power")
    topo = load_topology("ring")
    vrs = [n.name for n in topo.routers()]
    ctx.step("building the ring: 4 VRs on 4 physical routers", 0.02)
    tn = TopoNetwork(topo, run_prefix("p"), impl={v: "bird" for v in vrs},
                     ports={"P1": 6, "P3": 6})
    steps_done: list[dict[str, Any]] = []
    pairs = [("h1", "h2"), ("h2", "h1")]
    try:
        tn.start(progress=lambda m: ctx.step(m, None))
        tn.wait_converged(timeout=120)
        tn.wait_reachable("h1", "h2")
        plan_in = [("r2", "P1"), ("r4", "P3")]
        plan_out = [("r2", "P2"), ("r4", "P4")]
        for a, b in (("P1", "P2"), ("P3", "P4")):
            tn.net.tunnel(a, b)
        for c in range(cycles):
            for label, plan in (("consolidate", plan_in), ("spread", plan_out)):
                ctx.step(f"cycle {c + 1}/{cycles}: {label}", 0.05 + 0.9 * len(steps_done) / (4 * cycles))
                before = {v: tn.neighbour_view(v) for v, _ in plan}
                t0 = time.monotonic()
                reps = []
                with probes(tn, pairs) as ps:
                    time.sleep(1.0)
                    for v, pr in plan:
                        reps.append(migrate(tn.net, v, pr))
                    time.sleep(1.5)
                elapsed = time.monotonic() - t0
                resets = [r for v, _ in plan
                          for r in sessions_reset(before[v], tn.neighbour_view(v), elapsed)]
                lost, gap, sent = probe_loss(ps)
                active = sorted({vr.pr.name for vr in tn.net.vrs.values() if vr.pr})
                steps_done.append({"cycle": c + 1, "step": label,
                                   "moves": [f"{r.vr} {r.source}->{r.target}" for r in reps],
                                   "freeze_s": [r.freeze_s for r in reps],
                                   "physical_routers_in_use": active, "packets_lost": lost,
                                   "longest_gap_ms": round(gap, 1), "packets_sent": sent,
                                   "resets": resets})
                log.info("power %s: %s; routers in use %s; lost %d", label,
                         [f"{r.vr}->{r.target}" for r in reps], active, lost)
                tn.wait_converged(timeout=60)
    finally:
        tn.stop()
    lost = sum(s["packets_lost"] for s in steps_done)
    fewest = min((len(s["physical_routers_in_use"]) for s in steps_done), default=None)
    resets = sum(len(s["resets"]) for s in steps_done)
    res.add_metric("packets_lost_total", "packets lost over all consolidations/spreads",
                   "packets", lost, paper=0, goal="0", met=lost == 0)
    res.add_metric("routers_in_use_min", "physical routers carrying the network when "
                   "consolidated (of 4)", "", fewest, goal="2", met=fewest == 2)
    res.add_metric("sessions_reset", "adjacencies reset by the moves", "", resets, paper=0,
                   goal="0", met=resets == 0)
    res.raw.update({"steps": steps_done})
    res.add_section("Steps", markdown_table(
        ("cycle", "step", "moves", "routers in use", "lost", "longest gap ms", "freeze s"),
        [(s["cycle"], s["step"], "; ".join(s["moves"]), ", ".join(s["physical_routers_in_use"]),
          s["packets_lost"], s["longest_gap_ms"],
          ", ".join(f"{x:.3f}" for x in s["freeze_s"] if x is not None)) for s in steps_done]))
    return res
