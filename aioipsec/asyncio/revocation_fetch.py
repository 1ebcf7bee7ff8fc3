"""Fetching revocation information: OCSP (RFC 6960) and CRLs from
distribution points over HTTP, like strongSwan's ``revocation`` and ``curl``
plugins, for the sans-I/O checks in :mod:`aioipsec.ike.auth`.

The IKE layer never does network I/O and never reads the clock, and a
session's IKE_AUTH is processed synchronously, so fetching cannot happen in
the middle of a check.  Instead a :class:`RevocationFetcher` keeps a
:class:`~aioipsec.ike.auth.RevocationCache` that every ``remote`` config
points at (``AuthConfig.revocation_cache``) and fills it:

* up front, on (re)configuration: the configured CRL URIs of each CA
  (``remote.crl_uris``) and the status of certificates we know (a pinned
  ``remote.cert``);
* on demand: a check that lacked a current status put the certificate on
  ``cache.wanted``; the fetcher asks its OCSP responder(s) (the certificate's
  AIA URI, then ``remote.ocsp_uris``) and, when none answers good or revoked,
  downloads its CRL distribution points (and the CA's configured CRL URIs);
  the CRL URIs are remembered and kept fresh from then on, which covers the
  CA's other certificates too;
* each answer is cached until its nextUpdate and refreshed shortly before
  (:data:`REFRESH_MARGIN`), a failed fetch is retried after
  :attr:`RevocationFetcher.retry`.

While a wanted certificate is queued or being fetched it is in
``cache.pending`` and a handshake needing its status is held (its IKEv2
IKE_AUTH or IKEv1 MM5/MM6/AM2/AM3 dropped unanswered and kept, see
:class:`~aioipsec.ike.auth.RevocationPending`); once the fetcher is done
with it, answered or not, it is in ``cache.settled``, :attr:`RevocationFetcher.on_settled`
is called and the endpoint processes the kept message again at once
(``retry_held``), so the handshake is decided with what is cached without
waiting for a retransmission.  ``cache.hold_limit`` (twice the timeout plus
one second) bounds a hold.

Blocking ``urllib.request`` calls run in the loop's default executor with a
short timeout, so the event loop never waits on the network.  Only
``http://`` URIs are fetched (as OCSP and CRL distribution is done), without
proxies, and at most :data:`MAX_RESPONSE` bytes are read.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from ..ike import auth as A

logger = logging.getLogger("aioipsec.cfg")

MAX_RESPONSE = 16 * 1024 * 1024
"""Bytes read at most from one HTTP answer (a bigger one is refused)."""
REFRESH_MARGIN = datetime.timedelta(minutes=5)
"""A cached CRL or OCSP answer is fetched again this long before its nextUpdate
(at the latest half-way between thisUpdate and nextUpdate)."""
DEFAULT_REFRESH = datetime.timedelta(hours=1)
"""How often a CRL without nextUpdate is fetched again."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def http_fetch(uri: str, timeout: float, body: bytes | None = None, content_type: str = "") -> bytes:
    """GET ``uri`` (or POST ``body``); blocking, for an executor thread.
    Raises OSError/ValueError with a readable reason."""
    if not uri.lower().startswith("http://"):
        raise ValueError("only http:// URIs are fetched")
    headers = {"Content-Type": content_type} if body is not None else {}
    req = urllib.request.Request(uri, data=body, headers=headers, method="POST" if body is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            data = resp.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None
    if len(data) > MAX_RESPONSE:
        raise ValueError(f"answer larger than {MAX_RESPONSE} bytes")
    return data


class RevocationFetcher:
    """Fills a :class:`~aioipsec.ike.auth.RevocationCache` (see the module
    docstring).  ``fetch`` (blocking, run in an executor) and ``clock`` are
    replaceable for tests."""

    retry: float = 60.0
    """Seconds before a failed fetch (no answer, refused answer) is tried again."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        fetch: Callable[..., bytes] = http_fetch,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.cache = A.RevocationCache()
        self.cache.hold_limit = 2 * timeout + 1.0  # an OCSP request, then a CRL download
        self.timeout = timeout
        self._fetch = fetch
        self._clock = clock
        self._crl_due: dict[str, datetime.datetime] = {}
        """CRL URIs kept fresh, with when each is fetched next."""
        self._cert_due: dict[tuple[bytes, int], tuple[Any, Any, datetime.datetime]] = {}
        """Certificates (cert, issuer) whose status is kept, with when it is fetched next."""
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.requests = 0
        """HTTP requests made (OCSP and CRL)."""
        self.internal_errors = 0
        """Fetches that raised something unexpected (logged with the traceback, retried later)."""
        self.cache.on_want = self._on_want
        self.on_settled: Callable[[set[tuple[bytes, int]]], None] | None = None
        """Called on the loop with the certificates (issuer DER, serial) the
        fetcher just finished, answered or not: the endpoint processes the
        handshake messages held for them again (``retry_held``) at once
        instead of waiting for the peer's retransmission."""

    # ------------------------------------------------------------------ configuration

    def configure(self, connections: Iterable[Any]) -> None:
        """Point every certificate-authenticated ``remote`` of ``connections``
        at the cache, learn the CAs' configured OCSP and CRL URIs, and queue
        the up-front fetches (configured CRL URIs, pinned peer certificates).
        Called on load and on every reload; what was fetched stays cached."""
        ca_ocsp: dict[bytes, list[str]] = {}
        ca_crl: dict[bytes, list[str]] = {}
        now = self._clock()
        for conn in connections:
            remote = conn.remote
            if remote.auth != "pubkey":
                continue
            remote.revocation_cache = self.cache
            for ca in remote.cacerts:
                key = ca.subject.public_bytes()
                ca_ocsp.setdefault(key, [])
                ca_crl.setdefault(key, [])
                ca_ocsp[key] = list(dict.fromkeys([*ca_ocsp[key], *remote.ocsp_uris]))
                ca_crl[key] = list(dict.fromkeys([*ca_crl[key], *remote.crl_uris]))
                for uri in remote.crl_uris:
                    self._crl_due.setdefault(uri, now)
            pinned = remote.cert
            if pinned is not None:
                issuer = next((c for c in remote.cacerts if c.subject == pinned.issuer), None)
                if issuer is not None:
                    self._cert_due.setdefault(A.cert_key(pinned), (pinned, issuer, now))
        self.cache.ca_ocsp_uris = {k: v for k, v in ca_ocsp.items() if v}
        self.cache.ca_crl_uris = {k: v for k, v in ca_crl.items() if v}
        self._kick()

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Run the fetch loop on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="revocation-fetch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _on_want(self) -> None:
        """A check lacked a status (called from the session, on the loop's
        thread or another): fetch the wanted certificates now."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._kick()
        else:
            loop.call_soon_threadsafe(self._kick)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            await self.refresh()
            now = self._clock()
            dues = [d for d in self._crl_due.values()] + [d for _c, _i, d in self._cert_due.values()]
            delay = min(((d - now).total_seconds() for d in dues), default=3600.0)
            if delay <= 0:
                delay = 1.0  # something failed just now and is due again: never spin
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 3600.0))
            except TimeoutError:
                pass

    async def refresh(self) -> None:
        """Fetch everything wanted or due (once; the loop calls it again)."""
        now = self._clock()
        cache = self.cache
        for key, (cert, issuer) in list(cache.wanted.items()):
            cache.wanted.pop(key, None)
            old = self._cert_due.get(key)
            # a failed fetch waits for its retry time; new and stale ones go now
            due = now if old is None or self._stale(key, now) else old[2]
            self._cert_due[key] = (cert, issuer, due)
            if due > now:  # not fetched now: a handshake held for it is decided
                cache.pending.discard(key)
                cache.settled.add(key)
                self._settled({key})
        due_certs = [(k, c, i) for k, (c, i, d) in self._cert_due.items() if d <= now]
        for key, cert, issuer in due_certs:
            # while it is fetched, handshakes needing it are held; once done
            # (answered or not) they are decided with what it got
            cache.settled.discard(key)
            cache.pending.add(key)
            try:
                await self._refresh_cert(key, cert, issuer)
            except Exception:  # noqa: BLE001 - a bug here must not end all later fetching
                self._unexpected(f"status of certificate serial {cert.serial_number:#x}")
                self._cert_due[key] = (cert, issuer, self._clock() + datetime.timedelta(seconds=self.retry))
            finally:
                cache.pending.discard(key)
                cache.settled.add(key)
                self._settled({key})
        now = self._clock()
        for uri in [u for u, d in self._crl_due.items() if d <= now]:
            try:
                await self._refresh_crl(uri)
            except Exception:  # noqa: BLE001
                self._unexpected(f"CRL from {uri}")
                self._crl_due[uri] = self._clock() + datetime.timedelta(seconds=self.retry)

    def _settled(self, keys: set[tuple[bytes, int]]) -> None:
        """Tell :attr:`on_settled` (a failure there is logged, never ends fetching)."""
        cb = self.on_settled
        if cb is None:
            return
        try:
            cb(keys)
        except Exception:  # the fetch loop must go on
            self.internal_errors += 1
            logger.exception("processing the handshakes held for a fetched certificate status failed")

    def _unexpected(self, what: str) -> None:
        self.internal_errors += 1
        logger.exception("revocation fetch of the %s failed unexpectedly; trying again in %g s", what, self.retry)

    def _stale(self, key: tuple[bytes, int], now: datetime.datetime) -> bool:
        answer = self.cache.ocsp.get(key)
        return answer is not None and not answer.current(now)

    @staticmethod
    def _next(this: datetime.datetime, nxt: datetime.datetime | None, now: datetime.datetime) -> datetime.datetime:
        if nxt is None:
            return now + DEFAULT_REFRESH
        margin = min(REFRESH_MARGIN, (nxt - this) / 2)
        return max(nxt - margin, now + datetime.timedelta(seconds=1))

    async def _call(self, *args: Any) -> bytes:
        self.requests += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self._fetch(*args))

    async def _refresh_cert(self, key: tuple[bytes, int], cert: Any, issuer: Any) -> None:
        subject = A._dn_text(A._name_attrs(cert.subject))
        retry = self._clock() + datetime.timedelta(seconds=self.retry)
        for uri in self.cache.ocsp_uris(cert):
            nonce = os.urandom(16)
            try:
                request = A.ocsp_request(cert, issuer, nonce)
                der = await self._call(uri, self.timeout, request, "application/ocsp-request")
                answer = A.verify_ocsp_response(der, cert, issuer, self._clock(), nonce=nonce, uri=uri)
            except (OSError, ValueError, TimeoutError) as exc:
                logger.warning("OCSP request to %s for '%s' (serial %#x) failed: %s", uri, subject, cert.serial_number, exc)
                continue
            now = self._clock()
            stale = not answer.current(now)
            (logger.warning if stale else logger.info)(
                "OCSP %s answered %s for '%s' (serial %#x)%s", uri, answer.status, subject, cert.serial_number,
                " -- stale, its nextUpdate has passed" if stale else "")
            if answer.status == "unknown":
                continue
            self.cache.ocsp[key] = answer
            self._cert_due[key] = (cert, issuer, retry if stale else self._next(answer.this_update, answer.next_update, now))
            return
        # no definite OCSP answer: the CRLs (fetched now, then kept fresh)
        got = False
        for uri in self.cache.crl_uris(cert):
            if not uri.lower().startswith("http://"):
                continue
            fresh = uri in self.cache.crls and self._crl_due.get(uri, retry) > self._clock()
            if not fresh:
                await self._refresh_crl(uri)
            got = got or uri in self.cache.crls
        # with a CRL, its own schedule keeps the status; else try again later
        if got:
            self._cert_due.pop(key, None)
        else:
            self._cert_due[key] = (cert, issuer, retry)

    async def _refresh_crl(self, uri: str) -> None:
        try:
            crl = A.parse_crl(await self._call(uri, self.timeout))
        except (OSError, ValueError, TimeoutError) as exc:
            logger.warning("CRL download from %s failed: %s", uri, exc)
            self._crl_due[uri] = self._clock() + datetime.timedelta(seconds=self.retry)
            return
        now = self._clock()
        old = self.cache.crls.get(uri)
        if old is not None and A._crl_sort_key(crl) < A._crl_sort_key(old):
            logger.warning("CRL from %s is older than the one cached (%s); keeping that", uri, A._crl_label(old))
            self._crl_due[uri] = now + datetime.timedelta(seconds=self.retry)
            return
        nxt = crl.next_update_utc
        stale = nxt is not None and nxt < now
        (logger.warning if stale else logger.info)(
            "CRL fetched from %s: %s, %d revoked%s", uri, A._crl_label(crl), len(crl),
            " -- stale, its next update has passed" if stale else "")
        self.cache.crls[uri] = crl
        self._crl_due[uri] = (now + datetime.timedelta(seconds=self.retry)) if stale else self._next(
            crl.last_update_utc, nxt, now)
