"""The IKEv1 CBC IV chain (RFC 2409 Appendix B): unit behaviour, and the
chain checked independently against the ciphertext of a real in-memory
exchange."""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from aioipsec.ike.v1.constants import ExchangeType
from aioipsec.ike.v1.iv import IvManager
from aioipsec.ike.v1.message import decode_message, peek_header

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from ikev1_pair import Pair, psk_configs  # noqa: E402


def h(name: str, data: bytes) -> bytes:
    d = hashes.Hash(getattr(hashes, name)())
    d.update(data)
    return d.finalize()


GXI, GXR = b"\x11" * 256, b"\x22" * 256


def test_phase1_iv_is_hash_of_public_values() -> None:
    iv = IvManager("sha1", 16)
    iv.init_phase1(GXI, GXR)
    assert iv.phase1_iv == h("SHA1", GXI + GXR)[:16]
    assert iv.get_iv(0) == iv.phase1_iv
    des = IvManager("sha256", 8)
    des.init_phase1(GXI, GXR)
    assert des.phase1_iv == h("SHA256", GXI + GXR)[:8]


def test_phase2_iv_derives_from_last_phase1_block() -> None:
    iv = IvManager("sha256", 16)
    iv.init_phase1(GXI, GXR)
    last_mm6 = bytes(range(16))
    iv.update_iv(0, last_mm6)
    assert iv.phase1_iv == h("SHA256", GXI + GXR)[:16], "update alone must not move the chain"
    iv.confirm_iv(0)
    assert iv.phase1_iv == last_mm6
    mid = 0x12345678
    assert iv.get_iv(mid) == h("SHA256", last_mm6 + mid.to_bytes(4, "big"))[:16]


def test_chain_moves_only_on_confirm() -> None:
    iv = IvManager("sha1", 16)
    iv.init_phase1(GXI, GXR)
    mid = 7
    first = iv.get_iv(mid)
    iv.confirm_iv(mid)  # nothing stored: no change
    assert iv.get_iv(mid) == first
    iv.update_iv(mid, b"A" * 16)
    assert iv.get_iv(mid) == first
    iv.confirm_iv(mid)
    assert iv.get_iv(mid) == b"A" * 16
    # chains are independent per message ID, and a later Phase 1 update
    # does not disturb an existing Phase 2 chain
    other = iv.get_iv(8)
    assert other != b"A" * 16
    iv.update_iv(0, b"B" * 16)
    iv.confirm_iv(0)
    assert iv.get_iv(mid) == b"A" * 16
    assert iv.get_iv(9) == h("SHA1", b"B" * 16 + (9).to_bytes(4, "big"))[:16]


def test_lru_bound_and_forget() -> None:
    iv = IvManager("sha1", 16, max_exchanges=3)
    iv.init_phase1(GXI, GXR)
    for mid in (1, 2, 3):
        iv.update_iv(mid, bytes([mid]) * 16)
        iv.confirm_iv(mid)
    iv.get_iv(1)  # touch: 2 is now the oldest
    for forged in range(100, 120):  # looking up unseen exchanges (forged datagrams) evicts nothing
        iv.get_iv(forged)
    assert list(iv._chains) == [2, 3, 1]
    iv.update_iv(4, b"\x04" * 16)  # an accepted message of a new exchange does
    assert iv.get_iv(1) == b"\x01" * 16
    assert iv.get_iv(2) == h("SHA1", iv.phase1_iv + (2).to_bytes(4, "big"))[:16]
    iv.forget(1)
    assert iv.get_iv(1) != b"\x01" * 16


def test_chain_matches_the_wire_of_a_real_exchange() -> None:
    """Recompute every IV of Main Mode + Quick Mode from the captured
    datagrams alone (RFC 2409 rules) and decrypt each encrypted message."""
    ci, cr = psk_configs(dpd_delay=0)
    p = Pair(ci, cr)
    p.start()
    keys = p.i.sas[0].keys
    assert keys is not None
    wire = [d.data for d in p.wire]
    assert [peek_header(d).exchange for d in wire] == [ExchangeType.IDENTITY_PROTECTION] * 6 + [ExchangeType.QUICK_MODE] * 3
    mm5, mm6, qm1, qm2, qm3 = wire[4], wire[5], wire[6], wire[7], wire[8]
    assert keys.iv.hash_name == "sha1"
    # Phase 1: IV(MM5) = hash(g^xi | g^xr); IV(MM6) = last block of MM5
    gxi = _ke(wire[2])
    gxr = _ke(wire[3])
    iv5 = h("SHA1", gxi + gxr)[:16]
    decode_message(mm5, keys.encr, iv5)
    decode_message(mm6, keys.encr, mm5[-16:])
    # Quick Mode: IV(QM1) = hash(last block of MM6 | M-ID), then chained
    mid = peek_header(qm1).message_id
    iv1 = h("SHA1", mm6[-16:] + mid.to_bytes(4, "big"))[:16]
    m1, _ = decode_message(qm1, keys.encr, iv1)
    m2, _ = decode_message(qm2, keys.encr, qm1[-16:])
    m3, _ = decode_message(qm3, keys.encr, qm2[-16:])
    assert [len(m.payloads) for m in (m1, m2, m3)] == [5, 5, 1]


def _ke(data: bytes) -> bytes:
    from aioipsec.ike.v1.payloads import KePayload

    msg, _ = decode_message(data)
    ke = msg.get(KePayload)
    assert ke is not None
    return ke.data
