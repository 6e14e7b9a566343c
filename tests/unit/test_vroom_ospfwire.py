"""Counting OSPF LSA retransmissions from tcpdump text (recorded from FRR here)."""
from __future__ import annotations

from vroom.ospfwire import parse_lsu, retransmissions

SAMPLE = """\
20:01:39.139770 IP (tos 0xc0, ttl 1, id 63683, offset 0, flags [none], proto OSPF (89), length 68)
    10.9.0.1 > 224.0.0.5: OSPFv2, Hello, length 48
	Router-ID 1.1.1.1, Backbone Area, Authentication Type: none (0)
	  Designated Router 10.9.0.2, Backup Designated Router 10.9.0.1
20:01:39.222798 IP (tos 0xc0, ttl 1, id 63685, offset 0, flags [none], proto OSPF (89), length 248)
    10.9.0.1 > 224.0.0.5: OSPFv2, LS-Update, length 228
	Router-ID 1.1.1.1, Backbone Area, Authentication Type: none (0), 3 LSAs
	  LSA #1
	  Advertising Router 1.1.1.1, seq 0x8000000a, age 1s, length 28
	    Router LSA (1), LSA-ID: 1.1.1.1
	    Options: [External]
	      Neighbor Network-ID: 10.9.0.2, Interface Address: 10.9.0.1
	  LSA #2
	  Advertising Router 1.1.1.1, seq 0x80000001, age 3600s, length 8
	    Network LSA (2), LSA-ID: 10.9.1.1
	  LSA #3
	  Advertising Router 1.1.1.1, seq 0x8000000c, age 1s, length 28
	    Router LSA (1), LSA-ID: 1.1.1.1
20:01:40.139805 IP (tos 0xc0, ttl 1, id 63686, offset 0, flags [none], proto OSPF (89), length 68)
    10.9.0.2 > 224.0.0.5: OSPFv2, LS-Ack, length 44
	Router-ID 2.2.2.2, Backbone Area, Authentication Type: none (0)
	  Advertising Router 1.1.1.1, seq 0x8000000c, age 1s, length 28
	    Router LSA (1), LSA-ID: 1.1.1.1
20:01:42.008980 IP (tos 0xc0, ttl 1, id 63688, offset 0, flags [none], proto OSPF (89), length 124)
    10.9.0.1 > 10.9.0.2: OSPFv2, LS-Update, length 104
	Router-ID 1.1.1.1, Backbone Area, Authentication Type: none (0), 1 LSAs
	  LSA #1
	  Advertising Router 1.1.1.1, seq 0x8000000c, age 3s, length 28
	    Router LSA (1), LSA-ID: 1.1.1.1
"""


def test_parse_lsu_reads_only_link_state_updates() -> None:
    sends = parse_lsu(SAMPLE.splitlines())
    assert [(s.src, s.dst, s.lsa_type, s.lsa_id, s.seq) for s in sends] == [
        ("10.9.0.1", "224.0.0.5", 1, "1.1.1.1", "0x8000000a"),
        ("10.9.0.1", "224.0.0.5", 2, "10.9.1.1", "0x80000001"),
        ("10.9.0.1", "224.0.0.5", 1, "1.1.1.1", "0x8000000c"),
        ("10.9.0.1", "10.9.0.2", 1, "1.1.1.1", "0x8000000c")]  # the ack is not a send


def test_retransmissions_count_repeated_instances_per_sender() -> None:
    r = retransmissions(parse_lsu(SAMPLE.splitlines()))
    assert r == {"10.9.0.1": {"retransmissions": 1, "max_per_lsa": 1, "lsas_sent": 4}}
    assert retransmissions([]) == {}
