"""VERB's FIB plumbing on a real kernel (one namespace, a few seconds): the installer
writes a full table over rtnetlink and the watcher follows every change, overflow included."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import time

import pytest

from routerlab.netns import Netns
from verb.fib import FibInstaller, KernelFib, via

pytestmark = [pytest.mark.emulation,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]


@pytest.fixture
def ns():
    n = Netns.create(f"tvb{secrets.token_hex(2)}-fib")
    try:
        n.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth2")
        for dev, addr in (("eth1", "10.1.0.1/24"), ("eth2", "10.2.0.1/24")):
            n.ip("addr", "add", addr, "dev", dev)
            n.ip("link", "set", dev, "up")
        yield n
    finally:
        n.delete()


def kernel(ns: Netns) -> dict:
    out = json.loads(ns.run(["ip", "-j", "route", "show", "proto", "bgp"]).stdout or "[]")
    return {r["dst"]: r for r in out}


def test_installer_writes_what_the_watcher_reads(ns):
    table = {f"100.{64 + i // 256}.{i % 256}.0/24": via(("10.1.0.2", "eth1")) for i in range(5000)}
    table["192.0.2.0/24"] = ("blackhole",)
    table["198.51.100.0/24"] = via(("10.1.0.2", "eth1"), ("10.2.0.2", "eth2"))
    seen: dict = {}

    async def main():
        watcher = KernelFib(ns.name, lambda ch: seen.update(ch))
        watcher.start()
        inst = FibInstaller(ns.name)
        inst.start()
        t0 = time.monotonic()
        inst.apply(list(table.items()))
        while len(inst.installed) < len(table) and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        took = time.monotonic() - t0
        while {k: v for k, v in seen.items() if v} != table and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        assert inst.errors == 0 and took < 10
        k = kernel(ns)
        assert len(k) == len(table) and k["192.0.2.0/24"]["type"] == "blackhole"
        assert {h["dev"] for h in k["198.51.100.0/24"]["nexthops"]} == {"eth1", "eth2"}
        assert {p: v for p, v in seen.items() if v} == table
        # withdrawals, and a route the voter never installed is not touched
        ns.ip("route", "add", "203.0.113.0/24", "via", "10.2.0.2", "proto", "static")
        inst.apply([(p, None) for p in list(table)[:4000]] + [("203.0.113.0/24", None)])
        while len(inst.installed) > len(table) - 4000 and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert len(kernel(ns)) == len(table) - 4000
        assert "203.0.113.0/24" in ns.run(["ip", "route"]).stdout
        assert sum(1 for v in seen.values() if v) == len(table) - 4000 + 1  # + the static one
        watcher.stop()
        inst.stop()
    asyncio.run(main())
