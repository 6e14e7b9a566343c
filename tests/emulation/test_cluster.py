"""Mininet Cluster Edition for real: the ring split over two servers, "server 2" an OpenSSH
server the test starts on 127.0.0.2 (its own config, host key and client key), reached by
root ssh exactly as another machine would be, with a /run of its own (a private mount
namespace: the routers' run directories and /run/netns are not shared with this machine, so
every daemon file routerlab touches for a router there must be reached over ssh). OSPF
converges across the ssh tunnels, probes
cross the server boundary with 0 loss, and afterwards nothing of the test is left on either
server: not after a clean stop, and not after the owner is SIGKILLed and its registry
session is cleaned (what `routerlab clean` does per session, over the same ssh connections).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from routerlab import registry
from routerlab.loopback_sshd import SERVER, LoopbackSshd, missing
from routerlab.ssh import CONTROL_DIR
from routerlab.topology import load_topology, parse_topology


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = missing()
    if why:
        pytest.skip(f"no loopback ssh server: {why}")
    d = LoopbackSshd(tmp_path_factory.mktemp("sshd"))
    try:
        d.start()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"cannot start OpenSSH's sshd on {SERVER}: {e}")
    yield d
    d.stop()


def split_ring():
    """The ring with r3, r4 and h2 on server 2: two links (r2-r3, r4-r1) cross servers."""
    d = load_topology("ring").to_dict()
    for n in ("r3", "r4", "h2"):
        d["nodes"][n]["server"] = SERVER
    return parse_topology(yaml.safe_dump(d), "ring-split")


def _names(text: str) -> set[str]:
    """First word of each line (`ip netns list`, `ip -o -br link`), without any @peer."""
    return {ln.split()[0].split("@")[0] for ln in text.splitlines() if ln.strip()}


def snapshot(sshd: LoopbackSshd) -> dict[str, set[str]]:
    """What exists on each server: namespaces, links (taps among them), processes, control
    sockets, ~/.ssh/mn. Server 2 is asked over an ssh connection of its own."""
    def run(*args: str) -> str:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=30).stdout

    out = run("ssh", "-q", "-F", str(sshd.ssh_config), "-o", "ControlPath=none", f"root@{SERVER}",
              "ip netns list; echo ---; ip -o -br link")
    ns_text, _, links_text = out.partition("---")
    return {
        "here_netns": _names(run("ip", "netns", "list")),
        "here_links": _names(run("ip", "-o", "-br", "link")),
        "here_procs": {ln.strip() for ln in run("ps", "-eww", "-o", "args").splitlines()},
        "here_control": set(os.listdir(CONTROL_DIR)) if CONTROL_DIR.is_dir() else set(),
        "here_dot_ssh": {p for p in ("/root/.ssh/mn",) if os.path.isdir(p)},
        "server2_netns": _names(ns_text),
        "server2_links": _names(links_text),
    }


def ours(snap: dict[str, set[str]], before: dict[str, set[str]], prefix: str) -> dict[str, list[str]]:
    """What a snapshot holds that was not there before and is the network's (node prefix
    `prefix`), or its tunnels' (taps, ssh -w processes)."""
    out = {}
    for k, v in snap.items():
        hit = [x for x in v - before[k] if prefix in x or (k.endswith("links") and x.startswith("tap"))
               or (k == "here_procs" and "Tunnel=Ethernet" in x)]
        if hit:
            out[k] = sorted(hit)
    return out


