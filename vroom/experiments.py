"""VROOM experiments: `routerlab run vroom-maintenance | vroom-core-failure | vroom-cloning |
vroom-power`, each with ``--quick`` (sizes in each docstring).

Every experiment builds its own VROOM network under a fresh prefix, runs, and tears it
down; results go through `routerlab.report` (summary.json with the metric ids of issue 5,
report.md with the paper's numbers beside ours, raw.json, PNG plots).
"""
from __future__ import annotations

import contextlib
import logging
import secrets
import statistics
import time
from collections.abc import Iterator
from typing import Any

from routerlab.expect import ExpectTimeout, wait_for
from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import load_topology
from routerlab.traffic import Probe, ProbeResult

from .baseline import restart_move
from .migrate import MigrationReport, migrate
from .topo import TopoNetwork, sessions_reset

log = logging.getLogger(__name__)

RATE_PPS = 1000
PAPER_FREEZE_S = 3.56  # VROOM's edge router (OSPF + BGP): control-plane downtime
PAPER_CLONE_250K_S = 20.0  # software data plane: "over 20 s" for 250k routes
MAX_DISTURBED = 3  # maintenance runs repeated because the network broke before the move


def _prefix(tag: str) -> str:
    return f"x{tag}{secrets.token_hex(2)}"[:7]


@contextlib.contextmanager
def probes(tn: TopoNetwork, pairs: list[tuple[str, str]]) -> Iterator[list[Probe]]:
    """1,000 packets/s probes between host pairs, stopped (and measured) on exit."""
    started: list[Probe] = []
    try:
        for src, dst in pairs:
            p = Probe(tn.hosts[src], tn.hosts[dst], tn.address(dst), rate_pps=RATE_PPS,
                      name=f"{src}-{dst}")
            p.start()
            started.append(p)
        yield started
    except BaseException:
        for p in started:
            p.close()
        raise
    for p in started:
        p.stop()


def _loadavg() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return -1.0


def _loss(ps: list[Probe]) -> tuple[int, float, int]:
    """(packets lost, longest gap in ms, packets sent) over several probes."""
    rs: list[ProbeResult] = [p.result for p in ps if p.result is not None]
    return (sum(r.lost for r in rs), max((r.max_gap_ms for r in rs), default=0.0),
            sum(r.sent for r in rs))


# --------------------------------------------------------------------------- maintenance

def _maintenance_run(tn: TopoNetwork, vr: str, target: str, live: bool,
                     pairs: list[tuple[str, str]], i: int,
                     options: dict[str, Any] | None = None) -> dict[str, Any]:
    before = tn.neighbour_view(vr)
    t0 = time.monotonic()
    with probes(tn, pairs) as ps:
        time.sleep(1.0)
        t_move = time.time()
        if live:
            rep: MigrationReport = migrate(tn.net, vr, target, **(options or {}))
            time.sleep(1.5)
        else:
            rep = restart_move(tn.net, vr, target)
            reconverge = tn.wait_converged(timeout=90)
            time.sleep(1.0)
    after = tn.neighbour_view(vr)
    elapsed = time.monotonic() - t0
    lost, gap, sent = _loss(ps)
    out = {"run": i, "kind": "vroom" if live else "restart", "to": target, "loadavg": _loadavg(),
           "from": rep.source, "packets_sent": sent, "packets_lost": lost,
           "longest_gap_ms": round(gap, 1), "resets": sessions_reset(before, after, elapsed),
           "before": before, "after": after, "total_s": round(rep.total_s, 3),
           "freeze_s": rep.freeze_s, "phases": rep.phase_seconds(),
           "cp": rep.cp.to_json() if rep.cp else None,
           "probes": [p.result.to_json() for p in ps if p.result is not None]}
    if not live:
        out["reconverge_s"] = round(reconverge, 2)
    # packets lost before the move began: the network was already broken (on this shared
    # machine, e.g. another tenant's load stalling Open vSwitch for seconds)
    out["lost_before_move"] = sum(g.lost for p in ps if p.result is not None
                                  for g in p.result.gaps if p.result.started_at + g.start_s < t_move)
    if lost:  # what the data planes did around the loss, to explain it
        out["syncs"] = {f"{n}@{pr.name}": [st.to_json() for st in hv.recent]
                        for pr in tn.net.prs.values() for n, hv in pr.hypervisors.items()
                        if n in (vr, *tn.topo.neighbors(vr))}
        out["neighbours"] = tn.net.vrs[vr].ns.ip("-4", "neigh", "show", check=False).stdout  # type: ignore[union-attr]  # a running VR has its namespace
    log.info("%s run %d %s -> %s: %d lost, longest gap %.0f ms, resets %s, freeze %s",
             out["kind"], i, rep.source, target, lost, gap, out["resets"] or "none",
             "-" if rep.freeze_s is None else f"{rep.freeze_s:.3f} s")
    return out


