"""Crypto hygiene: constant-time comparisons (AST check of the whole
package), DH/ECDH public value checks at the session level (RFC 6989, RFC
8031), nonce length rules, SPIs random and never zero, sequence-number
overflow, weak algorithms refused unless opted in, and no key material in
the DEBUG logs of a set of negotiations."""

from __future__ import annotations

import ast
import base64
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

import fuzzlib
from aioipsec.crypto import transforms as T
from aioipsec.errors import AlgorithmError, ConfigError, LocalProtocolError
from aioipsec.esp import EspSa
from aioipsec.events import ChildSaInstalled, NegotiationFailed
from aioipsec.ike.constants import NotifyType
from aioipsec.ike.v2.message import decode_message, encode_message
from aioipsec.ike.v2.payloads import KePayload, NoncePayload, SaPayload

PKG = Path(__file__).resolve().parents[2] / "aioipsec"

# =========================================================================== constant time

_SECRETISH = re.compile(
    r"(^|_)(mac|macs|icv|tag|digest|hash|hashes|cookie|natd|auth_data|computed|hmac|signature|sig|checksum|secret|psk)($|_)",
    re.I,
)
_NOT_SECRET = re.compile(r"(_alg|_algs|_algorithm|_type|_types|_len|_size|_name|_id|_method|_methods|_count|_bits)$", re.I)
_DIGEST_CALLS = {"digest", "hexdigest", "sign", "finalize", "prf", "_hash", "natd_hash", "psk_auth_data", "compute_icv", "_icv"}


def _name(e: ast.AST) -> str:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attribute):
        return e.attr
    if isinstance(e, ast.Subscript):
        return _name(e.value)
    if isinstance(e, ast.Call):
        f = e.func
        return (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) + "()"
    return ""


def _constant(e: ast.AST) -> bool:
    if isinstance(e, ast.Constant):
        return True
    n = _name(e)
    if n and (n.isupper() or n[0].isupper()):
        return True
    if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id[:1].isupper():
        return True
    return n in ("len()", "int()", "type()", "bytes()")


def _secret(e: ast.AST) -> bool:
    n = _name(e)
    if n.endswith("()"):
        return n[:-2] in _DIGEST_CALLS
    return bool(_SECRETISH.search(n)) and not _NOT_SECRET.search(n)


def secret_comparisons(source: str) -> list[tuple[int, str]]:
    """``==``/``!=``/``in`` comparisons of MAC/ICV/hash/cookie-like values
    (by name or by the call that produced them) against anything that is not
    a constant."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(isinstance(o, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for o in node.ops):
            ops = [node.left, *node.comparators]
            if any(_secret(o) for o in ops) and not any(_constant(o) for o in ops):
                out.append((node.lineno, ast.unparse(node)))
    return out


def test_mac_icv_hash_comparisons_are_constant_time() -> None:
    """Every comparison of a MAC, ICV, AUTH value, hash or cookie in the
    package goes through hmac.compare_digest (or a cryptography verify):
    an AST walk finds no ``==``/``!=``/``in`` on such values."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for line, text in secret_comparisons(path.read_text()):
            found.append(f"{path.relative_to(PKG.parent)}:{line}: {text}")
    assert not found, "non-constant-time comparisons:\n" + "\n".join(found)


def test_the_checker_catches_what_it_must() -> None:
    bad = "def f(icv, expected_mac, data):\n    return icv == expected_mac or h.digest() != data or cookie in jar\n"
    assert len(secret_comparisons(bad)) == 3
    good = "def f(icv, mac, n):\n    return hmac.compare_digest(icv, mac) and len(icv) == 12 and n.hash_alg == HashAlg.SHA256\n"
    assert secret_comparisons(good) == []


