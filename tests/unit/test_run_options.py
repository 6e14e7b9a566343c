"""`routerlab run NAME --set KEY=VALUE`: parsing, the check against what each experiment
declares, and which options reach which experiment. No root needed."""
from __future__ import annotations

import inspect
import io
import json
import re

import pytest

from routerlab import cli, runner
from routerlab.errors import UserError
from routerlab.experiments import BENCHMARKS, EXPERIMENTS, Experiment, RunContext, load_all, parse_option
from routerlab.report import Result


@pytest.mark.parametrize("text, expected", [
    ("prefixes=100000", ("prefixes", 100000)),
    ("window=2.5", ("window", 2.5)),
    ("no-faults=true", ("no_faults", True)),
    ("no_faults=off", ("no_faults", False)),
    ("modes=continuous-majority", ("modes", "continuous-majority")),
    ("modes=master-slave,wait-for-consensus", ("modes", ("master-slave", "wait-for-consensus"))),
    ("profile=/tmp/hv.prof", ("profile", "/tmp/hv.prof")),
    ("only=zoo-frr:Abilene,", ("only", ("zoo-frr:Abilene",))),  # a trailing comma: still a list
])
def test_parse_option(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize("text", ["prefixes", "=3", ""])
def test_parse_option_without_key_or_value_says_the_form(text):
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_option(text)


def test_names_takes_one_name_or_several_and_checks_them(tmp_path):
    modes = ("master-slave", "continuous-majority")
    assert RunContext(tmp_path).names("modes", modes) == modes
    assert RunContext(tmp_path, options={"modes": "master-slave"}).names("modes", modes) == ("master-slave",)
    ctx = RunContext(tmp_path, options={"modes": ("master-slave", "majority")})
    with pytest.raises(UserError, match=r"--set modes=majority: not one of master-slave, continuous-majority"):
        ctx.names("modes", modes, choices=modes)


def _recording(name: str, options: dict[str, str], seen: list) -> Experiment:
    def func(ctx: RunContext) -> Result:
        seen.append((name, dict(ctx.options)))
        return Result(experiment=name)
    return Experiment(name, func, "records its options", options=options)


@pytest.mark.usefixtures("runner_without_host")
def test_each_experiment_gets_the_options_it_declares_and_its_result_records_them(tmp_path):
    seen: list = []
    table = {"a": _recording("a", {"runs": "h"}, seen), "b": _recording("b", {"prefix": "h"}, seen)}
    console = cli.Console(file=io.StringIO(), force_terminal=False, width=80)
    runner.run_experiments(table, ["a", "b"], tmp_path, quick=True, console=console, single=False,
                           options={"runs": 3, "prefix": "zz-"})
    assert seen == [("a", {"runs": 3}), ("b", {"prefix": "zz-"})]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["options"] == {"runs": 3}
    assert "Options: `--set runs=3`" in (tmp_path / "a" / "report.md").read_text()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["options"] == {"prefix": "zz-"}


def test_cli_refuses_an_option_the_experiment_does_not_declare(monkeypatch):
    monkeypatch.setattr(cli, "_require_root", lambda what: None)
    args = cli.build_parser().parse_args(["run", "ospf-ring", "--set", "prefixes=10"])
    with pytest.raises(UserError, match=r"--set prefixes: ospf-ring has no such option \(known: prefix;"):
        args.func(args)


def test_every_option_an_experiment_module_reads_is_declared():
    """The `ctx.options` keys each module of experiments reads are declared by its
    experiments (else `--set` would refuse an option that works)."""
    load_all()
    by_module: dict = {}
    for exp in [*EXPERIMENTS.values(), *BENCHMARKS.values()]:
        by_module.setdefault(inspect.getmodule(exp.func), set()).update(exp.options)
    checked = 0
    for module, declared in by_module.items():
        read = set(re.findall(r'ctx\.(?:options\.get\(|options\[|names\()"(\w+)"', inspect.getsource(module)))
        assert read <= declared, f"{module.__name__} reads undeclared options {sorted(read - declared)}"
        checked += len(read)
    assert checked >= 10  # the pattern still finds the reads
