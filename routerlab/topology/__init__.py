"""Topologies: the YAML format, its validator, the address plan and the loaders.

A topology file (``topologies/NAME.yaml``; IPv4 only) looks like this::

    name: example                   # optional; default: the file name
    description: one line for listings
    defaults: {daemon: frr, asn: 65000, bw: 10, delay: 0, cost: 10}
    ospf: {area: 0, hello: 1, dead: 4}   # present (or `ospf: true`): frr/bird routers run OSPF
    bgp:                            # timers default to 3/9 s, OSPF to hello 1 / dead 4 s
      keepalive: 3
      hold: 9
      sessions:
        - {a: r1, b: ext}           # or the short form [r1, ext]
    nodes:
      r1: {}                        # role defaults to router; daemon and asn from defaults
      r2: {daemon: bird, loopback: 10.255.9.2}
      ext: {role: external, daemon: exabgp, asn: 65100, originate: [10.200.0.0/24]}
      h1: {role: host}
    links:
      - {a: r1, b: r2, bw: 10, delay: 2, cost: 10}
      - {a: r1, b: ext, a_addr: 10.9.0.1/30}     # the other end gets 10.9.0.2/30
      - {a: r1, b: h1, a_intf: r1-lan}

Nodes (a mapping: names are unique by construction, a repeated name is an error):
  ``role``      router (default; runs frr, bird or gobgp), external (an external AS's BGP
                speaker: frr, bird, gobgp or exabgp; needs ``daemon`` and ``asn`` itself),
                host (plain end host for traffic), switch (an OVS switch: one L2 LAN).
  ``daemon``    frr | bird | gobgp | exabgp (routers take ``defaults.daemon``).
  ``asn``       1..4294967294, not 23456 or 65535 (routers take ``defaults.asn``).
  ``loopback``  /32 on ``lo``; ``router_id`` defaults to the loopback address.
  ``ospf``      true/false; default true for frr/bird routers when an ``ospf:`` section exists.
  ``originate`` prefixes the node's daemon announces (not checked against the address plan:
                an aggregate of the node's own subnets is legitimate).
  ``subnet``    switches only: the LAN's subnet.
  ``params``    free-form mapping for experiments (not validated).
  Node names are at most 10 characters of ``[A-Za-z0-9_]`` starting with a letter: they
  become interface names such as ``NAME-eth0`` and Linux caps those at 15 characters.

Links: ``a``, ``b`` (required), ``bw`` (Mbit/s, > 0), ``delay`` (ms, >= 0), ``cost`` (OSPF
cost 1..65535, default 10), ``area`` (OSPF area, default ``ospf.area``), ``ospf`` (false keeps
the link out of OSPF), ``a_addr``/``b_addr`` (``A.B.C.D/LEN``), ``a_intf``/``b_intf``
(interface names, default ``NODE-ethN`` with N counting the node's links in file order from
0, from 1 on switches as in Mininet), ``params``. At most one link per pair of nodes.

BGP sessions join two nodes that have an ``asn``. Different ASNs: eBGP over their shared link
(a direct link or one switch LAN; multihop eBGP is not supported). Same ASN: iBGP between
loopbacks when both run OSPF, else over a shared link.

Address plan (deterministic; addresses given in the file are kept and never handed out
again; every subnet and loopback is checked for overlaps):
  loopbacks     10.255.0.N/32 for the N-th node that runs a daemon (file order)
  links         /30s from 10.0.0.0/16 in link order (router-router, router-external, ...)
  LANs          a router-host link, or a switch with everything attached to it, gets a /24:
                10.1.N.0/24 for the first LAN of daemon node N, otherwise the next free /24
                of 10.2.0.0/16; routers take the lowest addresses (the first is the hosts'
                gateway), then hosts in link order
  switch-switch links carry no addresses.

Every problem is a :class:`TopologyError` whose ``str()`` is one line ``FILE:LINE: problem``.

The package, one module per concept (everything public is importable from here):
  ``model``       the vocabulary, `TopologyError` and the resolved `Topology` data model
  ``loader``      YAML with line numbers
  ``validate``    `parse_topology`, `topology_from_dict`: the validator
  ``addressing``  the address plan above
  ``catalog``     `load_topology`, shipped names, ``$ROUTERLAB_TOPOLOGY_PATH``
  ``zoo``         `import_topohub`: Topology Zoo and SNDlib networks
"""
from routerlab.topology.addressing import (
    EXTRA_LAN_POOL,
    LAN_POOL,
    LAN_PREFIX,
    LOOPBACK_POOL,
    P2P_POOL,
    P2P_PREFIX,
)
from routerlab.topology.catalog import (
    REPO_TOPOLOGIES,
    find_topology,
    list_topologies,
    load_topology,
    topology_dirs,
)
from routerlab.topology.model import (
    DAEMONS,
    DEFAULT_COST,
    MAX_IFNAME,
    MAX_NODE_NAME,
    OSPF_DAEMONS,
    ROLES,
    BgpParams,
    BgpPeering,
    BgpSession,
    Endpoint,
    Interface,
    Link,
    Node,
    OspfParams,
    RoleSpec,
    Topology,
    TopologyError,
    dump_topology,
)
from routerlab.topology.validate import PRIVATE_NETS, parse_topology, topology_from_dict
from routerlab.topology.zoo import TOPOHUB_PREFIXES, import_topohub, list_topohub

__all__ = [
    "TopologyError", "Topology", "Node", "Link", "Endpoint", "Interface", "BgpPeering",
    "BgpSession", "OspfParams", "BgpParams", "RoleSpec", "ROLES", "DAEMONS",
    "load_topology", "parse_topology", "topology_from_dict", "import_topohub", "find_topology",
    "list_topologies", "list_topohub", "topology_dirs", "dump_topology",
    # also importable from here, as before the split into modules
    "OSPF_DAEMONS", "MAX_NODE_NAME", "MAX_IFNAME", "DEFAULT_COST", "P2P_POOL", "P2P_PREFIX",
    "LAN_POOL", "EXTRA_LAN_POOL", "LAN_PREFIX", "LOOPBACK_POOL", "PRIVATE_NETS",
    "REPO_TOPOLOGIES", "TOPOHUB_PREFIXES",
]
