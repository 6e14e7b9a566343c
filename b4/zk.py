"""A private ZooKeeper on 127.0.0.1 for one experiment (its own port and data directory).

Debian's ``zookeeperd`` ships the server jar; the JVM is started directly (no system service,
no shared state) with a short tick so that a killed replica's session expires within about
a second and a standby takes over.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

from routerlab import registry
from routerlab.expect import ExpectTimeout, wait_for

log = logging.getLogger(__name__)

ZK_JAR = Path("/usr/share/java/zookeeper.jar")
ZK_CONF_DIR = Path("/etc/zookeeper/conf")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


class ZooKeeperError(RuntimeError):
    pass


def available() -> str | None:
    """None when a private ZooKeeper can be started, else why not."""
    if not ZK_JAR.exists():
        return f"{ZK_JAR} missing (install zookeeperd: scripts/setup.sh)"
    if shutil.which("java") is None:
        return "java not found (install a JRE: scripts/setup.sh)"
    return None


def _ruok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"ruok")
            s.settimeout(0.5)
            return s.recv(16) == b"imok"
    except OSError:
        return False


class ZooKeeper:
    """One standalone ZooKeeper server; ``hosts`` is the kazoo connect string."""

    def __init__(self, data_dir: str | os.PathLike, port: int, *, tick_ms: int = 100):
        self.dir = Path(data_dir)
        self.port = port
        self.tick_ms = tick_ms
        self.proc: subprocess.Popen | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ZooKeeper:
        why = available()
        if why:
            raise ZooKeeperError(why)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "zoo.cfg"
        cfg.write_text("\n".join([
            f"tickTime={self.tick_ms}", f"dataDir={self.dir / 'data'}", f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1", "maxClientCnxns=0", "admin.enableServer=false",
            f"minSessionTimeout={4 * self.tick_ms}", "maxSessionTimeout=60000",
            "4lw.commands.whitelist=ruok,srvr", "snapCount=100000", ""]))
        cmd = ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               f"-Dzookeeper.log.dir={self.dir}", "-cp", f"{ZK_CONF_DIR}:{ZK_JAR}", MAIN_CLASS, str(cfg)]
        log_f = open(self.dir / "zookeeper.log", "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log_f.close()
        registry.session().add_process(self.proc.pid, f"zookeeper:{self.port}")
        proc = self.proc

        def answers() -> bool:
            if _ruok(self.port):
                return True
            if proc.poll() is not None:
                raise ZooKeeperError(f"ZooKeeper exited ({proc.returncode}); see {self.dir / 'zookeeper.log'}")
            return False
        try:  # not retried: a ZooKeeper that exited fails the start at once
            wait_for(answers, timeout, interval=0.1, what=f"ZooKeeper on 127.0.0.1:{self.port}", retry_on=())
        except ExpectTimeout:
            self.stop()
            raise ZooKeeperError(f"ZooKeeper did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s") from None
        log.info("ZooKeeper up on %s (%s)", self.hosts, self.dir)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        registry.kill_pids([pid])
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        registry.session().release_process(pid)
        self.proc = None

    def __enter__(self) -> ZooKeeper:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
