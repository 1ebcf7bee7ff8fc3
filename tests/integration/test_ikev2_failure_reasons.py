"""A responder's negotiation failures say what did not match: the proposals received
and configured, the traffic selectors received (what an operator needs to fix either
end; the interop tests check the same lines against strongSwan)."""

from __future__ import annotations

from ikev2_pair import Pair, psk_pair_configs

from aioipsec.crypto.transforms import parse_proposal
from aioipsec.events import NegotiationFailed
from aioipsec.ike.proposals import describe_offers, to_wire


def test_describe_offers_strongswan_syntax() -> None:
    offers = to_wire([parse_proposal("aes256-sha256-modp2048", "ike"),
                      parse_proposal("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256", "ike")])
    assert describe_offers(offers) == ("aes256-sha256-prfsha256-modp2048, "
                                       "aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256")
    esp = to_wire([parse_proposal("chacha20poly1305", "esp"), parse_proposal("aes128-sha256-esn", "esp")])
    assert describe_offers(esp) == "chacha20poly1305, aes128-sha256-esn"
    assert describe_offers([]) == "nothing"


def test_ike_proposal_mismatch_reason() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_proposals=["aes256-sha256-modp2048"],
                                    r_proposals=["aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-ecp384"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.to_r(p.out_i())
    [nf] = p.events("r", NegotiationFailed)
    assert nf.reason == ("no acceptable IKE proposal: received aes256-sha256-prfsha256-modp2048; "
                         "configured aes128gcm16-prfsha256-x25519, aes256gcm16-prfsha384-ecp384")


def test_esp_proposal_mismatch_reason() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_esp=["aes256gcm16", "chacha20poly1305"], r_esp=["aes128-sha256"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [nf] = p.events("r", NegotiationFailed)
    assert (nf.exchange, nf.notify) == ("IKE_AUTH", "NO_PROPOSAL_CHOSEN")
    assert nf.reason == ("no acceptable ESP/AH proposal for lan: received aes256gcm16, chacha20poly1305; "
                         "configured aes128-sha256")


def test_ts_unacceptable_reason() -> None:
    i_cfg, r_cfg = psk_pair_configs(i_remote_ts=["10.99.0.0/16"])
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    p.roundtrip()
    p.roundtrip()
    [nf] = p.events("r", NegotiationFailed)
    assert nf.notify == "TS_UNACCEPTABLE"
    # local === remote from the responder's side, as charon logs it; no child name
    # (none was chosen)
    assert nf.reason == "no child configuration matches the traffic selectors 10.99.0.0/16 === 198.51.100.0/24"
