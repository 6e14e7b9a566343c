"""The layering gate (`.importlinter`, run by `make test`) really fails on the violations it
exists for: a substrate module importing a system, two systems importing each other, and two
modules of one package importing each other. Checked on a scratch tree whose packages stand
in for routerlab and the systems, with the project's own contracts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# the project's package names -> scratch names (the real ones are installed in .venv)
NAMES = {"routerlab": "zsubstrate", "b4": "zsys_b", "vroom": "zsys_r", "verb": "zsys_v"}


def _config() -> str:
    text = (REPO / ".importlinter").read_text()
    for real, scratch in NAMES.items():
        text = text.replace(f"    {real}\n", f"    {scratch}\n").replace(f"    {real}", f"    {scratch}")
        text = text.replace(f"{real} |", f"{scratch} |").replace(f"| {real}", f"| {scratch}")
    return text


def _tree(tmp: Path, modules: dict[str, str]) -> None:
    for pkg in NAMES.values():
        (tmp / pkg).mkdir()
        (tmp / pkg / "__init__.py").write_text("")
    for path, body in modules.items():
        (tmp / path).write_text(body)


def _lint(tmp: Path) -> subprocess.CompletedProcess:
    cfg = tmp / "contracts.ini"
    cfg.write_text(_config())
    env = dict(os.environ, PYTHONPATH=str(tmp))
    return subprocess.run([str(LINT_IMPORTS), "--config", str(cfg), "--no-cache"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)


CLEAN = {"zsubstrate/base.py": "", "zsubstrate/top.py": "from zsubstrate import base\n",
         "zsys_b/a.py": "from zsubstrate import top\n", "zsys_b/b.py": "from zsys_b import a\n",
         "zsys_r/a.py": "from zsubstrate import base\n"}


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is installed by scripts/setup.sh")
@pytest.mark.parametrize("extra, broken", [
    ({}, None),
    ({"zsubstrate/bad.py": "import zsys_b.a\n"}, "substrate sits below"),
    ({"zsys_r/bad.py": "from zsys_v import x\n", "zsys_v/x.py": ""}, "substrate sits below"),
    ({"zsys_b/c.py": "def f():\n    from zsys_b import d\n", "zsys_b/d.py": "from zsys_b import c\n"},
     "no import cycles"),
], ids=["clean", "substrate-imports-system", "systems-import-each-other", "cycle-in-a-system"])
def test_contracts(tmp_path: Path, extra: dict[str, str], broken: str | None) -> None:
    _tree(tmp_path, {**CLEAN, **extra})
    res = _lint(tmp_path)
    out = res.stdout + res.stderr
    if broken is None:
        assert res.returncode == 0, out
    else:
        assert res.returncode != 0, out
        assert any(broken in line and "BROKEN" in line for line in out.splitlines()), out
