"""VROOM (Virtual Routers On the Move, SIGCOMM 2008) on routerlab: live migration of BIRD
virtual routers between Open vSwitch physical routers, with CRIU.

Modules, from the pure core outwards:

- `flows`, `fib`, `translate`, `binding`, `phases`: flows/groups as values and a simulator;
  the FIB as the kernel shows it; route + neighbour -> flow translation; interface binding
  and tunnel flows; the migration phase state machine (all unit-tested without root).
- `hypervisor`: the data-plane hypervisor keeping a bridge equal to a VR's FIB.
- `transport`: re-patchable L2 circuits; `router`: physical and virtual routers;
  `network`: a VROOM network; `topo`: one built from a routerlab topology file.
- `cpmove`: control-plane migration with CRIU; `migrate`: the seven phases with rollback;
  `baseline`: migration by restart; `ospfwire`: OSPF retransmissions counted on the wire.
- `experiments`: vroom-maintenance, vroom-core-failure, vroom-cloning, vroom-power;
  `lab`: the interactive lab (`routerlab cli vroom`, or `python -m vroom.lab TOPOLOGY`; command `migrate VR PR`).

See vroom/STATUS.md for what works and what was measured.
"""
