"""Record real status output of FRR, BIRD, GoBGP and ExaBGP for the parser unit tests.

Run as root from the repository: ``.venv/bin/python tests/data/daemons/capture.py``.
It builds (under unique ``tdmncap-XXXX-`` namespaces, removed at the end):

    r1 FRR   AS65001 --- r2 BIRD AS65002 --- inj ExaBGP AS65009
        \\               /
         r3 GoBGP AS65003

OSPF runs on r1-r2 (area 0, loopbacks advertised); eBGP on every link; each router
originates one prefix, ExaBGP injects three more. Every BGP router also has one neighbour
that does not exist (a session that never comes up). Sessions are then flapped once
(FRR `clear ip bgp`, BIRD `restart`) so connection counts of 2 are on record. The outputs are
written next to this file, exactly as the daemons printed them.
"""
from __future__ import annotations

import json
import logging
import secrets
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository

from routerlab.daemons import (BgpNeighbor, BirdDaemon, ExabgpDaemon, FrrDaemon,
                               GobgpDaemon, Interface, Network, RouterSpec)
from routerlab.expect import wait_for
from routerlab.netns import Netns, create_veth

HERE = Path(__file__).resolve().parent


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    tag = f"tdmncap-{secrets.token_hex(2)}"
    root = Path("/run/routerlab/tests") / tag
    nss = {n: Netns.create(f"{tag}-{n}") for n in ("r1", "r2", "r3", "inj")}
    daemons = []
    try:
        create_veth("r1-r2", "r2-r1", ns_a=nss["r1"], ns_b=nss["r2"])
        create_veth("r2-r3", "r3-r2", ns_a=nss["r2"], ns_b=nss["r3"])
        create_veth("r3-r1", "r1-r3", ns_a=nss["r3"], ns_b=nss["r1"])
        create_veth("r2-inj", "inj-r2", ns_a=nss["r2"], ns_b=nss["inj"])
        r1 = FrrDaemon(RouterSpec(
            "r1", "10.255.0.1", 65001, loopback="10.255.0.1/32",
            interfaces=[Interface("r1-r2", "10.0.12.1/24", ospf_area="0"),
                        Interface("r1-r3", "10.0.13.1/24")],
            bgp_neighbors=[BgpNeighbor("10.0.12.2", 65002, description="r2"),
                           BgpNeighbor("10.0.13.3", 65003, description="r3"),
                           BgpNeighbor("10.0.13.99", 65099, description="absent")],
            networks=[Network("192.0.2.0/24")]))
        r2 = BirdDaemon(RouterSpec(
            "r2", "10.255.0.2", 65002, loopback="10.255.0.2/32",
            interfaces=[Interface("r2-r1", "10.0.12.2/24", ospf_area="0"),
                        Interface("r2-r3", "10.0.23.2/24"), Interface("r2-inj", "10.0.9.2/24")],
            bgp_neighbors=[BgpNeighbor("10.0.12.1", 65001, description="r1"),
                           BgpNeighbor("10.0.23.3", 65003, description="r3"),
                           BgpNeighbor("10.0.9.1", 65009, description="inj"),
                           BgpNeighbor("10.0.23.99", 65099, description="absent")],
            networks=[Network("198.51.100.0/24")]))
        r3 = GobgpDaemon(RouterSpec(
            "r3", "10.255.0.3", 65003, loopback="10.255.0.3/32",
            interfaces=[Interface("r3-r2", "10.0.23.3/24"), Interface("r3-r1", "10.0.13.3/24")],
            bgp_neighbors=[BgpNeighbor("10.0.23.2", 65002, description="r2"),
                           BgpNeighbor("10.0.13.1", 65001, description="r1"),
                           BgpNeighbor("10.0.13.99", 65099, description="absent")],
            networks=[Network("203.0.113.0/24")]))
        inj = ExabgpDaemon(RouterSpec(
            "inj", "10.255.0.9", 65009, interfaces=[Interface("inj-r2", "10.0.9.1/24")],
            bgp_neighbors=[BgpNeighbor("10.0.9.2", 65002, description="r2")],
            networks=[Network("100.64.0.0/24", med=5, as_path=(65010,))]))
        for d, n in ((r1, "r1"), (r2, "r2"), (r3, "r3"), (inj, "inj")):
            daemons.append(d)
            d.start(nss[n], root / n)
        inj_prefixes = ["100.64.1.0/24", "100.64.2.0/24", "100.64.3.0/24"]

        def up(d, peers):
            ss = {s.peer: s for s in d.bgp_sessions()}
            return all(ss.get(p) and ss[p].established for p in peers)

        def all_up():
            return (up(r1, ["10.0.12.2", "10.0.13.3"]) and up(r2, ["10.0.12.1", "10.0.23.3", "10.0.9.1"])
                    and up(r3, ["10.0.23.2", "10.0.13.1"]) and up(inj, ["10.0.9.2"]))

        wait_for(all_up, 60, what="sessions up")
        inj.announce(inj_prefixes)
        # one flap per implementation, so connection counts of 2 are recorded
        r1.vtysh("clear ip bgp 10.0.13.3")
        r2.birdc("restart bgp_10_0_9_1")
        r2.birdc("restart bgp_10_0_23_3")
        time.sleep(1)  # let the resets begin before polling for the sessions again
        wait_for(all_up, 60, what="sessions up again")
        wait_for(lambda: any(n.state == "Full" for n in r1.ospf_neighbors())
                 and "10.255.0.1/32" in r2.route_prefixes("ospf"), 60, what="OSPF")
        wait_for(lambda: {"192.0.2.0/24", "100.64.2.0/24", "203.0.113.0/24"} <= r2.route_prefixes("bgp")
                 and {"198.51.100.0/24", "100.64.3.0/24"} <= r1.route_prefixes("bgp")
                 and {"192.0.2.0/24", "100.64.1.0/24"} <= r3.route_prefixes(), 60, what="routes")
        time.sleep(2)  # a few keepalives on record

        out = HERE
        (out / "frr").mkdir(exist_ok=True)
        for fname, cmd in (("show_ip_ospf_neighbor.json", "show ip ospf neighbor json"),
                           ("show_ip_bgp_neighbors.json", "show ip bgp neighbors json"),
                           ("show_ip_route.json", "show ip route json")):
            (out / "frr" / fname).write_text(r1.vtysh(cmd))
        (out / "bird").mkdir(exist_ok=True)
        for fname, cmd in (("show_protocols.txt", "show protocols"),
                           ("show_protocols_all.txt", "show protocols all"),
                           ("show_ospf_neighbors.txt", "show ospf neighbors"),
                           ("show_route_all.txt", "show route all")):
            (out / "bird" / fname).write_text(r2.birdc(cmd))
        shutil.copy(root / "r2" / "bird.log", out / "bird" / "bird.log")
        (out / "gobgp").mkdir(exist_ok=True)
        (out / "gobgp" / "neighbor.json").write_text(r3.gobgp("neighbor", "-j"))
        (out / "gobgp" / "global_rib.json").write_text(r3.gobgp("global", "rib", "-a", "ipv4", "-j"))
        shutil.copy(root / "r3" / "gobgpd.log", out / "gobgp" / "gobgpd.log")
        (out / "exabgp").mkdir(exist_ok=True)
        (out / "exabgp" / "show_neighbor_summary.txt").write_text(inj.cli("show neighbor summary") + "\n")
        shutil.copy(root / "inj" / "exabgp.events", out / "exabgp" / "exabgp.events")
        # the normalized view at capture time, for the unit tests to compare against
        now = time.time()
        summary = {name: {"captured_at": now,
                          "bgp": [s.to_dict() for s in d.bgp_sessions()],
                          "ospf": [n.to_dict() for n in d.ospf_neighbors()]}
                   for name, d in (("frr", r1), ("bird", r2), ("gobgp", r3), ("exabgp", inj))}
        (out / "normalized.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        print("recorded into", out)
    finally:
        for d in reversed(daemons):
            try:
                d.stop()
            except Exception as e:  # keep tearing down
                print("stop:", e)
        for ns in nss.values():
            ns.delete()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
