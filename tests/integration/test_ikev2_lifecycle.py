"""Session lifecycle edges: API misuse, half-open timeout, hard IKE expiry,
the responder's IKE_SA_INIT cache, closing while connecting, public state."""

from __future__ import annotations

import pytest
from ikev2_pair import Pair, psk_pair_configs

from aioipsec.errors import LocalProtocolError
from aioipsec.events import ChildSaDeleted, IkeSaDeleted, NegotiationFailed
from aioipsec.ike.constants import ExchangeType, ProtocolId
from aioipsec.ike.v2.message import decode_message
from aioipsec.ike.v2.payloads import DeletePayload
from aioipsec.ike.v2.session import HALF_OPEN_TIMEOUT, ChildState, IkeSessionV2, IkeState


def test_api_misuse_raises_local_errors() -> None:
    i_cfg, r_cfg = psk_pair_configs()
    p = Pair(i_cfg, r_cfg)
    with pytest.raises(LocalProtocolError):
        p.i.dpd(0.0)
    with pytest.raises(LocalProtocolError):
        p.i.rekey_ike_sa(0.0)
    with pytest.raises(LocalProtocolError):
        p.i.rekey_child_sa(1234, 0.0)
    with pytest.raises(LocalProtocolError):
        p.i.create_child_sa("nope", 0.0)
    p.initiate()
    with pytest.raises(LocalProtocolError):
        p.initiate()
    with pytest.raises(LocalProtocolError):
        IkeSessionV2.respond(configurations=[], local_addr=("192.0.2.2", 500), remote_addr=("192.0.2.1", 500))
    with pytest.raises(LocalProtocolError):
        IkeSessionV2(configuration=i_cfg.__class__(), is_initiator=True)  # no remote address anywhere


def test_half_open_responder_times_out() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.to_r(p.out_i())
    p.out_r()
    assert p.r is not None and p.r.state is IkeState.CONNECTING
    assert p.r.get_timer() == pytest.approx(HALF_OPEN_TIMEOUT)
    p.now = HALF_OPEN_TIMEOUT
    p.r.handle_timer(p.now)
    assert p.r.is_closed
    assert p.events("r", NegotiationFailed)[0].notify == "TIMEOUT"
    assert p.events("r", IkeSaDeleted)[0].reason == "half-open timeout"


def test_responder_answers_duplicate_ike_sa_init_from_cache() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    [req] = p.out_i()
    p.to_r([req])
    [resp] = p.out_r()
    p.to_r([req])
    assert p.out_r() == [resp]
    # a different IKE_SA_INIT with the same SPI after ours was processed: dropped
    other = Pair(*psk_pair_configs(), seed=1)
    other.rand_i.nonces = [b"\x42" * 32]
    other.initiate()
    [req2] = other.out_i()
    assert req2 != req
    p.to_r([req2])
    assert p.out_r() == []
    assert p.r is not None and p.r.stats.invalid_mid == 1


def test_ike_hard_lifetime_deletes_everything() -> None:
    i_cfg, r_cfg = psk_pair_configs(
        i_kw={"dpd_delay": 0, "rekey_time": 100.0, "over_time": 20.0},
        r_kw={"dpd_delay": 0},
    )
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    assert p.i.sa.expire_at == pytest.approx(120.0) and 80.0 <= p.i.sa.rekey_at <= 100.0
    # the peer stops answering: the rekey retransmits until the hard lifetime
    p.advance(p.i.sa.rekey_at)
    p.out_i()
    p.advance(120.0 - p.now)
    assert p.i.is_closed and p.events("i", IkeSaDeleted)[0].reason == "expired"
    assert p.events("i", ChildSaDeleted)[0].reason == "ike sa deleted"
    *retransmits, delete = p.out_i()
    assert p.r is not None and len(retransmits) >= 3
    m = decode_message(delete, p.r.sa.sk)
    assert m.exchange_type == ExchangeType.INFORMATIONAL and m.get(DeletePayload).protocol == ProtocolId.IKE
    assert m.message_id == 3  # past the outstanding rekey request (2)


def test_ike_hard_lifetime_delete_reaches_peer() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 0, "rekey_time": 100.0, "over_time": 20.0}, r_kw={"dpd_delay": 0})
    i_cfg.rekey_time = 100.0
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    p.i.sa.rekey_at = float("inf")  # no rekey attempt: straight to the hard lifetime
    p.advance(120.0)
    [delete] = p.out_i()
    p.to_r([delete])
    assert p.r is not None and p.r.is_closed and p.events("r", IkeSaDeleted)[0].reason == "deleted by peer"


