"""The implementation-neutral router specification every daemon driver renders from.

One `RouterSpec` describes what a router *is* (identity, interfaces, OSPF, BGP, policies,
originated prefixes); the drivers in `routerlab.daemons` turn it into FRR, BIRD, GoBGP or
ExaBGP configuration. Nothing here names an implementation except the optional
`RouterSpec.overrides` (raw extra configuration text per implementation, appended verbatim).

Addresses are strings in CIDR notation ("10.0.12.1/24"); interface names are the Linux
names inside the router's namespace. The loopback address lives on ``lo`` (the kernel here
has no ``dummy`` link type).

Example::

    RouterSpec(
        name="r1", router_id="10.255.0.1", asn=65001, loopback="10.255.0.1/32",
        interfaces=[Interface("r1-eth0", "10.0.12.1/24", ospf_area="0.0.0.0")],
        bgp_neighbors=[BgpNeighbor("10.0.12.2", 65002)],
        networks=[Network("192.0.2.0/24")],
    )
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["accept", "reject"]
OspfNetworkType = Literal["broadcast", "point-to-point"]
Redistribute = Literal["connected", "static", "ospf"]

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


class SpecError(ValueError):
    """The router spec is inconsistent (caught before any daemon sees it)."""


@dataclass(frozen=True)
class PrefixMatch:
    """Match routes whose prefix lies inside `prefix` with a length in [ge, le].

    Without ge/le only the exact prefix matches. `parse("10.0.0.0/8 le 24")` and
    `parse("10.0.0.0/8 ge 16 le 24")` accept the familiar prefix-list notation."""

    prefix: str
    ge: int | None = None
    le: int | None = None

    @classmethod
    def parse(cls, text: str) -> PrefixMatch:
        parts = text.split()
        if not parts or len(parts) % 2 != 1:
            raise SpecError(f"bad prefix match {text!r}")
        kw = dict(zip(parts[1::2], parts[2::2]))
        if set(kw) - {"ge", "le"}:
            raise SpecError(f"bad prefix match {text!r} (only ge/le allowed)")
        return cls(parts[0], int(kw["ge"]) if "ge" in kw else None,
                   int(kw["le"]) if "le" in kw else None)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.prefix, strict=True)

    def bounds(self) -> tuple[int, int]:
        """The (min, max) prefix length this match accepts."""
        plen = self.network.prefixlen
        if self.ge is None and self.le is None:
            return plen, plen
        return (self.ge if self.ge is not None else plen,
                self.le if self.le is not None else 32)

    def matches(self, prefix: str) -> bool:
        """Whether a route prefix is matched (used by tests and by callers that filter)."""
        net = ipaddress.IPv4Network(prefix, strict=False)
        lo, hi = self.bounds()
        return net.subnet_of(self.network) and lo <= net.prefixlen <= hi


@dataclass
class PolicyRule:
    """One term of a policy: if the route matches, apply the sets and take the action.

    An empty `prefixes` matches every route. `prepend` prepends the router's own ASN that
    many times (export policies)."""

    prefixes: list[PrefixMatch] = field(default_factory=list)
    action: Action = "accept"
    set_local_pref: int | None = None
    set_med: int | None = None
    prepend: int = 0


@dataclass
class Policy:
    """An ordered list of rules; the first matching rule decides, else `default`."""

    name: str
    rules: list[PolicyRule] = field(default_factory=list)
    default: Action = "accept"


ACCEPT_ALL = "ACCEPT_ALL"
REJECT_ALL = "REJECT_ALL"
BUILTIN_POLICIES = (ACCEPT_ALL, REJECT_ALL)


@dataclass
class Interface:
    """A router interface inside the namespace, with its address and OSPF role.

    `ospf_area` None means OSPF does not run on this interface. A passive interface's
    subnet is advertised into OSPF but no adjacency is formed on it."""

    name: str
    address: str  # "10.0.12.1/24"
    ospf_area: str | None = None  # dotted ("0.0.0.0") or decimal ("0")
    ospf_cost: int = 10
    ospf_passive: bool = False
    ospf_network: OspfNetworkType = "broadcast"

    @property
    def iface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.address)


@dataclass
class BgpNeighbor:
    """A BGP session with one peer (IPv4 unicast).

    `import_policy`/`export_policy` name a `Policy` of the router (or ACCEPT_ALL/REJECT_ALL).
    `ebgp_multihop` is the TTL for eBGP peers that are not directly connected; `passive`
    waits for the peer to connect."""

    peer: str
    asn: int
    local_address: str | None = None
    description: str = ""
    ebgp_multihop: int | None = None
    keepalive: int = 3
    hold: int = 9
    connect_retry: int = 5
    next_hop_self: bool = False
    passive: bool = False
    import_policy: str = ACCEPT_ALL
    export_policy: str = ACCEPT_ALL


@dataclass
class Network:
    """A prefix this router originates into BGP.

    With `discard` (default) the router installs a blackhole route for it so the prefix
    exists regardless of the rest of the RIB (an aggregate); without it the prefix must
    already be in the RIB (e.g. a connected subnet). `med`/`as_path`/`next_hop` are only
    honoured by injectors that set attributes per route (ExaBGP)."""

    prefix: str
    discard: bool = True
    med: int | None = None
    as_path: tuple[int, ...] = ()
    next_hop: str | None = None


@dataclass
class StaticRoute:
    """A static route in the router's RIB (and FIB); `via` None makes it a blackhole."""

    prefix: str
    via: str | None = None


