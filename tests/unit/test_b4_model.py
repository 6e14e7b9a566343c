"""B4 topology files: the worked example and the 12-site WAN load; bad input is refused."""
from __future__ import annotations

import textwrap

import pytest

from b4.model import load_wan
from b4.te.solve import solve
from routerlab.topology import TopologyError

BASE = """
name: t
nodes:
  A: {role: switch}
  B: {role: switch}
  hA: {role: host}
  hB: {role: host}
links:
  - {a: A, b: B, bw: 10}
  - {a: hA, b: A}
  - {a: hB, b: B}
params:
  system: b4
  flow_groups:
"""


def _write(tmp_path, fgs: str, extra: str = ""):
    p = tmp_path / "t.yaml"
    p.write_text(BASE + textwrap.indent(textwrap.dedent(fgs), "    ") + extra)
    return p


def test_example_loads_and_solves_like_the_paper():
    wan = load_wan("topologies/b4-example.yaml")
    assert sorted(wan.config.sites) == ["A", "B", "C", "D"]
    assert wan.quantum == 0.5 and len(wan.te_edges) == 5
    alloc = solve(wan.problem())
    fg1, fg2 = alloc.flow_group("FG1"), alloc.flow_group("FG2")
    assert [t.weight for t in fg1.tunnels] == [0.5, 0.5, 0.0]
    assert [t.weight for t in fg2.tunnels] == [0.0, 1.0]
    assert fg1.rate == pytest.approx(10) and fg2.rate == pytest.approx(2.5)  # 1 Gbit/s = 0.5 Mbit/s
    # a failed link leaves the edge out of TE
    alloc2 = solve(wan.problem(down_links={"A-B"}))
    assert all(t.path != ("A", "B") for t in alloc2.flow_group("FG1").tunnels)


def test_b4_wan_has_twelve_sites_and_nineteen_links():
    wan = load_wan("topologies/b4.yaml")
    assert len(wan.config.sites) == 12
    assert len(wan.config.links) == 19
    assert len(wan.te_edges) == 38
    assert wan.flow_groups
    te = solve(wan.problem())
    sp = solve(wan.problem(), algorithm="shortest")
    assert te.throughput > sp.throughput  # oversubscribed: TE must beat shortest paths


def test_demand_naming_unknown_site_is_refused(tmp_path):
    p = _write(tmp_path, """\
        - name: FG1
          src: A
          dst: Z
          apps: [{name: a, weight: 1, demand: 1}]
        """)
    with pytest.raises(TopologyError) as e:
        load_wan(p)
    msg = str(e.value)
    assert "unknown dst site 'Z'" in msg and str(p) in msg
    assert e.value.line is not None and "dst: Z" in p.read_text().splitlines()[e.value.line - 1]


@pytest.mark.parametrize("fgs, problem", [
    ("- {name: F, src: A, dst: A, apps: [{name: a, weight: 1, demand: 1}]}\n", "same site"),
    ("- {name: F, src: A, dst: B, apps: []}\n", "needs apps"),
    ("- {name: F, src: A, dst: B, apps: [{name: a, weight: 0, demand: 1}]}\n", "weight must be > 0"),
    ("- {name: F, src: A, dst: B, dscp: 99, apps: [{name: a, weight: 1, demand: 1}]}\n", "dscp"),
    ("- {name: F, src: A, dst: B, apps: [{name: a, weight: 1, demand: 1}]}\n"
     "- {name: F, src: B, dst: A, apps: [{name: a, weight: 1, demand: 1}]}\n", "duplicate"),
])
def test_bad_flow_groups(tmp_path, fgs, problem):
    with pytest.raises(TopologyError, match=problem):
        load_wan(_write(tmp_path, fgs))


def test_bad_edges_and_non_b4_topologies(tmp_path):
    ok_fg = "- {name: F, src: A, dst: B, apps: [{name: a, weight: 1, demand: 1}]}\n"
    with pytest.raises(TopologyError, match="exceeds the link bandwidth"):
        load_wan(_write(tmp_path, ok_fg, "  edges: [{src: A, dst: B, capacity: 99}]\n"))
    with pytest.raises(TopologyError, match="not a B4 topology"):
        load_wan("topologies/ring.yaml")


def test_te_algorithm_param_and_what_the_server_installs(tmp_path):
    import numpy as np

    from b4.model import SERVER_ALGORITHMS
    from b4.te.solve import solve_quantized

    ok_fg = "- {name: F, src: A, dst: B, apps: [{name: a, weight: 1, demand: 1}]}\n"
    assert load_wan(_write(tmp_path, ok_fg)).algorithm == "b4"
    assert load_wan(_write(tmp_path, ok_fg, "  te: {algorithm: exact}\n")).algorithm == "exact"
    with pytest.raises(TopologyError, match="params.te.algorithm must be one of b4, b4r, exact"):
        load_wan(_write(tmp_path, ok_fg, "  te: {algorithm: lp}\n"))
    # Every algorithm the server runs comes out in whole quanta, and beats shortest paths on the WAN.
    wan = load_wan("topologies/b4.yaml")
    sp = solve(wan.problem(), algorithm="shortest")
    for alg in SERVER_ALGORITHMS:
        a = solve_quantized(wan.problem(), alg)
        assert a.quantum == wan.quantum
        units = a.weights / wan.quantum
        assert np.allclose(units, np.round(units)) and np.allclose(a.weights.sum(axis=1), 1.0)
        assert a.throughput > sp.throughput, alg
