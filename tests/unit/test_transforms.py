"""Transform registry: IANA IDs, names, metadata, legacy gating, proposal parsing."""

from __future__ import annotations

import logging

import pytest

from aioipsec.crypto import transforms as T
from aioipsec.crypto.transforms import TransformType as TT
from aioipsec.crypto.transforms import by_id, lookup, parse_proposal
from aioipsec.errors import AlgorithmError, ConfigError

# --------------------------------------------------------------------------- IANA IDs (RFC 7296 §3.3.2 and the IANA registry)


def test_iana_transform_ids() -> None:
    assert [int(t) for t in TT] == [1, 2, 3, 4, 5]
    assert T.EncrId.AES_CBC == 12 and T.EncrId.AES_CTR == 13 and T.EncrId.AES_GCM_16 == 20
    assert T.EncrId.AES_CCM_8 == 14 and T.EncrId.NULL_AUTH_AES_GMAC == 21 and T.EncrId.CHACHA20_POLY1305 == 28
    assert T.PrfId.HMAC_SHA1 == 2 and T.PrfId.AES128_XCBC == 4 and T.PrfId.HMAC_SHA2_512 == 7
    assert T.IntegId.HMAC_SHA1_96 == 2 and T.IntegId.AES_XCBC_96 == 5 and T.IntegId.HMAC_SHA2_256_128 == 12
    assert T.KeId.MODP_2048 == 14 and T.KeId.ECP_256 == 19 and T.KeId.CURVE25519 == 31 and T.KeId.CURVE448 == 32
    assert (T.KeId.ML_KEM_512, T.KeId.ML_KEM_768, T.KeId.ML_KEM_1024) == (35, 36, 37)


# --------------------------------------------------------------------------- metadata

ENCR_META = [
    # name, key_len (incl. salt), salt, iv, block, icv, aead
    ("aes128", 16, 0, 16, 16, 0, False),
    ("aes256", 32, 0, 16, 16, 0, False),
    ("aes128ctr", 20, 4, 8, 4, 0, False),
    ("aes128gcm16", 20, 4, 8, 4, 16, True),
    ("aes256gcm8", 36, 4, 8, 4, 8, True),
    ("aes192ccm12", 27, 3, 8, 4, 12, True),
    ("aes256gmac", 36, 4, 8, 4, 16, True),
    ("chacha20poly1305", 36, 4, 8, 4, 16, True),
    ("3des", 24, 0, 8, 8, 0, False),
]


@pytest.mark.parametrize("name,key_len,salt,iv,block,icv,aead", ENCR_META)
def test_encr_metadata(name: str, key_len: int, salt: int, iv: int, block: int, icv: int, aead: bool) -> None:
    a = T.ENCR[name]
    assert (a.key_len, a.salt_len, a.iv_len, a.block_size, a.icv_len, a.aead) == (key_len, salt, iv, block, icv, aead)
    if a.has_key_length_attr:
        assert a.key_bits // 8 == key_len - salt


@pytest.mark.parametrize(
    "name,key_len,icv",
    [("sha1", 20, 12), ("aesxcbc", 16, 12), ("aescmac", 16, 12), ("sha256", 32, 16), ("sha384", 48, 24),
     ("sha512", 64, 32), ("md5", 16, 12)],
)
def test_integ_metadata(name: str, key_len: int, icv: int) -> None:
    a = T.INTEG[name]
    assert (a.key_len, a.icv_len) == (key_len, icv)


def test_prf_and_ke_metadata() -> None:
    assert [(p.name, p.key_len, p.out_len) for p in T.PRF.values()] == [
        ("prfmd5", 16, 16), ("prfsha1", 20, 20), ("prfaesxcbc", 16, 16), ("prfaescmac", 16, 16),
        ("prfsha256", 32, 32), ("prfsha384", 48, 48), ("prfsha512", 64, 64),
    ]
    lens = {k.name: k.public_len for k in T.KE.values()}
    assert lens["modp2048"] == 256 and lens["modp8192"] == 1024 and lens["ecp521"] == 132
    assert lens["x25519"] == 32 and lens["x448"] == 56 and lens["mlkem768"] == 1184 and lens["mlkem1024"] == 1568