def test_compare_digest_is_used_where_macs_are_checked() -> None:
    """The places that verify MACs/AUTH/cookies use compare_digest (review
    anchor: if one of these moves, look again)."""
    for rel in ("crypto/cipher.py", "ike/auth.py", "ike/cookies.py", "esp/ah.py", "ike/v1/phase1.py"):
        assert "hmac.compare_digest(" in (PKG / rel).read_text(), rel


# =========================================================================== KE public values (RFC 6989)

X25519_BAD = [bytes(32), (1).to_bytes(32, "little"), bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]
"""All-zero, the point of order 1, and a point of order 8 (RFC 7748 / 8031 §2: all-zero shared secret)."""


def _init_with_ke(proposal: str, ke_data: bytes) -> tuple[fuzzlib.V2World, bytes]:
    w = fuzzlib.V2World(1)
    w.cfg_i.proposals = w.cfg_r.proposals = [T.parse_proposal(proposal, "ike")]
    w.i.initiate(w.now)
    w.collect()
    msg = decode_message(w.pending_i[0])
    kep = msg.get(KePayload)
    assert kep is not None
    msg.payloads = [KePayload(kep.group, ke_data) if p is kep else p for p in msg.payloads]
    return w, encode_message(msg)


def _modp_bad(bits: int) -> list[bytes]:
    from aioipsec.crypto.kex import modp_prime

    p = modp_prime(14 if bits == 2048 else 2)
    n = bits // 8
    return [bytes(n), (1).to_bytes(n, "big"), (p - 1).to_bytes(n, "big"), p.to_bytes(n, "big"), b"\xff" * n, bytes(n - 1) + b"\2"[:0]]


def _ecp256_bad() -> list[bytes]:
    return [bytes(64), b"\x01" * 64, (1).to_bytes(32, "big") + (1).to_bytes(32, "big"), b"\x04" + bytes(63)]


@pytest.mark.parametrize(
    "proposal,bad",
    [("aes128gcm16-prfsha256-x25519", v) for v in X25519_BAD]
    + [("aes128gcm16-prfsha256-ecp256", v) for v in _ecp256_bad()]
    + [("aes128gcm16-prfsha256-modp2048", v) for v in _modp_bad(2048)]
    + [("aes128gcm16-prfsha256-x25519", b"\x09" * 31), ("aes128gcm16-prfsha256-ecp256", b"\x01" * 63)],
    ids=lambda v: v if isinstance(v, str) else v[:4].hex() + f"/{len(v)}",
)
def test_ikev2_responder_rejects_a_bad_ke_with_invalid_syntax(proposal: str, bad: bytes) -> None:
    """An IKE_SA_INIT whose KE payload fails the public value checks (out of
    range, not on the curve, a low-order point, wrong length) is answered
    with INVALID_SYNTAX and leaves no half-open SA behind."""
    w, req = _init_with_ke(proposal, bad)
    w.r.receive_datagram(req, fuzzlib.I_ADDR, w.now)
    out = w.r.datagrams_to_send(w.now)
    assert len(out) == 1
    resp = decode_message(out[0][0])
    assert [n.notify_type for n in resp.notifies] == [NotifyType.INVALID_SYNTAX]
    assert w.r.is_closed and w.r.stats.internal_errors == 0
    evs = []
    while (e := w.r.next_event()) is not None:
        evs.append(e)
    assert any(isinstance(e, NegotiationFailed) and e.notify == "INVALID_SYNTAX" for e in evs)


@pytest.mark.parametrize("bad", X25519_BAD)
def test_ikev2_initiator_rejects_a_bad_ke_in_the_response(bad: bytes) -> None:
    """The responder's KE in the IKE_SA_INIT response fails the checks: the
    initiator gives up (NegotiationFailed) and sends no IKE_AUTH."""
    w = fuzzlib.V2World(2)
    w.i.initiate(w.now)
    w.i_to_r()
    w.collect()
    [resp] = w.pending_r
    msg = decode_message(resp)
    kep = msg.get(KePayload)
    msg.payloads = [KePayload(kep.group, bad) if p is kep else p for p in msg.payloads]
    w.i.receive_datagram(encode_message(msg), fuzzlib.R_ADDR, w.now)
    assert w.i.datagrams_to_send(w.now) == []
    evs = []
    while (e := w.i.next_event()) is not None:
        evs.append(e)
    assert any(isinstance(e, NegotiationFailed) for e in evs)
    assert w.i.is_closed and w.i.stats.internal_errors == 0


