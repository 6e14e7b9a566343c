"""VROOM experiments: `routerlab run vroom-core-failure | vroom-cloning | vroom-power`, each
with ``--quick`` (sizes in each docstring); vroom-maintenance is in `vroom.maintenance`.

Every experiment runs its virtual routers on FRR (the heir of the prototype's Quagga) and
on BIRD and reports each beside the other (metric ids without a suffix are the total or the
worst over both; ``_frr`` / ``_bird`` ids are one implementation's). An implementation whose
build or move fails is reported as failed (its error in the report) while the other still
runs. Every network is built under a fresh prefix and torn down; results go through
`routerlab.report` (summary.json with the metric ids of issue 5, report.md with the paper's
numbers beside ours, raw.json, PNG plots).
"""
from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from routerlab.expect import ExpectTimeout, wait_for
from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import load_topology

from .measure import loadavg, probe_loss, probes, run_prefix
from .migrate import migrate
from .topo import TopoNetwork, sessions_reset

log = logging.getLogger(__name__)

IMPLS = ("frr", "bird")
PAPER_CLONE_250K_S = 20.0  # software data plane: "over 20 s" for 250k routes
PAPER_MAX_RETRANSMISSIONS = 1  # core failure: "at most one" retransmission of an LSA


# --------------------------------------------------------------------------- shared helpers

def _worst(xs: list[Any]) -> Any:
    """The largest value that is not None (None when there is none)."""
    vals = [x for x in xs if x is not None]
    return max(vals) if vals else None


def _per_impl(impl: str, errors: dict[str, str], fn: Callable[[], Any]) -> Any:
    """Run one implementation's part; a failure is logged and kept in `errors` (the other
    implementation still runs). Interrupts are not caught."""
    try:
        return fn()
    except Exception as e:
        log.exception("%s part failed", impl.upper())
        errors[impl] = f"{type(e).__name__}: {e}"[:500]
        return None


def _all_failed(errors: dict[str, str], impls: tuple[str, ...] = IMPLS) -> None:
    """Nothing was measured: raise the implementations' errors as the experiment's."""
    if all(i in errors for i in impls):
        raise RuntimeError("; ".join(f"{i.upper()}: {errors[i]}" for i in impls))


def _errors_section(res: Result, errors: dict[str, str]) -> None:
    if errors:
        res.add_section("Failed implementations", "An implementation's build or move failed; "
                        "what it measured before the failure is kept, the rest is missing.\n\n"
                        + markdown_table(("impl", "error"),
                                         [(i, e.replace("|", "/").replace("\n", " "))
                                          for i, e in errors.items()]))


def aligned_bars(by_name: dict[str, dict[Any, float | None]]) -> dict[str, Any]:
    """Bar series over one shared x axis (`plot` places bars by position): the union of the
    x values, sorted, with NaN (no bar) where a series has none."""
    xs = sorted({x for ys in by_name.values() for x in ys})
    return {name: (xs, [float("nan") if ys.get(x) is None else ys[x] for x in xs])
            for name, ys in by_name.items() if ys}


def _fmt(x: Any) -> Any:
    return "-" if x is None else x


# --------------------------------------------------------------------------- cloning

def _announce_until(ext: Any, hv_of: Callable[[], Any], prefixes: list[str], want_routes: int,
                    timeout: float) -> float:
    """Announce `prefixes` from ExaBGP and wait until the VR's data plane (`hv_of()`, its
    hypervisor wherever it runs) carries at least `want_routes` routes; returns the seconds
    it took."""
    t0 = time.monotonic()
    if prefixes:
        ext.announce(prefixes)

    def routes() -> int:
        hv = hv_of()
        return hv.last.routes if hv.last is not None else 0
    try:
        wait_for(lambda: routes() >= want_routes, timeout, interval=0.5, retry_on=(),
                 what=f"{want_routes} routes in the data plane")
    except ExpectTimeout:
        raise TimeoutError(f"only {routes()} of {want_routes} routes reached the data plane "
                           f"after {timeout:.0f} s") from None
    return time.monotonic() - t0


def _prefixes(start: int, stop: int) -> list[str]:
    """The start..stop-1-th /24 of 11.0.0.0/8 and up (the injected table)."""
    return [f"{11 + i // 65536}.{(i // 256) % 256}.{i % 256}.0/24" for i in range(start, stop)]


def inject_timeout(impl: str, n: int) -> float:
    """Seconds allowed for `n` routes to go ExaBGP -> daemon -> kernel FIB -> data plane.
    Measured here for 250k: BIRD ~75 s; FRR (bgpd, then zebra installing with nexthop
    objects) about as long; both slow down a lot under load, hence the margin."""
    return 120 + n / 1000 * (2.0 if impl == "frr" else 1.5)


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


def _zebra_settled(daemon: Any, timeout: float, quiet_s: float = 3.0) -> int | None:
    """FRR: wait until zebra's RIB stops growing after routes were placed in the FIB (it
    reads them from netlink; a migration meanwhile would dump a zebra mid-burst); returns
    how many routes it holds (it can miss some of a 250k burst: netlink overflows), None
    when it cannot say."""
    def total() -> int:
        return int(daemon.vtysh_json("show ip route summary json").get("routesTotal", 0))
    t_end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    try:
        while time.monotonic() < t_end:
            n = total()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
            time.sleep(0.5)
    except Exception as e:
        log.warning("zebra's RIB size unknown: %s", e)
        return None
    return last


