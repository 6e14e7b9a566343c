"""B4's traffic engineering as a pure library (no emulation, no root).

    from b4.te import load_problem, solve
    alloc = solve(load_problem("topologies/te/b4-example.json"), "b4", quantum=0.5)
    alloc.flow_group("FG1").tunnel_group   # [(("A", "B"), 0.5), (("A", "C", "B"), 0.5), ...]

Modules, one concept each: ``bandwidth_function``, ``flow_group``, ``problem``, ``tunnels``,
``instance`` (problem + tunnels as arrays), ``fair_share`` (raising fair shares until edges
saturate), ``tunnel_group`` (B4's tunnel-group generation), ``quantization``,
``b4r`` (B4 with re-routing), ``merge`` (exact merging of flow groups sharing tunnels),
``exact`` (fast exact max-min), ``max_min_lp`` (Danna et al.'s plain iterative LP), ``swan``,
``shortest_path``, ``metrics``, ``solve``, ``generate`` (problem generators), and ``cli`` (the
benchmark is ``b4.te_bench``).
"""
from b4.te.allocation import Allocation, FlowGroupAllocation, TunnelShare
from b4.te.bandwidth_function import BandwidthFunction
from b4.te.flow_group import Application, FlowGroup
from b4.te.instance import Instance, build_instance
from b4.te.problem import Edge, Problem, ProblemError, load_problem
from b4.te.solve import ALGORITHMS, solve
from b4.te.tunnels import Tunnel

__all__ = [
    "ALGORITHMS", "Allocation", "Application", "BandwidthFunction", "Edge", "FlowGroup",
    "FlowGroupAllocation", "Instance", "Problem", "ProblemError", "Tunnel", "TunnelShare",
    "build_instance", "load_problem", "solve",
]