def test_ikev2_pfs_child_with_bad_ke_gets_invalid_syntax_and_the_ike_sa_survives() -> None:
    """CREATE_CHILD_SA with PFS whose KE is the all-zero X25519 value: the
    responder answers INVALID_SYNTAX inside the IKE SA, which stays up."""
    from aioipsec.ike.v2.payloads import NotifyPayload

    w = fuzzlib.V2World(3)
    for cfg in (w.cfg_i, w.cfg_r):
        cfg.children["lan"].esp_proposals = [T.parse_proposal("aes128gcm16-x25519", "esp")]
    w.establish()
    w.i.create_child_sa("lan", w.now)
    w.collect()
    [req] = w.pending_i
    w.pending_i.clear()
    msg = decode_message(req, w.r.sa.sk)
    kep = msg.get(KePayload)
    assert kep is not None
    msg.payloads = [KePayload(kep.group, bytes(32)) if p is kep else p for p in msg.payloads]
    w.r.receive_datagram(encode_message(msg, w.i.sa.sk), fuzzlib.I_ADDR, w.now)
    [(out, _)] = w.r.datagrams_to_send(w.now)
    resp = decode_message(out, w.i.sa.sk)
    assert [n.notify_type for n in resp.notifies if isinstance(n, NotifyPayload)] == [NotifyType.INVALID_SYNTAX]
    assert w.r.is_established and len(w.r.children) == 1


@pytest.mark.parametrize("bad", X25519_BAD[:1] + [b"\x01" * 31])
def test_ikev1_bad_ke_in_main_mode_is_refused(bad: bytes) -> None:
    """IKEv1: MM3 with a bad KE: the responder refuses it (INVALID_KEY_INFORMATION,
    no Phase 1) without raising."""
    from aioipsec.ike.v1.message import decode_message as dec1, encode_message as enc1
    from aioipsec.ike.v1.payloads import KePayload as Ke1

    w = fuzzlib.V1World(4)
    w.i.initiate(w.now, child=None)
    w.step(2)  # MM1, MM2
    w.collect()
    [mm3] = w.pending_i
    w.pending_i.clear()
    msg, _ = dec1(mm3)
    msg.payloads = [Ke1(bad) if isinstance(p, Ke1) else p for p in msg.payloads]
    w.r.receive_datagram(enc1(msg)[0], fuzzlib.I_ADDR, w.now)
    out = w.r.datagrams_to_send(w.now)
    assert not w.r.is_established
    sa = w.r.sas[0] if w.r.sas else None
    assert sa is None or sa.keys is None, "keys derived from a rejected KE"
    notes = [dec1(d)[0] for d, _ in out]
    assert any(n.notify_type == 17 for m in notes for n in m.notifies()), [m.describe() for m in notes]


# =========================================================================== nonces


@pytest.mark.parametrize("length,ok", [(15, False), (16, True), (256, True), (257, False)])
def test_ikev2_nonce_length(length: int, ok: bool) -> None:
    """RFC 7296 §3.9: a nonce is 16..256 octets; others get INVALID_SYNTAX."""
    w = fuzzlib.V2World(5)
    w.i.initiate(w.now)
    w.collect()
    msg = decode_message(w.pending_i[0])
    msg.payloads = [NoncePayload(os.urandom(length)) if isinstance(p, NoncePayload) else p for p in msg.payloads]
    w.r.receive_datagram(encode_message(msg), fuzzlib.I_ADDR, w.now)
    [(out, _)] = w.r.datagrams_to_send(w.now)
    notes = [n.notify_type for n in decode_message(out).notifies]
    if ok:
        assert NotifyType.INVALID_SYNTAX not in notes and decode_message(out).get(SaPayload) is not None
    else:
        assert notes == [NotifyType.INVALID_SYNTAX]


