"""Counting OSPF retransmissions on the wire, for daemons that do not expose a counter.

FRR and BIRD keep no cumulative count of LSA retransmissions. A retransmission is visible on
the link, though: the same LSA instance (type, LSA id, advertising router, sequence number)
sent a second time by the same router. `LsaCapture` runs ``tcpdump -v`` on one interface
inside a namespace; `parse_lsu` turns its text into the LSA instances each router sent
(Link State Update packets only) and `retransmissions` counts the repeats.
"""
from __future__ import annotations

import logging
import re
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from routerlab import registry
from routerlab.netns import Netns

log = logging.getLogger(__name__)

_PKT = re.compile(r"^\s*(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): OSPFv2, ([\w-]+)")
_ADV = re.compile(r"Advertising Router (\d+\.\d+\.\d+\.\d+), seq (0x[0-9a-f]+)")
_TYPE = re.compile(r"^\s*([\w-]+(?: [\w-]+)*) LSA \((\d+)\), LSA-ID: (\d+\.\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class LsaSend:
    """One LSA instance carried by one Link State Update packet."""

    src: str
    dst: str
    lsa_type: int
    lsa_id: str
    adv_router: str
    seq: str

    @property
    def instance(self) -> tuple[int, str, str, str]:
        return (self.lsa_type, self.lsa_id, self.adv_router, self.seq)


def parse_lsu(lines: Iterable[str]) -> list[LsaSend]:
    """LSA instances in the LS-Update packets of ``tcpdump -n -v`` output."""
    out: list[LsaSend] = []
    src = dst = None
    in_lsu = False
    adv = seq = None
    for ln in lines:
        m = _PKT.match(ln)
        if m:
            src, dst, kind = m.groups()
            in_lsu = kind == "LS-Update"
            adv = seq = None
            continue
        if not in_lsu:
            continue
        m = _ADV.search(ln)
        if m:
            adv, seq = m.groups()
            continue
        m = _TYPE.match(ln)
        if m and adv is not None and src is not None and dst is not None:
            out.append(LsaSend(src, dst, int(m.group(2)), m.group(3), adv, seq or ""))
            adv = seq = None
    return out


def retransmissions(sends: Iterable[LsaSend]) -> dict[str, dict[str, int]]:
    """Per sender: total repeats and the most times one LSA instance was repeated."""
    per: dict[str, Counter] = {}
    for s in sends:
        per.setdefault(s.src, Counter())[s.instance] += 1
    return {src: {"retransmissions": sum(n - 1 for n in c.values()),
                  "max_per_lsa": max((n - 1 for n in c.values()), default=0),
                  "lsas_sent": sum(c.values())}
            for src, c in per.items()}


class LsaCapture:
    """``tcpdump`` of OSPF on one interface of a namespace (started, then stopped/parsed)."""

    def __init__(self, ns: Netns, ifname: str):
        self.ns, self.ifname = ns, ifname
        self.proc: subprocess.Popen | None = None
        self.text = ""

    def start(self) -> LsaCapture:
        self.proc = self.ns.popen(["tcpdump", "-i", self.ifname, "-n", "-v", "-l",
                                   "--immediate-mode", "ip proto 89"],
                                  name=f"tcpdump:{self.ns.name}:{self.ifname}",
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def stop(self) -> list[LsaSend]:
        if self.proc is None:
            return []
        self.proc.terminate()
        try:
            self.text, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.text, _ = self.proc.communicate(timeout=10)
        registry.session().release_process(self.proc.pid)
        self.proc = None
        return parse_lsu(self.text.splitlines())