def test_names_are_unique_across_types() -> None:
    seen: set[str] = set()
    for table in (T.ENCR, T.INTEG, T.PRF, T.KE, T.ESN):
        assert not (seen & table.keys())
        seen |= table.keys()


# --------------------------------------------------------------------------- lookups


@pytest.mark.parametrize(
    "ttype,name,canonical",
    [
        (TT.ENCR, "aes", "aes128"),
        (TT.ENCR, "AES256CBC", "aes256"),
        (TT.ENCR, "aes128gcm128", "aes128gcm16"),
        (TT.ENCR, "aes256gcm96", "aes256gcm12"),
        (TT.ENCR, "aes128gcm", "aes128gcm16"),
        (TT.INTEG, "sha", "sha1"),
        (TT.INTEG, "sha2_256", "sha256"),
        (TT.PRF, "PRFSHA384", "prfsha384"),
        (TT.KE, "curve25519", "x25519"),
        (TT.KE, "curve448", "x448"),
        (TT.ESN, "esn", "esn"),
    ],
)
def test_lookup_names_and_aliases(ttype: TT, name: str, canonical: str) -> None:
    assert lookup(ttype, name).name == canonical


@pytest.mark.parametrize("ttype,name", [(TT.ENCR, "aes512"), (TT.INTEG, "aes"), (TT.PRF, "sha256"), (TT.KE, "modp999")])
def test_lookup_unknown(ttype: TT, name: str) -> None:
    with pytest.raises(AlgorithmError, match="unknown"):
        lookup(ttype, name)


def test_typed_helpers() -> None:
    assert T.encr("aes128gcm16").id == T.EncrId.AES_GCM_16
    assert T.integ("sha256").id == T.IntegId.HMAC_SHA2_256_128
    assert T.prf("prfsha256").id == T.PrfId.HMAC_SHA2_256
    assert T.ke("ecp384").id == T.KeId.ECP_384


def test_by_id() -> None:
    assert by_id(TT.ENCR, 12, 256) is T.ENCR["aes256"]
    assert by_id(TT.ENCR, 20, 128) is T.ENCR["aes128gcm16"]
    assert by_id(TT.ENCR, 12, None) is None  # AES needs its key length attribute
    assert by_id(TT.ENCR, 12, 64) is None
    assert by_id(TT.ENCR, 28) is T.ENCR["chacha20poly1305"]
    assert by_id(TT.PRF, 4) is T.PRF["prfaesxcbc"]
    assert by_id(TT.INTEG, 14) is T.INTEG["sha512"]
    assert by_id(TT.KE, 31) is T.KE["x25519"]
    assert by_id(TT.ESN, 1) is T.ESN["esn"]
    assert by_id(TT.KE, 25) is None and by_id(TT.ENCR, 9999, 128) is None
    # peers may offer legacy transforms; a caller can ask to hide them
    assert by_id(TT.KE, 2) is T.KE["modp1024"]
    assert by_id(TT.KE, 2, allow_legacy=False) is None


@pytest.mark.parametrize("alg", [pytest.param(a, id=a.name) for t in (T.ENCR, T.INTEG, T.PRF, T.KE) for a in t.values()])
def test_by_id_round_trips(alg: T.Alg) -> None:
    ttype = {T.EncrAlg: TT.ENCR, T.IntegAlg: TT.INTEG, T.PrfAlg: TT.PRF, T.KeAlg: TT.KE}[type(alg)]
    bits = alg.key_bits if isinstance(alg, T.EncrAlg) and alg.has_key_length_attr else None
    found = by_id(ttype, int(alg.id), bits)
    assert found is not None and found.id == alg.id
    if isinstance(alg, T.EncrAlg) and alg.has_key_length_attr:
        assert found.key_bits == alg.key_bits  # type: ignore[union-attr]


def test_prf_for_integ() -> None:
    assert T.prf_for_integ(T.INTEG["sha256"]) is T.PRF["prfsha256"]
    assert T.prf_for_integ(T.INTEG["aesxcbc"]) is T.PRF["prfaesxcbc"]
    assert T.prf_for_integ(T.INTEG["sha1"]) is T.PRF["prfsha1"]
    assert T.prf_for_integ(T.INTEG["aescmac"]) is T.PRF["prfaescmac"]


