"""IKEv1 peer errors.  The class attribute ``notify_type`` is the ISAKMP notify
(RFC 2408 §3.14.1) sent back when the error is answered (model: h2's
``error_code``).  ISAKMP numbers differ from IKEv2's above 14, hence a
hierarchy of its own under :class:`~aioipsec.errors.RemoteProtocolError`."""

from __future__ import annotations

from ...errors import RemoteProtocolError
from .constants import NotifyType


class Ikev1Error(RemoteProtocolError):
    """A peer problem answered with ``notify_type`` (or silently dropped)."""

    notify_type: int = NotifyType.PAYLOAD_MALFORMED


class InvalidPayloadType(Ikev1Error):
    notify_type = NotifyType.INVALID_PAYLOAD_TYPE


class PayloadMalformed(Ikev1Error):
    notify_type = NotifyType.PAYLOAD_MALFORMED


class NoProposalChosen(Ikev1Error):
    notify_type = NotifyType.NO_PROPOSAL_CHOSEN


class InvalidKeyInformation(Ikev1Error):
    notify_type = NotifyType.INVALID_KEY_INFORMATION


class InvalidIdInformation(Ikev1Error):
    notify_type = NotifyType.INVALID_ID_INFORMATION


class InvalidHashInformation(Ikev1Error):
    notify_type = NotifyType.INVALID_HASH_INFORMATION


class AuthenticationFailed(Ikev1Error):
    notify_type = NotifyType.AUTHENTICATION_FAILED


class UnverifiedMessage(AuthenticationFailed):
    """An encrypted Phase 1 message (MM5, MM6, AM3) that does not decrypt,
    parse, or verify (HASH or signature).  It is the symptom of a pre-shared
    key mismatch, but also of one corrupted datagram: the task manager drops
    the first such copy and fails the exchange (as an authentication
    failure) only on the next one."""


class InvalidCertificate(Ikev1Error):
    notify_type = NotifyType.INVALID_CERTIFICATE


class InvalidExchangeType(Ikev1Error):
    notify_type = NotifyType.INVALID_EXCHANGE_TYPE
