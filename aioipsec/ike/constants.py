"""IKE constants as IntEnums (IANA "Internet Key Exchange Version 2 (IKEv2)
Parameters" registry, RFC 7296 §3).

The first part holds IKEv2 values and the enums both versions share (ID
types, certificate encodings, protocol IDs).  ISAKMP/IKEv1-only values live
in :mod:`aioipsec.ike.v1` (section at the end of this file names them), so
the two never clash.

Values from the wire are not always known: decoders keep unknown numbers as
plain ``int`` (``IntEnum`` compares equal to ``int``); use :func:`enum_or_int`
to get the enum member when there is one.
"""

from __future__ import annotations

import enum
from typing import TypeVar

IKEV2_MAJOR_VERSION = 2
IKEV2_MINOR_VERSION = 0
IKE_HEADER_LEN = 28
GENERIC_PAYLOAD_HEADER_LEN = 4
IKE_PORT = 500
NATT_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"

_E = TypeVar("_E", bound=enum.IntEnum)


def enum_or_int(enum_cls: type[_E], value: int) -> _E | int:
    """``enum_cls(value)`` if ``value`` is a member, else ``value`` itself."""
    member = enum_cls._value2member_map_.get(value)  # a dict lookup; Enum.__call__ costs ~10x more
    if member is not None:
        return member  # type: ignore[return-value]
    try:
        return enum_cls(value)
    except ValueError:
        return value


# =========================================================================== IKEv2


class ExchangeType(enum.IntEnum):
    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38  # RFC 5723
    IKE_INTERMEDIATE = 43  # RFC 9242
    IKE_FOLLOWUP_KE = 44  # RFC 9370


class HeaderFlag(enum.IntFlag):
    """Flags octet of the IKEv2 header (RFC 7296 §3.1)."""

    INITIATOR = 0x08
    """Sent by the original initiator of the IKE SA."""
    VERSION = 0x10
    """Sender can speak a higher major version (always 0 here)."""
    RESPONSE = 0x20


class PayloadType(enum.IntEnum):
    """IKEv2 payload types (RFC 7296 §3.2).  1..32 are ISAKMP/IKEv1 types."""

    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    NOTIFY = 41
    DELETE = 42
    VENDOR = 43
    TSi = 44
    TSr = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49  # RFC 6467
    IDg = 50  # RFC 6407bis/G-IKEv2
    GSA = 51
    KD = 52
    SKF = 53  # RFC 7383
    PS = 54  # RFC 8019 puzzle solution


class ProtocolId(enum.IntEnum):
    """Security protocol identifiers (SA proposals, Notify, Delete)."""

    NONE = 0
    IKE = 1
    AH = 2
    ESP = 3


class TransformAttr(enum.IntEnum):
    """Transform attribute types (RFC 7296 §3.3.5)."""

    KEY_LENGTH = 14


class IdType(enum.IntEnum):
    """Identification types (RFC 7296 §3.5; the v1-only ones from RFC 2407 §4.6.2.1)."""

    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV4_ADDR_SUBNET = 4  # IKEv1 only
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6  # IKEv1 only
    IPV4_ADDR_RANGE = 7  # IKEv1 only
    IPV6_ADDR_RANGE = 8  # IKEv1 only
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11
    FC_NAME = 12  # RFC 4595
    NULL = 13  # RFC 7619


class AuthMethod(enum.IntEnum):
    """IKEv2 authentication methods (RFC 7296 §3.8, RFC 4754, RFC 7427, RFC 7619)."""

    RSA = 1
    PSK = 2
    DSS = 3
    ECDSA_256 = 9
    ECDSA_384 = 10
    ECDSA_521 = 11
    GSPAM = 12
    NULL = 13
    DIGITAL_SIGNATURE = 14


class SignatureHash(enum.IntEnum):
    """Hash algorithms of SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5  # RFC 8420 (Ed25519/Ed448)


class CertEncoding(enum.IntEnum):
    """Certificate encodings (RFC 7296 §3.6)."""

    PKCS7_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    KERBEROS_TOKEN = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_URL_X509 = 12
    HASH_URL_X509_BUNDLE = 13
    OCSP_CONTENT = 14  # RFC 4806
    RAW_PUBLIC_KEY = 15  # RFC 7670


class TsType(enum.IntEnum):
    """Traffic selector types (RFC 7296 §3.13.1)."""

    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    FC_ADDR_RANGE = 9  # RFC 4595
    SECLABEL = 10  # RFC 9478


class CfgType(enum.IntEnum):
    """Configuration payload types (RFC 7296 §3.15); the same numbers are the
    IKEv1 attribute payload types (draft-dukes-ike-mode-cfg §3.2), which
    use the names without ``CFG_`` (aliases)."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4
    REQUEST = 1
    REPLY = 2
    SET = 3
    ACK = 4


