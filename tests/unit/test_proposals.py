"""Proposal offering and selection (RFC 7296 §2.7, §3.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioipsec.crypto.transforms import ENCR, KE, TransformType, parse_proposal
from aioipsec.errors import NoProposalChosen
from aioipsec.ike import proposals as P
from aioipsec.ike.proposals import ProtocolId, WireProposal, WireTransform


def ike(*texts: str):
    return [parse_proposal(t, "ike") for t in texts]


def esp(*texts: str):
    return [parse_proposal(t, "esp") for t in texts]


def test_to_wire_numbers_transforms_and_key_lengths() -> None:
    wire = P.to_wire(ike("aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"))
    assert [w.number for w in wire] == [1, 2]
    assert all(w.protocol == ProtocolId.IKE and w.spi == b"" for w in wire)
    assert wire[0].transforms == (
        WireTransform(TransformType.ENCR, 20, 128),
        WireTransform(TransformType.PRF, 5),
        WireTransform(TransformType.KE, 31),
    )
    assert wire[1].transforms == (
        WireTransform(TransformType.ENCR, 12, 256),
        WireTransform(TransformType.PRF, 5),
        WireTransform(TransformType.INTEG, 12),
        WireTransform(TransformType.KE, 14),
    )


def test_esp_wire_has_spi_esn_and_can_strip_ke() -> None:
    wire = P.to_wire(esp("aes128gcm16-x25519"), spi=b"\x01\x02\x03\x04")
    assert wire[0].protocol == ProtocolId.ESP and wire[0].spi == b"\x01\x02\x03\x04"
    assert WireTransform(TransformType.KE, 31) in wire[0].transforms
    assert WireTransform(TransformType.ESN, 0) in wire[0].transforms
    stripped = P.to_wire(esp("aes128gcm16-x25519"), spi=b"\x01\x02\x03\x04", strip_ke=True)
    assert not stripped[0].of_type(TransformType.KE)


def test_ke_first_reorders_groups() -> None:
    wire = P.to_wire(ike("aes128-sha256-x25519-modp2048"), ke_first=KE["modp2048"])
    assert [t.id for t in wire[0].of_type(TransformType.KE)] == [14, 31]


def test_select_prefers_configured_order() -> None:
    offered = P.to_wire(ike("aes256-sha256-modp2048", "aes128gcm16-prfsha256-x25519"))
    sel = P.select(offered, ike("aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"))
    assert sel.number == 2
    assert str(sel) == "aes128gcm16-prfsha256-x25519"
    answer = sel.to_wire()
    assert answer.number == 2 and len(answer.transforms) == 3
    # the initiator accepts that answer
    back = P.accept_response(offered, [answer], ike("aes256-sha256-modp2048", "aes128gcm16-prfsha256-x25519"))
    assert back.encr == ENCR["aes128gcm16"] and back.ke == KE["x25519"]


def test_select_within_type_by_configured_preference() -> None:
    offered = P.to_wire(ike("aes128-aes256-sha256-sha1-modp2048-ecp256"))
    sel = P.select(offered, ike("aes256-aes128-sha1-sha256-ecp256-modp2048"))
    assert (sel.encr.name, sel.integ.name, sel.ke.name, sel.prf.name) == ("aes256", "sha1", "ecp256", "prfsha1")


def test_key_length_must_match() -> None:
    offered = P.to_wire(ike("aes128-sha256-modp2048"))
    with pytest.raises(NoProposalChosen):
        P.select(offered, ike("aes256-sha256-modp2048"))


def test_no_proposal_chosen() -> None:
    with pytest.raises(NoProposalChosen):
        P.select(P.to_wire(ike("aes128gcm16-prfsha256-x25519")), ike("aes256-sha256-modp2048"))
    with pytest.raises(NoProposalChosen):  # protocol mismatch
        P.select(P.to_wire(esp("aes128gcm16")), ike("aes128gcm16-prfsha256-x25519"))


def test_unknown_transforms_ignored() -> None:
    offer = WireProposal(
        1,
        ProtocolId.ESP,
        b"abcd",
        (
            WireTransform(TransformType.ENCR, 999),
            WireTransform(TransformType.ENCR, 20, 256),
            WireTransform(TransformType.ESN, 0),
        ),
    )
    sel = P.select([offer], esp("aes256gcm16"))
    assert sel.encr.name == "aes256gcm16" and sel.spi == b"abcd" and not sel.esn_enabled


def test_child_pfs_mismatches() -> None:
    # we want PFS, the peer offers none -> no match
    with pytest.raises(NoProposalChosen):
        P.select(P.to_wire(esp("aes128gcm16")), esp("aes128gcm16-x25519"))
    # peer insists on PFS, we have none configured -> no match
    with pytest.raises(NoProposalChosen):
        P.select(P.to_wire(esp("aes128gcm16-x25519")), esp("aes128gcm16"))
    # in IKE_AUTH the KE transforms are ignored on both sides
    sel = P.select(P.to_wire(esp("aes128gcm16"), strip_ke=True), esp("aes128gcm16-x25519"), strip_ke=True)
    assert sel.ke is None
    # KE "NONE" offered alongside means PFS optional
    offer = WireProposal(1, ProtocolId.ESP, b"abcd", (WireTransform(1, 20, 128), WireTransform(4, 0), WireTransform(4, 31), WireTransform(5, 0)))
    assert P.select([offer], esp("aes128gcm16")).ke is None
    assert P.select([offer], esp("aes128gcm16-x25519")).ke == KE["x25519"]


def test_esn_selection() -> None:
    sel = P.select(P.to_wire(esp("aes128gcm16-esn-noesn")), esp("aes128gcm16-esn"))
    assert sel.esn_enabled
    with pytest.raises(NoProposalChosen):
        P.select(P.to_wire(esp("aes128gcm16-esn")), esp("aes128gcm16-noesn"))


def test_aead_with_integ_none_offered() -> None:
    offer = WireProposal(1, ProtocolId.ESP, b"abcd", (WireTransform(1, 20, 128), WireTransform(3, 0), WireTransform(5, 0)))
    assert P.select([offer], esp("aes128gcm16")).integ is None
    offer2 = WireProposal(1, ProtocolId.ESP, b"abcd", (WireTransform(1, 20, 128), WireTransform(3, 12), WireTransform(5, 0)))
    with pytest.raises(NoProposalChosen):
        P.select([offer2], esp("aes128gcm16"))


@pytest.mark.parametrize(
    "answer",
    [
        [],  # nothing
        [WireProposal(3, 1, b"", ())],  # number we never sent
        # two encryption transforms
        [WireProposal(1, 1, b"", (WireTransform(1, 20, 128), WireTransform(1, 20, 256), WireTransform(2, 5), WireTransform(4, 31)))],
        # an algorithm we did not offer
        [WireProposal(1, 1, b"", (WireTransform(1, 20, 256), WireTransform(2, 5), WireTransform(4, 31)))],
        # missing KE
        [WireProposal(1, 1, b"", (WireTransform(1, 20, 128), WireTransform(2, 5)))],
    ],
)
def test_accept_response_rejects_bad_answers(answer) -> None:
    conf = ike("aes128gcm16-prfsha256-x25519")
    with pytest.raises(NoProposalChosen):
        P.accept_response(P.to_wire(conf), answer, conf)


def test_ke_group_helpers() -> None:
    conf = ike("aes128gcm16-prfsha256-x25519-ecp256", "aes256-sha256-modp2048-x25519")
    assert [k.name for k in P.ke_groups(conf)] == ["x25519", "ecp256", "modp2048"]
    assert P.first_ke(conf) == KE["x25519"]
    assert P.ke_group_acceptable(conf, 14) == KE["modp2048"]
    assert P.ke_group_acceptable(conf, 21) is None


_IKE_CHOICES = [
    "aes128gcm16-prfsha256-x25519",
    "aes256gcm16-prfsha384-ecp384",
    "aes256-sha256-modp2048",
    "aes128-sha1-ecp256",
    "chacha20poly1305-prfsha256-x25519",
]


@settings(max_examples=80, deadline=None)
@given(
    ours=st.lists(st.sampled_from(_IKE_CHOICES), min_size=1, max_size=3, unique=True),
    theirs=st.lists(st.sampled_from(_IKE_CHOICES), min_size=1, max_size=3, unique=True),
)
def test_selection_is_consistent(ours: list[str], theirs: list[str]) -> None:
    """Whatever the responder picks, the initiator accepts; a pick exists iff
    the configurations share a proposal."""
    offered = P.to_wire(ike(*theirs))
    try:
        sel = P.select(offered, ike(*ours))
    except NoProposalChosen:
        assert not set(ours) & set(theirs)
        return
    common = set(ours) & set(theirs)
    assert any(parse_proposal(str(sel), "ike") == parse_proposal(t, "ike") for t in common)
    back = P.accept_response(offered, [sel.to_wire()], ike(*theirs))
    assert str(back) == str(sel)


def test_to_wire_cache_keeps_each_variant_apart() -> None:
    """to_wire caches the transforms per proposal object, strip_ke and
    ke_first: every variant must still come out as built from scratch, in
    any order of calls, also for an equal proposal built anew."""
    props = [parse_proposal("aes128gcm16-prfsha256-x25519-ecp256", "ike"),
             parse_proposal("aes256-sha256-prfsha256-modp3072-x25519", "ike")]
    x25519, ecp256 = KE["x25519"], KE["ecp256"]
    variants = [dict(), dict(strip_ke=True), dict(ke_first=ecp256), dict(ke_first=x25519), dict(spi=b"\x01\x02\x03\x04")]
    fresh = {i: [WireProposal(n, ProtocolId.IKE, kw.get("spi", b""),
                              P._transforms(p, kw.get("strip_ke", False), kw.get("ke_first")))
                 for n, p in enumerate(props, start=1)] for i, kw in enumerate(variants)}
    for _round in range(2):
        for i, kw in reversed(list(enumerate(variants))):
            assert P.to_wire(props, **kw) == fresh[i]
    first = P.to_wire(props, ke_first=ecp256)[0]
    assert [t.id for t in first.of_type(TransformType.KE)] == [int(ecp256.id), int(x25519.id)]
    assert P.to_wire(props, strip_ke=True)[0].of_type(TransformType.KE) == []
    again = [parse_proposal(p.text, "ike") for p in props]  # equal, other objects
    assert again == props and again[0] is not props[0]
    assert P.to_wire(again, ke_first=x25519) == fresh[3]


def test_algorithms_hash_by_name_consistently_with_equality() -> None:
    a = ENCR["aes128gcm16"]
    b = parse_proposal("aes128gcm16-prfsha256-x25519", "ike").encr[0]
    assert a == b and hash(a) == hash(b) == hash("aes128gcm16")
    assert {a: 1}[b] == 1


def test_match_and_answer_caches_agree_with_fresh_results() -> None:
    """_match caches its outcome per (proposal, offered transforms) and
    Selected.to_wire its transforms per algorithm set, by identity with the
    objects kept: results equal those computed with the caches emptied, also
    for proposals built and dropped one after another (their ids would be
    reused if the caches did not hold them)."""
    texts = ["aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-ecp384", "aes128-sha256-prfsha256-modp2048",
             "chacha20poly1305-prfsha256-x25519", "aes256-sha384-prfsha384-ecp256"]
    offers = [P.to_wire(ike(t)) for t in texts]
    for _round in range(3):
        for ours in texts:
            for offer in offers:
                prop = parse_proposal(ours, "ike")  # a new object each time
                got = P._match(prop, offer[0], strip_ke=False)
                answer = got.to_wire() if got is not None else None
                P._MATCHED.clear()
                P._ANSWERS.clear()
                fresh = P._match(prop, offer[0], strip_ke=False)
                assert got == fresh
                assert answer == (fresh.to_wire() if fresh is not None else None)
                assert (got is not None) == (str(offer[0].transforms) == str(P.to_wire(ike(ours))[0].transforms))
    # spi and number come from the offer, not from the cached entry
    sel = P.select([WireProposal(2, ProtocolId.ESP, b"\x00\x00\x00\x07", offers[0][0].transforms)],
                   [parse_proposal("aes128gcm16-x25519", "esp")], strip_ke=True)
    again = P.select([WireProposal(3, ProtocolId.ESP, b"\x00\x00\x00\x09", offers[0][0].transforms)],
                     [parse_proposal("aes128gcm16-x25519", "esp")], strip_ke=True)
    assert (sel.number, sel.spi, again.number, again.spi) == (2, b"\x00\x00\x00\x07", 3, b"\x00\x00\x00\x09")
    assert sel.to_wire(spi=b"\x00\x00\x00\x01").spi == b"\x00\x00\x00\x01"
    assert again.to_wire(number=5).number == 5
