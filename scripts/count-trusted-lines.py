#!/usr/bin/env python3
"""Count the lines of VERB's trusted core (`verb/core/`), the paper's 514-line figure.

Counts source lines: lines that carry code, leaving out blank lines, comment-only lines
and docstrings. Also prints every file's physical line count, so both are on record.

    scripts/count-trusted-lines.py            # a table, then the total on the last line
    scripts/count-trusted-lines.py --json     # {"files": {...}, "code_lines": N, ...}
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "verb" / "core"


def code_lines(source: str) -> int:
    """Lines holding at least one token that is neither a comment nor a docstring."""
    lines: set[int] = set()
    prev = tokenize.INDENT
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = tok.type
        if kind in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                    tokenize.DEDENT, tokenize.ENDMARKER):
            if kind != tokenize.COMMENT:
                prev = kind if kind != tokenize.NL else prev
            continue
        # a string that is a whole statement (after INDENT/NEWLINE) is a docstring
        if kind == tokenize.STRING and prev in (tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT):
            prev = tokenize.STRING
            continue
        lines.update(range(tok.start[0], tok.end[0] + 1))
        prev = kind
    return len(lines)


def count(core: Path = CORE) -> dict:
    files = {}
    for p in sorted(core.glob("*.py")):
        text = p.read_text()
        files[str(p.relative_to(ROOT))] = {"code_lines": code_lines(text),
                                           "physical_lines": len(text.splitlines())}
    return {"files": files,
            "code_lines": sum(f["code_lines"] for f in files.values()),
            "physical_lines": sum(f["physical_lines"] for f in files.values()),
            "paper_lines": 514}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    res = count()
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    for name, f in res["files"].items():
        print(f"{f['code_lines']:6d} {f['physical_lines']:6d}  {name}")
    print(f"{res['code_lines']:6d} {res['physical_lines']:6d}  total (code lines, physical lines)")
    print(f"trusted core: {res['code_lines']} code lines (paper: {res['paper_lines']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