@pytest.mark.parametrize("prf", ["prfsha256", "prfsha384", "prfsha512", "prfaesxcbc"])
def test_our_nonces_are_at_least_half_the_prf_key_size(prf: str) -> None:
    """RFC 7296 §2.10: our nonces (IKE_SA_INIT and CREATE_CHILD_SA, both
    sides) are at least 128 bits and half the key size of the negotiated PRF
    (32 octets cover PRF_HMAC_SHA2_512's 64-octet key)."""
    w = fuzzlib.V2World(6)
    w.cfg_i.proposals = w.cfg_r.proposals = [T.parse_proposal(f"aes256gcm16-{prf}-x25519", "ike")]
    w.establish()
    w.i.rekey_child_sa(next(iter(w.i.children)), w.now)
    w.settle()
    need = max(16, T.prf(prf).key_len // 2)
    nonces = [w.i.sa.ni, w.i.sa.nr] + [n for c in w.i.children.values() for n in c.nonces]
    assert nonces and all(len(n) >= need for n in nonces), [len(n) for n in nonces]


@pytest.mark.parametrize("length,ok", [(7, False), (8, True), (256, True), (257, False)])
def test_ikev1_nonce_length(length: int, ok: bool) -> None:
    """RFC 2409 §5: IKEv1 nonces are 8..256 octets: MM3 with another length
    is answered with PAYLOAD-MALFORMED (no MM4, no keys); the boundaries pass."""
    from aioipsec.ike.v1.message import decode_message as dec1, encode_message as enc1
    from aioipsec.ike.v1.payloads import NoncePayload as N1

    w = fuzzlib.V1World(7)
    w.i.initiate(w.now, child=None)
    w.step(2)
    w.collect()
    [mm3] = w.pending_i
    w.pending_i.clear()
    msg, _ = dec1(mm3)
    msg.payloads = [N1(os.urandom(length)) if isinstance(p, N1) else p for p in msg.payloads]
    w.r.receive_datagram(enc1(msg)[0], fuzzlib.I_ADDR, w.now)
    out = [dec1(d)[0] for d, _ in w.r.datagrams_to_send(w.now)]
    if ok:
        assert len(out) == 1 and out[0].exchange == 2 and w.r.sas[0].keys is not None  # MM4
    else:
        # answered with PAYLOAD-MALFORMED, no keys derived, no Phase 1
        assert [n.notify_type for m in out for n in m.notifies()] == [16]
        assert all(sa.keys is None for sa in w.r.sas) and not w.r.is_established


# =========================================================================== SPIs


class ZerosFirst:
    """A random source that returns zeros for the first ``n`` calls."""

    def __init__(self, n: int, seed: int = 1) -> None:
        self.n = n
        self.rnd = fuzzlib.seeded(seed)

    def __call__(self, k: int) -> bytes:
        if self.n > 0:
            self.n -= 1
            return bytes(k)
        return self.rnd(k)


def test_spis_are_never_zero_even_from_a_bad_random_source() -> None:
    from aioipsec.ike.v1 import IkeSessionV1
    from aioipsec.ike.v2.session import IkeSessionV2

    ci, _ = fuzzlib.v2_configs(0)
    s = IkeSessionV2(configuration=ci, is_initiator=True, remote_addr=fuzzlib.R_ADDR, random=ZerosFirst(3))
    assert s.spi_i != bytes(8)
    assert all(s.new_child_spi() >= 256 for _ in range(50))  # 1..255 are reserved (RFC 4303)
    with pytest.raises(LocalProtocolError):  # a source that never yields randomness is refused, not used
        IkeSessionV2(configuration=ci, is_initiator=True, remote_addr=fuzzlib.R_ADDR, random=lambda n: bytes(n))
    v1i, _ = fuzzlib.v1_configs(0)
    s1 = IkeSessionV1(configuration=v1i, is_initiator=True, remote_addr=fuzzlib.R_ADDR, random=ZerosFirst(3))
    s1.initiate(0.0, child=None)
    assert s1.spi_i != bytes(8)
    assert s1._alloc_spi() >= 256


def test_spis_and_cookies_are_distinct_across_many_sessions() -> None:
    """200 established IKEv2 pairs with os.urandom: every IKE SPI and Child
    SA SPI is non-zero and distinct."""
    ike: list[bytes] = []
    esp: list[int] = []
    for seed in range(100):
        w = fuzzlib.V2World(seed)
        w.i.random = w.r.random = os.urandom  # type: ignore[assignment]
        w.i.sa.spi_i = os.urandom(8)
        w.establish()
        ike += [w.i.spi_i, w.i.spi_r]
        esp += [c.spi_in for c in w.i.children.values()] + [c.spi_in for c in w.r.children.values()]
    assert bytes(8) not in ike and len(set(ike)) == len(ike)
    assert 0 not in esp and len(set(esp)) == len(esp) and min(esp) >= 256


def test_zero_spi_in_a_peer_esp_proposal_is_refused() -> None:
    """A Child SA proposal whose ESP SPI is 0 (reserved, RFC 4303 §2.1) is
    not accepted as an outbound SPI."""
    from aioipsec.ike.v2.payloads import SaPayload as Sa2

    w = fuzzlib.V2World(8).establish()
    w.i.create_child_sa("lan", w.now)
    w.collect()
    [req] = w.pending_i
    w.pending_i.clear()
    msg = decode_message(req, w.r.sa.sk)
    sap = msg.get(Sa2)
    props = tuple(p.__class__(p.num, p.protocol, bytes(4), p.transforms) for p in sap.proposals)
    msg.payloads = [Sa2(props) if p is sap else p for p in msg.payloads]
    before = set(w.r.children)
    w.r.receive_datagram(encode_message(msg, w.i.sa.sk), fuzzlib.I_ADDR, w.now)
    new = [c for s, c in w.r.children.items() if s not in before]
    assert all(c.spi_out != 0 for c in new), "an outbound SPI of 0 was accepted"
    [(out, _)] = w.r.datagrams_to_send(w.now)
    assert [n.notify_type for n in decode_message(out, w.i.sa.sk).notifies] == [NotifyType.INVALID_SYNTAX]
    assert w.r.stats.internal_errors == 0 and w.r.is_established


# =========================================================================== sequence numbers


def _esp(esn: bool = False) -> tuple[EspSa, EspSa]:
    e = T.encr("aes128gcm16")
    kw: dict[str, Any] = dict(spi=0x1001, encr=e, encr_key=bytes(e.key_len), esn=esn)
    return EspSa(inbound=False, **kw), EspSa(inbound=True, **kw)


def _ip() -> bytes:
    return fuzzlib._ipv4(b"x")


def test_sequence_number_exhaustion_never_wraps() -> None:
    """Without ESN the 2^32-1st packet is the last: further packets are
    dropped (EXPIRED), a hard expiry is reported, the counter never wraps to
    a number the receiver has seen."""
    out, inn = _esp()
    out.seq = 0xFFFFFFFF - 3
    sealed = out.seal_batch([_ip()] * 10)
    assert len(sealed) == 3
    assert all(r.ok for r in inn.open_batch(sealed))
    assert out.seq == 0xFFFFFFFF and out.expired
    evs = []
    while (e := out.next_event()) is not None:
        evs.append(e)
    assert any(e.hard and e.reason == "seq-exhausted" for e in evs)
    assert out.seal_batch([_ip()]) == [] and out.seq == 0xFFFFFFFF


def test_sequence_numbers_ask_for_a_rekey_before_they_run_out() -> None:
    """RFC 4303 §3.3.3: a new SA must be set up before the counter cycles.
    The outbound SA reports a soft expiry (rekey) well before the hard end
    of the sequence space, so a busy tunnel never hits the hard stop."""
    out, _ = _esp()
    out.seq = 0xFFFFFFFF - (1 << 24)  # 16 M packets before the end
    out.seal_batch([_ip()])
    evs = []
    while (e := out.next_event()) is not None:
        evs.append(e)
    assert any(not e.hard for e in evs), "no soft expiry before sequence number exhaustion"
    assert not out.expired


def test_esn_sequence_numbers_continue_past_2_32() -> None:
    out, _ = _esp(esn=True)
    out.seq = 0xFFFFFFFF - 1
    sealed = out.seal_batch([_ip()] * 4)
    assert len(sealed) == 4 and out.seq == 0xFFFFFFFF + 3 and not out.expired


def test_session_deletes_and_renegotiates_a_child_at_seq_exhaustion() -> None:
    """The data plane reports the hard expiry to the session: it deletes the
    Child SA (INFORMATIONAL) and a new one can be negotiated."""
    w = fuzzlib.V2World(9).establish()
    spi = next(iter(w.i.children))
    w.i.child_sa_expired(spi, True, w.now)
    w.collect()
    assert spi not in w.i.children
    w.settle()
    assert spi not in w.r.children and all(c.spi_out != spi for c in w.r.children.values())
    w.i.create_child_sa("lan", w.now)
    w.settle()
    assert len(w.i.children) == 1 and len(w.r.children) == 1


# =========================================================================== weak algorithms


@pytest.mark.parametrize("text,proto", [("3des-md5-modp1024", "ike"), ("des-sha1-modp2048", "ike"),
                                         ("aes128-md5-modp2048", "ike"), ("aes128-sha1-modp1024", "ike"),
                                         ("3des-sha1", "esp"), ("null-sha256", "esp"), ("aes128-md5", "esp")])  # fmt: skip
def test_weak_algorithms_refused_unless_opted_in(text: str, proto: str) -> None:
    with pytest.raises(AlgorithmError):
        T.parse_proposal(text, proto)
    assert T.parse_proposal(text, proto, allow_legacy=True) is not None


def test_config_file_refuses_weak_algorithms_without_legacy(tmp_path: Path) -> None:
    from aioipsec.config_file import load_config

    f = tmp_path / "weak.toml"
    f.write_text(
        '[connections.a]\nremote_addrs = ["192.0.2.2"]\nproposals = ["3des-md5-modp1024"]\n'
        'local = { auth = "psk" }\nremote = { auth = "psk" }\n[secrets.a]\nsecret = "x"\n'
    )
    with pytest.raises(ConfigError, match="proposals"):
        load_config(f)


@pytest.mark.parametrize("version", [2, 1])
def test_responder_without_legacy_refuses_a_peer_offering_only_weak_algorithms(version: int) -> None:
    """A peer that opted into 3DES/MD5/MODP-1024 meets a responder that did
    not: no proposal is chosen, no SA comes up."""
    if version == 2:
        w = fuzzlib.V2World(10)
        w.cfg_i.proposals = [T.parse_proposal("3des-sha1-modp1024", "ike", allow_legacy=True)]
        w.cfg_i.legacy = True
        w.i.initiate(w.now)
        w.settle()
        assert not w.r.is_established and not w.i.is_established
    else:
        w1 = fuzzlib.V1World(10)
        w1.cfg_i.proposals = [T.parse_proposal("3des-md5-modp1024", "ike", allow_legacy=True)]
        w1.cfg_i.legacy = True
        w1.i.initiate(w1.now, child="net")
        w1.settle()
        assert not w1.r.is_established and not w1.i.is_established


def test_esp_sa_refuses_legacy_transforms_without_opt_in() -> None:
    with pytest.raises(AlgorithmError):
        EspSa(spi=0x100, encr=T.encr("3des"), encr_key=bytes(24), integ=T.integ("sha1"), integ_key=bytes(20), inbound=True)


# =========================================================================== no keys in logs


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text + " " + repr(record.args) + " " + repr(record.__dict__.get("extra", "")))


