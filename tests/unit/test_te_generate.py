"""Problem generators: the B4-like WAN and topohub's Topology Zoo and SNDlib graphs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from b4.te import build_instance, load_problem
from b4.te.cli import main
from b4.te.generate import APP_WEIGHTS, b4_like, from_sndlib, from_zoo

ROOT = Path(__file__).resolve().parents[2]


def _mean_cheapest_path_utilization(p) -> float:
    inst = build_instance(p, 1)
    rates = np.zeros(inst.fg_tunnels.shape)
    rates[:, 0] = inst.fg_demand
    loads = inst.edge_loads(rates)
    used = loads > 0
    return float(np.mean(loads[used] / inst.capacity[used]))


def test_b4_like_has_the_papers_scale() -> None:
    p = b4_like()
    assert len(p.sites) == 16 and len(p.edges) == 46
    assert len({(g.src, g.dst) for g in p.flow_groups}) == 240
    assert len(p.flow_groups) == 2700
    assert all(1 <= len(g.apps) <= 3 and all(a.weight in APP_WEIGHTS for a in g.apps) for g in p.flow_groups)
    assert len({a.weight for g in p.flow_groups for a in g.apps}) == len(APP_WEIGHTS)
    # Oversubscribed: cheapest-path routing would load the used edges to 1.5x on average.
    assert _mean_cheapest_path_utilization(p) == pytest.approx(1.5, rel=1e-3)


def test_generation_is_deterministic_and_shipped() -> None:
    a, b = b4_like(600, seed=3), b4_like(600, seed=3)
    assert a.to_dict() == b.to_dict()
    assert b4_like(600, seed=4).to_dict() != a.to_dict()
    shipped = load_problem(ROOT / "topologies" / "te" / "b4-like.json")
    assert shipped.to_dict() == b4_like().to_dict()


def test_zoo_with_gravity_demands() -> None:
    p = from_zoo("Abilene", pairs=40, load=2.0)
    assert len(p.flow_groups) == 40 and len(p.edges) % 2 == 0
    assert all(e.capacity == 100 for e in p.edges)
    assert _mean_cheapest_path_utilization(p) == pytest.approx(2.0, rel=1e-3)
    everyone = from_zoo("Abilene", pairs=None)
    assert len(everyone.flow_groups) == len(everyone.sites) * (len(everyone.sites) - 1)


def test_sndlib_keeps_its_demand_matrix() -> None:
    p = from_sndlib("germany50")
    assert len(p.sites) == 50 and len(p.edges) == 2 * 88 and len(p.flow_groups) == 662
    import topohub

    raw = topohub.get("sndlib/germany50")["graph"]["demands"]
    values = sorted(v for row in raw.values() for v in row.values() if v > 0)
    got = sorted(g.demand for g in p.flow_groups)
    ratio = np.array(got) / np.array(values)
    assert np.allclose(ratio, ratio[0], rtol=1e-4)  # one scale factor for the whole matrix


def test_generate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.yaml"
    assert main(["generate", "sndlib", "polska", "-o", str(out), "--load", "2"]) == 0
    assert "polska" in capsys.readouterr().out
    assert len(load_problem(out).flow_groups) == 66
    assert main(["generate", "zoo", "NoSuchNet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["routerlab: error: no Topology Zoo topology 'NoSuchNet' in topohub"]
    assert main(["generate", "sndlib"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
