"""The os-ken site controller app (`b4.ofc`) as a shell over `b4.mastership`: its handlers
pass events on and send what comes back. Without os-ken's event loop or a switch; the
mastership decisions themselves are tested in ``test_b4_mastership.py``."""
from __future__ import annotations

from types import SimpleNamespace

from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from b4.model import load_wan
from b4.ofc import NOT_READY, SiteControllerApp
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

    def roles(self) -> list[tuple[int, int]]:
        return [(m.role, m.generation_id) for m in self.sent if isinstance(m, parser.OFPRoleRequest)]


class StubRpc:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def broadcast(self, msg: dict) -> None:
        self.events.append(msg)


def make_app(generation=None) -> SiteControllerApp:
    app = SiteControllerApp.__new__(SiteControllerApp)  # no os-ken machinery
    app._init_state({"id": "ofc-test", "wan": load_wan("b4-example").config.to_json()})
    app.rpc = StubRpc()
    app.elector = None if generation is None else SimpleNamespace(generation=generation, leading=False)
    return app


def connect(app: SiteControllerApp, switch: str) -> RecordingDatapath:
    dp = RecordingDatapath(app.wan.switches[switch].dpid)
    app.state_change_handler(SimpleNamespace(datapath=dp, state=MAIN_DISPATCHER))
    return dp


def test_standby_connect_claims_slave_with_the_newest_generation():
    app = make_app(generation=lambda: 7)
    dp = connect(app, "B")
    assert dp.roles() == [(ofp.OFPCR_ROLE_SLAVE, 7)]
    assert not app.mastership.taking("B")


def test_election_during_the_generation_read_sends_master_only():
    app = make_app()

    def read_while_elected() -> int:  # the elector thread wins while the read is in flight
        app._become_master(1)
        return 1

    app.elector = SimpleNamespace(generation=read_while_elected, leading=True)
    dp = connect(app, "A")
    assert dp.roles() == [(ofp.OFPCR_ROLE_MASTER, 1)]
    assert [e["role"] for e in app.rpc.events if e["event"] == "role"] == ["master"]


def test_ops_wait_for_the_take_and_disconnect_forgets_the_switch():
    app = make_app()
    app._become_master(1)
    dp = connect(app, "A")
    op = {"type": "op", "session": 1, "seq": 1, "site": "A", "action": "delete", "kind": "flow_group", "id": "FG1"}
    reply = app._rpc(SimpleNamespace(peer="test"), op)
    assert (reply["status"], reply["reason"]) == (REJECTED, NOT_READY)
    assert app._hello()["sites"]["A"]["connected"] == ["A"]
    app.state_change_handler(SimpleNamespace(datapath=dp, state=DEAD_DISPATCHER))
    assert app._hello()["sites"]["A"]["connected"] == []
