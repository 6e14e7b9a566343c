"""Recorders for what leaves the bug-tolerant router: real-FIB changes and UPDATEs sent.

Both record (monotonic time, key, value) events so tests can assert that a fault *never*
reached the FIB or a neighbour (transients included), and experiments can time exposure
windows and delays. The FIB recorder follows the forwarding namespace's kernel FIB over its
own netlink socket (it checks the kernel, not the installer's bookkeeping).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, cast

from .bgp import RouteAttrs
from .fib import FibValue, KernelFib
from .router import BugTolerantRouter


class LoopThread:
    """An asyncio loop in a daemon thread, for recorders that are not run by a router."""

    def __init__(self, name: str = "verb-measure"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class Event:
    t: float
    key: str
    value: object


@dataclass
class Recorder:
    """A thread-safe list of events with a few queries."""

    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, value: object, t: float | None = None) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic() if t is None else t, key, value))

    def since(self, t0: float) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.t >= t0]

    def any(self, pred: Callable[[Event], bool], t0: float = 0.0) -> bool:
        return any(pred(e) for e in self.since(t0))

    def state(self, t: float | None = None) -> dict:
        """The key -> value state after replaying events up to time t (default: all)."""
        out: dict = {}
        with self._lock:
            for e in self.events:
                if t is not None and e.t > t:
                    break
                if e.value is None:
                    out.pop(e.key, None)
                else:
                    out[e.key] = e.value
        return out

    def first_time(self, key: str, pred: Callable[[object], bool], t0: float = 0.0) -> float | None:
        return next((e.t for e in self.since(t0) if e.key == key and pred(e.value)), None)


class FibRecorder(Recorder):
    """Every change of a namespace's kernel FIB (the router's real FIB), over netlink.

    Runs on the router's loop (a `BugTolerantRouter`) or on a `LoopThread`."""

    def __init__(self, host: BugTolerantRouter | LoopThread, ns: str | None = None):
        super().__init__()
        self.host = host
        if not ns:
            if not isinstance(host, BugTolerantRouter):
                raise ValueError("a FibRecorder on a LoopThread needs the namespace's name")
            ns = host.fwd.name
        self.ns = ns
        self.watcher: KernelFib | None = None

    def start(self) -> "FibRecorder":
        def report(changes: list[tuple[str, FibValue | None]]) -> None:
            now = time.monotonic()
            for prefix, value in changes:
                self.add(prefix, value, now)

        async def go() -> None:
            self.watcher = KernelFib(self.ns, report)
            self.watcher.start()
        self.host.call(go())
        return self

    def stop(self) -> None:
        if self.watcher is not None:
            self.host.call(self.watcher.aclose(), 10)


class AdvertRecorder(Recorder):
    """Every voted change sent to a neighbour: key "peer prefix", value RouteAttrs or None."""

    def __init__(self, router: BugTolerantRouter):
        super().__init__()
        self.router = router

    def start(self) -> "AdvertRecorder":
        def observe(kind: str, peer: str, what: object) -> None:
            if kind == "advertised":
                now = time.monotonic()
                for prefix, attrs in cast("list[tuple[str, RouteAttrs | None]]", what):  # what Neighbor._send sent
                    self.add(f"{peer} {prefix}", attrs, now)
        self.router.run(lambda: self.router.interposer.observers.append(observe))
        self._observe = observe
        return self

    def stop(self) -> None:
        try:
            self.router.run(lambda: self.router.interposer.observers.remove(self._observe))
        except Exception:
            pass


class ExabgpObserver(Recorder):
    """What a receiving ExaBGP neighbour got, from its events file (ExaBGP stamps each
    message with its wall-clock receive time): key prefix, value (as path, next hop) or None.

    `poll()` reads what was appended since the last call; times are turned into the
    monotonic clock the other recorders use."""

    def __init__(self, events_path: Path, peer: str):
        super().__init__()
        self.path = Path(events_path)
        self.peer = peer
        self._pos = 0
        self._offset = time.time() - time.monotonic()
        self.ups = 0

    def poll(self) -> "ExabgpObserver":
        try:
            with open(self.path) as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            return self
        end = data.rfind("\n") + 1
        self._pos += len(data[:end].encode())
        for line in data[:end].splitlines():
            if line.startswith("{"):
                self._line(line)
        return self

    def _line(self, line: str) -> None:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            return
        nb = msg.get("neighbor") or {}
        if (nb.get("address") or {}).get("peer") != self.peer:
            return
        t = float(msg.get("time", time.time())) - self._offset
        if msg.get("type") == "state" and nb.get("state") == "up":
            self.ups += 1
        if msg.get("type") != "update":
            return
        upd = (nb.get("message") or {}).get("update") or {}
        path = tuple((upd.get("attribute") or {}).get("as-path") or ())
        for fam, nlris in (upd.get("withdraw") or {}).items():
            for n in nlris if fam == "ipv4 unicast" else []:
                self.add(n.get("nlri") if isinstance(n, dict) else n, None, t)
        for fam, by_nh in (upd.get("announce") or {}).items():
            for nh, nlris in (by_nh.items() if fam == "ipv4 unicast" else []):
                for n in nlris:
                    self.add(n.get("nlri") if isinstance(n, dict) else n, (path, nh), t)


def route_summary(r: RouteAttrs) -> tuple[tuple[int, ...], str]:
    """A RouteAttrs as an ExaBGP observer records it: (flat AS path, next hop)."""
    return tuple(a for _, asns in r.as_path for a in asns), r.next_hop
