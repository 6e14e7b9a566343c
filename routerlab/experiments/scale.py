"""`routerlab bench scale`: what a router costs as the network grows, and where it stops.

For each network of a series (Topology Zoo graphs from the `zoo:` import up to TataNld's 143
routers, then synthetic random geometric graphs; FRR OSPF, a BIRD OSPF series and an eBGP
series where every router is its own AS) one `Network` is built and measured:

- build: namespaces, veths, Mininet shells (from `Network.start` to the daemons' start);
- start: every daemon launched, validated and answering;
- converge: from the daemons' start until every adjacency is Full (every session
  Established) and every router's kernel FIB holds every other router's loopback (OSPF:
  and every OSPF subnet, `Network.convergence_state`);
- memory: PSS of each router's processes (daemons and its Mininet shell, from
  /proc/PID/smaps_rollup) and the drop in the machine's MemAvailable (kernel included);
- CPU at rest: CPU time of all those processes over a window after convergence;
- processes, threads and open file descriptors per router;
- clean: `routerlab clean`'s own removal (`registry.clean_session_file`) of the session
  file that recorded this network alone, i.e. what `routerlab clean` does after a crash,
  scoped to this run (never the machine-wide clean: other runs share the machine).

Each measured point is appended to ``points.jsonl`` in the output directory; a later run
into the same directory keeps the points already there (so a series can be extended one
size at a time) and the report says when each was measured. The synthetic series stops at
the first size that does not converge or that the memory measured so far says will not fit.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from routerlab import registry
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.experiments import RunContext, experiment
from routerlab.network import Network
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import Topology
from routerlab.topology.synthetic import random_geometric

log = logging.getLogger(__name__)

#: the issue's measurements before this work (`routerlab cli zoo:TataNld`, 2-core VM)
TATA_BEFORE_S = 58.1
#: seconds of CPU sampling at rest, after SETTLE_S of quiet past convergence
REST_WINDOW_S = 10.0
SETTLE_S = 5.0
#: memory left for everyone else on the shared machine when deciding whether a size fits
RESERVE_MB = 4096


@dataclass(frozen=True)
class Case:
    """One network to measure: its series, how to make it and its nominal size."""

    series: str
    label: str
    routers: int
    make: Callable[[], Topology]


def zoo(name: str, daemon: str = "frr") -> Callable[[], Topology]:
    def make() -> Topology:
        from routerlab.topology import import_topohub

        return import_topohub(f"topozoo/{name}", daemon=daemon)
    return make


def rgg(n: int, daemon: str = "frr", protocol: str = "ospf") -> Callable[[], Topology]:
    return lambda: random_geometric(n, daemon=daemon, protocol=protocol)


def cases(quick: bool) -> list[Case]:
    """The series, smallest first in each."""
    if quick:
        return [Case("zoo-frr", "Abilene", 11, zoo("Abilene")),
                Case("synthetic-frr", "rgg30", 30, rgg(30)),
                Case("zoo-bird", "Abilene", 11, zoo("Abilene", "bird")),
                Case("bgp-frr", "rgg12", 12, rgg(12, protocol="bgp"))]
    out = [Case("zoo-frr", name, n, zoo(name)) for name, n in
           (("Abilene", 11), ("Roedunet", 40), ("Uninett2010", 74), ("VtlWavenet2011", 91),
            ("TataNld", 143))]
    out += [Case("synthetic-frr", f"rgg{n}", n, rgg(n)) for n in (200, 300, 500, 1000)]
    out += [Case("zoo-bird", name, n, zoo(name, "bird")) for name, n in
            (("Abilene", 11), ("Uninett2010", 74), ("TataNld", 143))]
    out += [Case("bgp-frr", f"rgg{n}", n, rgg(n, protocol="bgp")) for n in (25, 50, 100, 200)]
    return out


# ----------------------------------------------------------------------------- /proc readers

def _meminfo_mb(field: str) -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def kernel_mb() -> float:
    """The kernel's own memory (slab, kernel stacks, page tables, per-CPU): what namespaces,
    veths, sockets and FIBs cost, with far less of other runs' noise than MemAvailable."""
    return sum(_meminfo_mb(f) for f in ("Slab", "KernelStack", "PageTables", "Percpu"))


