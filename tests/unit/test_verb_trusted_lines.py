"""The trusted-core line count (the paper's trusted code was 514 lines)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "count-trusted-lines.py"


def _load():
    spec = importlib.util.spec_from_file_location("count_trusted_lines", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docstrings_comments_and_blank_lines_do_not_count():
    src = '"""Module doc."""\n\n# a comment\ndef f(x):\n    """Doc."""\n    y = x  # why\n    return (y +\n            1)\n'
    assert _load().code_lines(src) == 4


def test_the_trusted_core_is_at_most_the_papers_size():
    res = _load().count()
    assert set(res["files"]) >= {"verb/core/voter.py", "verb/core/replay.py"}
    assert 0 < res["code_lines"] <= 514


def test_the_script_runs():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1].startswith("trusted core:")
