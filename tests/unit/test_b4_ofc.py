"""The os-ken site controller's role handling, without os-ken's event loop or a switch.

Regression for a b4-failures start-up that never converged: a switch connected while the
controller was still standby; the connection handler decided on SLAVE, read the generation
from ZooKeeper (slow), the election finished meanwhile and the take-over sent MASTER, then the
handler's SLAVE request went out after it. The switch kept the controller as a slave and
refused the pipeline and every TE op with OFPBRC_IS_SLAVE (OpenFlow error type 1 code 10),
while the controller believed it was master and reported the site ready.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from os_ken.controller.handler import MAIN_DISPATCHER
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from b4.model import load_wan
from b4.ofc import NOT_READY, SiteControllerApp, _is_slave_error, of_error_text
from b4.teops import REJECTED


class RecordingDatapath:
    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int):
        self.id = dpid
        self.sent: list = []
        self._xid = 0

    def set_xid(self, m) -> None:
        self._xid += 1
        m.xid = self._xid

    def send_msg(self, m) -> None:
        self.sent.append(m)

    def roles(self) -> list[int]:
        return [m.role for m in self.sent if isinstance(m, parser.OFPRoleRequest)]


class StubRpc:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def broadcast(self, msg: dict) -> None:
        self.events.append(msg)


def make_app() -> SiteControllerApp:
    app = SiteControllerApp.__new__(SiteControllerApp)  # no os-ken machinery
    app._init_state({"id": "ofc-test", "wan": load_wan("b4-example").config.to_json()})
    app.rpc = StubRpc()
    app.elector = None
    return app


class ElectedDuringRead:
    """An elector whose generation read is slow: the election completes while it is in flight."""

    def __init__(self, app: SiteControllerApp, generation: int = 1):
        self.app, self.gen = app, generation

    def generation(self) -> int:
        self.app._become_master(self.gen)  # the elector thread wins meanwhile
        time.sleep(0.05)  # ... and its take-over runs before the read returns
        return self.gen


def _wait_takes(app: SiteControllerApp, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while app._taking and time.monotonic() < deadline:
        time.sleep(0.01)


def test_slave_request_never_overtakes_the_master_claim():
    app = make_app()
    took: list[int] = []

    def fake_take(dp):  # the take-over's first step (claim) without the resync round trips
        took.append(dp.id)
        app._claim_role(dp)
        return None

    app._take_switch = fake_take
    app.elector = ElectedDuringRead(app)
    dp = RecordingDatapath(app.wan.switches["A"].dpid)
    app.state_change_handler(SimpleNamespace(datapath=dp, state=MAIN_DISPATCHER))
    _wait_takes(app)
    roles = dp.roles()
    assert roles, "no role request sent"
    assert roles[-1] == ofp.OFPCR_ROLE_MASTER, f"last role request {roles} leaves the master a slave"
    assert ofp.OFPCR_ROLE_SLAVE not in roles[roles.index(ofp.OFPCR_ROLE_MASTER):]
    assert all(m.generation_id == 1 for m in dp.sent if isinstance(m, parser.OFPRoleRequest))
    assert took, "the switch was never taken"


def test_standby_connect_claims_slave_with_the_newest_generation():
    app = make_app()
    app.elector = SimpleNamespace(generation=lambda: 7)
    dp = RecordingDatapath(app.wan.switches["B"].dpid)
    app.state_change_handler(SimpleNamespace(datapath=dp, state=MAIN_DISPATCHER))
    reqs = [m for m in dp.sent if isinstance(m, parser.OFPRoleRequest)]
    assert [(m.role, m.generation_id) for m in reqs] == [(ofp.OFPCR_ROLE_SLAVE, 7)]
    assert not app._taking


def test_is_slave_refusal_makes_the_switch_unready_and_retakes_it():
    app = make_app()
    app.role, app.generation = "master", 3
    dp = RecordingDatapath(app.wan.switches["A"].dpid)
    app.dps["A"] = dp
    app.ready.add("A")
    started = threading.Event()

    def fake_take(d):
        app._claim_role(d)
        started.set()
        return None

    app._take_switch = fake_take
    err = SimpleNamespace(msg=SimpleNamespace(datapath=dp, type=ofp.OFPET_BAD_REQUEST, code=ofp.OFPBRC_IS_SLAVE,
                                              xid=99))
    app.error_msg_handler(err)
    assert "A" not in app.ready  # no TE op is accepted until the take's "ready" event
    assert started.wait(2.0)
    assert dp.roles()[-1] == ofp.OFPCR_ROLE_MASTER
    _wait_takes(app)


def test_is_slave_error_text():
    assert _is_slave_error(of_error_text(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE))
    assert not _is_slave_error(of_error_text(ofp.OFPET_GROUP_MOD_FAILED, 0))
    assert not _is_slave_error(None)
    assert (NOT_READY, REJECTED) == ("not_ready", "rejected")