def test_delete_while_connecting_closes_locally() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.out_i()
    p.i.delete(p.now)
    assert p.i.is_closed and p.out_i() == [] and p.i.get_timer() is None
    p.i.receive_datagram(b"\x00" * 40, ("192.0.2.2", 500), p.now)
    assert p.i.stats.dropped_closed == 1


def test_public_state_and_child_info() -> None:
    p = Pair(*psk_pair_configs())
    assert p.i.state is IkeState.CREATED and not p.i.is_established and p.i.spi_r == bytes(8)
    p.initiate()
    assert p.i.state is IkeState.CONNECTING
    p.roundtrip()
    p.roundtrip()
    assert p.i.is_established and p.i.name == "site-a"
    [c] = p.i.child_sas
    assert c.name == "lan" and c.state is ChildState.INSTALLED and c.spi_in >= 256 and c.spi_out >= 256
    assert c.installed_at == 0.0 and 0 < c.rekey_at < c.expire_at
    assert "encr" not in repr(c) or "keys" not in repr(c)
    assert p.i.spi_i in p.i.all_spis and p.i.spi_r in p.i.all_spis
    assert p.r is not None and set(p.r.all_spis) == set(p.i.all_spis)


def test_child_sa_repr_hides_keys() -> None:
    p = Pair(*psk_pair_configs())
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [c] = p.i.child_sas
    for k in c.keys:
        if k:
            assert k.hex() not in repr(c) and repr(k) not in repr(c)


def test_responder_picks_configuration_by_proposal_then_identity() -> None:
    from aioipsec.crypto.transforms import parse_proposal

    i_cfg, r_cfg = psk_pair_configs(i_proposals=["aes256-sha256-modp2048"])
    gcm_only = psk_pair_configs(psk="x")[1]
    gcm_only.name = "gcm-only"
    gcm_only.proposals = [parse_proposal("aes128gcm16-prfsha256-x25519", "ike")]
    r_cfg.proposals = [parse_proposal("aes256-sha256-modp2048", "ike")]
    p = Pair(i_cfg, [gcm_only, r_cfg])
    p.initiate()
    p.roundtrip()
    assert p.r is not None and p.r.config.name == "hq" and [c.name for c in p.r.candidates] == ["hq"]
    p.roundtrip()
    assert p.i.is_established and p.r.is_established


def test_core_does_not_import_io() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import aioipsec.ike.v2.session, aioipsec.ike.v2.tasks, aioipsec.ike.auth, aioipsec.ike.cookies\n"
        "import aioipsec.ike.natd, aioipsec.ike.proposals, aioipsec.ike.v2.task_manager\n"
        "bad = [m for m in ('asyncio', 'socket', 'selectors', 'aioipsec.transports', 'aioipsec.asyncio') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_child_requested_before_establishment_waits_for_ike_auth() -> None:
    """create_child_sa() while IKE_AUTH is pending (either side): a separate
    CREATE_CHILD_SA after the IKE SA is up, never a second SA in IKE_AUTH."""
    from aioipsec.config import child
    from aioipsec.events import ChildSaInstalled
    from aioipsec.ike.v2.message import peek_header
    from aioipsec.ike.v2.payloads import SaPayload

    i_cfg, r_cfg = psk_pair_configs(i_kw={"dpd_delay": 0}, r_kw={"dpd_delay": 0})
    for cfg, (l, r) in ((i_cfg, ("198.51.100.0/24", "192.0.2.128/25")), (r_cfg, ("192.0.2.128/25", "198.51.100.0/24"))):
        cfg.children["dmz"] = child("dmz", local_ts=[l], remote_ts=[r])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.to_r(p.out_i())
    assert p.r is not None
    p.r.create_child_sa("dmz", p.now)  # responder, not established yet
    [init_resp] = p.out_r()  # nothing but the IKE_SA_INIT response
    p.i.create_child_sa("dmz", p.now)  # initiator, before the IKE_SA_INIT response
    p.to_i([init_resp])
    [auth] = p.out_i()
    assert peek_header(auth).exchange_type == ExchangeType.IKE_AUTH
    assert len(decode_message(auth, p.r.sa.sk).get_all(SaPayload)) == 1
    p.to_r([auth])
    out = p.out_r()
    assert [peek_header(d).exchange_type for d in out] == [ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA]
    p.to_i(out)
    p.settle()
    ci, cr = p.events("i", ChildSaInstalled), p.events("r", ChildSaInstalled)
    assert sorted(c.name for c in ci) == ["dmz", "dmz", "lan"] and len(cr) == 3
    assert p.i.stats.internal_errors == p.r.stats.internal_errors == 0
