"""How CRIU runs for a move: at a raised CPU priority (the freeze), for pre-copy rounds, and
over a shaped migration link to a page server."""
from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from routerlab import criu
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import Netns, create_veth

from .processes import CpMoveError


@contextlib.contextmanager
def raised_priority(nice: int = -20) -> Iterator[None]:
    """Run the calling thread (and what it starts) at a higher CPU priority meanwhile.

    Linux's nice value is per thread: only this thread changes, not the hypervisors'."""
    tid = threading.get_native_id()
    old = os.getpriority(os.PRIO_PROCESS, tid)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:  # not allowed: run as we are
        yield
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, tid, old)


class PriorityCriu(criu.Criu):
    """CRIU run at a raised CPU priority: dump and restore are the control plane's freeze,
    the one part of a migration whose length the neighbours feel. On a busy machine (two
    cores shared with probes, OVS and a dozen routing daemons) this shortens it."""

    nice = -20

    def _niced(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        nice = self.nice
        kwargs.setdefault("preexec_fn", lambda: os.setpriority(os.PRIO_PROCESS, 0, nice))
        return kwargs

    def run(self, args, *, timeout: float = 60, **kwargs):
        return super().run(args, timeout=timeout, **self._niced(kwargs))

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        # the lazy-pages server answers the restored daemon's page faults: same priority
        return super().popen(args, **self._niced(kwargs))


def predump_args(pid: int, images: Path, netns_inode: int | None) -> list[str]:
    """Arguments of ``criu pre-dump`` for the first round of iterative pre-copy."""
    args = criu.dump_args(pid, images, netns_inode=netns_inode)
    args[0] = "pre-dump"
    return args + ["--track-mem"]


class MigrationLink:
    """A migration link of a given rate between two physical routers' management sides:
    two namespaces joined by a veth shaped with TBF. The dump runs in the source one and
    sends the memory pages to a ``criu page-server`` in the target one, so the control
    plane's memory crosses a link of known bandwidth (the rest of the images is small and
    local; both ends share this host's filesystem)."""

    ADDR_SRC, ADDR_DST, PORT = "10.250.0.1", "10.250.0.2", 27027

    def __init__(self, prefix: str, mbps: float):
        if mbps <= 0:
            raise ValueError("migration link rate must be positive")
        self.mbps = mbps
        self.src = Netns.create(f"{prefix}-mlsrc")
        try:
            self.dst = Netns.create(f"{prefix}-mldst")
            create_veth("ml0", "ml1", ns_a=self.src, ns_b=self.dst)
            self.src.ip("addr", "add", f"{self.ADDR_SRC}/30", "dev", "ml0")
            self.dst.ip("addr", "add", f"{self.ADDR_DST}/30", "dev", "ml1")
            burst = max(32, int(mbps * 1000 / 8 / 100))  # ~10 ms worth, in kbytes
            self.src.run(["tc", "qdisc", "add", "dev", "ml0", "root", "tbf", "rate",
                          f"{mbps}mbit", "burst", f"{burst}kb", "latency", "400ms"])
        except BaseException:
            self.close()
            raise

    def criu(self, base: criu.Criu) -> LinkCriu:
        return LinkCriu(base.path, self.src, network_lock=base.network_lock)

    def page_server(self, c: criu.Criu, images: Path) -> subprocess.Popen:
        """Start a one-shot page server writing into `images` (it exits after one dump)."""
        images.mkdir(parents=True, exist_ok=True)
        p = self.dst.popen([c.path, "page-server", "--images-dir", str(images),
                            "--address", self.ADDR_DST, "--port", str(self.PORT),
                            "--log-file", "page-server.log", "-v2"], name="criu-page-server")

        def started() -> str | None:
            if self._listening():
                return "listening"
            return "exited" if p.poll() is not None else None

        try:
            state = wait_for(started, 10, interval=0.02, retry_on=(), what="criu page-server")
        except ExpectTimeout:
            state = None
        if state != "listening":
            raise CpMoveError("page-server", f"criu page-server did not start "
                              f"(see {images / 'page-server.log'})")
        return p

    def _listening(self) -> bool:
        r = self.dst.run(["ss", "-Htln", f"sport = :{self.PORT}"], check=False)
        return bool(r.stdout.strip())

    def dump_args(self) -> list[str]:
        return ["--page-server", "--address", self.ADDR_DST, "--port", str(self.PORT)]

    def close(self) -> None:
        for ns in (getattr(self, "src", None), getattr(self, "dst", None)):
            if ns is not None:
                ns.delete()


class LinkCriu(PriorityCriu):
    """CRIU run inside the migration link's source namespace (so a page server is reached
    over the link); the dumped task's namespace is still declared external."""

    def __init__(self, path: str, ns: Netns, **kw):
        super().__init__(path, **kw)
        self.ns = ns

    def run(self, args, *, timeout: float = 60, **kwargs):
        nice = self.nice
        kwargs.setdefault("preexec_fn", lambda: os.setpriority(os.PRIO_PROCESS, 0, nice))
        return subprocess.run(["nsenter", f"--net={self.ns.path}", "--", self.path, *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kwargs)
