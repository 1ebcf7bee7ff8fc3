"""A fake revocation fetcher for the tests that hold IKE_AUTH (IKEv2) or
Phase 1 (IKEv1) while a certificate's status is being fetched: it fills a
:class:`~aioipsec.ike.auth.RevocationCache` by hand, with the CA's OCSP
responder at :data:`OCSP_URI`."""

from __future__ import annotations

import datetime

from ikev2_pair import WALL, Pki

from aioipsec.ike import auth

OCSP_URI = "http://ocsp.test.example/"
HOUR = datetime.timedelta(hours=1)


class FakeFetcher:
    """What :class:`~aioipsec.asyncio.revocation_fetch.RevocationFetcher`
    does to the cache, by hand: attached (``on_want``), then done with a
    certificate, with an OCSP answer or without one."""

    def __init__(self, pki: Pki) -> None:
        self.cache = auth.RevocationCache()
        self.cache.ca_ocsp_uris[pki.ca.subject.public_bytes()] = [OCSP_URI]  # type: ignore[attr-defined]
        self.woken = 0
        self.cache.on_want = self._wake

    def _wake(self) -> None:
        self.woken += 1

    def done(self, cert: object, status: str | None) -> None:
        key = (cert.issuer.public_bytes(), cert.serial_number)  # type: ignore[attr-defined]
        self.cache.wanted.pop(key, None)
        if status is not None:
            self.cache.ocsp[key] = auth.OcspStatus(
                status, WALL - HOUR, WALL + 24 * HOUR, "the issuing CA", uri=OCSP_URI,
                revoked_at=WALL - 24 * HOUR if status == "revoked" else None,
                reason="keyCompromise" if status == "revoked" else None)
        self.cache.pending.discard(key)
        self.cache.settled.add(key)
