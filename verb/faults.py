"""Bug injection: faults on one replica at a time, switched on and off at run time.

    f = faults.make("wrong-next-hop", router, "r0", prefix="10.100.1.0/24", gateway="10.2.0.2")
    f.inject(); ...; f.clear()

Each fault declares the parameters it takes (`Fault.PARAMS`); a fault is refused at creation
(`FaultParamError`, a `UserError`) when one is missing, unknown or malformed.

Each fault acts on the replica itself where the replica can be made to misbehave natively:
- crash: SIGKILL of the replica's daemon processes;
- hang: SIGSTOP of them (a hung daemon keeps its TCP sessions but falls silent);
- slow: SIGSTOP/SIGCONT duty cycle (the replica runs a fraction of the time);
- wrong-next-hop, bogus-route: a foreign route (metric 1, so the replica's own loses) in the
  replica's kernel FIB (FRR, BIRD), or a local path in GoBGP's RIB (which then also reaches
  its UPDATEs); bogus-route is a hijacked more-specific prefix;
- missing-route: FRR's own FIB filter (`ip protocol bgp route-map`), or on BIRD the kernel
  route deleted again whenever BIRD's scan puts it back.
Faults of the replica's *output bytes* are applied where those bytes leave the replica, at
the hypervisor's socket (a `Tamper` on that replica's sessions, before any parsing), which
models a bug in the replica's UPDATE encoder:
- corrupt-update: every UPDATE's AS path gets a bogus AS prepended, or its NEXT_HOP changed;
- malformed: the next message is garbage (a broken header);
- withdraw-race: after the replica withdraws a prefix, its re-advertisement is lost, so
  only the withdraw propagates (the paper's real bug).
"""
from __future__ import annotations

import abc
import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from routerlab.errors import UserError
from routerlab.netns import CommandError

from . import bgp

if TYPE_CHECKING:
    from routerlab.daemons import FrrDaemon, GobgpDaemon

    from .replica import Replica
    from .router import BugTolerantRouter

log = logging.getLogger(__name__)

BOGUS_AS = 64666


class FaultError(RuntimeError):
    """The fault cannot be injected on this replica."""


class FaultParamError(UserError):
    """A fault's parameters are missing, unknown or malformed."""


def _prefix(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Network(str(value)))
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IPv4 prefix ({e})") from None