def _clone_impl(ctx: RunContext, impl: str, sizes: list[int], migrate_at: set[int],
                rows: list[dict[str, Any]], frac: tuple[float, float]) -> None:
    """One implementation's series: r1 on `impl` peering with ExaBGP; for each size the
    table grows to it (ExaBGP, or `ip -batch` into the FIB with --quick); r1 is then
    migrated (size in `migrate_at`) or its data plane cloned without a migration. Rows are
    appended to `rows` as they are measured."""
    from routerlab.daemons import BgpNeighbor, ExabgpDaemon, Interface, RouterSpec

    from .network import VroomNetwork

    net = VroomNetwork(run_prefix("c"))
    ext = None
    f0, f1 = frac
    try:
        ctx.step(f"{impl.upper()}: building two physical routers, r1 and an ExaBGP peer", f0)
        net.add_physical_router("A", ports=2)
        net.add_physical_router("B", ports=2)
        net.add_virtual_router("r1", RouterSpec(
            name="r1", router_id="10.255.98.1", asn=65000, loopback="10.255.98.1/32",
            interfaces=[Interface("eth0", "10.98.0.1/30")],
            bgp_neighbors=[BgpNeighbor("10.98.0.2", 65100, hold=30, keepalive=10)]), impl=impl)
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
        def hv_of() -> Any:  # r1's hypervisor, wherever r1 runs now
            return net.hypervisor("r1")

        base = hv_of().sync().routes
        announced = 0
        for k, n in enumerate(sizes):
            daemon_routes: int | None = None
            ctx.step(f"{impl.upper()}: {'placing' if ctx.quick else 'injecting'} {n:,} routes",
                     f0 + (f1 - f0) * k / len(sizes))
            t0 = time.monotonic()
            if ctx.quick:
                vr_ns = net.vrs["r1"].ns
                assert vr_ns is not None  # placed
                vr_ns.run(["ip", "-batch", "-"], timeout=600, input="".join(
                    f"route add {p} via 10.98.0.2 proto static\n"
                    for p in _prefixes(announced, n)))
                _announce_until(ext, hv_of, [], base + n, timeout=inject_timeout(impl, n))
                if impl == "frr":
                    daemon_routes = _zebra_settled(net.vrs["r1"].daemon, timeout=60 + n / 2000)
            else:
                _announce_until(ext, hv_of, _prefixes(announced, n), base + n,
                                timeout=inject_timeout(impl, n))
            inject_s = time.monotonic() - t0
            log.info("%s: %d routes in r1's data plane after %.1f s", impl, n, inject_s)
            time.sleep(2.0)  # let the last syncs settle before measuring
            load = loadavg()
            row: dict[str, Any] = {"impl": impl, "routes": n, "injected": n - announced,
                                   "inject_s": round(inject_s, 1),
                                   "loadavg": load, "freeze_s": None, "image_bytes": None,
                                   "migration_s": None, "migrated": n in migrate_at,
                                   "daemon_routes": daemon_routes}
            if n in migrate_at:
                ctx.step(f"{impl.upper()}: migrating r1 with {n:,} routes", None)
                target = "B" if net.vrs["r1"].pr.name == "A" else "A"  # type: ignore[union-attr]  # placed
                rep = migrate(net, "r1", target)
                row.update({"clone": rep.clone, "freeze_s": rep.freeze_s,
                            "image_bytes": rep.cp.image_bytes if rep.cp else None,
                            "migration_s": round(rep.total_s, 2), "phases": rep.phase_seconds(),
                            "move": f"{rep.source}->{rep.target}"})
                log.info("%s %d routes: cloning %.2f s, freeze %.3f s, image %.1f MB", impl, n,
                         rep.clone.get("total_s", -1), rep.freeze_s or -1,
                         (row["image_bytes"] or 0) / 1e6)
            else:
                ctx.step(f"{impl.upper()}: cloning {n:,} routes onto the other router", None)
                hv_a = hv_of()
                other = "B" if net.vrs["r1"].pr.name == "A" else "A"  # type: ignore[union-attr]  # placed
                hv_a.pause()  # as in a migration: the old data plane does not compete
                try:
                    row["clone"] = _clone_standalone(net, "r1", other)
                finally:
                    hv_a.resume()
            sess = ext.bgp_sessions()[0]
            row.update({"bgp_state_after": sess.state, "bgp_connections": sess.established_count})
            rows.append(row)
            announced = n
    finally:
        if ext is not None:
            ext.stop()
        net.stop()


def clone_summary(rows: list[dict[str, Any]], impl: str | None = None) -> dict[str, Any]:
    """One implementation's (or all) cloning rows summed up: cloning time with 250k routes
    (worst), freeze (max over migrations), image size with 250k routes, BGP kept."""
    rs = [r for r in rows if impl is None or r["impl"] == impl]
    r250 = [r for r in rs if r["routes"] == 250000]
    c250 = _worst([(r.get("clone") or {}).get("total_s") for r in r250])
    img = _worst([r.get("image_bytes") for r in r250 if r.get("migrated")])
    return {"rows": len(rs),
            "clone_250k_s": round(c250, 3) if c250 is not None else None,
            "freeze_s_max": _round(_worst([r.get("freeze_s") for r in rs])),
            "freeze_250k_s": _round(_worst([r.get("freeze_s") for r in r250])),
            "image_mb_250k": round(img / 1e6, 1) if img else None,
            "inject_rate_250k": _inject_rate(r250[-1]) if r250 else None,
            "bgp_kept": bool(rs) and all(r.get("bgp_state_after") == "Established"
                                         and r.get("bgp_connections") == 1 for r in rs)}