def sshd_sessions(sshd: LoopbackSshd) -> list[int]:
    """The test sshd's session processes (one per live ssh connection)."""
    return sshd.sessions()


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        chain.append(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return chain


def test_ring_split_over_two_servers(sshd, uid):
    from routerlab.cluster import ClusterNetwork

    prefix = f"rc{uid}-"
    before = snapshot(sshd)
    topo = split_ring()
    net = ClusterNetwork(topo, prefix=prefix, ssh_config=sshd.ssh_config)
    try:
        net.start()
        assert [net.server_of(n) for n in ("r1", "r2", "h1", "r3", "r4", "h2")] == ["localhost"] * 3 + [SERVER] * 3
        converged_s = net.wait_converged(60)
        # r3's daemons run on server 2: started through its sshd, in its namespace there
        zebra = net.routers["r3"].daemon.pids["zebra"]
        assert sshd.proc.pid in ancestors(zebra), (zebra, ancestors(zebra))
        assert sshd.proc.pid not in ancestors(net.routers["r1"].daemon.pids["zebra"])
        assert type(net.routers["r3"].netns).__name__ == "RemoteNetns"
        # r3's run directory (configs, logs, pid files, vty sockets) is on server 2 only,
        # r1's here only: the two share no /run
        srv = net.remote[SERVER]
        r3_dir, r1_dir = net.run_root / "r3", net.run_root / "r1"
        for f in ("ospfd.conf", "zebra.log", "ospfd.pid", "vty/ospfd.vty"):
            assert srv.exists(r3_dir / f) and not (r3_dir / f).exists(), f
            assert (r1_dir / f).exists() and not srv.exists(r1_dir / f), f
        assert "zebra.log" in net.routers["r3"].daemon.log_tail(5)  # read there
        # both cross-server links carry OSPF: r1 and r2 each Full with their server-2 neighbour
        nbrs = {n.router_id for n in net.routers["r1"].daemon.ospf_neighbors() if n.state == "Full"}
        assert "10.255.0.4" in nbrs, nbrs
        # steady state: h1 (here) -> h2 (server 2), 1,000 packets/s, nothing lost
        r = net.probe("h1", "h2", 5, 1000)
        print(f"converged {converged_s:.1f} s after daemon start; probe across servers: {r.summary()}")
        assert r.sent >= 4900 and r.lost == 0, r.summary()
    finally:
        net.stop()
    after = snapshot(sshd)
    assert not ours(after, before, prefix), ours(after, before, prefix)
    assert after["here_control"] == before["here_control"]
    assert after["here_dot_ssh"] == before["here_dot_ssh"]
    assert not sshd_sessions(sshd), "ssh connections to server 2 left open"
    mine = registry.live_resources(registry.session().path)
    assert not [r for r in mine if r["kind"] == "remote"], "remote records left unreleased"
    left = [r for r in registry.all_live_resources() if r in mine and (prefix in r["name"] or r["kind"] == "remote")]
    assert not left, left


CHILD = textwrap.dedent("""
    import sys, time, yaml
    from routerlab import registry
    from routerlab.cluster import ClusterNetwork
    from routerlab.topology import load_topology, parse_topology
    d = load_topology("ring").to_dict()
    for n in ("r3", "r4", "h2"):
        d["nodes"][n]["server"] = sys.argv[2]
    net = ClusterNetwork(parse_topology(yaml.safe_dump(d)), prefix=sys.argv[1], ssh_config=sys.argv[3])
    net.start()
    net.wait_converged(60)
    print(registry.session().path, flush=True)
    time.sleep(600)
""")


def test_killed_owner_cleaned_on_both_servers(sshd, uid):
    """SIGKILL the process that built a split network, then clean its registry session: the
    remote namespaces, daemons, shells, taps and tunnels go, here and on server 2."""
    prefix = f"rk{uid}-"
    before = snapshot(sshd)
    child = subprocess.Popen([sys.executable, "-c", CHILD, prefix, SERVER, str(sshd.ssh_config)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    line = child.stdout.readline().strip()  # its session file, once converged
    session = Path(line) if line.endswith(".jsonl") else None
    try:
        assert session is not None, child.stderr.read()[-2000:] if child.poll() is not None else line
        during = ours(snapshot(sshd), before, prefix)
        # each server sees its own namespaces only (server 2 has a /run of its own)
        assert during.get("server2_netns") == [f"{prefix}{n}" for n in ("h2", "r3", "r4")], during
        assert during.get("here_netns") == [f"{prefix}{n}" for n in ("h1", "r1", "r2")], during
        remote = sorted(r["rname"] for r in registry.live_resources(session)
                        if r["kind"] == "remote" and r.get("what") == "netns")
        assert remote == [f"{prefix}{n}" for n in ("h2", "r3", "r4")], remote  # made over ssh
        assert any("Tunnel=Ethernet" in p for p in during.get("here_procs", [])), during
        assert any(r["kind"] == "remote" for r in registry.live_resources(session))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # what `routerlab clean` does for each session whose owner died
        rep = registry.clean_session_file(session) if session else None
    assert rep is not None
    assert not rep.errors, rep.errors
    assert rep.removed.get("remote"), rep.removed
    after = snapshot(sshd)
    assert not ours(after, before, prefix), ours(after, before, prefix)
    assert after["here_control"] == before["here_control"]
    assert not sshd_sessions(sshd), "ssh connections to server 2 left open"
    assert not session.exists()


def test_machine_files_alike_here_and_on_server_2(sshd, uid, tmp_path):
    """The file access the daemon drivers use (routerlab.machine) behaves the same on this
    machine and on server 2, whose /run is its own: what is written there is not here."""
    from routerlab.machine import LOCAL
    from routerlab.ssh import SshHost

    srv = SshHost(SERVER, sshd.ssh_config, persist=False)
    there = Path(f"/run/routerlab-mt{uid}")
    try:
        for m, d in ((LOCAL, tmp_path / "m"), (srv, there / "m")):
            m.mkdir(d / "vty")
            m.write_text(d / "b.log", "two\n")
            m.write_text(d / "a.log", "one\nü\n")
            m.write_text(d / "x.out", "")
            assert m.read_text(d / "a.log") == "one\nü\n" and m.exists(d / "x.out")
            assert m.glob(d, "*.log", "*.out") == [d / "a.log", d / "b.log", d / "x.out"]
            assert m.glob(d / "none", "*.log") == []
            with pytest.raises(FileNotFoundError):
                m.read_text(d / "none.log")
            m.unlink(d / "a.log", d / "none.log")
            assert not m.exists(d / "a.log")
            m.mkfifo(d / "cmd")
            with pytest.raises(OSError, match="No such device or address"):  # nobody reads it
                m.write_fifo(d / "cmd", b"x\n")
            with pytest.raises(OSError, match="No such file or directory"):  # nobody listens
                with m.connect_unix(d / "vty" / "none.vty", 5) as s:
                    s.sendall(b"x")
                    s.recv(10)
            assert m.run(["cat", str(d / "b.log")]).stdout == "two\n"
        assert not there.exists()  # server 2's /run is not this one's
    finally:
        srv.run(["rm", "-rf", str(there)])
        srv.close_master()