def proc_cost(pid: int) -> dict[str, float]:
    """PSS (MB), threads, open fds and CPU seconds of one process (zeros when it is gone)."""
    out = {"pss_mb": 0.0, "threads": 0.0, "fds": 0.0, "cpu_s": 0.0}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss_mb"] = int(line.split()[1]) / 1024
                    break
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    out["threads"] = float(line.split()[1])
        out["fds"] = float(len(os.listdir(f"/proc/{pid}/fd")))
        t = psutil.Process(pid).cpu_times()
        out["cpu_s"] = t.user + t.system
    return out


def router_pids(net: Network) -> dict[str, list[int]]:
    """{router: pids of its daemons and its Mininet shell}."""
    return {name: [*r.daemon.pids.values(), r.pid] for name, r in net.routers.items()}


def _cpu_s(pids: list[int]) -> float:
    return sum(proc_cost(p)["cpu_s"] for p in pids)


# ----------------------------------------------------------------------------- convergence

def loopback_gap(net: Network) -> str | None:
    """The first router whose kernel FIB lacks another router's loopback (None: none)."""
    loops = {name: str(lo.network) for name in net.routers
             if (lo := net.topo.node(name).loopback) is not None}
    want = set(loops.values())
    for name in net.routers:
        missing = want - {loops.get(name)} - net.kernel_routes(name)
        if missing:
            return f"{name}: {len(missing)} loopbacks not in its FIB (e.g. {sorted(missing)[0]})"
    return None


def wait_loopbacks(net: Network, timeout: float) -> None:
    gap = ["not evaluated"]

    def done() -> bool:
        gap[0] = loopback_gap(net) or ""
        return not gap[0]

    try:
        wait_for(done, timeout, interval=0.5, what="every loopback in every FIB", retry_on=())
    except ExpectTimeout:
        raise TimeoutError(f"{net.topo.name}: {gap[0]}") from None


# ----------------------------------------------------------------------------- start in waves

#: networks of at least this many routers start their daemons in waves of WAVE_SIZE
WAVE_FROM = 400
WAVE_SIZE = 100


def wave_order(topo: Topology) -> list[str]:
    """The routers in breadth-first order from the first (then any other component's): every
    prefix of it is as connected as the graph allows, so a wave joins the routers before it."""
    routers = [r.name for r in topo.routers()]
    known = set(routers)
    order: list[str] = []
    seen: set[str] = set()
    for root in routers:
        if root in seen:
            continue
        seen.add(root)
        queue = collections.deque([root])
        while queue:
            name = queue.popleft()
            order.append(name)
            for peer in topo.neighbors(name):
                if peer in known and peer not in seen:
                    seen.add(peer)
                    queue.append(peer)
    return order