def _inject_rate(row: dict[str, Any]) -> int | None:
    """Routes per second the row's table grew by on its way into r1's data plane."""
    n, t = row.get("injected"), row.get("inject_s")
    return round(n / t) if n and t else None


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def clone_plan(quick: bool, part_of_all: bool) -> dict[str, tuple[list[int], set[int]]]:
    """Per implementation: (table sizes, sizes at which r1 is migrated)."""
    if quick:  # FIB placed directly: FRR at three sizes, migrated with the largest. No
        # BIRD: its kernel protocol does not learn routes placed in the FIB, so a BIRD r1
        # would not carry the table it is measured with.
        return {"frr": ([1000, 10000, 250000], {250000})}
    if part_of_all:  # about 2 minutes: BIRD's 250k would add ~100 s (70 s of injection)
        return {"frr": ([1000, 10000, 250000], {1000, 10000, 250000})}
    frr = [1000, 10000, 100000, 250000]
    return {"frr": (frr, set(frr)), "bird": ([250000], {250000})}


@experiment("vroom-cloning",
            "data-plane cloning time vs routes (1k-250k, injected over BGP by ExaBGP) of an "
            "FRR and a BIRD edge router: the target physical router repopulated from the "
            "migrated VR's FIB; freeze and image size with 250k routes")
def run_cloning(ctx: RunContext) -> Result:
    """VR r1 (AS 65000) learns N /24 prefixes from ExaBGP (AS 65100) over eBGP; its daemon
    puts them in r1's kernel FIB and the data-plane hypervisor on r1's bridge. r1 is then
    live-migrated to the other physical router; the cloning time is the target's bulk
    repopulation from r1's FIB there (read FIB + translate + install); the freeze and the
    CRIU image size show what the table costs the control-plane move. FRR r1 (bgpd +
    zebra, one process tree): N = 1k, 10k, 100k, 250k (cumulative), migrated at each;
    BIRD r1: 250k in one go, migrated once (~4 min in all). In `run all`: FRR only, N = 1k,
    10k, 250k (~2 min; BGP carries 250k routes into FRR in ~40 s, into BIRD in ~70 s
    here). --quick: the routes
    are placed directly in r1's FIB (`ip -batch`, ~15 s for 250k with zebra reading them
    in; BGP takes longer): FRR only (zebra learns the placed routes as kernel routes, BIRD
    would not hold them), at 1k and 10k cloned onto the other physical router without
    migrating (the same repopulation code path), at 250k migrated."""
    plan = clone_plan(ctx.quick, ctx.part_of_all)
    res = Result("vroom-cloning")
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    n_impl = len(plan)
    for k, (impl, (sizes, mig)) in enumerate(plan.items()):
        frac = (0.02 + 0.95 * k / n_impl, 0.02 + 0.95 * (k + 1) / n_impl)
        _per_impl(impl, errors, functools.partial(_clone_impl, ctx, impl, sizes, mig, rows, frac))
    _all_failed(errors, tuple(plan))
    _clone_metrics(res, rows, plan, errors)
    _clone_report(res, ctx, rows, plan, errors)
    return res


def _clone_metrics(res: Result, rows: list[dict[str, Any]],
                   plan: dict[str, tuple[list[int], set[int]]], errors: dict[str, str]) -> None:
    s_all = clone_summary(rows)
    per = {impl: clone_summary(rows, impl) for impl in plan}
    c250 = s_all["clone_250k_s"]
    res.add_metric("clone_250k_s", "data-plane cloning, 250k routes (worst of FRR and BIRD)",
                   "s", c250, paper=PAPER_CLONE_250K_S, goal="< 5",
                   met=c250 is not None and c250 < 5 and not errors)
    for impl, s in per.items():
        res.add_metric(f"clone_250k_s_{impl}", f"data-plane cloning, 250k routes, {impl.upper()} r1",
                       "s", s["clone_250k_s"], paper=PAPER_CLONE_250K_S, goal="< 5",
                       met=s["clone_250k_s"] is not None and s["clone_250k_s"] < 5)
    res.add_metric("clone_freeze_s_max", "control-plane freeze while carrying these tables "
                   "(max, FRR and BIRD)", "s", s_all["freeze_s_max"], goal="reported",
                   met=s_all["freeze_s_max"] is not None)
    for impl, s in per.items():
        res.add_metric(f"clone_freeze_s_max_{impl}", f"control-plane freeze, {impl.upper()} r1 "
                       "(max over its migrations)", "s", s["freeze_s_max"], goal="reported",
                       met=s["freeze_s_max"] is not None)
        res.add_metric(f"clone_image_mb_250k_{impl}", f"CRIU image with 250k routes, "
                       f"{impl.upper()} r1", "MB", s["image_mb_250k"], goal="reported",
                       met=s["image_mb_250k"] is not None)
    kept = bool(rows) and all(s["bgp_kept"] for s in per.values() if s["rows"]) and not errors
    res.add_metric("bgp_kept", "BGP session kept through every migration (FRR and BIRD)", "",
                   kept, goal="yes", met=kept)


