"""ISAKMP / IKEv1 constants (RFC 2408, RFC 2407 IPsec DOI, RFC 2409 Appendix A,
RFC 3947 NAT-T, RFC 3706 DPD) as IntEnums.

Values from the wire are not always known: the codec keeps unknown numbers as
plain ``int`` (an ``IntEnum`` compares equal to its ``int``).
"""

from __future__ import annotations

import enum

from ..constants import CfgAttr, CfgType  # noqa: F401 - one enum for both versions, re-exported

ISAKMP_VERSION = 0x10
"""Major version 1, minor version 0, in one octet."""
ISAKMP_HEADER_LEN = 28
GENERIC_HEADER_LEN = 4
DOI_IPSEC = 1
SIT_IDENTITY_ONLY = 1
NONCE_SIZE = 32
"""Bytes of nonce we send (RFC 2409: 8..256)."""
MIN_NONCE = 8
MAX_NONCE = 256


class ExchangeType(enum.IntEnum):
    NONE = 0
    BASE = 1
    IDENTITY_PROTECTION = 2
    """Main Mode."""
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6
    """Mode Config / XAUTH (draft-dukes-ike-mode-cfg)."""
    QUICK_MODE = 32
    NEW_GROUP_MODE = 33


class Flag(enum.IntFlag):
    """ISAKMP header flags (RFC 2408 §3.1)."""

    ENCRYPTION = 0x01
    COMMIT = 0x02
    AUTH_ONLY = 0x04


class PayloadType(enum.IntEnum):
    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CERTREQ = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14
    """Mode Config attribute payload."""
    SAK = 15
    NAT_D = 20
    """RFC 3947."""
    NAT_OA = 21
    """RFC 3947."""
    NAT_D_DRAFT = 130
    NAT_OA_DRAFT = 131
    FRAGMENT = 132
    """Cisco/strongSwan IKEv1 fragmentation."""


class ProtocolId(enum.IntEnum):
    """Protocol IDs of the IPsec DOI (RFC 2407 §4.4.1)."""

    ISAKMP = 1
    AH = 2
    ESP = 3
    IPCOMP = 4


class IkeTransformId(enum.IntEnum):
    KEY_IKE = 1


class EspTransformId(enum.IntEnum):
    """IPsec DOI ESP transform identifiers (RFC 2407 §4.4.4 and later)."""

    DES_IV64 = 1
    DES = 2
    TRIPLE_DES = 3
    RC5 = 4
    IDEA = 5
    CAST = 6
    BLOWFISH = 7
    TRIPLE_IDEA = 8
    DES_IV32 = 9
    RC4 = 10
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 23


class AhTransformId(enum.IntEnum):
    MD5 = 2
    SHA = 3
    DES = 4
    SHA2_256 = 5
    SHA2_384 = 6
    SHA2_512 = 7
    RIPEMD = 8
    AES_XCBC_MAC = 9


class Phase1Attr(enum.IntEnum):
    """Phase 1 (ISAKMP SA) attribute classes, RFC 2409 Appendix A."""

    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14
    FIELD_SIZE = 15
    GROUP_ORDER = 16


class Phase2Attr(enum.IntEnum):
    """IPsec DOI SA attributes, RFC 2407 §4.5."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTH_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10
    EXTENDED_SEQUENCE_NUMBER = 11


class Ike1Encr(enum.IntEnum):
    """Phase 1 encryption algorithm attribute values."""

    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_CBC = 4
    TRIPLE_DES_CBC = 5
    CAST_CBC = 6
    AES_CBC = 7
    CAMELLIA_CBC = 8


class Ike1Hash(enum.IntEnum):
    """Phase 1 hash algorithm attribute values."""

    MD5 = 1
    SHA1 = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class Ike1Auth(enum.IntEnum):
    """Phase 1 authentication method attribute values."""

    PSK = 1
    DSS_SIG = 2
    RSA_SIG = 3
    RSA_ENC = 4
    RSA_ENC_REV = 5
    ECDSA_256 = 9
    ECDSA_384 = 10
    ECDSA_521 = 11
    XAUTH_INIT_PSK = 65001
    XAUTH_RESP_PSK = 65002
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006


# CfgType (REQUEST, REPLY, SET, ACK) and CfgAttr are the IKEv2 enums of
# aioipsec.ike.constants (one numbering, one codec: aioipsec.ike.cfgattr),
# imported at the top of this module.

XAUTH_TYPE_GENERIC = 0
XAUTH_STATUS_FAIL = 0
XAUTH_STATUS_OK = 1


class LifeType(enum.IntEnum):
    SECONDS = 1
    KILOBYTES = 2


class EncapMode(enum.IntEnum):
    """Encapsulation Mode attribute values (RFC 2407, RFC 3947 §5)."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3
    UDP_TRANSPORT = 4
    UDP_TUNNEL_DRAFT = 61443
    UDP_TRANSPORT_DRAFT = 61444


class Ike1AuthAlg(enum.IntEnum):
    """Phase 2 Authentication Algorithm attribute values."""

    HMAC_MD5 = 1
    HMAC_SHA = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    HMAC_RIPEMD = 8
    AES_XCBC_MAC = 9


class IdType(enum.IntEnum):
    """IPsec DOI identification types (RFC 2407 §4.6.2.1)."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class CertEncoding(enum.IntEnum):
    PKCS7 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    X509_KEY_EXCHANGE = 5
    KERBEROS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10


class NotifyType(enum.IntEnum):
    """ISAKMP notify message types (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706)."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    RESPONDER_LIFETIME = 24576
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    R_U_THERE = 36136
    R_U_THERE_ACK = 36137


def notify_name(value: int) -> str:
    try:
        return NotifyType(value).name
    except ValueError:
        return f"NOTIFY({value})"


def notify_is_error(value: int) -> bool:
    """Types below 8192 are errors (RFC 2408 §3.14.1)."""
    return value < 8192


# --------------------------------------------------------------------------- vendor IDs

VID_NATT_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
"""MD5("RFC 3947")."""
VID_NATT_DRAFT_02 = bytes.fromhex("cd60464335df21f87cfdb2fc68b6a448")
VID_NATT_DRAFT_02N = bytes.fromhex("90cb80913ebb696e086381b5ec427b1f")
VID_NATT_DRAFT_03 = bytes.fromhex("7d9419a65310ca6f2c179d9215529d56")
VID_NATT_DRAFTS = (VID_NATT_DRAFT_03, VID_NATT_DRAFT_02, VID_NATT_DRAFT_02N)
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
"""RFC 3706."""
VID_XAUTH = bytes.fromhex("09002689dfd6b712")
VID_FRAGMENTATION = bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3")
"""IKE fragmentation (Cisco); followed by a 4-byte capability word."""
FRAGMENTATION_IKE = 0x80000000
"""Capability bit: fragmentation of Main/Aggressive Mode messages."""
VID_FRAGMENTATION_FULL = VID_FRAGMENTATION + FRAGMENTATION_IKE.to_bytes(4, "big")
VID_STRONGSWAN = bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb")
VID_CISCO_UNITY = bytes.fromhex("12f5f28c457168a9702d9fe274cc0100")

FRAGMENT_LAST = 0x01
"""Flags bit of the fragment payload."""