class WaveNetwork(Network):
    """A `Network` whose daemons start in waves of `wave` routers (breadth-first, see
    `wave_order`), each once the routers already started hold each other's loopbacks in
    their FIBs. All at once, 500 routers did not finish starting on this 2-core machine:
    ~500 zebras installing (and re-installing) routes kept the kernel's global rtnl lock so
    contended that the last starts (their `ip -batch` of addresses, zebra's ethtool calls,
    ospfd's multicast joins, all under the same lock) stalled in D state until they timed out.
    A wave's starts only contend with the previous waves' installs of the new routes."""

    def __init__(self, topo: Topology, *, wave: int | None = None, **kw: Any):
        super().__init__(topo, **kw)
        self.wave = wave or WAVE_SIZE
        #: per wave: routers started so far, seconds to start the wave, seconds until the
        #: started routers' FIBs held each other's loopbacks (None: not within the deadline)
        self.waves: list[dict[str, Any]] = []

    def _start_daemons(self, say: Any) -> None:
        every = self.routers
        n = len(every)
        order = wave_order(self.topo)
        loops = {name: str(lo.network) for name in order
                 if (lo := self.topo.node(name).loopback) is not None}
        t0 = time.monotonic()
        started: dict[str, Any] = {}
        try:
            for i in range(0, n, self.wave):
                batch = {name: every[name] for name in order[i:i + self.wave]}
                tw = time.monotonic()
                self.routers = batch  # Network starts what `routers` holds, START_WORKERS at a time
                super()._start_daemons(say)
                started.update(batch)
                self.routers = started
                ts = time.monotonic()
                fib_s = self._wait_wave_fibs(loops, timeout=max(60.0, 0.3 * len(started)))
                self.waves.append({"routers": len(started), "start_s": round(ts - tw, 2),
                                   "fib_s": None if fib_s is None else round(fib_s, 2)})
                log.info("wave of %d: %d routers started in %.1f s, FIBs %s", len(batch), len(started),
                         ts - tw, "complete" if fib_s is not None else "not complete")
        finally:
            self.routers = every
            self.daemon_start_time = t0  # converge_s counts from the first wave's start

    def _wait_wave_fibs(self, loops: dict[str, str], timeout: float) -> float | None:
        """Seconds until every started router's FIB holds every started router's loopback
        (None: not within `timeout`; the network's own convergence wait has the last word)."""
        t0 = time.monotonic()
        pending = list(self.routers)
        want = {loops[r] for r in self.routers if r in loops}

        def done() -> bool:
            while pending:
                name = pending[0]
                if want - {loops.get(name)} - self.kernel_routes(name):
                    return False
                pending.pop(0)  # a FIB once complete for these loopbacks stays so (no failures)
            return True

        try:
            wait_for(done, timeout, interval=0.5, what="the started routers' loopbacks in their FIBs",
                     retry_on=())
        except ExpectTimeout:
            return None
        return time.monotonic() - t0


# ----------------------------------------------------------------------------- one network

@contextlib.contextmanager
def own_session(label: str):
    """Record what is built inside in a session file of its own (so its clean-up can be
    timed as `routerlab clean` runs it, on this network alone); the process's own session
    is back afterwards."""
    saved = registry._current  # noqa: SLF001 - the registry keeps one session per process
    s = registry.Session.create(label)
    registry._current = s  # noqa: SLF001
    try:
        yield s
    finally:
        registry._current = saved  # noqa: SLF001


