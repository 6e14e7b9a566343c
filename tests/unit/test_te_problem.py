"""Problem files: parsing, validation, and check 3 (bad input exits 2 with one line)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from b4.te import Problem, ProblemError, load_problem
from b4.te.cli import add_te_parser, dump_problem, main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "te"

BAD = [
    ("unknown-site.json", "unknown site 'Z'"),
    ("negative-capacity.yaml", "negative capacity -5"),
    ("no-path.json", "flow group FG2: no path from A to C"),
    ("duplicate-flow-group.json", "duplicate flow group 'FG1'"),
    ("duplicate-site.yaml", "duplicate site 'A'"),
    ("duplicate-edge.json", "duplicate edge"),
    ("malformed.json", "malformed JSON"),
    ("malformed.yaml", "malformed YAML"),
    ("wrong-type.json", "capacity must be a finite number"),
    ("bad-quantum.json", "quantum must be 1/n"),
]


@pytest.mark.parametrize("name,needle", BAD)
def test_bad_input_exits_2_with_one_line(name: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / name
    assert main(["solve", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"routerlab: error: {path}: ")
    assert needle in lines[0]


def test_bad_input_through_the_real_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "b4.te.cli", "solve", str(DATA / "no-path.json"), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"routerlab: error: {DATA / 'no-path.json'}: flow group FG2: no path from A to C"]


def test_missing_file_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    example = ROOT / "topologies" / "te" / "b4-example.json"
    assert main(["solve", str(example), "--quantum", "0.3"]) == 2
    assert capsys.readouterr().err.strip() == "routerlab: error: --quantum must be 1/n for a whole n (e.g. 0.25), got 0.3"
    assert main(["solve", str(example), "--max-tunnels", "0"]) == 2
    assert "--max-tunnels" in capsys.readouterr().err


def _base() -> dict:
    return {"sites": ["A", "B"], "edges": [{"src": "A", "dst": "B", "capacity": 10}],
            "flow_groups": [{"name": "F", "src": "A", "dst": "B", "apps": [{"name": "a", "weight": 1, "demand": 1}]}]}


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.pop("sites"), "missing 'sites'"),
    (lambda d: d.update(flowgroups=[]), "unknown key 'flowgroups'"),
    (lambda d: d["edges"][0].update(cost=-1), "negative cost"),
    (lambda d: d["flow_groups"][0]["apps"][0].update(weight=0), "weight must be > 0"),
    (lambda d: d["flow_groups"][0]["apps"][0].update(demand=-2), "negative demand"),
    (lambda d: d["flow_groups"][0]["apps"].append({"name": "a", "weight": 1, "demand": 1}), "duplicate application 'a'"),
    (lambda d: d["flow_groups"][0].update(dst="A"), "source and destination are the same"),
    (lambda d: d["flow_groups"][0].update(src="Q"), "unknown site 'Q'"),
    (lambda d: d["flow_groups"][0].update(apps=[]), "no applications"),
    (lambda d: d.update(max_tunnels=0), "max_tunnels must be a whole number >= 1"),
    (lambda d: d["edges"].append({"src": "B", "dst": "B", "capacity": 1}), "two different sites"),
])
def test_validation_messages(mutate, needle: str) -> None:
    d = _base()
    mutate(d)
    with pytest.raises(ProblemError) as e:
        Problem.from_dict(d, "x.json")
    msg = str(e.value)
    assert msg.startswith("x.json: ") and needle in msg and "\n" not in msg


def test_json_and_yaml_load_the_same_problem() -> None:
    a = load_problem(ROOT / "topologies" / "te" / "b4-example.json")
    b = load_problem(DATA / "example.yaml")
    assert a.sites == b.sites and a.edges == b.edges and a.flow_groups == b.flow_groups
    assert a.quantum == b.quantum == 0.5 and b.max_tunnels == 4


def test_defaults_and_round_trip(tmp_path: Path) -> None:
    p = Problem.from_dict(_base())
    assert p.max_tunnels == 4 and p.quantum == 0.25 and p.edges[0].cost == 1
    for name, yaml_format in (("p.json", False), ("p.yaml", True)):
        f = tmp_path / name
        f.write_text(dump_problem(p, yaml_format=yaml_format))
        q = load_problem(f)
        assert (q.sites, q.edges, q.flow_groups, q.max_tunnels, q.quantum) == \
            (p.sites, p.edges, p.flow_groups, p.max_tunnels, p.quantum)
    json.loads((tmp_path / "p.json").read_text())


def test_add_te_parser_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="routerlab")
    add_te_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["te", "solve", str(ROOT / "topologies" / "te" / "b4-example.json"),
                              "--algorithm", "lp", "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["algorithm"] == "lp" and doc["throughput"] == pytest.approx(25.0)
    args = parser.parse_args(["te", "solve", str(DATA / "malformed.json")])
    assert args.func(args) == 2
    args = parser.parse_args(["te", "generate", "b4-like", "--flow-groups", "300", "-o", str(tmp_path / "x.json")])
    assert args.func(args) == 0
    assert len(load_problem(tmp_path / "x.json").flow_groups) == 300


def test_readable_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(ROOT / "topologies" / "te" / "b4-example.json")]) == 0
    out = capsys.readouterr().out
    assert "throughput 25" in out and "FG1" in out and "A -> D" in out and "events" in out
