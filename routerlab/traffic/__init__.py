"""Traffic for experiments: a constant-rate UDP probe and an iperf3 wrapper.

Hosts are anything with ``popen(args: list[str], **kwargs) -> subprocess.Popen`` that runs
the command inside the host's network namespace, and a ``name``: `routerlab.netns.Netns`
(which registers what it starts) and Mininet nodes (whose pids are registered here), so
``routerlab clean`` kills a leaked probe or iperf3 either way. Processes are only ever
stopped by their own pid.

UDP probe
---------
::

    with Probe(h1, h2, "10.0.0.2", rate_pps=1000) as p:
        ...                              # break something
    print(p.result.max_gap_ms, p.result.gaps)

A sender (``python -m routerlab.probe_agent send``) in the source host sends ``rate_pps``
packets per second, each carrying a sequence number and its send time, to ``dst_ip`` only;
a receiver in the destination host, bound to ``dst_ip`` (so the address must be local to
that host), logs (seq, send time, kernel arrival time) of every packet. `analyze` turns the
two reports into a `ProbeResult`; it is a pure function of them.

Definitions used by `analyze` (all counts over sequence numbers 0..sent-1):

* ``sent``: packets the sender emitted (including any whose send() failed, e.g. no route);
* ``received``: distinct sequence numbers that arrived; ``lost = sent - received``;
* ``duplicated``: arrivals of a sequence number that had already arrived;
* ``reordered``: first arrivals of a sequence number lower than one already seen;
* *gap*: the longest interval during the sending period with no packet arriving. The
  timeline runs from the expected arrival of the first packet to that of the last one
  (send times shifted by the smallest one-way delay seen, which also cancels any offset
  between the sender's and receiver's clocks) and is cut at every arrival. A link down for
  500 ms under a 1,000 pps probe gives one interval of about 500 ms (500 ms + one packet
  spacing) and about 500 lost packets. ``max_gap_ms`` is the longest interval of all
  (about 1/rate on a healthy path); ``gaps`` lists every interval longer than the
  threshold (default: the larger of 20 ms and 5 packet spacings) with its start (seconds
  since the first packet's expected arrival), duration and ``lost``: the packets sent
  during it (after the highest sequence number heard before it, up to the sender's position
  when the silence ended) that never arrived. That is time-based because the packet that
  ends a gap can be an old one released from a queue (e.g. held while ARP resolved). A gap
  with ``lost == 0`` was a delay spike, not a loss.
* *latency*: one-way delay of a packet, its kernel arrival stamp minus the send stamp it
  carries (sender and receiver run on one machine: the same CLOCK_REALTIME), first
  arrival only. ``latency_p50_ms``/``latency_p99_ms``/``latency_max_ms`` cover the run
  (nearest-rank percentiles); `latency_in_windows` gives them for packets sent within
  given (label, start, end) windows, e.g. a migration's phases; `latency_series` lists
  every packet's.
* The sender keeps an absolute schedule (packet i at first send + i/rate) and catches up
  after a short stall; time during which it fell further behind that schedule (a stall of
  the probe itself on a busy machine, e.g. 30 ms descheduled) is not time "while the
  sender was sending", so it is subtracted from the silent interval (``Gap.sender_idle_ms``
  says how much) and never shows up as a network gap.

iperf3
------
::

    r = Iperf(h2, h1, "10.0.0.2", duration_s=5, rate_mbps=10, udp=True).run()
    r.throughput_mbps, r.loss_percent

The server (``iperf3 -s -1``) is bound to ``server_ip``; the client's ``-J`` output is
parsed by `parse_iperf3` into an `IperfResult`.

Note for experiments: when a veth's carrier drops, the kernel flushes the learnt ARP
entries on it and, once the link is back, re-resolves only on its ARP retransmit timer
(1 s): a 500 ms link flap between two namespaces then shows as a ~1 s gap. The probe
reports that faithfully; use permanent neighbour entries if only the link should count.

The package (everything public is importable from ``routerlab.traffic``): ``process``
(`Host`, `spawn`, the errors), ``analysis`` (`analyze`, `arrival_series`, `loss_ms`,
`attribute_loss` and the report types), ``probe`` (`Probe`, `measure`), ``iperf3``
(`Iperf`, `iperf`, `parse_iperf3`) and ``counters`` (`tx_packets`).
"""
from routerlab.traffic.analysis import (
    DEFAULT_GAP_THRESHOLD_MS,
    Gap,
    LatencyStats,
    ProbeResult,
    ReceiverLog,
    SenderReport,
    analyze,
    arrival_series,
    attribute_loss,
    default_gap_threshold_ms,
    latency_in_windows,
    latency_series,
    latency_stats,
    loss_ms,
    percentile,
)
from routerlab.traffic.counters import tx_packets
from routerlab.traffic.iperf3 import Iperf, IperfResult, iperf, parse_iperf3
from routerlab.traffic.probe import Probe, check_probe_args, measure
from routerlab.traffic.process import Host, IperfError, ProbeError, TrafficError, spawn

__all__ = [
    "DEFAULT_GAP_THRESHOLD_MS", "Gap", "Host", "Iperf", "IperfError", "IperfResult", "LatencyStats",
    "Probe", "ProbeError", "ProbeResult", "ReceiverLog", "SenderReport", "TrafficError", "analyze",
    "arrival_series", "attribute_loss", "check_probe_args", "default_gap_threshold_ms", "iperf", "latency_in_windows",
    "latency_series", "latency_stats", "loss_ms", "measure", "percentile", "parse_iperf3", "spawn",
    "tx_packets",
]