def _forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), repr(secret)[2:-1][:40]]


def test_the_key_scan_finds_a_logged_key() -> None:
    """The scan used below would notice a key logged in any of its forms."""
    key = bytes(range(7, 39))
    handler = _Collect()
    lg = logging.getLogger("aioipsec.test-scan")
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG)
    try:
        lg.debug("sk_ei=%s", key.hex())
        lg.debug("raw %r", key)
        lg.debug("b64 %s", base64.b64encode(key).decode())
    finally:
        lg.removeHandler(handler)
    for line in handler.lines:
        assert any(f in line for f in _forms(key)), line


def test_no_key_material_in_debug_logs() -> None:
    """IKEv2 (establish, Child SA rekey, IKE rekey, PFS child, delete) and
    IKEv1 (Main Mode, Quick Mode, rekey, delete) negotiations with every
    aioipsec logger at DEBUG: no key they generated (SK_*, SKEYSEED, SKEYID*,
    Child SA keys, PSK, DH shared secrets) appears in any log line, in hex,
    base64 or repr form."""
    handler = _Collect()
    root = logging.getLogger("aioipsec")
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    secrets: list[bytes] = [fuzzlib.PSK.encode()]
    shared: list[bytes] = []
    from aioipsec.crypto import kex as kex_mod

    orig = kex_mod.KeyExchange.shared_secret

    def spy(self: Any) -> bytes:
        value = orig.fget(self)  # type: ignore[attr-defined]
        shared.append(value)
        return value

    kex_mod.KeyExchange.shared_secret = property(spy)  # type: ignore[method-assign,assignment]
    try:
        w = fuzzlib.V2World(11)
        for cfg in (w.cfg_i, w.cfg_r):
            cfg.children["lan"].esp_proposals = [T.parse_proposal("aes128-sha256-x25519", "esp")]
        events: list[Any] = []
        _drive(w, events)
        w.establish()
        _collect_v2(w, secrets)
        w.i.rekey_child_sa(next(iter(w.i.children)), w.now)
        w.settle()
        w.i.rekey_ike_sa(w.now)
        w.settle()
        _collect_v2(w, secrets)
        w.i.delete(w.now)
        w.settle()
        w1 = fuzzlib.V1World(11)
        w1.i.initiate(w1.now, child="net")
        w1.settle()
        for s in (w1.i, w1.r):
            for sa in s.sas:
                if sa.keys is not None:
                    secrets.extend(getattr(sa.keys, n) for n in ("skeyid", "skeyid_d", "skeyid_a", "enc_key"))
        w1.i.create_child_sa("net", w1.now)
        w1.settle()
        for s in (w1.i, w1.r):
            while (ev := s.next_event()) is not None:
                events.append(ev)
        w1.i.delete(w1.now)
        w1.settle()
    finally:
        kex_mod.KeyExchange.shared_secret = orig  # type: ignore[method-assign]
        root.removeHandler(handler)
        root.setLevel(old)
    for ev in events:
        if isinstance(ev, ChildSaInstalled):
            secrets += [ev.encr_key_in, ev.encr_key_out, ev.integ_key_in or b"", ev.integ_key_out or b""]
    secrets += shared
    secrets = [s for s in secrets if s and len(s) >= 8]
    assert len(secrets) > 20 and len(shared) >= 4, (len(secrets), len(shared))
    assert len(handler.lines) > 50
    blob = "\n".join(handler.lines)
    leaks = [s.hex()[:16] for s in secrets if any(f and f in blob for f in _forms(s))]
    assert not leaks, f"{len(leaks)} keys found in the logs"