# --------------------------------------------------------------------------- legacy gating

LEGACY = ["des", "3des", "null", "md5", "prfmd5", "modp768", "modp1024"]


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_refused_without_opt_in(name: str) -> None:
    ttype = next(t for t, table in ((TT.ENCR, T.ENCR), (TT.INTEG, T.INTEG), (TT.PRF, T.PRF), (TT.KE, T.KE)) if name in table)
    with pytest.raises(AlgorithmError) as info:
        lookup(ttype, name)
    assert name in str(info.value) and "RFC" in str(info.value) and "legacy" in str(info.value)
    assert isinstance(info.value, ConfigError)
    assert lookup(ttype, name, allow_legacy=True).name == name


def test_legacy_opt_in_logs_a_warning_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(T, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="aioipsec.cfg"):
        T.ke("modp1024", allow_legacy=True)
        T.ke("modp1024", allow_legacy=True)
    msgs = [r.getMessage() for r in caplog.records if "modp1024" in r.getMessage()]
    assert len(msgs) == 1 and "legacy" in msgs[0]


@pytest.mark.parametrize(
    "text,protocol",
    [("3des-sha1-modp2048", "ike"), ("aes128-md5-modp2048", "ike"), ("aes128-sha256-modp1024", "ike"),
     ("aes128-sha256-prfmd5-modp2048", "ike"), ("des-sha256", "esp"), ("aes128-sha256-modp768", "esp"), ("md5", "ah")],
)
def test_proposal_refuses_legacy(text: str, protocol: str) -> None:
    with pytest.raises(AlgorithmError, match="refused"):
        parse_proposal(text, protocol)
    assert parse_proposal(text, protocol, allow_legacy=True).protocol == protocol


def test_non_legacy_algorithms_are_not_flagged() -> None:
    flagged = {a.name for t in (T.ENCR, T.INTEG, T.PRF, T.KE) for a in t.values() if a.legacy}
    assert flagged == set(LEGACY)


# --------------------------------------------------------------------------- proposal parsing


def test_ike_proposal_with_integrity_derives_prf() -> None:
    p = parse_proposal("aes256-sha256-modp2048")
    assert p.encr == (T.ENCR["aes256"],) and p.integ == (T.INTEG["sha256"],)
    assert p.prf == (T.PRF["prfsha256"],) and p.ke == (T.KE["modp2048"],) and p.esn == ()
    assert not p.aead
    assert str(p) == "aes256-sha256-modp2048"


def test_aes_cmac_and_brainpool_ids() -> None:
    """IANA: integrity 8 = AUTH_AES_CMAC_96 (RFC 4494), PRF 8 =
    PRF_AES128_CMAC (RFC 4615), groups 28-30 = brainpoolP256r1/384r1/512r1
    (RFC 6954); group 27 (brainpoolP224r1) is deliberately not offered."""
    assert by_id(TT.INTEG, 8) is T.INTEG["aescmac"]
    assert by_id(TT.PRF, 8) is T.PRF["prfaescmac"]
    assert [by_id(TT.KE, g).name for g in (28, 29, 30)] == ["ecp256bp", "ecp384bp", "ecp512bp"]  # type: ignore[union-attr]
    assert [T.KE[n].public_len for n in ("ecp256bp", "ecp384bp", "ecp512bp")] == [64, 96, 128]
    assert by_id(TT.KE, 27) is None
    with pytest.raises(AlgorithmError, match="unknown KE algorithm 'ecp224bp'"):
        T.ke("ecp224bp")