def _address(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _prefixes(value: Any) -> list[str]:
    return [_prefix(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _seconds(value: Any) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not s > 0:
        raise ValueError(f"{value!r} is not a positive number of seconds")
    return s


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value
    check.__name__ = "|".join(options)
    return check


@dataclass(frozen=True)
class Param:
    """One parameter a fault takes: `name=HINT` in usage, `check` turns a value into what
    the fault uses (or raises ValueError saying what is wrong); optional when it has a
    default (None: optional, absent unless given)."""

    name: str
    hint: str
    check: Callable[[Any], Any]
    required: bool = True
    default: Any = None

    def usage(self) -> str:
        return f"{self.name}={self.hint}" if self.required else f"[{self.name}={self.hint}]"


class Fault(abc.ABC):
    """One injectable bug on one replica."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, router: BugTolerantRouter, replica: str, **params: Any):
        self.router = router
        self.replica_name = replica
        self.params = self.check_params(params)
        self.active = False
        self.generation = 0
        self.injected_at: float | None = None

    def __repr__(self) -> str:
        return f"<{self.name} on {self.replica_name}>"

    @classmethod
    def usage(cls) -> str:
        """What the fault takes, e.g. `wrong-next-hop needs prefix=P gateway=G`."""
        if not cls.PARAMS:
            return f"{cls.name} takes no parameters"
        verb = "needs" if any(p.required for p in cls.PARAMS) else "takes"
        return f"{cls.name} {verb} {' '.join(p.usage() for p in cls.PARAMS)}"

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters checked and converted, with defaults filled in; `FaultParamError`
        names what is missing, unknown or malformed."""
        known = {p.name: p for p in cls.PARAMS}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise FaultParamError(f"{cls.usage()} (unknown: {', '.join(unknown)})")
        missing = [p.name for p in cls.PARAMS if p.required and p.name not in params]
        if missing:
            raise FaultParamError(f"{cls.usage()} (missing: {', '.join(missing)})")
        out: dict[str, Any] = {}
        for p in cls.PARAMS:
            if p.name in params:
                try:
                    out[p.name] = p.check(params[p.name])
                except ValueError as e:
                    raise FaultParamError(f"{cls.usage()} ({p.name}: {e})") from None
            elif p.default is not None:
                out[p.name] = p.default
        return out

    @property
    def replica(self) -> Replica:
        return self.router.replica(self.replica_name)

    def inject(self) -> Fault:
        if self.active:
            return self
        self.generation = self.replica.generation
        self._inject()
        self.active = True
        self.injected_at = time.monotonic()
        log.warning("fault %s injected on %s (%s)", self.name, self.replica_name, self.replica.impl)
        return self

    def clear(self) -> None:
        """Switch the fault off (a no-op once the replica has been replaced)."""
        if not self.active:
            return
        self.active = False
        try:
            if self.replica.generation == self.generation:
                self._clear()
        except Exception as e:  # the replica may be gone or mid-recovery
            log.info("clearing %s: %s", self, e)
        log.warning("fault %s cleared on %s", self.name, self.replica_name)

    @abc.abstractmethod
    def _inject(self) -> None: ...

    def _clear(self) -> None:  # noqa: B027 (optional: a crash, say, has nothing to undo)
        pass

    def __enter__(self) -> Fault:
        return self.inject()

    def __exit__(self, *exc: object) -> None:
        self.clear()

    # helpers
    def _signal(self, sig: int) -> None:
        for pid in self.replica.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _ip(self, *args: str, check: bool = True) -> None:
        self.replica.ns.ip(*args, check=check)


class Crash(Fault):
    name = "crash"
    description = "the replica's daemon dies (SIGKILL)"

    def _inject(self) -> None:
        self._signal(signal.SIGKILL)


class Hang(Fault):
    name = "hang"
    description = "the replica's daemon stops running (SIGSTOP) but keeps its sessions open"

    def _inject(self) -> None:
        self._signal(signal.SIGSTOP)

    def _clear(self) -> None:
        self._signal(signal.SIGCONT)


class Slow(Fault):
    name = "slow"
    description = "the replica runs only part of the time (SIGSTOP/SIGCONT duty cycle)"
    PARAMS = (Param("stop_s", "S", _seconds, required=False, default=0.4),
              Param("run_s", "S", _seconds, required=False, default=0.1))

    def _inject(self) -> None:
        stop_s, run_s = self.params["stop_s"], self.params["run_s"]
        self._stop = threading.Event()
        gen = self.replica.generation

        def cycle() -> None:
            while not self._stop.is_set() and self.replica.generation == gen:
                self._signal(signal.SIGSTOP)
                self._stop.wait(stop_s)
                self._signal(signal.SIGCONT)
                self._stop.wait(run_s)
        self._thread = threading.Thread(target=cycle, name=f"slow-{self.replica_name}", daemon=True)
        self._thread.start()

    def _clear(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._signal(signal.SIGCONT)

    def clear(self) -> None:
        if self.active and hasattr(self, "_stop"):
            self._stop.set()  # stop the cycle even if the replica was replaced meanwhile
        super().clear()


PREFIX = Param("prefix", "P", _prefix)
GATEWAY = Param("gateway", "G", _address)


class _RouteFault(Fault):
    """A fault on one prefix of the replica's FIB."""

    PARAMS = (PREFIX,)

    @property
    def prefix(self) -> str:
        return self.params["prefix"]

    def _gobgp(self, *args: str) -> None:
        # callers check impl == "gobgp"; a started replica keeps its daemon
        cast("GobgpDaemon", self.replica.daemon).gobgp("global", "rib", *args)


class WrongNextHop(_RouteFault):
    name = "wrong-next-hop"
    description = "the replica's FIB sends a prefix to the wrong next hop"
    PARAMS = (PREFIX, GATEWAY)

    def _inject(self) -> None:
        gw = self.params["gateway"]
        if self.replica.impl == "gobgp":
            self._gobgp("add", "-a", "ipv4", self.prefix, "nexthop", gw)
        else:
            self._ip("route", "replace", self.prefix, "via", gw, "proto", "static", "metric", "1")

    def _clear(self) -> None:
        if self.replica.impl == "gobgp":
            self._gobgp("del", "-a", "ipv4", self.prefix)
        else:
            self._ip("route", "del", self.prefix, "proto", "static", "metric", "1", check=False)


class BogusRoute(_RouteFault):
    name = "bogus-route"
    description = "the replica's FIB (and GoBGP's UPDATEs) gain a hijacked more-specific prefix"
    PARAMS = (PREFIX, Param("gateway", "G", _address, required=False))

    def _inject(self) -> None:
        gw = self.params.get("gateway")
        if self.replica.impl == "gobgp":
            self._gobgp("add", "-a", "ipv4", self.prefix, *(("nexthop", gw) if gw else ()))
        elif gw:
            self._ip("route", "replace", self.prefix, "via", gw, "proto", "static", "metric", "1")
        else:
            self._ip("route", "replace", "blackhole", self.prefix, "proto", "static", "metric", "1")

    def _clear(self) -> None:
        if self.replica.impl == "gobgp":
            self._gobgp("del", "-a", "ipv4", self.prefix)
        else:
            self._ip("route", "del", self.prefix, "proto", "static", "metric", "1", check=False)


_FRR_FILTER = ("configure terminal\nip prefix-list VERB_FAULT seq 5 permit {p}\n"
               "route-map VERB_FAULT deny 10\n match ip address prefix-list VERB_FAULT\n"
               "route-map VERB_FAULT permit 20\nip protocol bgp route-map VERB_FAULT")
_FRR_UNFILTER = ("configure terminal\nno ip protocol bgp route-map VERB_FAULT\n"
                 "no route-map VERB_FAULT\nno ip prefix-list VERB_FAULT")


class MissingRoute(_RouteFault):
    name = "missing-route"
    description = "a prefix the replica has learnt never reaches its FIB"

    def _inject(self) -> None:
        impl = self.replica.impl
        if impl == "frr":
            cast("FrrDaemon", self.replica.daemon).vtysh(_FRR_FILTER.format(p=self.prefix))
        elif impl == "bird":
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._keep_deleting, daemon=True)
            self._thread.start()
        else:
            raise FaultError(f"missing-route needs a replica with a kernel FIB, not {impl}")

    def _keep_deleting(self) -> None:
        gen = self.replica.generation
        while not self._stop.is_set() and self.replica.generation == gen:
            with suppress(CommandError, OSError):  # BIRD puts its route back at each kernel scan
                self._ip("route", "del", self.prefix, "proto", "bird", check=False)
            self._stop.wait(0.1)

    def _clear(self) -> None:
        if self.replica.impl == "frr":
            cast("FrrDaemon", self.replica.daemon).vtysh(_FRR_UNFILTER)
        elif hasattr(self, "_stop"):
            self._stop.set()

    def clear(self) -> None:
        if self.active and hasattr(self, "_stop"):
            self._stop.set()
        super().clear()


class _TamperFault(Fault):
    """A fault in the bytes the replica sends (applied on all its sessions)."""

    def _inject(self) -> None:
        self.router.run(lambda: self._set(self.tamper))

    def _clear(self) -> None:
        self.router.run(lambda: self._set(None))

    def _set(self, fn) -> None:
        self.router.interposer.tampers[self.replica_name] = fn

    @abc.abstractmethod
    def tamper(self, msg: bytes, peer: str) -> list[bytes]: ...


class CorruptUpdate(_TamperFault):
    name = "corrupt-update"
    description = "the replica's UPDATEs carry an altered AS path (or next hop)"
    PARAMS = (Param("kind", "as-path|next-hop", _choice("as-path", "next-hop"), required=False,
                    default="as-path"),
              Param("next_hop", "A", _address, required=False, default="192.0.2.66"))

    def tamper(self, msg: bytes, peer: str) -> list[bytes]:
        if bgp.msg_type(msg) != bgp.UPDATE:
            return [msg]
        u = bgp.parse_update(msg)
        r = bgp.normalize(u)
        if r is None:
            return [msg]
        if self.params["kind"] == "next-hop":
            r = r._replace(next_hop=self.params["next_hop"])
        else:
            head = r.as_path[0][1] if r.as_path else ()
            r = r._replace(as_path=bgp._merge_segments(((2, head[:1] + (BOGUS_AS,) + head[1:]),)
                                                       + r.as_path[1:]))
        out = bgp.encode_withdraw(u.withdrawn)
        return out + [m for m, _ in bgp.encode_announce(bgp.encode_attrs(r), u.nlri)]


class Malformed(_TamperFault):
    name = "malformed"
    description = "the replica sends a malformed message (a broken header)"

    def tamper(self, msg: bytes, peer: str) -> list[bytes]:
        self.router.interposer.tampers.pop(self.replica_name, None)  # one bad message
        return [b"\x00" * 16 + msg[16:]]


class WithdrawRace(_TamperFault):
    name = "withdraw-race"
    description = "after a withdraw, the replica's re-advertisement is lost (only the withdraw propagates)"
    PARAMS = (Param("prefixes", "P,...", _prefixes, required=False),)  # default: every prefix

    def _inject(self) -> None:
        self.withdrawn: set[tuple[str, str]] = set()
        super()._inject()

    def tamper(self, msg: bytes, peer: str) -> list[bytes]:
        if bgp.msg_type(msg) != bgp.UPDATE:
            return [msg]
        u = bgp.parse_update(msg)
        only = self.params.get("prefixes")
        self.withdrawn.update((peer, p) for p in u.withdrawn if only is None or p in only)
        lost = [p for p in u.nlri if (peer, p) in self.withdrawn]
        if not lost:
            return [msg]
        keep = [p for p in u.nlri if (peer, p) not in self.withdrawn]
        out = bgp.encode_withdraw(u.withdrawn)
        if keep:
            out += [m for m, _ in bgp.encode_announce(u.attrs, keep)]
        return out


FAULTS: dict[str, type[Fault]] = {c.name: c for c in (
    Crash, Hang, WrongNextHop, MissingRoute, BogusRoute, CorruptUpdate, Malformed, WithdrawRace, Slow)}


def make(name: str, router: BugTolerantRouter, replica: str, **params: Any) -> Fault:
    """A fault by name ("crash", "hang", "wrong-next-hop", ...), not yet injected."""
    try:
        return FAULTS[name](router, replica, **params)
    except KeyError:
        raise FaultError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})") from None
