"""Scale: a Topology Zoo graph of 40 FRR routers from the `zoo:` import converges (every
adjacency Full, every loopback and OSPF subnet in every FIB) and `routerlab clean`'s own
removal of its session leaves nothing. The large sizes live in `routerlab bench scale`."""
from __future__ import annotations

import os

from routerlab.experiments.scale import Case, measure, zoo


def test_zoo_graph_of_40_routers_converges_and_cleans_up(uid):
    case = Case("zoo-frr", "Roedunet", 40, zoo("Roedunet"))
    prefix = f"sc{uid}-"
    point = measure(case, prefix=prefix, say=lambda m: None, at_rest=False)
    assert point["ok"], point.get("error")
    assert point["routers"] == 40 and point["links"] == 44
    # converged well inside the test's budget (~8 s measured on the 2-core VM)
    assert point["converge_s"] < 60, point
    # OSPF-only routers run zebra and ospfd (no staticd) beside their Mininet shell
    assert point["processes_per_router"] == 3, point
    assert set(point["daemon_pss_mb"]) == {"zebra", "ospfd", "shell"}, point
    assert 0 < point["pss_mb_per_router"] < 64, point
    # nothing of it is left: the session file is gone only when every resource is
    assert point["clean_complete"] and point["clean_left"] == 0, point
    assert not [n for n in os.listdir("/var/run/netns") if n.startswith(prefix)]
