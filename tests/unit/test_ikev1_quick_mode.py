"""Quick Mode pieces: ID payloads <-> traffic selectors, ESP/AH transforms
<-> configured proposals, PFS group choice, lifetimes."""

from __future__ import annotations

import pytest

from aioipsec.config import child
from aioipsec.crypto.transforms import KE, parse_proposal
from aioipsec.ike.v1.constants import EncapMode, IdType, Phase2Attr, ProtocolId
from aioipsec.ike.v1.errors import InvalidIdInformation
from aioipsec.ike.v1.payloads import Attribute, IdPayload, Transform
from aioipsec.ike.v1.tasks.quick_mode import (
    DEFAULT_LIFETIME,
    _life_attrs,
    _parse_life_attrs,
    configured_suites,
    decode_mode,
    encap_mode,
    id_to_ts,
    suite_from_transform,
    ts_to_id,
)
from aioipsec.selectors import parse_ts


@pytest.mark.parametrize(
    "text, id_type, data_hex, proto, port",
    [
        ("10.1.0.0/16", IdType.IPV4_ADDR_SUBNET, "0a010000ffff0000", 0, 0),
        ("192.0.2.7", IdType.IPV4_ADDR, "c0000207", 0, 0),
        ("10.0.0.0/8[udp/500]", IdType.IPV4_ADDR_SUBNET, "0a000000ff000000", 17, 500),
        ("2001:db8::/32", IdType.IPV6_ADDR_SUBNET, "20010db8" + "00" * 12 + "ffffffff" + "00" * 12, 0, 0),
        ("0.0.0.0/0", IdType.IPV4_ADDR_SUBNET, "0000000000000000", 0, 0),
    ],
)
def test_ts_id_round_trip(text: str, id_type: int, data_hex: str, proto: int, port: int) -> None:
    ts = parse_ts(text)
    p = ts_to_id(ts)
    assert (p.id_type, p.data.hex(), p.protocol, p.port) == (id_type, data_hex, proto, port)
    assert id_to_ts(IdPayload.decode_body(p.encode_body())) == ts


def test_ranges_and_bad_ids() -> None:
    from aioipsec.selectors import TrafficSelector

    ts = TrafficSelector(int.from_bytes(bytes([10, 0, 0, 5]), "big"), int.from_bytes(bytes([10, 0, 0, 9]), "big"))
    p = ts_to_id(ts)
    assert p.id_type == IdType.IPV4_ADDR_RANGE and id_to_ts(p) == ts
    # a port range cannot be expressed: any port
    assert ts_to_id(parse_ts("10.0.0.0/24[tcp/1000-2000]")).port == 0
    with pytest.raises(InvalidIdInformation):
        id_to_ts(IdPayload(id_type=IdType.FQDN, data=b"x.example"))
    with pytest.raises(InvalidIdInformation):
        id_to_ts(IdPayload(id_type=IdType.IPV4_ADDR_SUBNET, data=bytes(5)))
    with pytest.raises(InvalidIdInformation, match="before"):
        id_to_ts(IdPayload(id_type=IdType.IPV4_ADDR_RANGE, data=bytes([10, 0, 0, 9, 10, 0, 0, 5])))
    # subnet with host bits set: the network is taken
    got = id_to_ts(IdPayload(id_type=IdType.IPV4_ADDR_SUBNET, data=bytes([10, 1, 2, 3, 255, 255, 0, 0])))
    assert got == parse_ts("10.1.0.0/16")


def test_configured_suites_and_transform_round_trip() -> None:
    c = child("c", esp_proposals=["aes128-sha1", "aes256gcm16", "aes256-sha256-modp2048-ecp256"])
    proto, suites, group = configured_suites(c, None)
    assert proto == ProtocolId.ESP and group == KE["modp2048"]
    # PFS: only proposals naming the chosen group remain
    assert [s.name for s in suites] == ["aes256-sha256-modp2048"]
    proto, suites, group = configured_suites(c, KE["ecp256"])
    assert group == KE["ecp256"]
    c2 = child("c", esp_proposals=["aes128-sha1", "aes256gcm16", "3des-md5"], legacy=True)
    proto, suites, group = configured_suites(c2, None)
    assert group is None and [s.name for s in suites] == ["aes128-sha1", "aes256gcm16", "3des-md5"]
    for s in suites:
        t = s.to_transform(4, EncapMode.UDP_TUNNEL, 3600, 1000)
        assert suite_from_transform(ProtocolId.ESP, t) == s
        assert t.life(Phase2Attr.SA_LIFE_TYPE, Phase2Attr.SA_LIFE_DURATION, 1) == 3600
        assert t.life(Phase2Attr.SA_LIFE_TYPE, Phase2Attr.SA_LIFE_DURATION, 2) == 1000
        assert decode_mode(t.get(Phase2Attr.ENCAPSULATION_MODE)) == ("tunnel", True)


def test_ah_suites() -> None:
    c = child("c")
    c.ah_proposals = [parse_proposal("sha256", "ah")]
    proto, suites, group = configured_suites(c, None)
    assert proto == ProtocolId.AH and [s.name for s in suites] == ["sha256"]
    t = suites[0].to_transform(1, EncapMode.TRANSPORT, 0, 0)
    assert t.transform_id == 5 and suite_from_transform(ProtocolId.AH, t) == suites[0]


def test_offered_transform_parsing() -> None:
    # AES-CBC without key length is AES-128; ESN, unknown auth, AEAD+auth: refused
    t = Transform(1, 12, [Attribute.make(Phase2Attr.AUTH_ALGORITHM, 2)])
    s = suite_from_transform(ProtocolId.ESP, t)
    assert s is not None and s.name == "aes128-sha1"
    assert suite_from_transform(ProtocolId.ESP, Transform(1, 12, t.attributes + [Attribute.make(11, 1)])) is None
    assert suite_from_transform(ProtocolId.ESP, Transform(1, 12, [Attribute.make(5, 250)])) is None
    assert suite_from_transform(ProtocolId.ESP, Transform(1, 20, [Attribute.make(6, 128), Attribute.make(5, 2)])) is None
    assert suite_from_transform(ProtocolId.ESP, Transform(1, 12, [])) is None  # CBC needs integrity
    assert decode_mode(None) == ("tunnel", False) and decode_mode(1234) is None
    assert encap_mode("transport", True, True) == EncapMode.UDP_TRANSPORT_DRAFT


def test_life_attrs_round_trip() -> None:
    assert _parse_life_attrs(_life_attrs(1200, 0)) == (1200, None)
    assert _parse_life_attrs(_life_attrs(100000, 4096)) == (100000, 4096)
    assert DEFAULT_LIFETIME == 28800
