"""Synthetic topologies for scale runs, the FRR config shapes, and the scale report's
arithmetic (no root needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from routerlab.daemons import FrrDaemon, Interface, RouterSpec
from routerlab.daemons.frr import config_shape
from routerlab.experiments import scale
from routerlab.network import router_spec
from routerlab.topology import TopologyError
from routerlab.topology.synthetic import (ASN_BASE, grid, grid_edges, loopback, ospf_timers,
                                          random_geometric, random_geometric_edges)


def _connected(n: int, edges: list[tuple[int, int]]) -> bool:
    adj: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    seen, todo = {0}, [0]
    while todo:
        for y in adj[todo.pop()] - seen:
            seen.add(y)
            todo.append(y)
    return len(seen) == n


@pytest.mark.parametrize("n", [2, 10, 200, 600])
def test_random_geometric_is_connected_simple_and_sparse(n: int) -> None:
    edges = random_geometric_edges(n, degree=3.0, seed=7)
    assert _connected(n, edges)
    assert all(a < b for a, b in edges) and len(set(edges)) == len(edges)
    if n >= 200:  # a backbone's few links per router, not a mesh
        assert 2.5 <= 2 * len(edges) / n <= 4.0
    assert edges == random_geometric_edges(n, degree=3.0, seed=7)  # deterministic
    assert edges != random_geometric_edges(n, degree=3.0, seed=8) or n == 2


def test_grid_edges() -> None:
    e = grid_edges(3, 4)
    assert len(e) == 3 * 3 + 4 * 2 and _connected(12, e)


def test_ospf_topology_timers_and_addresses() -> None:
    t = random_geometric(250)
    assert len(t.routers()) == 250 and (t.ospf.hello, t.ospf.dead) == ospf_timers(250) == (1, 8)
    loops = {str(t.node(r.name).loopback) for r in t.routers()}
    assert len(loops) == 250 and loopback(249) in loops and "10.255.0.0/32" not in loops
    spec = router_spec(t, "r1")
    assert spec.asn is None and spec.ospf_dead == 8
    assert all(i.ospf_network == "point-to-point" for i in spec.interfaces)


def test_timers_grow_with_size() -> None:
    sizes = [10, 143, 200, 300, 500, 1000, 10000]
    timers = [ospf_timers(n) for n in sizes]
    assert timers[0] == (1, 4) and timers == sorted(timers)
    assert all(h < d for h, d in timers)


def test_bgp_topology_one_as_per_router_ebgp_on_every_link() -> None:
    t = grid(2, 3, daemon="bird", protocol="bgp")
    assert {t.node(f"r{i}").asn for i in range(1, 7)} == {ASN_BASE + i for i in range(1, 7)}
    for r in t.routers():
        node = t.node(r.name)
        assert node.daemon == "bird" and not node.ospf
        assert [str(p) for p in node.originate] == [str(node.loopback.network)]
        assert len(t.bgp_neighbors(r.name)) == len(t.interfaces(r.name))
    spec = router_spec(t, "r1")
    assert spec.asn == ASN_BASE + 1 and {nb.asn for nb in spec.bgp_neighbors} == {ASN_BASE + 2, ASN_BASE + 4}


def test_unknown_protocol_is_a_topology_error() -> None:
    with pytest.raises(TopologyError, match="protocol 'isis'"):
        random_geometric(5, protocol="isis")


def test_frr_runs_only_the_daemons_a_router_needs() -> None:
    ospf_only = router_spec(random_geometric(5), "r1")
    assert FrrDaemon(ospf_only).daemons() == ["zebra", "ospfd"]
    assert FrrDaemon(ospf_only, process_tree=True).daemons() == ["zebra", "staticd", "ospfd"]
    bgp = router_spec(random_geometric(5, protocol="bgp"), "r1")  # announces its loopback: a blackhole
    assert FrrDaemon(bgp).daemons() == ["zebra", "staticd", "bgpd"]


def test_config_shape_abstracts_values_not_words() -> None:
    def ospfd(name: str, cost: int, addr: str) -> str:
        spec = RouterSpec(name, "10.255.0.1", interfaces=[Interface(f"{name}-eth0", addr, "0", cost)])
        return FrrDaemon(spec).render()["ospfd.conf"]

    a, b = ospfd("r1", 10, "10.0.0.1/30"), ospfd("Chicago", 2345, "10.0.9.5/30")
    assert a != b and config_shape("ospfd", a) == config_shape("ospfd", b)
    assert config_shape("ospfd", a) != config_shape("zebra", a)
    assert config_shape("ospfd", a) != config_shape("ospfd", a.replace("point-to-point", "broadcast")
                                                    + " ip ospf network broadcast\n")


def _point(series: str, n: int, **kw) -> dict:
    p = {"series": series, "label": f"x{n}", "routers": n, "links": n, "ok": True, "build_s": 0.1 * n,
         "start_s": 0.05 * n, "converge_s": 5 + 0.1 * n, "pss_mb_per_router": 11.0, "pss_total_mb": 11.0 * n,
         "mem_avail_drop_mb": 100 + 15.0 * n, "mem_mb_per_router": 15.0 + 100 / n,
         "cpu_rest_pct": 0.05 * n, "processes_per_router": 3, "threads_per_router": 7.0,
         "fds_per_router": 46, "clean_s": 3 + 0.01 * n, "load_before": 1.0, "measured_at": "t"}
    p.update(kw)
    return p


def test_limits_find_the_first_resource_and_machines_needed() -> None:
    pts = [_point("zoo-frr", 11), _point("zoo-frr", 143), _point("synthetic-frr", 500)]
    lim = scale.limits(pts)
    # 11 MB PSS a router, and the kernel's part from the largest point: (7,600 - 5,500) / 500
    assert lim["mem_mb_per_router_model"] == {"fixed": pytest.approx(15.2), "per_network_router": 0,
                                              "kernel_part": pytest.approx(4.2)}
    assert lim["cpu_pct_per_router_at"][1000] == pytest.approx(0.05)
    by = lim["routers_by_resource"]
    assert set(by) == {"memory", "cpu at rest (half the cores)", "pids (kernel.pid_max)"}
    assert lim["routers_per_machine"] == min(by.values()) and by[lim["first_limit"]] == min(by.values())
    m = lim["machines_for"]
    assert m[1000] >= 1 and m[10000] >= m[1000] and m[10000] * lim["routers_per_machine"] >= 10000
    assert lim["converge_s_at"][1000] == pytest.approx(105.0)


def test_memory_that_grows_with_the_network_limits_it_quadratically() -> None:
    # PSS a router = 8 MB + 1 MB per 100 routers of the network; no kernel part
    pts = [_point("synthetic-frr", n, pss_total_mb=n * (8 + n / 100), mem_avail_drop_mb=n * (8 + n / 100))
           for n in (100, 200, 400)]
    lim = scale.limits(pts)
    assert lim["mem_mb_per_router_at"][1000] == pytest.approx(18.0)
    assert lim["mem_mb_per_router_at"][10000] == pytest.approx(108.0)
    n = lim["routers_by_resource"]["memory"]
    cap = lim["mem_total_mb"] - lim["reserve_mb"]
    assert n * (8 + n / 100) <= cap < (n + 2) * (8 + (n + 2) / 100)


def test_a_size_that_will_not_fit_is_skipped_with_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(scale, "_meminfo_mb", lambda field: 10_000.0)
    big = scale.Case("synthetic-frr", "rgg1000", 1000, lambda: None)  # never built
    why = scale.fits(big, [_point("synthetic-frr", 300)])
    assert why and "GiB available" in why
    assert scale.fits(scale.Case("synthetic-frr", "rgg100", 100, lambda: None), [_point("synthetic-frr", 30)]) is None


def test_summary_metric_ids_and_plots(tmp_path: Path) -> None:
    pts = [_point("zoo-frr", 11), _point("zoo-frr", 143), _point("synthetic-frr", 500),
           {"series": "synthetic-frr", "label": "rgg1000", "routers": 1000, "ok": False,
            "error": "TimeoutError: r17: 3/4 OSPF adjacencies Full", "clean_s": 40.0}]
    res = scale.summarize(pts, tmp_path, quick=False)
    ids = {m.id: m for m in res.metrics}
    assert {"largest_zoo_routers", "largest_zoo_converge_s", "pss_mb_per_frr_router",
            "largest_synthetic_routers", "clean_s_largest"} <= set(ids)
    assert ids["largest_zoo_routers"].ours == 143 and ids["largest_zoo_routers"].met
    assert ids["largest_zoo_converge_s"].paper == scale.TATA_BEFORE_S
    assert ids["largest_synthetic_routers"].ours == 500 and ids["largest_synthetic_routers"].met
    (tmp_path / "small").mkdir()
    small = scale.summarize([_point("synthetic-frr", 300)], tmp_path / "small", quick=False)
    assert not {m.id: m for m in small.metrics}["largest_synthetic_routers"].met  # under the bar
    assert ids["clean_s_largest"].ours == pytest.approx(8.0)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(name for _, name in res.plots)
    text = dict(res.sections)["Measured"]
    assert "**failed**: TimeoutError" in text
    assert "rgg1000 (1000 routers) failed" in dict(res.sections)["Where it stops"]


def test_spf_throttle_chosen_for_the_size() -> None:
    from routerlab.network import spf_throttle

    small = FrrDaemon(router_spec(random_geometric(20), "r1")).render()["ospfd.conf"]
    assert " timers throttle spf 0 50 1000\n" in small  # the testbed's fast SPF, unchanged
    big = router_spec(random_geometric(300), "r1")
    assert big.ospf_spf_throttle == spf_throttle(300) == (200, 1000, 5000)
    assert " timers throttle spf 200 1000 5000\n" in FrrDaemon(big).render()["ospfd.conf"]
    with pytest.raises(Exception, match="SPF throttle"):
        RouterSpec("r", "10.0.0.1", ospf_spf_throttle=(0, 2000, 1000)).validate()


def test_a_network_that_did_not_converge_is_the_measured_stop() -> None:
    pts = [_point("zoo-frr", 143), _point("synthetic-frr", 300),
           {"series": "synthetic-frr", "label": "rgg500", "routers": 500, "ok": False, "error": "rtnl"},
           {"series": "synthetic-frr", "label": "rgg1000", "routers": 1000, "ok": False, "skipped": "500 failed"}]
    lim = scale.limits(pts)
    assert lim["measured_stop"] == {"routers": 500, "largest_converged": 300, "why": "rtnl"}
    assert lim["machines_for_converged"] == {1000: 4, 10000: 34}
    assert "Measured stop: 500 routers" in scale.limits_text(lim, pts)


@pytest.mark.parametrize("n", [30, 500])
def test_waves_start_in_breadth_first_order_each_joined_to_the_ones_before(n: int) -> None:
    topo = random_geometric(n)
    order = scale.wave_order(topo)
    assert sorted(order) == sorted(r.name for r in topo.routers())
    assert order[0] == "r1"
    # every router after the first has a neighbour earlier in the order: each wave (a prefix
    # of it) is connected, so its routers' FIBs can be complete before the next wave starts
    pos = {name: i for i, name in enumerate(order)}
    for name in order[1:]:
        assert any(pos[peer] < pos[name] for peer in topo.neighbors(name)), name


def test_a_disconnected_graph_still_orders_every_router() -> None:
    from routerlab.topology.synthetic import from_edges

    topo = from_edges("two", 4, [(0, 1), (2, 3)])
    assert scale.wave_order(topo) == ["r1", "r2", "r3", "r4"]


def test_a_size_that_failed_once_and_converged_later_is_not_the_stop() -> None:
    waves = [{"routers": 100, "start_s": 5.0, "fib_s": 10.0}]
    pts = [_point("zoo-frr", 143), _point("synthetic-frr", 300),
           {"series": "synthetic-frr", "label": "rgg500", "routers": 500, "ok": False, "error": "rtnl"},
           {**_point("synthetic-frr", 500), "waves": waves}]
    assert "measured_stop" not in scale.limits(pts)
    assert "started in waves of 100" in scale.points_table(pts)
    pts.append({"series": "synthetic-frr", "label": "rgg1000", "routers": 1000, "ok": False, "error": "oom"})
    assert scale.limits(pts)["measured_stop"] == {"routers": 1000, "largest_converged": 500, "why": "oom"}