@experiment("vroom-maintenance",
            "planned maintenance: live-migrate an edge VR (OSPF + eBGP) A->B->A ten times in "
            "Abilene under 1,000 pps probes; restart baseline beside it")
def run_maintenance(ctx: RunContext) -> Result:
    """Abilene (11 routers, each a VR on its own physical router; NYCM runs BIRD, the
    others FRR; external AS 65100 on FRR peers with NYCM by eBGP), a spare physical router
    NY2 at New York. Probes hNYCM <-> hLOSA (both directions, 1,000 packets/s each) cross
    NYCM. Ten live migrations NYCM P8 <-> NY2, then ten restart moves (graceful restart).
    A run whose probes lost packets in the second before the move began (the network was
    already broken: the machine is shared) is repeated, at most three times, and listed.
    --quick: two of each."""
    runs = int(ctx.options.get("runs", 2 if ctx.quick else 10))
    # `page_server_mbps`: the dump's memory goes to a CRIU page server over a link that fast
    opts = {k: ctx.options[k] for k in ("page_server_mbps",) if ctx.options.get(k)}
    res = Result("vroom-maintenance")
    topo = load_topology("abilene")
    vr = "NYCM"
    pairs = [("hNYCM", "hLOSA"), ("hLOSA", "hNYCM")]
    ctx.step("building Abilene: 11 VRs on 12 physical routers", 0.02)
    tn = TopoNetwork(topo, _prefix("m"), impl={vr: "bird"}, spare={"NY2": vr}, graceful=True)
    records: list[dict[str, Any]] = []
    disturbed: list[dict[str, Any]] = []
    try:
        tn.start(progress=lambda m: ctx.step(m, None))
        conv = tn.wait_converged(timeout=180)
        tn.wait_reachable("hNYCM", "hLOSA")
        tn.wait_reachable("hLOSA", "hNYCM")
        home = tn.home[vr]
        tn.net.tunnel(home, "NY2")  # the migration link between the two New York routers
        res.raw["converged_s"] = round(conv, 2)
        for live in (True, False):
            i = retries = 0
            while i < runs:
                kind = "live migration" if live else "restart"
                ctx.step(f"{kind} {i + 1}/{runs}", 0.05 + 0.9 * (len(records) / (2 * runs)))
                target = "NY2" if tn.net.vrs[vr].pr.name == home else home  # type: ignore[union-attr]  # a running VR has its router
                rec = _maintenance_run(tn, vr, target, live, pairs, i + 1, opts)
                tn.wait_converged(timeout=90)
                tn.wait_reachable("hNYCM", "hLOSA")
                if rec["lost_before_move"] and retries < MAX_DISTURBED:
                    retries += 1  # not the move's doing: listed, then the run is repeated
                    log.warning("%s run %d disturbed (%d packets lost before the move); "
                                "repeating it", kind, i + 1, rec["lost_before_move"])
                    disturbed.append(rec)
                    continue
                records.append(rec)
                i += 1
    finally:
        tn.stop()
    live_runs = [r for r in records if r["kind"] == "vroom"]
    base_runs = [r for r in records if r["kind"] == "restart"]
    freezes = [r["freeze_s"] for r in live_runs if r["freeze_s"] is not None]
    lost = sum(r["packets_lost"] for r in live_runs)
    resets = sum(len(r["resets"]) for r in live_runs)
    res.add_metric("runs", "live migrations completed", "", len(live_runs), paper=None,
                   goal=f"= {runs}", met=len(live_runs) == runs)
    res.add_metric("packets_lost_total", "packets lost over all live migrations", "packets",
                   lost, paper=0, goal="0 in every run",
                   met=all(r["packets_lost"] == 0 for r in live_runs))
    res.add_metric("sessions_reset", "adjacencies/sessions reset by live migration", "", resets,
                   paper=0, goal="0", met=resets == 0)
    res.add_metric("cp_freeze_s_max", "control-plane freeze (max over runs)", "s",
                   round(max(freezes), 3) if freezes else None, paper=PAPER_FREEZE_S,
                   goal="< 0.5", met=bool(freezes) and max(freezes) < 0.5)
    res.add_metric("restart_packets_lost", "packets lost, restart baseline (total)", "packets",
                   sum(r["packets_lost"] for r in base_runs), goal="reported (baseline)")
    res.add_metric("restart_sessions_reset", "sessions reset, restart baseline (total)", "",
                   sum(len(r["resets"]) for r in base_runs), goal="reported (baseline)")
    res.raw.update({"runs": records, "disturbed_runs": disturbed, "vr": vr,
                    "rate_pps": RATE_PPS, "probes": pairs})
    if disturbed:
        res.add_section("Disturbed runs (repeated)", "Runs whose probes already lost packets "
                        "in the second before the move began (the network was broken by "
                        "something else: the machine is shared) were repeated; they are "
                        "listed here and kept in raw.json.\n\n" + markdown_table(
                            ("kind", "run", "lost before the move", "lost in all", "resets"),
                            [(r["kind"], r["run"], r["lost_before_move"], r["packets_lost"],
                              ", ".join(r["resets"]) or "none") for r in disturbed]))
    rows = [(r["kind"], r["run"], f"{r['from']}->{r['to']}", r["packets_lost"],
             r["longest_gap_ms"], r["freeze_s"] if r["freeze_s"] is not None else "-",
             r["total_s"], r["loadavg"], ", ".join(r["resets"]) or "none") for r in records]
    res.add_section("Runs", "Two probes (hNYCM -> hLOSA and back, 1,000 packets/s each) cross "
                    "NYCM during every run; *freeze* is the time the VR's control plane is "
                    "deaf: CRIU dump + restore + unlock + multicast re-join (live only). "
                    "Load average: the machine's 1-minute load when the run ended (2 cores, "
                    "shared).\n\n" + markdown_table(
                        ("kind", "run", "move", "lost", "longest gap ms", "freeze s",
                         "total s", "load avg", "resets"), rows))
    if live_runs:
        ph: dict[str, list[float]] = {}
        for r in live_runs:
            for k, v in r["phases"].items():
                ph.setdefault(k, []).append(v)
        res.add_section("Phase timings (live migration, median over runs)", markdown_table(
            ("phase", "median s", "max s"),
            [(k, round(statistics.median(v), 3), round(max(v), 3)) for k, v in ph.items()]))
    try:
        xs = [r["run"] for r in live_runs]
        plot(ctx.out_dir / "loss.png",
             {"live migration": (xs, [r["packets_lost"] for r in live_runs]),
              "restart (graceful)": ([r["run"] for r in base_runs],
                                     [r["packets_lost"] for r in base_runs])},
             "Packets lost per move (2 x 1,000 pps)", "run", "packets lost", kind="bar")
        res.plots.append(("Packets lost per move", "loss.png"))
        plot(ctx.out_dir / "freeze.png", {"freeze": (xs, freezes)},
             f"Control-plane freeze per live migration (paper: {PAPER_FREEZE_S} s downtime)",
             "run", "seconds", kind="bar")
        res.plots.append(("Control-plane freeze", "freeze.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)
    return res


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
    net = VroomNetwork(_prefix("c"))
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
            load = _loadavg()
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
    tn = TopoNetwork(topo, _prefix("f"), impl={vr: "bird"}, spare={spare: vr})
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
            lost, gap, sent = _loss(ps)
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
    tn = TopoNetwork(topo, _prefix("p"), impl={v: "bird" for v in vrs},
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
                lost, gap, sent = _loss(ps)
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
