"""The faults that act on a replica's output bytes (checked without a router)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

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