def _drive(w: fuzzlib.V2World, events: list[Any]) -> None:
    """Keep every event of both sessions (ChildSaInstalled carries keys)."""
    for s in (w.i, w.r):
        orig = s.emit

        def emit(ev: Any, _orig: Any = orig) -> None:
            events.append(ev)
            _orig(ev)

        s.emit = emit  # type: ignore[method-assign]


def _collect_v2(w: fuzzlib.V2World, secrets: list[bytes]) -> None:
    for s in (w.i, w.r):
        for sa in (s.sa, *s.old_sas):
            if sa.keys is not None:
                for name in ("skeyseed", "sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
                    v = getattr(sa.keys, name, None)
                    if isinstance(v, bytes):
                        secrets.append(v)
        for c in s.children.values():
            secrets.extend(k for k in c.keys if k)


def test_no_key_material_in_debug_logs_of_the_asyncio_stack() -> None:
    """connect()/serve() over an in-memory network (IKEv2 and IKEv1, with
    a Child SA rekey and traffic), every aioipsec and asyncio logger at
    DEBUG: the endpoint, data plane and session logs carry no negotiated key."""
    import asyncio

    from robust_vtime import VirtualTimeLoop

    from aioipsec.asyncio.client import connect, serve
    from aioipsec.asyncio.sockets import MemoryNetwork

    handler = _Collect()
    loggers = [logging.getLogger("aioipsec"), logging.getLogger("asyncio")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    secrets: list[bytes] = [fuzzlib.PSK.encode()]

    async def run(version: int) -> None:
        net = MemoryNetwork()
        ci, cr = fuzzlib.v2_configs(0) if version == 2 else fuzzlib.v1_configs(0)
        ci.local_addrs, ci.remote_addrs = ["192.0.2.1"], ["192.0.2.2"]
        cr.local_addrs, cr.remote_addrs = ["192.0.2.2"], ["192.0.2.1"]
        server = await serve("192.0.2.2", configuration=cr, network=net)
        server.endpoint.event_listeners.append(lambda _p, ev: _keys_of(ev, secrets))
        try:
            async with connect("192.0.2.2", configuration=ci, network=net, timeout=30) as ike:
                ike._endpoint.event_listeners.append(lambda _p, ev: _keys_of(ev, secrets))
                for ev in list(ike.children.values()):
                    _keys_of(ev, secrets)
                child = next(iter(ike.children.values()))
                await asyncio.wait_for(ike.rekey_child_sa(child.spi_in), 30)
                s = ike.session
                if version == 2:
                    _collect_v2(type("W", (), {"i": s, "r": s})(), secrets)  # type: ignore[arg-type]
                else:
                    for sa in s.sas:
                        if sa.keys is not None:
                            secrets.extend(getattr(sa.keys, n) for n in ("skeyid", "skeyid_d", "skeyid_a", "enc_key"))
        finally:
            await server._close()

    try:
        for version in (2, 1):
            loop = VirtualTimeLoop()
            try:
                loop.run_until_complete(run(version))
            finally:
                loop.close()
    finally:
        for lg, lvl in zip(loggers, old):
            lg.removeHandler(handler)
            lg.setLevel(lvl)
    secrets = [s for s in secrets if s and len(s) >= 8]
    assert len(secrets) > 20 and len(handler.lines) > 50
    blob = "\n".join(handler.lines)
    leaks = [s.hex()[:16] for s in secrets if any(f and f in blob for f in _forms(s))]
    assert not leaks, f"{len(leaks)} keys found in the logs"


def _keys_of(ev: Any, secrets: list[bytes]) -> None:
    if isinstance(ev, ChildSaInstalled):
        secrets.extend(k for k in (ev.encr_key_in, ev.encr_key_out, ev.integ_key_in, ev.integ_key_out) if k)
