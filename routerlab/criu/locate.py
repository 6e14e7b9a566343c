"""Which CRIU to use and how to read what it says: the binary lookup (``$ROUTERLAB_CRIU``, the
get-criu.sh prefix, PATH), what get-criu.sh recorded, versions, the cause of a failure in
a CRIU log, and the result types `CriuError` and `Feature`."""
from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_CRIU = "ROUTERLAB_CRIU"
PREFIX = Path("/opt/routerlab/criu")
PREFIX_CRIU = PREFIX / "bin" / "criu"
SOURCE_FILE = PREFIX / "SOURCE"
HINT_GET_CRIU = ("run `sudo scripts/get-criu.sh` (installs criu 4.2 from Debian sid into "
                 "/opt/routerlab/criu)")


class CriuError(RuntimeError):
    """A CRIU command failed; carries the exit code, the log path and the log's last lines."""

    def __init__(self, action: str, returncode: int | None, log_path: Path | None,
                 log_tail: Sequence[str], output: str = ""):
        self.action = action
        self.returncode = returncode
        self.log_path = log_path
        self.log_tail = list(log_tail)
        self.output = output
        reason = first_error(self.log_tail) or (output.strip().splitlines() or ["no output"])[-1]
        where = f"; log: {log_path}" if log_path else ""
        code = "timed out" if returncode is None else f"exit {returncode}"
        super().__init__(f"criu {action} failed ({code}): {reason}{where}")


@dataclass(frozen=True)
class Feature:
    """One CRIU capability: whether it works here, why we think so, and what to do if not."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feature:
        return cls(name=str(d["name"]), ok=bool(d["ok"]), detail=str(d.get("detail", "")),
                   hint=str(d.get("hint", "")))


def _is_exe(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_criu() -> str | None:
    """The CRIU to use: $ROUTERLAB_CRIU, then the get-criu.sh prefix, then `criu` on PATH."""
    env = os.environ.get(ENV_CRIU)
    if env:
        p = Path(env) if "/" in env else Path(shutil.which(env) or env)
        if _is_exe(p):
            return str(p)
        log.warning("%s=%s is not an executable; looking elsewhere", ENV_CRIU, env)
    if _is_exe(PREFIX_CRIU):
        return str(PREFIX_CRIU)
    return shutil.which("criu")


def read_source(path: Path = SOURCE_FILE) -> dict[str, str]:
    """What get-criu.sh recorded (key=value lines), or {} when it never ran."""
    out: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep and k.strip() and not k.startswith("#"):
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def parse_version(text: str) -> str | None:
    """'Version: 4.2.1' (criu --version) -> '4.2.1'."""
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == "version":
            return v.strip() or None
    return None


# Error lines CRIU logs on every run here and survives (root lacks CAP_SYS_RESOURCE in this
# VM, so CRIU cannot raise its own fd limit): never the reason for a failure.
BENIGN_ERRORS = ("Can't setup RLIMIT_NOFILE",)
_TS = re.compile(r"^\(\d+\.\d+\)\s*")  # CRIU's "(00.065249) " timestamp prefix
_LEVEL = re.compile(r"^(Warn|Error)\s*\([^)]*\):\s*")  # "Warn  (criu/cr-check.c:824): "
_ERR = re.compile(r"Error \(([^:)]+)[:)]")


def first_error(lines: Sequence[str]) -> str | None:
    """The cause of a CRIU failure: its first real 'Error (file:line)' line, joined with the
    error lines right after it from the same source file (CRIU often splits one message)."""
    found: list[str] = []
    src = None
    for line in lines:
        text = _TS.sub("", line.strip())
        m = _ERR.search(text)
        if src is not None:
            if m and m.group(1) == src:
                found.append(text[m.end():].lstrip(" 0123456789)").lstrip(": ").strip() or text)
                continue
            break
        if m and not any(b in text for b in BENIGN_ERRORS):
            src = m.group(1)
            found.append(text)
        elif not m and text.startswith("Error") and not any(b in text for b in BENIGN_ERRORS):
            return text
    return "; ".join(found) if found else None


def log_tail(path: Path, n: int = 25) -> list[str]:
    """The last n lines of a log, plus the first error line if it scrolled out of them."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    tail = lines[-n:]
    err = first_error(lines)
    if err and first_error(tail) != err:
        tail = [err, "..."] + tail
    return tail
