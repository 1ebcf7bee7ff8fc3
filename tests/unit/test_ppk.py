"""RFC 8784 Postquantum Preshared Keys: the key mixing against prf+ written
out here with cryptography's HMAC, the PPK_IDENTITY encoding, and the
loader's swanctl names (``ppk_id``, ``ppk_required``, ``[secrets.ppk*]``)."""

from __future__ import annotations

import logging
import os
import textwrap

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from aioipsec.config_file import loads_config
from aioipsec.crypto.kdf import IkeV2Keys, ikev2_ppk_keys
from aioipsec.crypto.transforms import PRF, PrfAlg
from aioipsec.errors import ConfigError
from aioipsec.ike.constants import NotifyType
from aioipsec.ike.v2.tasks.ppk import (
    encode_ppk_id,
    find_ppk,
    ppk_id_data,
    ppk_id_matches,
    ppk_id_text,
)

# --------------------------------------------------------------------------- key mixing


def _prf_plus(algorithm: hashes.HashAlgorithm, key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 §2.13 by hand: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)."""
    out, t, n = b"", b"", 1
    while len(out) < length:
        h = hmac.HMAC(key, algorithm)
        h.update(t + seed + bytes((n,)))
        t = h.finalize()
        out += t
        n += 1
    return out[:length]


@pytest.mark.parametrize(("alg", "algorithm"), [
    (PRF["prfsha256"], hashes.SHA256()),
    (PRF["prfsha384"], hashes.SHA384()),
    (PRF["prfsha512"], hashes.SHA512()),
])
def test_ppk_mixing_matches_hmac_prf_plus(alg: PrfAlg, algorithm: hashes.HashAlgorithm) -> None:
    p = alg.key_len
    keys = IkeV2Keys(os.urandom(p), os.urandom(32), os.urandom(32), os.urandom(36), os.urandom(36),
                     os.urandom(p), os.urandom(p))
    ppk = os.urandom(40)
    mixed = ikev2_ppk_keys(alg, ppk, keys)
    assert mixed.sk_d == _prf_plus(algorithm, ppk, keys.sk_d, p)
    assert mixed.sk_pi == _prf_plus(algorithm, ppk, keys.sk_pi, p)
    assert mixed.sk_pr == _prf_plus(algorithm, ppk, keys.sk_pr, p)
    assert len(mixed.sk_d) == len(mixed.sk_pi) == len(mixed.sk_pr) == p
    assert (mixed.sk_ai, mixed.sk_ar, mixed.sk_ei, mixed.sk_er) == (keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er)
    assert mixed.sk_d != keys.sk_d and mixed.sk_pi != keys.sk_pi
    assert ikev2_ppk_keys(alg, os.urandom(40), keys).sk_d != mixed.sk_d  # the PPK matters


def test_ppk_mixing_fixed_values() -> None:
    """Fixed inputs: SK_d is one HMAC-SHA256 block, prf(PPK, SK_d' | 0x01)."""
    keys = IkeV2Keys(b"\x01" * 32, b"", b"", b"\x00" * 16, b"\x00" * 16, b"\x02" * 32, b"\x03" * 32)
    mixed = ikev2_ppk_keys(PRF["prfsha256"], b"k" * 32, keys)
    h = hmac.HMAC(b"k" * 32, hashes.SHA256())
    h.update(b"\x01" * 32 + b"\x01")
    assert mixed.sk_d == h.finalize()


def test_notify_types() -> None:
    assert (NotifyType.USE_PPK, NotifyType.PPK_IDENTITY, NotifyType.NO_PPK_AUTH) == (16435, 16436, 16437)


def test_ppk_identity_encoding() -> None:
    assert encode_ppk_id("ppk-hq") == b"\x02ppk-hq"  # PPK_ID_FIXED
    assert ppk_id_data(b"\x02ppk-hq") == b"ppk-hq"
    assert ppk_id_data(b"\x01opaque") is None  # PPK_ID_OPAQUE: not supported (as charon)
    assert ppk_id_data(b"\x02") is None and ppk_id_data(b"") is None
    assert ppk_id_data(b"\x02\xff\xfe") == b"\xff\xfe"  # matched by its octets, not as UTF-8


# the DN C=CH, O=strongSwan, CN=ppk in DER, written out: SEQUENCE of SETs of (OID, string)
def _rdn(oid: bytes, tag: int, value: bytes) -> bytes:
    atv = b"\x06" + bytes((len(oid),)) + oid + bytes((tag, len(value))) + value
    seq = b"\x30" + bytes((len(atv),)) + atv
    return b"\x31" + bytes((len(seq),)) + seq


def _dn(*rdns: bytes) -> bytes:
    body = b"".join(rdns)
    return b"\x30" + bytes((len(body),)) + body


C, O, CN = b"\x55\x04\x06", b"\x55\x04\x0a", b"\x55\x04\x03"  # 2.5.4.6 / .10 / .3
PRINTABLE, UTF8 = 0x13, 0x0C
DN_UTF8 = _dn(_rdn(C, PRINTABLE, b"CH"), _rdn(O, UTF8, b"strongSwan"), _rdn(CN, UTF8, b"ppk"))
DN_PRINTABLE = _dn(_rdn(C, PRINTABLE, b"CH"), _rdn(O, PRINTABLE, b"strongSwan"), _rdn(CN, PRINTABLE, b"ppk"))


@pytest.mark.parametrize(("ppk_id", "wire"), [
    ("ppk-hq", b"ppk-hq"),  # a plain string / FQDN: its bytes, as before
    ("site-a.example", b"site-a.example"),
    ("alice@example.org", b"alice@example.org"),  # RFC822: its bytes
    ("192.0.2.7", bytes((192, 0, 2, 7))),  # IPv4: the 4 octets
    ("2001:db8::7", bytes.fromhex("20010db8000000000000000000000007")),  # IPv6: the 16 octets
    ("C=CH, O=strongSwan, CN=ppk", DN_UTF8),  # a DN: its DER (C PrintableString, the rest UTF8String)
    ("@#c0ffee", bytes.fromhex("c0ffee")),  # KEY_ID in hex
])
def test_ppk_identity_encoding_as_charon(ppk_id: str, wire: bytes) -> None:
    """PPK_IDENTITY carries PPK_ID_FIXED and the encoding of the identity the
    configured string denotes, as charon's identification_create_from_string
    + get_encoding; a received PPK_ID with that encoding matches the string."""
    assert encode_ppk_id(ppk_id) == b"\x02" + wire
    assert ppk_id_matches(ppk_id, wire)
    assert find_ppk({"other": b"x", ppk_id: b"k"}, wire) == (ppk_id, b"k")


def test_ppk_id_matching_by_encoding() -> None:
    # the same identity spelled otherwise: the same encoding
    assert ppk_id_matches("2001:0db8:0:0::7", bytes.fromhex("20010db8000000000000000000000007"))
    assert ppk_id_matches("C=CH,O=strongSwan,CN=ppk", DN_UTF8)
    assert ppk_id_matches("@ppk-hq", b"ppk-hq")  # charon: "@fqdn" is the FQDN fqdn
    # a DN as charon may encode it (PrintableString throughout): the same attributes match
    assert DN_PRINTABLE != DN_UTF8 and ppk_id_matches("C=CH, O=strongSwan, CN=ppk", DN_PRINTABLE)
    # not: an IP address as text, another DN, the DN text, another string, case of a plain string
    assert not ppk_id_matches("192.0.2.7", b"192.0.2.7")
    assert not ppk_id_matches("C=CH, O=strongSwan, CN=other", DN_PRINTABLE)
    assert not ppk_id_matches("C=CH, O=strongSwan, CN=ppk", b"C=CH, O=strongSwan, CN=ppk")
    assert not ppk_id_matches("ppk-hq", b"ppk-hq2") and not ppk_id_matches("ppk-hq", b"PPK-HQ")
    assert not ppk_id_matches("ppk-hq", bytes(6))
    assert find_ppk({"ppk-hq": b"k"}, b"\x30\x03\x31\x01") is None  # malformed DER: no match, no error
    # a string that is no valid identity stands for its bytes (charon: a KEY_ID)
    assert encode_ppk_id("x=y") == b"\x02x=y" and encode_ppk_id("@#zz") == b"\x02@#zz"


def test_ppk_id_text_for_logs() -> None:
    assert ppk_id_text(b"ppk-hq") == "ppk-hq"
    assert ppk_id_text(DN_PRINTABLE) == "C=CH, O=strongSwan, CN=ppk"
    assert ppk_id_text(bytes((192, 0, 2, 7))) == "@#c0000207"


# --------------------------------------------------------------------------- loader

PPK_HEX = "0x" + "5a" * 32

CONF = textwrap.dedent("""
    [connections.hq]
    {version}
    remote_addrs = ["192.0.2.2"]
    local = {{ auth = "{auth}", id = "site-a.example"{eap} }}
    remote = {{ auth = "psk", id = "hq.example" }}
    {ppk}

    [secrets.ike-hq]
    id = ["site-a.example", "hq.example"]
    secret = "psk-secret"

    [secrets.eap-alice]
    id = "site-a.example"
    secret = "pw"
    {secrets}
""")
PPK_SECRET = textwrap.dedent(f"""
    [secrets.ppk-hq]
    id = ["ppk-hq", "ppk-hq-2"]
    secret = "{PPK_HEX}"
""")


def load(ppk: str = 'ppk_id = "ppk-hq"', secrets: str = PPK_SECRET, *, version: str = "", auth: str = "psk"):
    return loads_config(CONF.format(ppk=ppk, secrets=secrets, version=version, auth=auth, eap=""))


def test_loader_ppk_settings() -> None:
    c = load('ppk_id = "ppk-hq"\nppk_required = true').connections["hq"]
    assert c.ppk_id == "ppk-hq" and c.ppk_required
    assert c.ppks == {"ppk-hq": b"\x5a" * 32, "ppk-hq-2": b"\x5a" * 32}
    assert c.psk == b"psk-secret"  # a ppk secret is no PSK candidate
    assert "5a5a" not in repr(c) and "ZZZZ" not in repr(c)
    plain = load("", secrets="").connections["hq"]
    assert plain.ppk_id is None and not plain.ppk_required and plain.ppks == {}


def test_loader_ppk_id_matches_a_secret_id_by_encoding() -> None:
    """ppk_id and the secret's id name the same PPK_ID if they encode alike
    (as charon looks the PPK up by the identity)."""
    secrets = PPK_SECRET.replace('["ppk-hq", "ppk-hq-2"]', '["2001:db8::7", "C=CH, O=strongSwan, CN=ppk"]')
    c = load('ppk_id = "2001:0db8::0:7"', secrets).connections["hq"]
    assert c.ppk_id == "2001:0db8::0:7"
    assert load('ppk_id = "C=CH,O=strongSwan,CN=ppk"', secrets).connections["hq"].ppk_id == "C=CH,O=strongSwan,CN=ppk"
    assert load('ppk_id = "@ppk-hq"').connections["hq"].ppk_id == "@ppk-hq"
    with pytest.raises(ConfigError, match="no \\[secrets.ppk\\*\\] entry"):
        load('ppk_id = "2001:db8::8"', secrets)


def test_loader_gateway_required_without_ppk_id() -> None:
    c = load("ppk_required = true").connections["hq"]
    assert c.ppk_id is None and c.ppk_required and "ppk-hq" in c.ppks


@pytest.mark.parametrize(("ppk", "secrets", "kw", "path", "reason"), [
    ('ppk_id = "nope"', PPK_SECRET, {}, "connections.hq.ppk_id", 'no [secrets.ppk*] entry with id = "nope"'),
    ('ppk_id = ""', PPK_SECRET, {}, "connections.hq.ppk_id", "must not be empty"),
    ("ppk_id = 3", PPK_SECRET, {}, "connections.hq.ppk_id", "expected a string"),
    ('ppk_required = "yes"', PPK_SECRET, {}, "connections.hq.ppk_required", "expected true or false"),
    ("ppk_required = true", "", {}, "connections.hq.ppk_required", "no [secrets.ppk*] entry"),
    ('ppk_id = "ppk-hq"', PPK_SECRET, {"version": "version = 1"}, "connections.hq.ppk_id", "IKEv2 only"),
    ('ppk_id = "ppk-hq"', '[secrets.ppk-x]\nsecret = "x"', {}, "secrets.ppk-x.id", "needs an id"),
])
def test_loader_bad_values(ppk: str, secrets: str, kw: dict, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(ppk, secrets, **kw)
    assert info.value.path == path
    assert reason in info.value.reason


@pytest.mark.parametrize("ppk", ['ppk_id = "ppk-hq"', 'ppk_id = "ppk-hq"\nppk_required = true', ""])
def test_loader_second_round_connections_take_ppks(ppk: str) -> None:
    """PPKs with a second round (the PPK goes in at the first round's
    AUTH): a local-2 connection with a ppk_id loads and holds every
    [secrets.ppk*] (a gateway announces USE_PPK for it)."""
    assert load("").connections["hq"].ppks  # psk: every [secrets.ppk*] is a candidate
    r2 = load(ppk + '\nlocal-2 = { auth = "eap-gtc", id = "site-a.example" }').connections["hq"]
    assert r2.local2 is not None
    assert r2.ppks == {"ppk-hq": b"\x5a" * 32, "ppk-hq-2": b"\x5a" * 32}
    assert r2.ppk_id == ("ppk-hq" if ppk else None) and r2.ppk_required == ("required" in ppk)


@pytest.mark.parametrize("ppk", ['ppk_id = "ppk-hq"', 'ppk_id = "ppk-hq"\nppk_required = true', ""])
def test_loader_eap_connections_take_ppks(ppk: str) -> None:
    """PPKs with EAP (the PPK goes in at the AUTH after EAP): an EAP client
    with a ppk_id loads, and an EAP connection has every [secrets.ppk*]
    (a gateway announces USE_PPK for it)."""
    c = load(ppk, auth="eap-gtc").connections["hq"]
    assert c.local.auth == "eap-gtc"
    assert c.ppks == {"ppk-hq": b"\x5a" * 32, "ppk-hq-2": b"\x5a" * 32}
    assert c.ppk_id == ("ppk-hq" if ppk else None) and c.ppk_required == ("required" in ppk)


def test_loader_warns_on_a_short_ppk_without_logging_it(caplog: pytest.LogCaptureFixture) -> None:
    short = '[secrets.ppk-hq]\nid = "ppk-hq"\nsecret = "tooshort-secret-1234"'
    with caplog.at_level(logging.WARNING, logger="aioipsec.cfg"):
        c = load('ppk_id = "ppk-hq"', short).connections["hq"]
    assert c.ppks == {"ppk-hq": b"tooshort-secret-1234"}
    [rec] = [r for r in caplog.records if "ppk-hq" in r.getMessage()]
    assert "secrets.ppk-hq.secret" in rec.getMessage() and "256 bits" in rec.getMessage()
    assert "tooshort" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aioipsec.cfg"):
        load()
    assert "RFC 8784" not in caplog.text  # 32 bytes: no warning
