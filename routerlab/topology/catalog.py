"""Finding and loading topologies: shipped names (``topologies/NAME.yaml`` and the
directories in ``$ROUTERLAB_TOPOLOGY_PATH``), file paths, and ``zoo:``/``sndlib:`` imports."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from routerlab.topology.model import Topology, TopologyError
from routerlab.topology.validate import _suggest, parse_topology
from routerlab.topology.zoo import TOPOHUB_PREFIXES, import_topohub

REPO_TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def topology_dirs() -> list[Path]:
    """Where shipped names are looked up: $ROUTERLAB_TOPOLOGY_PATH (':'-separated), then topologies/."""
    extra = [Path(p) for p in os.environ.get("ROUTERLAB_TOPOLOGY_PATH", "").split(os.pathsep) if p]
    return [*extra, REPO_TOPOLOGIES]


def list_topologies() -> list[str]:
    """Names of the shipped topology files (``ring``, ``abilene``, ...), sorted."""
    names = {p.stem for d in topology_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def find_topology(name: str) -> Path:
    """The file of a shipped topology name."""
    for d in topology_dirs():
        p = d / f"{name}.yaml"
        if p.is_file():
            return p
    known = list_topologies()
    raise TopologyError(name, None, f"no such topology file or shipped topology{_suggest(name, known)}; "
                                    f"shipped: {', '.join(known) or 'none'}; also zoo:NAME, sndlib:NAME")


def _display(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_topology(source: str | os.PathLike[str], **topohub_options: Any) -> Topology:
    """Load a topology from a file path, a shipped name (``ring``) or ``zoo:NAME``/``sndlib:NAME``.

    ``topohub_options`` (daemon, bw, hosts) apply to zoo/sndlib imports only.
    Raises TopologyError (one line: file, line, problem); creates nothing.
    """
    text_src = os.fspath(source)
    prefix, _, rest = text_src.partition(":")
    if rest and prefix in TOPOHUB_PREFIXES:
        return import_topohub(f"{TOPOHUB_PREFIXES[prefix]}/{rest}", **topohub_options)
    if topohub_options:
        raise TypeError(f"options {sorted(topohub_options)} apply to zoo:/sndlib: imports only")
    path = Path(text_src)
    if not path.is_file():
        looks_like_path = os.sep in text_src or path.suffix in (".yaml", ".yml")
        # A bare name that is also a directory here (e.g. `b4`, the package) is a shipped name.
        if looks_like_path or (path.exists() and not path.is_dir()):
            raise TopologyError(text_src, None, "no such file" if not path.exists() else "not a regular file")
        path = find_topology(text_src)
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TopologyError(shown, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise TopologyError(shown, None, f"cannot read: {e.strerror}") from None
    topo = parse_topology(text, shown, default_name=path.stem)
    topo.path = path.resolve()
    return topo
