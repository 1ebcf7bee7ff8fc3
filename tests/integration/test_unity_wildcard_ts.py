"""A Cisco Unity client that received split includes proposes 0.0.0.0/0 as the
gateway's side of its Quick Mode (strongSwan's unity plugin, unity_narrow.c
``narrow_pre``: "changing proposed traffic selectors for other: 0.0.0.0/0"; Cisco
clients do the same).  charon 5.9.8 with ``cisco_unity = yes`` against our IKEv1
gateway got INVALID_ID_INFORMATION ("no child configuration matches 10.3.0.1/32 ===
0.0.0.0/0", tests/interop/test_cp_attributes_charon.py).  Like charon's gateway
(``narrow_responder_post``), ours now accepts the wildcard from a peer that sent the
Unity vendor ID, echoes the IDs and installs its configured local selector.  The
client here is our own, configured with ``remote_ts = 0.0.0.0/0``, the selector
charon's unity plugin puts on the wire."""

from __future__ import annotations

from dataclasses import replace

from ikev1_pair import Pair
from test_ikev1_xauth import configs

from aioipsec.config import PoolConfig
from aioipsec.events import ChildSaInstalled, NegotiationFailed
from aioipsec.ike.v1.constants import VID_CISCO_UNITY
from aioipsec.ike.v1.tasks import phase1_task
from aioipsec.ike.v2.pools import build_pools
from aioipsec.selectors import TrafficSelector

POOL = PoolConfig("rw", "10.3.0.0/28", split_include=["10.2.0.0/16"])


def pair(client_remote_ts: str) -> Pair:
    ci, cr = configs()
    net = ci.children["net"]
    ci = replace(ci, children={"net": replace(net, remote_ts=[TrafficSelector.from_cidr(client_remote_ts)])})
    p = Pair(ci, cr)
    p.r.pools = build_pools([POOL])
    return p


def test_unity_client_proposing_0_0_0_0_slash_0_gets_the_gateways_configured_selector() -> None:
    p = pair("0.0.0.0/0")
    p.start()
    assert not p.of("r", NegotiationFailed), p.of("r", NegotiationFailed)
    (gw,) = p.of("r", ChildSaInstalled)
    (cl,) = p.of("i", ChildSaInstalled)
    # the gateway installs its configured side, the client keeps the wildcard it proposed
    assert (str(gw.local_ts[0]), str(gw.remote_ts[0])) == ("10.2.0.0/16", "10.3.0.1/32")
    assert (str(cl.local_ts[0]), str(cl.remote_ts[0])) == ("10.3.0.1/32", "0.0.0.0/0")
    assert (gw.spi_in, gw.spi_out) == (cl.spi_out, cl.spi_in)


def test_the_wildcard_is_refused_without_the_unity_vendor_id(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = phase1_task.vendor_ids

    def no_unity(cfg, *, initiator, peer=None):  # type: ignore[no-untyped-def]
        out = real(cfg, initiator=initiator, peer=peer)
        return [v for v in out if getattr(v, "data", None) != VID_CISCO_UNITY] if initiator else out

    monkeypatch.setattr(phase1_task, "vendor_ids", no_unity)
    p = pair("0.0.0.0/0")
    p.start()
    (failed,) = p.of("r", NegotiationFailed)
    assert failed.notify == "INVALID_ID_INFORMATION" and "0.0.0.0/0" in failed.reason
    assert not p.of("r", ChildSaInstalled)
