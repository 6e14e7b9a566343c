"""Leader election through ZooKeeper (kazoo's election recipe) with a monotonic generation.

Each replica of a role (the site controllers, or the TE servers) runs an `Elector` on the
same path. The winner increments a ZooKeeper counter and gets its value as its *generation*
(the OpenFlow role generation id for controllers, the session floor for TE servers): a newer
leader always has a higher one. Leadership ends when the replica's ZooKeeper session is
lost (e.g. the process was killed and its session expired).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Elector:
    """Join the election at ``path``; ``on_elected(generation)`` runs when this replica wins,
    ``on_lost()`` when its session is lost while leading."""

    def __init__(self, hosts: str, path: str, identifier: str, on_elected: Callable[[int], None],
                 on_lost: Callable[[], None] | None = None, *, session_timeout: float = 2.0):
        from kazoo.client import KazooClient
        from kazoo.protocol.states import KazooState
        from kazoo.recipe.counter import Counter

        self.path = path.rstrip("/")
        self.identifier = identifier
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._stop = threading.Event()
        self.leading = False
        self.client = KazooClient(hosts=hosts, timeout=session_timeout)
        self._states = KazooState

        def listener(state: str) -> None:
            if state == KazooState.LOST:
                log.warning("%s: ZooKeeper session lost", identifier)
                if self.leading:
                    self.leading = False
                    if self._on_lost:
                        self._on_lost()
            elif state == KazooState.SUSPENDED:
                log.warning("%s: ZooKeeper connection suspended", identifier)

        self.client.add_listener(listener)
        self.client.start(timeout=20)
        self.counter = Counter(self.client, f"{self.path}/generation")
        self.election = self.client.Election(f"{self.path}/election", identifier)
        self._thread = threading.Thread(target=self._run, name=f"elect-{identifier}", daemon=True)

    def start(self) -> "Elector":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.election.run(self._lead)
            except Exception as e:  # session trouble: try again once reconnected
                if self._stop.is_set():
                    return
                log.warning("%s: election interrupted (%s); rejoining", self.identifier, e)
                self._stop.wait(0.5)

    def _lead(self) -> None:
        self.counter += 1
        gen = int(self.counter.value)
        self.leading = True
        log.info("%s: elected leader at %s, generation %d", self.identifier, self.path, gen)
        try:
            self._on_elected(gen)
        except Exception:
            log.exception("%s: becoming leader failed", self.identifier)
        while not self._stop.is_set() and self.leading and self.client.state == self._states.CONNECTED \
                or (not self._stop.is_set() and self.leading and self.client.state == self._states.SUSPENDED):
            self._stop.wait(0.2)
        self.leading = False

    def generation(self) -> int:
        """The newest generation handed out so far."""
        return int(self.counter.value)

    def leader(self) -> str | None:
        try:
            c = self.election.contenders()
        except Exception:
            return None
        return c[0] if c else None

    def stop(self) -> None:
        self._stop.set()
        self.leading = False
        try:
            self.election.cancel()
        except Exception:
            pass
        try:
            self.client.stop()
            self.client.close()
        except Exception:
            pass
