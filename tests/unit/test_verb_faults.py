"""The faults that act on a replica's output bytes (checked without a router)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from routerlab.errors import UserError
from verb import bgp, faults
from verb.bgp import RouteAttrs

R = RouteAttrs(origin=0, as_path=((2, (65001, 65010)),), next_hop="10.2.0.1")


def fake_router():
    return SimpleNamespace(interposer=SimpleNamespace(tampers={}))


def announce(*prefixes: str) -> bytes:
    return bgp.encode_announce(bgp.encode_attrs(R), list(prefixes))[0][0]


def test_corrupt_update_alters_the_path_or_next_hop():
    f = faults.CorruptUpdate(fake_router(), "r1", kind="as-path")
    (out,) = f.tamper(announce("10.1.0.0/24"), "10.2.0.2")
    r = bgp.normalize(bgp.parse_update(out))
    assert r.as_path == ((2, (65001, faults.BOGUS_AS, 65010)),) and r.next_hop == R.next_hop
    f = faults.CorruptUpdate(fake_router(), "r1", kind="next-hop", next_hop="192.0.2.66")
    (out,) = f.tamper(announce("10.1.0.0/24"), "10.2.0.2")
    assert bgp.normalize(bgp.parse_update(out)).next_hop == "192.0.2.66"
    ka = bgp.keepalive()
    assert f.tamper(ka, "10.2.0.2") == [ka]


def test_withdraw_race_loses_only_the_readvertisement():
    f = faults.WithdrawRace(fake_router(), "r2", prefixes=["10.1.0.0/24"])
    f.withdrawn = set()
    first = announce("10.1.0.0/24", "10.2.0.0/24")
    assert f.tamper(first, "n") == [first]  # nothing withdrawn yet
    w = bgp.encode_withdraw(["10.1.0.0/24"])[0]
    assert f.tamper(w, "n") == [w]  # the withdraw goes out
    out = f.tamper(announce("10.1.0.0/24", "10.2.0.0/24"), "n")
    nlri = [p for m in out for p in bgp.parse_update(m).nlri]
    assert nlri == ["10.2.0.0/24"]  # the re-advertisement of 10.1.0.0/24 is lost
    assert f.tamper(announce("10.1.0.0/24"), "other-peer") != []  # per neighbour


def test_malformed_breaks_one_message_then_stops():
    router = fake_router()
    f = faults.Malformed(router, "r1")
    router.interposer.tampers["r1"] = f.tamper
    (bad,) = f.tamper(announce("10.1.0.0/24"), "n")
    with pytest.raises(bgp.BgpError) as e:
        bgp.check_header(bad[:19])
    assert (e.value.code, e.value.subcode) == (1, 1)
    assert "r1" not in router.interposer.tampers


def test_unknown_fault():
    with pytest.raises(faults.FaultError):
        faults.make("gremlins", fake_router(), "r0")
    assert set(faults.FAULTS) == {"crash", "hang", "slow", "wrong-next-hop", "missing-route",
                                  "bogus-route", "corrupt-update", "malformed", "withdraw-race"}


def test_every_fault_declares_its_parameters():
    usage = {name: cls.usage() for name, cls in faults.FAULTS.items()}
    assert usage["wrong-next-hop"] == "wrong-next-hop needs prefix=P gateway=G"
    assert usage["bogus-route"] == "bogus-route needs prefix=P [gateway=G]"
    assert usage["missing-route"] == "missing-route needs prefix=P"
    assert usage["crash"] == "crash takes no parameters"
    assert usage["slow"] == "slow takes [stop_s=S] [run_s=S]"
    assert usage["corrupt-update"] == "corrupt-update takes [kind=as-path|next-hop] [next_hop=A]"


@pytest.mark.parametrize("name, params, message", [
    ("wrong-next-hop", {}, r"needs prefix=P gateway=G \(missing: prefix, gateway\)"),
    ("wrong-next-hop", {"prefix": "10.1.0.0/24"}, r"\(missing: gateway\)"),
    ("wrong-next-hop", {"prefix": "10.1.0.1/24", "gateway": "10.2.0.2"}, "host bits set"),
    ("wrong-next-hop", {"prefix": "10.1.0.0/24", "gateway": "eth0"}, "gateway: 'eth0' is not an IPv4 address"),
    ("missing-route", {"prefix": "10.1.0.0/24", "gateway": "10.2.0.2"}, r"\(unknown: gateway\)"),
    ("withdraw-race", {"prefixes": ["10.1.0.0/24", "nope"]}, "'nope' is not an IPv4 prefix"),
    ("slow", {"stop_s": -1}, "stop_s: -1 is not a positive number of seconds"),
    ("slow", {"run_s": "fast"}, "run_s: 'fast' is not a number of seconds"),
    ("corrupt-update", {"kind": "origin"}, "kind: 'origin' is not one of as-path, next-hop"),
])
def test_parameters_are_checked_when_a_fault_is_made(name, params, message):
    with pytest.raises(faults.FaultParamError, match=message) as e:
        faults.make(name, fake_router(), "r0", **params)
    assert isinstance(e.value, UserError)


def test_parameters_are_converted_and_defaulted():
    assert faults.make("slow", fake_router(), "r0", stop_s=1).params == {"stop_s": 1.0, "run_s": 0.1}
    assert faults.make("corrupt-update", fake_router(), "r0").params == \
        {"kind": "as-path", "next_hop": "192.0.2.66"}
    assert faults.make("withdraw-race", fake_router(), "r0", prefixes="10.1.0.0/24").params == \
        {"prefixes": ["10.1.0.0/24"]}
    assert faults.make("withdraw-race", fake_router(), "r0").params == {}
    f = faults.make("bogus-route", fake_router(), "r0", prefix="10.1.0.0/25")
    assert f.params == {"prefix": "10.1.0.0/25"} and f.prefix == "10.1.0.0/25"