def measure(case: Case, *, prefix: str, say: Callable[[str], None], at_rest: bool = True) -> dict[str, Any]:
    """Build, converge, measure and clean one network; a dict of what was measured (with
    `ok` False and `error` when it failed: what was built is removed all the same).
    `at_rest` False skips the CPU window (a test's cheaper run)."""
    topo = case.make()
    n = len(topo.routers())
    point: dict[str, Any] = {
        "series": case.series, "label": case.label, "routers": n, "links": len(topo.links),
        "daemon": topo.node(topo.routers()[0].name).daemon,
        "protocol": "bgp" if topo.bgp_neighbors(topo.routers()[0].name) else "ospf",
        "ospf_hello_dead": [topo.ospf.hello, topo.ospf.dead],
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": os.getloadavg()[0], "ok": False}
    avail0, kernel0 = _meminfo_mb("MemAvailable"), kernel_mb()
    net = WaveNetwork(topo, prefix=prefix) if n >= WAVE_FROM else Network(topo, prefix=prefix)
    with own_session(f"scale-{case.series}-{n}") as session:
        try:
            t0 = time.monotonic()
            say(f"{case.label}: building {n} routers, {len(topo.links)} links")
            net.start(progress=lambda m, f: None)
            t1 = time.monotonic()
            assert net.daemon_start_time is not None
            point["build_s"] = round(net.daemon_start_time - t0, 2)
            point["start_s"] = round(t1 - net.daemon_start_time, 2)
            say(f"{case.label}: converging")
            timeout = max(120.0, 0.6 * n)
            net.wait_converged(timeout=timeout)
            if point["protocol"] == "bgp":  # OSPF's convergence_state checked the loopbacks
                wait_loopbacks(net, timeout)
            point["converge_s"] = round(time.monotonic() - net.daemon_start_time, 2)
            point["total_s"] = round(time.monotonic() - t0, 2)
            say(f"{case.label}: converged in {point['converge_s']} s; measuring at rest")
            pids = router_pids(net)
            every = [p for ps in pids.values() for p in ps]
            if at_rest:
                time.sleep(SETTLE_S)  # a quiet spell before the at-rest window (not a wait on a condition)
            cpu0, w0 = _cpu_s(every), time.monotonic()
            if at_rest:
                time.sleep(REST_WINDOW_S)  # the CPU sampling window itself
            cpu1, w1 = _cpu_s(every), time.monotonic()
            costs = {name: [proc_cost(p) for p in ps] for name, ps in pids.items()}
            per_router = [sum(c["pss_mb"] for c in cs) for cs in costs.values()]
            shell_pss = [proc_cost(net.routers[name].pid)["pss_mb"] for name in pids]
            point.update({
                "cpu_rest_pct": round(100 * (cpu1 - cpu0) / (w1 - w0), 2) if at_rest else None,
                "pss_total_mb": round(sum(per_router), 1),
                "pss_mb_per_router": round(sum(per_router) / n, 2),
                "pss_mb_per_router_daemons": round((sum(per_router) - sum(shell_pss)) / n, 2),
                "mem_avail_drop_mb": round(avail0 - _meminfo_mb("MemAvailable"), 1),
                "kernel_mb_per_router": round((kernel_mb() - kernel0) / n, 2),
                "processes_per_router": round(len(every) / n, 2),
                "threads_per_router": round(sum(c["threads"] for cs in costs.values() for c in cs) / n, 2),
                "fds_per_router": round(sum(c["fds"] for cs in costs.values() for c in cs) / n, 2),
                "daemon_pss_mb": _by_program(net, costs),
                "load_converged": os.getloadavg()[0],
            })
            point["mem_mb_per_router"] = round(point["mem_avail_drop_mb"] / n, 2)
            point["ok"] = True
        except Exception as e:  # the point is reported as failed; the series stops there
            log.warning("%s (%d routers) failed: %s", case.label, n, e)
            point["error"] = f"{type(e).__name__}: {e}"
            point["mem_avail_drop_mb"] = round(avail0 - _meminfo_mb("MemAvailable"), 1)
        finally:
            if isinstance(net, WaveNetwork):
                point["waves"] = net.waves
            say(f"{case.label}: cleaning")
            tc = time.monotonic()
            rep = registry.clean_session_file(session.path)
            point["clean_s"] = round(time.monotonic() - tc, 2)
            point["clean_left"] = len(rep.errors)
            # the session file goes only when nothing it recorded is left
            point["clean_complete"] = not session.path.exists()
            _forget(net)
            shutil.rmtree(net.run_root, ignore_errors=True)
    return point


def _by_program(net: Network, costs: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """Mean PSS (MB) of each program over the routers that run it (shell: Mininet's)."""
    sums: dict[str, list[float]] = {}
    for name, r in net.routers.items():
        progs = [*r.daemon.pids.keys(), "shell"]
        for prog, c in zip(progs, costs[name]):
            sums.setdefault(prog, []).append(c["pss_mb"])
    return {p: round(sum(v) / len(v), 2) for p, v in sums.items()}


def _forget(net: Network) -> None:
    """After `routerlab clean` removed everything: reap what this process started and close
    Mininet's ptys (Mininet's own stop would run commands in shells that are gone)."""
    for r in net.routers.values():
        for p in r.daemon.processes():
            with contextlib.suppress(Exception):
                p.popen.poll()
    for node in [*net.routers.values(), *net.hosts.values()]:
        with contextlib.suppress(Exception):
            if node.shell is not None and node.shell.poll() is None:
                node.shell.kill()  # the clean killed it; never wait on one that lives
            node.cleanup()
            node.stdout.close()
        node.netns = None


# ----------------------------------------------------------------------------- the benchmark

def _load_points(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def fits(case: Case, done: list[dict[str, Any]]) -> str | None:
    """Why `case` would not fit in memory, judging by the largest point measured so far
    (None: it fits)."""
    prior = [p for p in done if p.get("ok") and p.get("mem_mb_per_router")]
    if not prior:
        return None
    per = max(prior, key=lambda p: p["routers"])["mem_mb_per_router"]
    need = per * case.routers * 1.2
    avail = _meminfo_mb("MemAvailable") - RESERVE_MB
    if need > avail:
        return (f"needs ~{need / 1024:.1f} GiB ({per:.1f} MB/router measured, +20%), "
                f"{avail / 1024:.1f} GiB available beyond a {RESERVE_MB // 1024} GiB reserve")
    return None


def run_scale(out_dir: Path, quick: bool = False, *, only: list[str] | None = None,
              max_routers: int | None = None, prefix: str = "sc-",
              say: Callable[[str], None] = log.info) -> Result:
    """Measure every case (those whose ``series:label`` is in `only`, when given; none
    above `max_routers`), keeping points already in ``out_dir/points.jsonl``; write the
    plots and return the Result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "points.jsonl"
    points = _load_points(store)
    stopped: dict[str, str] = {}
    for case in cases(quick):
        key = f"{case.series}:{case.label}"
        if any(p["series"] == case.series and p["label"] == case.label for p in points):
            continue
        if (only and key not in only) or (max_routers and case.routers > max_routers):
            continue
        if case.series in stopped:
            continue
        series_done = [p for p in points if p["series"] == case.series]
        why = fits(case, series_done)
        if why:
            point = {"series": case.series, "label": case.label, "routers": case.routers,
                     "ok": False, "skipped": why,
                     "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        else:
            point = measure(case, prefix=prefix, say=say)
        points.append(point)
        with open(store, "a") as f:
            f.write(json.dumps(point) + "\n")
        if not point["ok"]:
            stopped[case.series] = str(point.get("error") or point.get("skipped", ""))
    return summarize(points, out_dir, quick)


# ----------------------------------------------------------------------------- the report

def _fit(points: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """Least-squares (intercept, slope) of `key` against routers."""
    pts = [(p["routers"], p[key]) for p in points if p.get("ok") and p.get(key) is not None]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - b * mx, b


def _per_router(points: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(a, b) with `key` per router ~= a + b * routers: a router's state grows with the
    network (one OSPF area: every router holds every LSA and every route)."""
    per = [{"routers": p["routers"], "v": p[key] / p["routers"], "ok": True}
           for p in points if p.get("ok") and p.get(key) is not None]
    fit = _fit(per, "v")
    if fit is None and per:
        return per[-1]["v"], 0.0
    return fit


def _largest_fit(a: float, b: float, capacity: float) -> float:
    """The largest n with n * (a + b * n) <= capacity."""
    if b <= 0:
        return capacity / a if a > 0 else math.inf
    return (-a + math.sqrt(a * a + 4 * b * capacity)) / (2 * b)


def _share(a: float, b: float, capacity: float) -> Callable[[int], float]:
    """The share of a machine's `capacity` that n routers at a + b * n each take."""
    return lambda n: n * (a + b * n) / capacity


def limits(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Routers one machine of this kind holds by each resource (memory, CPU at rest, pids),
    from the FRR OSPF points, and machines needed for networks of 1,000 and 10,000 routers
    (in one OSPF area, as measured: a router's memory grows with the network's size)."""
    frr = sorted((p for p in points if p.get("ok") and p["series"] in ("zoo-frr", "synthetic-frr")),
                 key=lambda p: p["routers"])
    mem_total = _meminfo_mb("MemTotal")
    capacity = mem_total - RESERVE_MB
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"mem_total_mb": round(mem_total), "reserve_mb": RESERVE_MB}
    need: dict[str, Callable[[int], float]] = {}  # resource -> share of a machine n routers take
    by: dict[str, float] = {}
    pss = _per_router(frr, "pss_total_mb")
    if pss and frr:
        # the kernel's part (namespaces, veths, sockets, FIBs): measured (`kernel_mb`) on the
        # largest network that has it, else MemAvailable's drop beyond the processes' PSS
        big = frr[-1]
        with_kernel = [p for p in frr if p.get("kernel_mb_per_router") is not None]
        kernel = (with_kernel[-1]["kernel_mb_per_router"] if with_kernel else
                  max(0.0, (big["mem_avail_drop_mb"] - big["pss_total_mb"]) / big["routers"]))
        a, b = pss[0] + kernel, max(pss[1], 0.0)
        out["mem_mb_per_router_model"] = {"fixed": round(a, 2), "per_network_router": round(b, 5),
                                          "kernel_part": round(kernel, 2)}
        out["mem_mb_per_router_at"] = {n: round(a + b * n, 1) for n in (1000, 10000)}
        by["memory"] = _largest_fit(a, b, capacity)
        need["memory"] = _share(a, b, capacity)
    cpu = _per_router(frr, "cpu_rest_pct")
    if cpu:
        c, d = max(cpu[0], 1e-6), max(cpu[1], 0.0)
        out["cpu_pct_per_router_at"] = {n: round(c + d * n, 3) for n in (1000, 10000)}
        # at rest the routers may take half the machine; the rest is for the experiment
        by["cpu at rest (half the cores)"] = _largest_fit(c, d, 50 * cores)
        need["cpu at rest (half the cores)"] = _share(c, d, 50 * cores)
    thr = [p["threads_per_router"] for p in frr if p.get("threads_per_router")]
    if thr:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        by["pids (kernel.pid_max)"] = pid_max * 0.8 / max(thr)
        need["pids (kernel.pid_max)"] = _share(max(thr), 0.0, pid_max * 0.8)
    out["routers_by_resource"] = {k: int(v) for k, v in by.items()}
    if by:
        first = min(by, key=lambda k: by[k])
        out["first_limit"] = first
        out["routers_per_machine"] = int(by[first])
        out["machines_for"] = {n: math.ceil(max(f(n) for f in need.values())) for n in (1000, 10000)}
    # what a resource at rest does not show: the first FRR network that did not start or
    # converge, and how many machines the largest one that did says are needed
    # (beyond the largest that converged: a size that failed once and converged in a later
    # run, e.g. started in waves, is not where it stops)
    ok_n = max((p["routers"] for p in frr), default=0)
    stop = min((p for p in points if p["series"] in ("zoo-frr", "synthetic-frr") and not p.get("ok")
                and not p.get("skipped") and p["routers"] > ok_n), key=lambda p: p["routers"], default=None)
    if stop is not None and frr:
        out["measured_stop"] = {"routers": stop["routers"], "largest_converged": ok_n,
                                "why": str(stop.get("error", ""))[:300]}
        out["machines_for_converged"] = {n: math.ceil(n / ok_n) for n in (1000, 10000)}
    conv = _fit(frr, "converge_s")
    if conv:
        out["converge_s_at"] = {n: round(conv[0] + conv[1] * n, 1) for n in (1000, 10000)}
    return out


def summarize(points: list[dict[str, Any]], out_dir: Path, quick: bool) -> Result:
    res = Result("scale")
    res.raw = {"points": points, "quick": quick}
    ok = [p for p in points if p.get("ok")]
    zoo_frr = [p for p in ok if p["series"] == "zoo-frr"]
    synth = [p for p in ok if p["series"] == "synthetic-frr"]
    frr = zoo_frr + synth
    largest_zoo = max(zoo_frr, key=lambda p: p["routers"], default=None)
    res.add_metric("largest_zoo_routers", "largest Topology Zoo graph converged (FRR OSPF)", "routers",
                   largest_zoo["routers"] if largest_zoo else None, None,
                   "--quick: >= 11" if quick else ">= 143 (TataNld)",
                   bool(largest_zoo and largest_zoo["routers"] >= (11 if quick else 143)))
    conv = largest_zoo["converge_s"] if largest_zoo else None
    res.add_metric("largest_zoo_converge_s",
                   f"{largest_zoo['label'] if largest_zoo else '-'}: daemons' start to converged", "s",
                   conv, TATA_BEFORE_S if largest_zoo and largest_zoo["routers"] == 143 else None,
                   "< 30 s (bar < 120 s; 58.1 s before)", conv is not None and conv < 30)
    pss = sorted(p["pss_mb_per_router"] for p in frr)
    res.add_metric("pss_mb_per_frr_router", "PSS per FRR OSPF router (daemons + shell, median)", "MB",
                   pss[len(pss) // 2] if pss else None, None, "reported", bool(pss))
    largest_syn = max(synth, key=lambda p: p["routers"], default=None)
    n_syn = largest_syn["routers"] if largest_syn else None
    res.add_metric("largest_synthetic_routers", "largest synthetic FRR OSPF network converged", "routers",
                   n_syn, None, "--quick: >= 30" if quick else ">= 500 (goal 1,000)",
                   bool(n_syn and n_syn >= (30 if quick else 500)))
    # the largest network's latest run: the clean as the code now does it
    largest = max(ok, key=lambda p: (p["routers"], p.get("measured_at", "")), default=None)
    res.add_metric("clean_s_largest",
                   f"routerlab clean of the largest network ({largest['label'] if largest else '-'})", "s",
                   largest["clean_s"] if largest else None, None, "reported", bool(largest))
    lim = limits(points)
    res.raw["limits"] = lim
    if lim.get("routers_per_machine"):
        res.add_metric("routers_per_machine", f"FRR routers one such machine holds at rest (first limit: "
                       f"{lim['first_limit']}; fits, not start-up)", "routers", lim["routers_per_machine"],
                       None, "reported", True)
    res.add_section("Measured", points_table(points))
    res.add_section("Where it stops", limits_text(lim, points))
    notes = out_dir / "notes.md"  # what the person running it adds (before/after of a change)
    if notes.exists():
        res.add_section("Notes", notes.read_text())
    _plots(res, points, out_dir)
    return res


def points_table(points: list[dict[str, Any]]) -> str:
    rows = []
    for p in sorted(points, key=lambda p: (p["series"], p["routers"])):
        if not p.get("ok"):
            rows.append((p["series"], p["label"], p["routers"], p.get("links"), "-", "-", "-", "-", "-", "-",
                         "-", "-", "-", p.get("clean_s"),
                         f"**{'skipped' if p.get('skipped') else 'failed'}**: "
                         f"{(p.get('skipped') or p.get('error') or '')[:120]}"
                         + (f" ({p['measured_at']})" if p.get("measured_at") else "")))
            continue
        rows.append((p["series"], p["label"], p["routers"], p["links"], p["build_s"], p["start_s"],
                     p["converge_s"], p["pss_mb_per_router"], p["pss_total_mb"], p["mem_mb_per_router"],
                     p["cpu_rest_pct"], p["processes_per_router"], p["fds_per_router"], p["clean_s"],
                     f"load {p['load_before']:.1f}, {p['measured_at']}"
                     + (f", started in waves of {p['waves'][0]['routers']}" if p.get("waves") else "")))
    return markdown_table(("series", "network", "routers", "links", "build s", "start s", "converge s",
                           "PSS MB/router", "PSS MB total", "MemAvailable drop MB/router",
                           "CPU at rest % of a core", "processes/router", "fds/router", "clean s",
                           "note"), rows)


def limits_text(lim: dict[str, Any], points: list[dict[str, Any]]) -> str:
    lines = []
    by = lim.get("routers_by_resource") or {}
    if by:
        lines.append("Routers one machine of this kind (" + f"{lim['mem_total_mb'] / 1024:.0f} GiB, "
                     f"{os.cpu_count()} cores) holds, by resource, from linear fits over the FRR "
                     "OSPF points:")
        lines += [f"- {k}: ~{v:,} routers" for k, v in sorted(by.items(), key=lambda kv: kv[1])]
        lines.append(f"\nThe first to run out is **{lim['first_limit']}**, at ~{lim['routers_per_machine']:,} "
                     f"routers. Machines of this kind needed: 1,000 routers: {lim['machines_for'][1000]}, "
                     f"10,000 routers: {lim['machines_for'][10000]} (before any cross-machine link cost).")
    model = lim.get("mem_mb_per_router_model")
    if model:
        at = lim["mem_mb_per_router_at"]
        lines.append(f"Memory per FRR router (PSS fit + kernel part {model['kernel_part']} MB): "
                     f"{model['fixed']} MB + {model['per_network_router'] * 1000:.2f} MB per 1,000 routers "
                     f"in the network (every router holds every LSA and route of its one OSPF area): "
                     f"{at[1000]} MB each at 1,000 routers, {at[10000]} MB at 10,000. To fit more, a router "
                     "must shed that growth (OSPF areas with summarised routes between them), then its "
                     "fixed part (zebra and ospfd heaps, the Mininet shell).")
    stop = lim.get("measured_stop")
    if stop:
        m = lim["machines_for_converged"]
        lines.append(f"\n**Measured stop: {stop['routers']:,} routers** did not finish starting and converging "
                     f"(the largest that did: {stop['largest_converged']:,}), below the at-rest limits above: "
                     "on this machine the start-up and convergence transient runs out first, not memory or "
                     f"CPU at rest (recorded: {stop['why'] or 'no reason recorded'}). Sized by the largest "
                     f"that converged, 1,000 routers need {m[1000]} machines of this kind and 10,000 need "
                     f"{m[10000]}.")
    if lim.get("converge_s_at"):
        lines.append(f"Convergence time extrapolated linearly: {lim['converge_s_at'][1000]} s at 1,000 "
                     f"routers, {lim['converge_s_at'][10000]} s at 10,000 (on one machine's CPU).")
    failed = [p for p in points if not p.get("ok")]
    for p in failed:
        lines.append(f"- {p['series']} {p['label']} ({p['routers']} routers) "
                     f"{'skipped' if p.get('skipped') else 'failed'}: {p.get('skipped') or p.get('error')}"
                     + (f" ({p['measured_at']})" if p.get("measured_at") else ""))
    return "\n".join(lines) or "not enough points"


#: one line per daemon and protocol: the Zoo graphs and the synthetic ones continue each other
PLOT_LINES = {"zoo-frr": "FRR OSPF", "synthetic-frr": "FRR OSPF", "zoo-bird": "BIRD OSPF",
              "bgp-frr": "FRR eBGP"}


def _plots(res: Result, points: list[dict[str, Any]], out_dir: Path) -> None:
    ok = [p for p in points if p.get("ok")]
    series = sorted({PLOT_LINES.get(p["series"], p["series"]) for p in ok})

    def xy(s: str, key: str) -> tuple[list[float], list[float]]:
        pts = sorted((p["routers"], p[key]) for p in ok
                     if PLOT_LINES.get(p["series"], p["series"]) == s and p.get(key) is not None)
        return [x for x, _ in pts], [y for _, y in pts]

    if not ok:
        return
    specs = [("converge.png", "converge_s", "daemons' start to converged", "s"),
             ("build.png", "build_s", "build (namespaces, links, shells)", "s"),
             ("pss.png", "pss_mb_per_router", "PSS per router", "MB"),
             ("memory.png", "mem_avail_drop_mb", "MemAvailable drop (all routers, kernel included)", "MB"),
             ("cpu.png", "cpu_rest_pct", "CPU at rest, all routers", "% of one core"),
             ("clean.png", "clean_s", "routerlab clean (this network's session)", "s")]
    for fname, key, title, unit in specs:
        plot(out_dir / fname, {s: xy(s, key) for s in series}, title, "routers", unit)
        res.plots.append((f"{title} against routers", fname))


@experiment("scale", "cost per router as the network grows (Topology Zoo up to 143 routers, synthetic "
            "beyond; FRR, BIRD, eBGP), and the resource that runs out first", kind="bench",
            options={"only": "cases to run, as series:label (e.g. zoo-frr:TataNld,synthetic-frr:rgg200)",
                     "max_routers": "skip cases with more routers than this",
                     "prefix": "prefix of the run's names (sc-)"})
def bench_scale(ctx: RunContext) -> Result:
    """`routerlab bench scale [--quick] [--out DIR]`; `ctx.options` may name cases
    (``only``: ["zoo-frr:TataNld", ...]) and cap the size (``max_routers``)."""
    only = ctx.names("only", (), choices=[f"{c.series}:{c.label}" for c in cases(ctx.quick)])
    return run_scale(ctx.out_dir, ctx.quick, only=list(only) if only else None,
                     max_routers=ctx.options.get("max_routers"), prefix=ctx.options.get("prefix", "sc-"),
                     say=ctx.step)