class CfgAttr(enum.IntEnum):
    """Configuration attribute types of IKEv2 (RFC 7296 §3.15.1 and later
    RFCs) and IKEv1 Mode Config (draft-dukes-ike-mode-cfg §3.3), XAUTH
    (draft-beaulieu-ike-xauth §6) and Cisco Unity: one numbering.  Types
    5, 9 and 11 are IKEv1 only (RFC 5996 dropped them); the codec of both
    versions is :mod:`aioipsec.ike.cfgattr`."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_ADDRESS_EXPIRY = 5  # IKEv1
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_NETMASK = 9  # IKEv1
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_NBNS = 11  # IKEv1
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16
    INTERNAL_IP6_LINK = 17
    INTERNAL_IP6_PREFIX = 18
    HOME_AGENT_ADDRESS = 19
    P_CSCF_IP4_ADDRESS = 20
    P_CSCF_IP6_ADDRESS = 21
    FTT_KAT = 22
    EXTERNAL_SOURCE_IP4_NAT_INFO = 23
    TIMEOUT_PERIOD_FOR_LIVENESS_CHECK = 24
    INTERNAL_DNS_DOMAIN = 25
    INTERNAL_DNSSEC_TA = 26
    XAUTH_TYPE = 16520
    XAUTH_USER_NAME = 16521
    XAUTH_USER_PASSWORD = 16522
    XAUTH_PASSCODE = 16523
    XAUTH_MESSAGE = 16524
    XAUTH_CHALLENGE = 16525
    XAUTH_DOMAIN = 16526
    XAUTH_STATUS = 16527
    XAUTH_NEXT_PIN = 16528
    XAUTH_ANSWER = 16529
    UNITY_BANNER = 28672
    UNITY_SAVE_PASSWD = 28673
    UNITY_DEF_DOMAIN = 28674
    UNITY_SPLITDNS_NAME = 28675
    UNITY_SPLIT_INCLUDE = 28676
    UNITY_NATT_PORT = 28677
    UNITY_LOCAL_LAN = 28678
    UNITY_PFS = 28679
    UNITY_FW_TYPE = 28680
    UNITY_BACKUP_SERVERS = 28681
    UNITY_DDNS_HOSTNAME = 28682


class EapCode(enum.IntEnum):
    """EAP packet codes (RFC 3748 §4)."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class NotifyType(enum.IntEnum):
    """Notify message types (RFC 7296 §3.10.1 and the IANA registry).

    Below 16384 are errors, from 16384 on status types."""

    # --- errors
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40
    UNEXPECTED_NAT_DETECTED = 41
    USE_ASSIGNED_HoA = 42
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INVALID_GROUP_ID = 45
    AUTHORIZATION_FAILED = 46
    STATE_NOT_FOUND = 47

    # --- status
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396
    ADDITIONAL_IP4_ADDRESS = 16397
    ADDITIONAL_IP6_ADDRESS = 16398
    NO_ADDITIONAL_ADDRESSES = 16399
    UPDATE_SA_ADDRESSES = 16400
    COOKIE2 = 16401
    NO_NATS_ALLOWED = 16402
    AUTH_LIFETIME = 16403
    MULTIPLE_AUTH_SUPPORTED = 16404
    ANOTHER_AUTH_FOLLOWS = 16405
    REDIRECT_SUPPORTED = 16406
    REDIRECT = 16407
    REDIRECTED_FROM = 16408
    TICKET_LT_OPAQUE = 16409
    TICKET_REQUEST = 16410
    TICKET_ACK = 16411
    TICKET_NACK = 16412
    TICKET_OPAQUE = 16413
    LINK_ID = 16414
    USE_WESP_MODE = 16415
    ROHC_SUPPORTED = 16416
    EAP_ONLY_AUTHENTICATION = 16417
    CHILDLESS_IKEV2_SUPPORTED = 16418
    QUICK_CRASH_DETECTION = 16419
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420
    IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421
    IKEV2_MESSAGE_ID_SYNC = 16422
    IPSEC_REPLAY_COUNTER_SYNC = 16423
    SECURE_PASSWORD_METHODS = 16424
    PSK_PERSIST = 16425
    PSK_CONFIRM = 16426
    ERX_SUPPORTED = 16427
    IFOM_CAPABILITY = 16428
    SENDER_REQUEST_ID = 16429
    IKEV2_FRAGMENTATION_SUPPORTED = 16430
    SIGNATURE_HASH_ALGORITHMS = 16431
    CLONE_IKE_SA_SUPPORTED = 16432
    CLONE_IKE_SA = 16433
    PUZZLE = 16434
    USE_PPK = 16435
    PPK_IDENTITY = 16436
    NO_PPK_AUTH = 16437
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438
    IP4_ALLOWED = 16439
    IP6_ALLOWED = 16440
    ADDITIONAL_KEY_EXCHANGE = 16441
    USE_AGGFRAG = 16442

    @property
    def is_error(self) -> bool:
        return self.value < STATUS_NOTIFY_MIN


STATUS_NOTIFY_MIN = 16384
"""Notify types below this are errors (RFC 7296 §3.10.1)."""


def notify_is_error(notify_type: int) -> bool:
    return notify_type < STATUS_NOTIFY_MIN


def notify_name(notify_type: int) -> str:
    """The IKEv2 notify type's name, or its number when unknown."""
    n = enum_or_int(NotifyType, notify_type)
    return n.name if isinstance(n, NotifyType) else str(notify_type)


# =========================================================================== ISAKMP / IKEv1
#
# IKEv1 shares the 28-octet header layout (so :func:`aioipsec.ike.v2.message.peek_header`
# demultiplexes both versions by ``major_version``) and the enums above for ID types,
# certificate encodings and protocol IDs.  Its own payload types (1..20 and the
# NAT-T ones), exchange types (Main=2, Aggressive=4, Informational=5, Quick=32),
# DOI/situation, attribute classes and notify messages live in
# ``aioipsec.ike.v1.constants``.

IKEV1_MAJOR_VERSION = 1
