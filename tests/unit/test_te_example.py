"""Check 1: B4's worked example (shared/B4_EXAMPLE.md, reconstructed inputs) through the real CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from b4.te import load_problem, solve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "topologies" / "te" / "b4-example.json"
REL = 1e-9


def _cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "b4.te.cli", "solve", str(EXAMPLE), "--json", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _weights(doc: dict, fg: str) -> list[float]:
    return [t["weight"] for t in doc["flow_groups"][fg]["tunnels"]]


def _paths(doc: dict, fg: str) -> list[str]:
    return ["".join(t["path"]) for t in doc["flow_groups"][fg]["tunnels"]]


@pytest.fixture(scope="module")
def unquantized() -> dict:
    return _cli("--quantum", "0")


@pytest.fixture(scope="module")
def quantized() -> dict:
    return _cli("--quantum", "0.5")


def test_tunnels_by_cost(unquantized: dict) -> None:
    assert _paths(unquantized, "FG1") == ["AB", "ACB", "ADCB"]
    assert _paths(unquantized, "FG2") == ["AC", "ADC"]


def test_every_step_fair_share(unquantized: dict) -> None:
    steps = unquantized["steps"]
    assert [s["fair_share"] for s in steps] == pytest.approx([10 / 11, 10 / 3, 5.0, 10.0], rel=REL)
    # Step 1: A->B saturates; FG1 moves to A->C->B.
    assert steps[0]["frozen_edges"] == [["A", "B"]]
    assert steps[0]["moved"] == {"FG1": ["A", "C", "B"]}
    # Step 2: A->C saturates; both move onto the A->D tunnels.
    assert steps[1]["frozen_edges"] == [["A", "C"]]
    assert steps[1]["moved"] == {"FG1": ["A", "D", "C", "B"], "FG2": ["A", "D", "C"]}
    # Step 3: FG1 is satisfied at fair share 5; FG2 stops at 10 when A->D fills.
    assert steps[2]["satisfied"] == ["FG1"]
    assert steps[3]["frozen_edges"] == [["A", "D"]] and steps[3]["stopped"] == ["FG2"]


def test_unquantized_tunnel_groups(unquantized: dict) -> None:
    fg1, fg2 = unquantized["flow_groups"]["FG1"], unquantized["flow_groups"]["FG2"]
    assert [t["rate"] for t in fg1["tunnels"]] == pytest.approx([10, 25 / 3, 5 / 3], rel=REL)
    assert _weights(unquantized, "FG1") == pytest.approx([0.5, 5 / 12, 1 / 12], rel=REL)
    assert [t["rate"] for t in fg2["tunnels"]] == pytest.approx([5 / 3, 10 / 3], rel=REL)
    assert _weights(unquantized, "FG2") == pytest.approx([1 / 3, 2 / 3], rel=REL)
    assert fg1["fair_share"] == pytest.approx(5.0, rel=REL) and fg1["satisfied"] is True
    assert fg2["fair_share"] == pytest.approx(10.0, rel=REL) and fg2["satisfied"] is False
    assert unquantized["throughput"] == pytest.approx(25.0, rel=REL)
    assert unquantized["algorithm"] == "b4"


def test_intermediate_allocations_match_the_paper() -> None:
    # After step 1: FG1 10 on A->B, FG2 0.4545; after step 2: FG1 18.33 in total, FG2 1.667.
    fg1 = load_problem(EXAMPLE).flow_groups[0].bandwidth_function
    fg2 = load_problem(EXAMPLE).flow_groups[1].bandwidth_function
    assert fg1(10 / 11) == pytest.approx(10.0) and fg2(10 / 11) == pytest.approx(0.4545, abs=1e-4)
    assert fg1(10 / 3) == pytest.approx(18.333, abs=1e-3) and fg2(10 / 3) == pytest.approx(1.667, abs=1e-3)
    assert fg1.breakpoints == [(0, 0), (1.5, 16.5), (5, 20)]
    assert fg2.breakpoints == [(0, 0), (20, 10)]


def test_quantized_to_half(quantized: dict) -> None:
    assert _weights(quantized, "FG2") == [0.0, 1.0]
    assert _weights(quantized, "FG1") == [0.5, 0.5, 0.0]
    fg1, fg2 = quantized["flow_groups"]["FG1"], quantized["flow_groups"]["FG2"]
    # Re-evaluated on the quantized splits: FG1 stays satisfied and FG2 keeps fair share 10.
    assert fg1["satisfied"] and fg1["fair_share"] == pytest.approx(5.0, rel=REL)
    assert fg2["fair_share"] == pytest.approx(10.0, rel=REL)
    assert quantized["throughput"] == pytest.approx(25.0, rel=REL)
    assert quantized["quantum"] == 0.5
    assert [t["unquantized_weight"] for t in fg2["tunnels"]] == pytest.approx([1 / 3, 2 / 3])


def test_problem_quantum_is_the_default() -> None:
    # The example file carries the paper's quantum 0.5.
    alloc = solve(load_problem(EXAMPLE))
    assert alloc.quantum == 0.5
    assert alloc.flow_group("FG2").tunnel_group == [(("A", "C"), 0.0), (("A", "D", "C"), 1.0)]


def test_alternative_capacities_give_the_same_allocation() -> None:
    # B4_EXAMPLE.md: A->D = 10 with D->C = 5 gives the same allocation.
    data = json.loads(EXAMPLE.read_text())
    for e in data["edges"]:
        if (e["src"], e["dst"]) == ("A", "D"):
            e["capacity"] = 10
        if (e["src"], e["dst"]) == ("D", "C"):
            e["capacity"] = 5
    from b4.te import Problem

    alloc = solve(Problem.from_dict(data), quantum=0)
    assert [s.fair_share for s in alloc.steps] == pytest.approx([10 / 11, 10 / 3, 5.0, 10.0], rel=REL)
    assert alloc.weights[0, :3] == pytest.approx([0.5, 5 / 12, 1 / 12])
    assert alloc.weights[1, :2] == pytest.approx([1 / 3, 2 / 3])