@dataclass
class RouterSpec:
    """Everything a routing daemon needs to know about one router.

    `asn` None means no BGP. OSPF runs when any interface has an `ospf_area`; the loopback
    is then advertised (as a passive /32 stub) into `loopback_area`."""

    name: str
    router_id: str
    asn: int | None = None
    loopback: str | None = None  # "10.255.0.1/32", put on `lo`
    loopback_area: str | None = "0.0.0.0"
    interfaces: list[Interface] = field(default_factory=list)
    ospf_hello: int = 1
    ospf_dead: int = 4
    #: OSPF SPF throttle (ms): delay after the first change, then hold doubling up to max
    #: (FRR's `timers throttle spf`; BIRD schedules SPF on its own 1 s tick)
    ospf_spf_throttle: tuple[int, int, int] = (0, 50, 1000)
    ospf_redistribute: tuple[Redistribute, ...] = ()
    bgp_neighbors: list[BgpNeighbor] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    static_routes: list[StaticRoute] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    bgp_redistribute: tuple[Redistribute, ...] = ()
    graceful_restart: bool = False
    # Raw configuration text appended verbatim per implementation ("frr", "bird", ...).
    overrides: dict[str, str] = field(default_factory=dict)

    # ----- derived views used by every renderer -----
    @property
    def ospf_enabled(self) -> bool:
        return any(i.ospf_area is not None for i in self.interfaces)

    @property
    def bgp_enabled(self) -> bool:
        return self.asn is not None

    @property
    def loopback_ip(self) -> str | None:
        return str(ipaddress.IPv4Interface(self.loopback).ip) if self.loopback else None

    def policy(self, name: str) -> Policy:
        """The named policy (ACCEPT_ALL/REJECT_ALL are built in)."""
        if name == ACCEPT_ALL:
            return Policy(ACCEPT_ALL, [], "accept")
        if name == REJECT_ALL:
            return Policy(REJECT_ALL, [], "reject")
        for p in self.policies:
            if p.name == name:
                return p
        raise SpecError(f"{self.name}: unknown policy {name!r}")

    def local_address_for(self, nb: BgpNeighbor) -> str | None:
        """The session's local address: given, else the interface address on the peer's subnet."""
        if nb.local_address:
            return nb.local_address
        peer = ipaddress.IPv4Address(nb.peer)
        for i in self.interfaces:
            if peer in i.iface.network and peer != i.iface.ip:
                return str(i.iface.ip)
        return None

    def validate(self) -> RouterSpec:
        """Check internal consistency; raise SpecError with what is wrong. Returns self."""
        def ip(v: str, what: str) -> None:
            try:
                ipaddress.IPv4Address(v)
            except ValueError:
                raise SpecError(f"{self.name}: {what} {v!r} is not an IPv4 address") from None

        def net(v: str, what: str) -> None:
            try:
                ipaddress.IPv4Network(v, strict=True)
            except ValueError as e:
                raise SpecError(f"{self.name}: {what} {v!r}: {e}") from None

        ip(self.router_id, "router id")
        if self.asn is not None and not 1 <= self.asn <= 4294967295:
            raise SpecError(f"{self.name}: ASN {self.asn} out of range")
        if self.loopback:
            ipaddress.IPv4Interface(self.loopback)
        names = set()
        for i in self.interfaces:
            if i.name in names:
                raise SpecError(f"{self.name}: interface {i.name} listed twice")
            names.add(i.name)
            try:
                _ = i.iface  # parsing the address is the check
            except ValueError as e:
                raise SpecError(f"{self.name}: interface {i.name}: {e}") from None
            if i.ospf_area is not None:
                area_id(i.ospf_area)
            if not 1 <= i.ospf_cost <= 65535:
                raise SpecError(f"{self.name}: {i.name}: OSPF cost {i.ospf_cost} out of range")
        if not 1 <= self.ospf_hello < self.ospf_dead:
            raise SpecError(f"{self.name}: OSPF hello {self.ospf_hello} must be < dead {self.ospf_dead}")
        delay, hold, top = self.ospf_spf_throttle
        if not (0 <= delay <= 600000 and 0 <= hold <= top <= 600000):
            raise SpecError(f"{self.name}: bad OSPF SPF throttle {self.ospf_spf_throttle} "
                            "(delay, hold <= max, in ms up to 600000)")
        pol_names = {p.name for p in self.policies}
        for p in self.policies:
            if not _NAME_RE.match(p.name) or p.name in BUILTIN_POLICIES:
                raise SpecError(f"{self.name}: bad policy name {p.name!r} (letters, digits, _)")
            for r in p.rules:
                for m in r.prefixes:
                    net(m.prefix, f"policy {p.name} prefix")
                    lo, hi = m.bounds()
                    if not m.network.prefixlen <= lo <= hi <= 32:
                        raise SpecError(f"{self.name}: policy {p.name}: bad ge/le in {m}")
        if len(pol_names) != len(self.policies):
            raise SpecError(f"{self.name}: duplicate policy names")
        peers = set()
        for nb in self.bgp_neighbors:
            if self.asn is None:
                raise SpecError(f"{self.name}: BGP neighbours need the router's asn")
            ip(nb.peer, "BGP peer")
            if nb.peer in peers:
                raise SpecError(f"{self.name}: BGP peer {nb.peer} listed twice")
            peers.add(nb.peer)
            if nb.local_address:
                ip(nb.local_address, "BGP local address")
            for pol in (nb.import_policy, nb.export_policy):
                self.policy(pol)
            if not (nb.hold == 0 or (nb.hold >= 3 and nb.keepalive < nb.hold)):
                raise SpecError(f"{self.name}: BGP peer {nb.peer}: bad keepalive/hold "
                                f"{nb.keepalive}/{nb.hold}")
        for n in self.networks:
            net(n.prefix, "originated network")
        for s in self.static_routes:
            net(s.prefix, "static route")
            if s.via:
                ip(s.via, "static next hop")
        return self


def area_id(area: str | int) -> str:
    """An OSPF area id in dotted form ("0" -> "0.0.0.0")."""
    s = str(area)
    if s.isdigit():
        return str(ipaddress.IPv4Address(int(s)))
    try:
        return str(ipaddress.IPv4Address(s))
    except ValueError:
        raise SpecError(f"bad OSPF area {area!r}") from None


def discard_prefixes(spec: RouterSpec) -> list[str]:
    """Prefixes that need a blackhole route: discard networks, and via-less static routes."""
    out = [n.prefix for n in spec.networks if n.discard]
    out += [s.prefix for s in spec.static_routes if s.via is None]
    return list(dict.fromkeys(out))