def test_aes_cmac_and_brainpool_proposals() -> None:
    p = parse_proposal("aes128-aescmac-prfaescmac-ecp256bp")
    assert p.integ == (T.INTEG["aescmac"],) and p.prf == (T.PRF["prfaescmac"],) and p.ke == (T.KE["ecp256bp"],)
    # like strongSwan, an IKE proposal without a PRF takes the one of its integrity algorithm
    p = parse_proposal("aes256-aescmac-ecp384bp-ecp512bp")
    assert p.prf == (T.PRF["prfaescmac"],) and [k.name for k in p.ke] == ["ecp384bp", "ecp512bp"]
    p = parse_proposal("aes128gcm16-prfaescmac-ecp512bp")
    assert p.aead and p.prf == (T.PRF["prfaescmac"],)
    p = parse_proposal("aes128-aescmac-ecp256bp", "esp")
    assert p.integ == (T.INTEG["aescmac"],) and p.ke == (T.KE["ecp256bp"],)
    assert parse_proposal("aescmac", "ah").integ == (T.INTEG["aescmac"],)
    with pytest.raises(AlgorithmError, match="PRF is an IKE transform"):
        parse_proposal("aes128-aescmac-prfaescmac", "esp")
    with pytest.raises(AlgorithmError, match="unknown algorithm 'ecp224bp'"):
        parse_proposal("aes128-aescmac-ecp224bp")


def test_ike_aead_proposal() -> None:
    p = parse_proposal("AES128GCM16-PRFSHA256-X25519-ECP256")
    assert p.aead and p.integ == () and p.prf == (T.PRF["prfsha256"],)
    assert [k.name for k in p.ke] == ["x25519", "ecp256"]  # order of preference kept


def test_proposal_wire_order() -> None:
    p = parse_proposal("x25519-sha256-prfsha384-aes128-aes256", "ike")
    assert [tt for tt, _ in p.transforms()] == [TT.ENCR, TT.ENCR, TT.PRF, TT.INTEG, TT.KE]
    assert [a.name for _, a in p.transforms()] == ["aes128", "aes256", "prfsha384", "sha256", "x25519"]


def test_esp_proposals() -> None:
    p = parse_proposal("aes128gcm16", "esp")
    assert p.esn == (T.ESN["noesn"],) and p.ke == () and p.aead
    p = parse_proposal("aes128-sha256-x25519-esn-noesn", "esp")
    assert [e.name for e in p.esn] == ["esn", "noesn"] and p.ke == (T.KE["x25519"],)
    p = parse_proposal("aes256gmac-esn", "esp")
    assert p.encr[0].id == T.EncrId.NULL_AUTH_AES_GMAC


def test_ah_proposals() -> None:
    p = parse_proposal("sha256-esn", "ah")
    assert p.encr == () and p.integ == (T.INTEG["sha256"],) and p.esn == (T.ESN["esn"],)
    assert parse_proposal("sha512", "ah").esn == (T.ESN["noesn"],)


@pytest.mark.parametrize(
    "text,protocol,match",
    [
        ("", "ike", "empty"),
        ("---", "esp", "empty"),
        ("aes128-sha256-modp2048-foo", "ike", "unknown algorithm 'foo'"),
        ("aes128gcm16-sha256-x25519", "ike", "AEAD ciphers take no integrity"),
        ("aes128-aes128gcm16-sha256-x25519", "ike", "cannot be mixed"),
        ("aes128-x25519", "ike", "needs an integrity"),
        ("aes128gcm16-x25519", "ike", "needs a PRF"),
        ("aes128-sha256", "ike", "needs a key exchange"),
        ("sha256-x25519", "ike", "no encryption"),
        ("aes128gcm16-prfsha256-x25519-esn", "ike", "Child SA transform"),
        ("aes128gmac-prfsha256-x25519", "ike", "not allowed for IKE"),
        ("aes128gcm16-prfsha256", "esp", "PRF is an IKE transform"),
        ("aes128-sha256", "ah", "AH has no encryption"),
        ("x25519", "ah", "AH needs an integrity"),
        ("aes128-sha256", "gre", "unknown protocol"),
    ],
)
def test_proposal_errors(text: str, protocol: str, match: str) -> None:
    with pytest.raises(AlgorithmError, match=match):
        parse_proposal(text, protocol)


def test_null_encryption_never_allowed_for_ike() -> None:
    with pytest.raises(AlgorithmError, match="not allowed for IKE"):
        parse_proposal("null-sha256-modp2048", "ike", allow_legacy=True)
    assert parse_proposal("null-sha256", "esp", allow_legacy=True).encr == (T.ENCR["null"],)


def test_error_names_the_token() -> None:
    with pytest.raises(AlgorithmError) as info:
        parse_proposal("aes128-sha256-mdop2048")
    assert "mdop2048" in str(info.value) and "aes128-sha256-mdop2048" in str(info.value)