def _clone_report(res: Result, ctx: RunContext, rows: list[dict[str, Any]],
                  plan: dict[str, tuple[list[int], set[int]]], errors: dict[str, str]) -> None:
    res.raw.update({"rows": rows, "plan": {i: {"sizes": s, "migrated_at": sorted(m)}
                                           for i, (s, m) in plan.items()},
                    "errors": errors})
    how = ("routes placed directly in r1's FIB (`ip -batch`, --quick; zebra reads them as "
           "kernel routes from netlink and may miss some of a big burst: the routes its RIB "
           "held are shown); 'clone only' rows cloned onto the other physical router without "
           "a migration"
           if ctx.quick else "routes injected over BGP by ExaBGP, cloned by migrating r1")
    res.add_section("By implementation", "With 250k routes: cloning time, the control-plane "
                    "freeze and the CRIU image (all of r1's processes: FRR's zebra + bgpd + "
                    "staticd, or BIRD), the rate the last routes reached r1's data plane "
                    + ("(`ip -batch` -> kernel FIB -> hypervisor, zebra's RIB settled; --quick)"
                       if ctx.quick else "(ExaBGP -> daemon -> kernel FIB -> hypervisor)")
                    + ".\n\n"
                    + markdown_table(
                        ("impl", "cloning 250k s", "freeze 250k s", "image 250k MB",
                         "freeze max s", "routes/s into the data plane", "BGP kept"),
                        [(impl, _fmt(s["clone_250k_s"]), _fmt(s["freeze_250k_s"]),
                          _fmt(s["image_mb_250k"]), _fmt(s["freeze_s_max"]),
                          _fmt(s["inject_rate_250k"]), "yes" if s["bgp_kept"] else "no")
                         for impl in plan for s in [clone_summary(rows, impl)]]
                        + [("paper (software data plane)", f"> {PAPER_CLONE_250K_S:.0f}",
                            "-", "-", "-", "-", "-")]))
    res.add_section("Cloning time by table size", "Cloning = the target bridge repopulated "
                    "from the VR's kernel FIB: read (`ip -o route`), translate to LPM flows "
                    "and next-hop groups, install in bulk (`ovs-ofctl --bundle`). "
                    f"Here: {how}. *inject s*: the table growing from the previous row's "
                    "size to this one, until r1's data plane carried it. Load average (1 min) "
                    "at each measurement shown: the machine is shared and timings scale with "
                    "it.\n\n"
                    + markdown_table(("impl", "routes", "how", "read s", "translate s",
                                      "install s", "cloning s", "freeze s", "image MB",
                                      "migration s", "inject s", "load avg"),
                                     [(r["impl"], r["routes"],
                                       ("migrated" if r["migrated"] else "clone only")
                                       + (f" (zebra's RIB: {r['daemon_routes']:,})"
                                          if r.get("daemon_routes") is not None else ""),
                                       r["clone"].get("read_s"), r["clone"].get("translate_s"),
                                       r["clone"].get("install_s"), r["clone"].get("total_s"),
                                       _fmt(r["freeze_s"]),
                                       round(r["image_bytes"] / 1e6, 1) if r["image_bytes"] else "-",
                                       _fmt(r["migration_s"]), r["inject_s"], r["loadavg"])
                                      for r in rows]))
    _errors_section(res, errors)
    try:
        series: dict[str, Any] = {}
        for impl in plan:
            rs = [r for r in rows if r["impl"] == impl]
            if rs:
                xs = [r["routes"] for r in rs]
                series[f"{impl.upper()} cloning (total)"] = (xs, [r["clone"].get("total_s") for r in rs])
                series[f"{impl.upper()} install"] = (xs, [r["clone"].get("install_s") for r in rs])
        plot(ctx.out_dir / "cloning.png", series,
             f"Data-plane cloning time (paper: > {PAPER_CLONE_250K_S:.0f} s for 250k)",
             "routes", "seconds", logx=True)
        res.plots.append(("Cloning time vs routes, per implementation", "cloning.png"))
        mig = aligned_bars({impl.upper(): {r["routes"]: r["freeze_s"] for r in rows
                                           if r["impl"] == impl and r["migrated"]}
                            for impl in plan})
        plot(ctx.out_dir / "freeze.png", mig, "Control-plane freeze by table size", "routes",
             "seconds", kind="bar")
        res.plots.append(("Control-plane freeze by table size, per implementation", "freeze.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)


# --------------------------------------------------------------------------- core failure

def core_summary(records: list[dict[str, Any]], impl: str | None = None) -> dict[str, Any]:
    """Core-failure runs (of one implementation, or all) summed up: adjacencies lost, the
    most retransmissions of one LSA to the migrating router, all its LSA retransmissions,
    probe packets lost, the worst freeze."""
    rs = [r for r in records if impl is None or r["impl"] == impl]
    per_nb = [v for r in rs for v in r["retransmissions"].values()]
    return {"runs": len(rs),
            "adjacencies_lost": sum(len(r["resets"]) for r in rs),
            "max_per_lsa": max([v["to_vr"].get("max_per_lsa", 0) for v in per_nb], default=0),
            "retransmissions_total": sum(v["to_vr"].get("retransmissions", 0) for v in per_nb),
            "by_vr_total": sum(v["from_vr"].get("retransmissions", 0) for v in per_nb),
            "packets_lost": sum(r["packets_lost"] for r in rs),
            "freeze_s_max": _worst([r["freeze_s"] for r in rs])}


_TCPDUMP_TS = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) IP\b")
_OSPF_HDR = re.compile(r"^\s*(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): OSPFv2, ([\w-]+)")


def lsu_times(text: str) -> list[tuple[float, str]]:
    """(second of the day, sender) of each OSPF LS-Update in ``tcpdump -n -v`` text (its
    timestamps are local time of day)."""
    out: list[tuple[float, str]] = []
    ts: float | None = None
    for ln in text.splitlines():
        m = _TCPDUMP_TS.match(ln)
        if m:
            ts = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            continue
        m = _OSPF_HDR.match(ln)
        if m and ts is not None:
            if m.group(3) == "LS-Update":
                out.append((ts, m.group(1)))
            ts = None
    return out


def first_lsu_after(text: str, src: str, t_wall: float) -> float | None:
    """Seconds from `t_wall` (epoch) until `src` first sent an LS-Update in `text` (None:
    it sent none after it)."""
    lt = time.localtime(t_wall)
    sod = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (t_wall % 1)
    later = [t - sod for t, s in lsu_times(text) if s == src and t >= sod]
    return round(min(later), 3) if later else None


def _core_impl(ctx: RunContext, impl: str, runs: int, records: list[dict[str, Any]],
               frac: tuple[float, float]) -> dict[str, Any]:
    """Build the network with the moving router on `impl` and run `runs` moves during a
    link failure; records appended to `records`; returns facts about the build."""
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
    f0, f1 = frac
    ctx.step(f"{impl.upper()}: building {topo.name} ({vr} on {impl.upper()})", f0)
    tn = TopoNetwork(topo, run_prefix("f"), impl={vr: impl}, spare={spare: vr})
    extra: dict[str, Any] = {"topology": topo.name, "vr": vr, "failed_link": f"{fail_a}-{fail_b}"}
    try:
        from .ospfwire import LsaCapture, retransmissions

        t_build = time.monotonic()
        tn.start(progress=lambda m: ctx.step(f"{impl.upper()}: {m}", None))
        tn.wait_converged(timeout=180)
        tn.wait_reachable(*pairs[0])
        extra["build_s"] = round(time.monotonic() - t_build, 1)
        home = tn.home[vr]
        tn.net.tunnel(home, spare)
        vr_rid = str(topo.node(vr).router_id)
        for i in range(runs):
            ctx.step(f"{impl.upper()} run {i + 1}/{runs}: migrating {vr}, failing "
                     f"{fail_a}-{fail_b}", f0 + (f1 - f0) * (i + 1) / (runs + 1))
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
                failed_at += [time.monotonic(), time.time()]

            t0 = time.monotonic()
            try:
                with probes(tn, pairs) as ps:
                    time.sleep(1.0)
                    rep = migrate(tn.net, vr, target, hooks={"before-restore": fail_link})
                    time.sleep(topo.ospf.dead + 3.0)  # the failure detected and flooded, SPF run
            finally:
                sends = {nb: c.stop() for nb, c in caps.items()}
            after = tn.neighbour_view(vr)
            resets = sessions_reset(before, after, time.monotonic() - t0)
            rx: dict[str, dict[str, Any]] = {}
            for nb, ss in sends.items():
                per = retransmissions(ss)
                nb_ip = str(topo.link_between(nb, vr).end(nb).address.ip)  # type: ignore[union-attr]  # router links are addressed
                vr_ip = str(topo.link_between(nb, vr).end(vr).address.ip)  # type: ignore[union-attr]  # router links are addressed
                rx[nb] = {"to_vr": per.get(nb_ip, {}), "from_vr": per.get(vr_ip, {})}
                if failed_at:  # did the failure's flooding reach the VR while it was frozen?
                    rx[nb]["first_update_after_failure_s"] = first_lsu_after(
                        caps[nb].text, nb_ip, failed_at[1])
            firsts = [v.get("first_update_after_failure_s") for v in rx.values()]
            cp = rep.cp
            lost, gap, sent = probe_loss(ps)
            records.append({"impl": impl, "run": i + 1, "from": rep.source, "to": target,
                            "resets": resets, "retransmissions": rx,
                            "freeze_s": rep.freeze_s, "total_s": round(rep.total_s, 3),
                            "link_failed_after_s": round(failed_at[0] - t0, 3) if failed_at else None,
                            # the freeze still to come when the link failed (restore, unlock,
                            # sockets) and the first LS-Update a neighbour sent the VR after it
                            "freeze_left_at_failure_s": round(cp.restore_s + cp.unlock_s + cp.rejoin_s, 3)
                            if cp and failed_at else None,
                            "first_update_after_failure_s": min(
                                [x for x in firsts if x is not None], default=None),
                            "packets_lost": lost, "longest_gap_ms": round(gap, 1),
                            "packets_sent": sent, "phases": rep.phase_seconds(),
                            "loadavg": loadavg(), "before": before, "after": after,
                            "vr_router_id": vr_rid})
            log.info("core-failure %s run %d: resets %s, retransmissions %s, lost %d", impl,
                     i + 1, resets or "none", rx, lost)
            tn.net.vrs[fail_a].ns.ip("link", "set", fail_if, "up")  # type: ignore[union-attr]  # a running VR has its namespace
            if i + 1 < runs:
                tn.wait_converged(timeout=90)
                tn.wait_reachable(*pairs[0])
    finally:
        tn.stop()
    return extra


def core_runs(quick: bool, part_of_all: bool) -> int:
    """Moves per implementation: 1 with --quick (ring), 2 in `run all`, 3 alone (Abilene)."""
    return 1 if quick else 2 if part_of_all else 3


@experiment("vroom-core-failure",
            "migrate a core (OSPF-only) VR, on FRR and on BIRD, while a link elsewhere fails "
            "mid-migration; adjacencies must stay up; OSPF retransmissions counted on the wire")
def run_core_failure(ctx: RunContext) -> Result:
    """Abilene as in vroom-maintenance; the core router KSCY (OSPF only: DNVR, HSTN, IPLS)
    moves to a spare physical router KC2, once with KSCY on FRR and once on BIRD (each its
    own build; the other routers run FRR). During its control-plane freeze (the worst
    moment) the STTL-SNVA link fails (STTL's interface goes down), so new LSAs flood
    towards the frozen KSCY. tcpdump on each neighbour's link to KSCY counts LSA
    retransmissions (the same LSA instance sent twice by one router); probes hLOSA <-> hNYCM
    (1,000 packets/s each way) run throughout. Three runs per implementation (KSCY there
    and back, the link restored between runs; two in `run all`). --quick: one run per
    implementation on the 4-router ring instead (r2 moves, r3-r4 fails, probes h1 <-> h2)."""
    runs = int(ctx.options.get("runs", core_runs(ctx.quick, ctx.part_of_all)))
    res = Result("vroom-core-failure")
    records: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    builds: dict[str, Any] = {}
    for k, impl in enumerate(IMPLS):
        frac = (0.02 + 0.95 * k / len(IMPLS), 0.02 + 0.95 * (k + 1) / len(IMPLS))
        extra = _per_impl(impl, errors, functools.partial(_core_impl, ctx, impl, runs, records, frac))
        if extra:
            builds[impl] = extra
    _all_failed(errors)
    _core_metrics(res, records, errors)
    _core_report(res, ctx, records, builds, errors)
    return res


def _core_metrics(res: Result, records: list[dict[str, Any]], errors: dict[str, str]) -> None:
    s = core_summary(records)
    per = {impl: core_summary(records, impl) for impl in IMPLS}
    ok_all = not errors and all(p["runs"] for p in per.values())
    res.add_metric("adjacencies_lost", "adjacencies lost (all neighbours, all runs, FRR and "
                   "BIRD)", "", s["adjacencies_lost"], paper=0, goal="0",
                   met=ok_all and s["adjacencies_lost"] == 0)
    for impl, p in per.items():
        res.add_metric(f"adjacencies_lost_{impl}", f"adjacencies lost, {impl.upper()} core "
                       "router", "", p["adjacencies_lost"] if p["runs"] else None, paper=0,
                       goal="0", met=bool(p["runs"]) and p["adjacencies_lost"] == 0)
    res.add_metric("ospf_retransmissions_max_per_lsa", "OSPF retransmissions of one LSA to "
                   "the migrating router (max, FRR and BIRD)", "", s["max_per_lsa"],
                   paper=PAPER_MAX_RETRANSMISSIONS, goal="<= 1",
                   met=ok_all and s["max_per_lsa"] <= PAPER_MAX_RETRANSMISSIONS)
    for impl, p in per.items():
        res.add_metric(f"ospf_retransmissions_max_per_lsa_{impl}", "OSPF retransmissions of "
                       f"one LSA to the migrating router, {impl.upper()} (max)", "",
                       p["max_per_lsa"] if p["runs"] else None, paper=PAPER_MAX_RETRANSMISSIONS,
                       goal="<= 1", met=bool(p["runs"]) and p["max_per_lsa"] <= PAPER_MAX_RETRANSMISSIONS)
    res.add_metric("ospf_retransmissions_total", "LSA retransmissions to the migrating "
                   "router (all neighbours, all runs, FRR and BIRD)", "",
                   s["retransmissions_total"], goal="reported", met=ok_all)
    for impl, p in per.items():
        res.add_metric(f"ospf_retransmissions_total_{impl}", "LSA retransmissions to the "
                       f"migrating router, {impl.upper()} (all neighbours, all runs)", "",
                       p["retransmissions_total"] if p["runs"] else None, goal="reported",
                       met=bool(p["runs"]))
    res.add_metric("packets_lost_total", "probe packets lost (2 x 1,000 pps, FRR and BIRD)",
                   "packets", s["packets_lost"], goal="reported", met=ok_all)
    for impl, p in per.items():
        res.add_metric(f"packets_lost_total_{impl}", f"probe packets lost, {impl.upper()} "
                       "(2 x 1,000 pps)", "packets", p["packets_lost"] if p["runs"] else None,
                       goal="reported", met=bool(p["runs"]))


def _core_report(res: Result, ctx: RunContext, records: list[dict[str, Any]],
                 builds: dict[str, Any], errors: dict[str, str]) -> None:
    b0: dict[str, Any] = next(iter(builds.values()), {})
    vr = b0.get("vr", "r2" if ctx.quick else "KSCY")
    failed = b0.get("failed_link", "r3-r4" if ctx.quick else "STTL-SNVA")
    res.raw.update({"runs": records, "vr": vr, "failed_link": failed,
                    "topology": b0.get("topology"), "builds": builds, "errors": errors})
    rows: list[tuple[Any, ...]] = []
    for impl in IMPLS:
        p = core_summary(records, impl)
        if not p["runs"]:
            rows.append((impl, 0, "-", "-", "-", "-", "-", "-"))
            continue
        rows.append((impl, p["runs"], p["adjacencies_lost"], p["max_per_lsa"],
                     p["retransmissions_total"], p["by_vr_total"], p["packets_lost"],
                     _fmt(_round(p["freeze_s_max"]))))
    rows.append(("paper (Quagga)", "-", 0, f"<= {PAPER_MAX_RETRANSMISSIONS}", "-", "-", "-", "-"))
    res.add_section("By implementation", f"{vr} ({failed.split('-')[0]}'s interface to "
                    f"{failed.split('-')[1]} goes down during {vr}'s control-plane freeze), "
                    f"per implementation of {vr}; each its own build of {b0.get('topology', '-')} "
                    "(built and converged: " + ", ".join(f"{i.upper()} {b['build_s']} s"
                                                         for i, b in builds.items() if "build_s" in b)
                    + ").\n\n" + markdown_table(
                        ("impl", "runs", "adjacencies lost", "max retransmissions of one LSA",
                         f"LSA retransmissions to {vr}", f"by {vr}", "probe lost",
                         "freeze max s"), rows))
    res.add_section("Runs", f"{vr} moves while {failed.split('-')[0]}'s interface to "
                    f"{failed.split('-')[1]} goes down during the control-plane freeze (just "
                    "before the restore). *freeze left at failure*: the restore, unlock and "
                    "socket fixes still to come then; *first update after failure*: the "
                    f"earliest LS-Update any neighbour sent {vr} after the failure. An update "
                    "sent before the freeze ends meets a deaf router and must be retransmitted "
                    "(after the neighbour's retransmit interval); one sent later is simply "
                    "acknowledged. Retransmissions: LSA instances a router sent more than once "
                    "on its link with the migrating router (tcpdump).\n\n"
                    + markdown_table(
                        ("impl", "run", "move", "freeze s", "freeze left at failure s",
                         f"first update to {vr} after failure s", "adjacencies lost",
                         f"retransmissions to {vr} (per neighbour)", f"by {vr}", "probe lost",
                         "load avg"),
                        [(r["impl"], r["run"], f"{r['from']}->{r['to']}", r["freeze_s"],
                          _fmt(r.get("freeze_left_at_failure_s")),
                          _fmt(r.get("first_update_after_failure_s")), len(r["resets"]),
                          ", ".join(f"{nb}: {v['to_vr'].get('retransmissions', 0)}"
                                    for nb, v in r["retransmissions"].items()),
                          sum(v["from_vr"].get("retransmissions", 0)
                              for v in r["retransmissions"].values()),
                          r["packets_lost"], r["loadavg"]) for r in records]))
    _errors_section(res, errors)
    try:
        series = aligned_bars({impl.upper(): {r["run"]: sum(v["to_vr"].get("retransmissions", 0)
                                                            for v in r["retransmissions"].values())
                                              for r in records if r["impl"] == impl}
                               for impl in IMPLS})
        if series:
            plot(ctx.out_dir / "retransmissions.png", series,
                 f"LSA retransmissions to {vr} per run (all neighbours)", "run",
                 "retransmissions", kind="bar")
            res.plots.append(("LSA retransmissions per run, per implementation",
                              "retransmissions.png"))
            plot(ctx.out_dir / "freeze.png",
                 aligned_bars({impl.upper(): {r["run"]: r["freeze_s"] for r in records
                                              if r["impl"] == impl} for impl in IMPLS}),
                 f"{vr}'s control-plane freeze per run", "run", "seconds", kind="bar")
            res.plots.append(("Control-plane freeze per run, per implementation", "freeze.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)


# --------------------------------------------------------------------------- power

# The ring mixes implementations: the two routers that move run one FRR and one BIRD, and
# each has one FRR and one BIRD neighbour; consolidated, each remaining physical router
# carries one of each.
POWER_IMPL = {"r1": "bird", "r2": "frr", "r3": "frr", "r4": "bird"}
POWER_IN = [("r2", "P1"), ("r4", "P3")]
POWER_OUT = [("r2", "P2"), ("r4", "P4")]


def power_summary(moves: list[dict[str, Any]], impl: str | None = None) -> dict[str, Any]:
    """Power moves (of VRs on one implementation, or all) summed up."""
    ms = [m for m in moves if impl is None or m["impl"] == impl]
    return {"moves": len(ms), "packets_lost": sum(m["packets_lost"] for m in ms),
            "resets": sum(len(m["resets"]) for m in ms),
            "longest_gap_ms": _worst([m["longest_gap_ms"] for m in ms]),
            "freeze_s_max": _round(_worst([m["freeze_s"] for m in ms]))}


@experiment("vroom-power",
            "power savings: consolidate VRs (FRR and BIRD) onto fewer physical routers when "
            "traffic is low, spread them out again, under 1,000 pps probes")
def run_power(ctx: RunContext) -> Result:
    """The 4-router OSPF ring, every router a VR on its own physical router P1-P4, FRR and
    BIRD mixed (r1 BIRD, r2 FRR, r3 FRR, r4 BIRD; hosts h1 at r1 and h2 at r3).
    Consolidation: r2 (FRR) moves onto P1 and r4 (BIRD) onto P3, so two physical routers
    carry the whole network, each with an FRR and a BIRD VR, and P2, P4 could be powered
    down; then both move back. Probes h1 <-> h2 (1,000 packets/s each way) run around each
    move on its own (1 s before it, 1.5 s after), so loss is counted per move and per
    implementation. Two cycles (8 moves); --quick: one (4 moves)."""
    cycles = int(ctx.options.get("cycles", 1 if ctx.quick else 2))
    res = Result("vroom-power")
    topo = load_topology("ring")
    ctx.step("building the ring: 4 VRs (FRR and BIRD) on 4 physical routers", 0.02)
    tn = TopoNetwork(topo, run_prefix("p"), impl=dict(POWER_IMPL), ports={"P1": 6, "P3": 6})
    steps_done: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    pairs = [("h1", "h2"), ("h2", "h1")]
    error: str | None = None
    try:
        tn.start(progress=lambda m: ctx.step(m, None))
        tn.wait_converged(timeout=120)
        tn.wait_reachable("h1", "h2")
        for a, b in (("P1", "P2"), ("P3", "P4")):
            tn.net.tunnel(a, b)
        for c in range(cycles):
            for label, plan in (("consolidate", POWER_IN), ("spread", POWER_OUT)):
                ctx.step(f"cycle {c + 1}/{cycles}: {label}",
                         0.05 + 0.9 * len(moves) / (2 * len(POWER_IN) * cycles))
                for v, pr in plan:
                    moves.append(_power_move(tn, pairs, c + 1, label, v, pr))
                active = sorted({vr.pr.name for vr in tn.net.vrs.values() if vr.pr})
                steps_done.append({"cycle": c + 1, "step": label,
                                   "physical_routers_in_use": active})
                log.info("power %s: routers in use %s", label, active)
                tn.wait_converged(timeout=60)
    except Exception as e:
        if not moves:
            raise
        log.exception("power: stopped after %d moves", len(moves))
        error = f"{type(e).__name__}: {e}"[:500]
    finally:
        tn.stop()
    _power_report(res, ctx, steps_done, moves, cycles, error)
    return res


def _power_move(tn: TopoNetwork, pairs: list[tuple[str, str]], cycle: int, label: str,
                v: str, pr: str) -> dict[str, Any]:
    """One VR moved under its own probes."""
    before = tn.neighbour_view(v)
    t0 = time.monotonic()
    with probes(tn, pairs) as ps:
        time.sleep(1.0)
        rep = migrate(tn.net, v, pr)
        time.sleep(1.5)
    elapsed = time.monotonic() - t0
    resets = sessions_reset(before, tn.neighbour_view(v), elapsed)
    lost, gap, sent = probe_loss(ps)
    log.info("power %s: %s (%s) %s -> %s, freeze %.3f s, lost %d", label, v, POWER_IMPL[v],
             rep.source, pr, rep.freeze_s or -1, lost)
    return {"cycle": cycle, "step": label, "vr": v, "impl": tn.net.vrs[v].impl,
            "from": rep.source, "to": pr, "freeze_s": rep.freeze_s,
            "total_s": round(rep.total_s, 3), "packets_lost": lost,
            "longest_gap_ms": round(gap, 1), "packets_sent": sent, "resets": resets,
            "phases": rep.phase_seconds(), "loadavg": loadavg()}


def _power_report(res: Result, ctx: RunContext, steps_done: list[dict[str, Any]],
                  moves: list[dict[str, Any]], cycles: int, error: str | None) -> None:
    s = power_summary(moves)
    per = {impl: power_summary(moves, impl) for impl in IMPLS}
    complete = error is None and len(moves) == 2 * len(POWER_IN) * cycles
    fewest = min((len(st["physical_routers_in_use"]) for st in steps_done), default=None)
    res.add_metric("packets_lost_total", "packets lost over all consolidations/spreads (FRR "
                   "and BIRD VRs)", "packets", s["packets_lost"], paper=0, goal="0",
                   met=complete and s["packets_lost"] == 0)
    for impl, p in per.items():
        res.add_metric(f"packets_lost_total_{impl}", f"packets lost while moving the "
                       f"{impl.upper()} VR", "packets", p["packets_lost"] if p["moves"] else None,
                       paper=0, goal="0", met=bool(p["moves"]) and p["packets_lost"] == 0)
    res.add_metric("routers_in_use_min", "physical routers carrying the network when "
                   "consolidated (of 4)", "", fewest, goal="2", met=fewest == 2)
    res.add_metric("sessions_reset", "adjacencies reset by the moves (FRR and BIRD VRs)", "",
                   s["resets"], paper=0, goal="0", met=complete and s["resets"] == 0)
    for impl, p in per.items():
        res.add_metric(f"sessions_reset_{impl}", f"adjacencies reset by moving the "
                       f"{impl.upper()} VR", "", p["resets"] if p["moves"] else None, paper=0,
                       goal="0", met=bool(p["moves"]) and p["resets"] == 0)
    for impl, p in per.items():
        res.add_metric(f"freeze_s_max_{impl}", f"control-plane freeze, {impl.upper()} VR (max)",
                       "s", p["freeze_s_max"], goal="reported", met=p["freeze_s_max"] is not None)
    res.raw.update({"steps": steps_done, "moves": moves, "impl": POWER_IMPL, "error": error})
    res.add_section("By implementation", "Every move of the VRs on one implementation (r2 "
                    "on FRR, r4 on BIRD; the paper's prototype ran Quagga): probe packets lost "
                    "(h1 <-> h2, 1,000 packets/s each way, around each move), adjacencies "
                    "reset, the worst control-plane freeze.\n\n" + markdown_table(
                        ("impl", "VR", "moves", "lost", "longest gap ms", "resets", "freeze max s"),
                        [(impl, ", ".join(v for v, i in POWER_IMPL.items()
                                          if i == impl and v in dict(POWER_IN)),
                          p["moves"], p["packets_lost"], _fmt(p["longest_gap_ms"]), p["resets"],
                          _fmt(p["freeze_s_max"])) for impl, p in per.items()]
                        + [("paper (Quagga)", "-", "-", 0, "-", 0, "-")]))
    res.add_section("Moves", "Physical routers in use after each step: "
                    + "; ".join(f"cycle {st['cycle']} {st['step']}: "
                                f"{', '.join(st['physical_routers_in_use'])}" for st in steps_done)
                    + ".\n\n" + markdown_table(
                        ("cycle", "step", "VR", "impl", "move", "freeze s", "lost",
                         "longest gap ms", "resets", "load avg"),
                        [(m["cycle"], m["step"], m["vr"], m["impl"], f"{m['from']}->{m['to']}",
                          _fmt(_round(m["freeze_s"])), m["packets_lost"], m["longest_gap_ms"],
                          ", ".join(m["resets"]) or "none", m["loadavg"]) for m in moves]))
    if error:
        _errors_section(res, {"run": error})
    try:
        series = aligned_bars({impl.upper(): {k: m["freeze_s"] for k, m in enumerate(
            [m for m in moves if m["impl"] == impl], 1)} for impl in IMPLS})
        if series:
            plot(ctx.out_dir / "freeze.png", series, "Control-plane freeze per move of each VR "
                 "(r2 FRR, r4 BIRD)", "move", "seconds", kind="bar")
            res.plots.append(("Control-plane freeze per move, per implementation", "freeze.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)
