"""Sockets inside named network namespaces, for a hypervisor that lives in several at once.

A socket belongs to the namespace its creating thread was in when it was made, and keeps
it afterwards; so the hypervisor switches its thread into a namespace (setns), makes the
socket, and switches back. Python 3.11 has no `os.setns`, hence ctypes.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from typing import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread inside the named namespace (None: stay where we are)."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def tcp_socket(ns: str | None, local: str | None = None, port: int = 0) -> socket.socket:
    """A non-blocking TCP socket made in `ns`, bound to (local, port) when given."""
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a KEEPALIVE must not wait
        if local is not None or port:
            s.bind((local or "0.0.0.0", port))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def listen_socket(ns: str | None, local: str, port: int = 179) -> socket.socket:
    s = tcp_socket(ns, local, port)
    s.listen(16)
    return s
