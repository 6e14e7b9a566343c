"""YAML with line numbers: mappings and sequences that remember where they were written, so
every validation error can name ``FILE:LINE``."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from routerlab.topology.model import TopologyError


class _Map(dict):
    """A YAML mapping that remembers its line, each key's line and repeated keys."""

    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.key_lines: dict[Any, int] = {}
        self.dups: list[tuple[Any, int, int]] = []  # (key, line, first line)


class _Seq(list):
    """A YAML sequence that remembers its line and each item's line."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self.line = 0
        self.item_lines: list[int] = []


class _KeyProblem(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers (1-based)."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit  # keys from `<<:` come first and may be overridden
    m = _Map()
    m.line = node.start_mark.line + 1
    for i, (knode, vnode) in enumerate(node.value):
        key = loader.construct_object(knode, deep=True)
        kline = knode.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _KeyProblem(kline, "a mapping key must be a plain value") from None
        if key in m and i >= merged and m.key_lines[key] > 0:
            m.dups.append((key, kline, m.key_lines[key]))
        m[key] = loader.construct_object(vnode, deep=True)
        # merged keys get a negative line so an explicit override is not a duplicate
        m.key_lines[key] = kline if i >= merged else -kline
    m.key_lines = {k: abs(v) for k, v in m.key_lines.items()}
    return m


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    s.line = node.start_mark.line + 1
    s.item_lines = [child.start_mark.line + 1 for child in node.value]
    return s


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def _line(obj: Any, key: Any = None) -> int:
    """Line of ``key`` in mapping ``obj`` (or of ``obj`` itself); 0 when unknown."""
    if key is not None:
        lines = getattr(obj, "key_lines", None)
        if lines and key in lines:
            return lines[key]
    return getattr(obj, "line", 0)


def _item_line(seq: Any, i: int) -> int:
    lines = getattr(seq, "item_lines", None)
    return lines[i] if lines and i < len(lines) else getattr(seq, "line", 0)



def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_yaml(text: str, source: str) -> Any:
    """Topology YAML text as data whose mappings and sequences carry line numbers; a YAML
    error is a TopologyError naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # safe: _LineLoader is a SafeLoader subclass
    except _KeyProblem as e:
        raise TopologyError(source, e.line, e.problem) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = _one_line(e.problem or "malformed YAML")
        if e.context:
            where = ""
            if e.context_mark and mark and e.context_mark.line != mark.line:
                where = f" started at line {e.context_mark.line + 1}"  # e.g. the unclosed '{'
            what += f" ({_one_line(e.context)}{where})"
        raise TopologyError(source, mark.line + 1 if mark else None, f"YAML syntax error: {what}") from None
    except yaml.YAMLError as e:
        raise TopologyError(source, None, f"YAML error: {_one_line(str(e))}") from None
