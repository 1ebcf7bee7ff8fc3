"""OCSP and CRL distribution point fetching (aioipsec.asyncio.revocation_fetch)
with the checks of aioipsec.ike.auth, against a responder served by the test
itself on 127.0.0.1 (ephemeral port; nothing else is contacted).

The certificates name that server in their AIA (OCSP) and CRL distribution
point extensions; the OCSP answers and CRLs are built with ``cryptography``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.server
import logging
import socket
import threading
from collections import Counter
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
)

from aioipsec.asyncio.revocation_fetch import RevocationFetcher
from aioipsec.config import AuthConfig, ConnectionConfig
from aioipsec.config_file import loads_config
from aioipsec.errors import AuthenticationFailed, ConfigError
from aioipsec.ike import auth

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocsp test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Server:
    """OCSP responder (POST /ocsp) and CRL distribution point (GET /ca.crl)
    on 127.0.0.1; answers per serial from :attr:`status`."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.status: dict[int, str] = {}
        self.signer = "ca"  # "ca", "delegated", "delegated-no-eku", "wrong"
        self.next_update: datetime.timedelta | None = DAY
        self.this_update = NOW - HOUR
        self.nonce: str = "echo"  # "echo", "none", "wrong"
        self.crl: bytes = b""
        self.pki: Pki | None = None
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, body: bytes, ctype: str, code: int = 200) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                srv.hits[self.path] += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Type"] == "application/ocsp-request"
                self._send(srv.answer(ocsp.load_der_ocsp_request(body)), "application/ocsp-response")

            def do_GET(self) -> None:
                srv.hits[self.path] += 1
                if self.path == "/ca.crl" and srv.crl:
                    self._send(srv.crl, "application/pkix-crl")
                else:
                    self._send(b"not here", "text/plain", 404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, req: ocsp.OCSPRequest) -> bytes:
        pki = self.pki
        assert pki is not None
        cert = pki.by_serial[req.serial_number]
        st = self.status.get(req.serial_number, "good")
        status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                  "unknown": ocsp.OCSPCertStatus.UNKNOWN}[st]
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=pki.ca, algorithm=hashes.SHA1(), cert_status=status,
            this_update=self.this_update.replace(tzinfo=None),
            next_update=(self.this_update + self.next_update).replace(tzinfo=None) if self.next_update else None,
            revocation_time=(NOW - DAY).replace(tzinfo=None) if st == "revoked" else None,
            revocation_reason=x509.ReasonFlags.key_compromise if st == "revoked" else None,
        )
        if self.signer == "ca":
            b, key = b.responder_id(ocsp.OCSPResponderEncoding.HASH, pki.ca), pki.ca_key
        elif self.signer == "wrong":
            # a key that is not the CA's, claiming the CA's name
            b, key = b.responder_id(ocsp.OCSPResponderEncoding.NAME, pki.rogue), pki.rogue_key
        else:
            rcert = pki.responder if self.signer == "delegated" else pki.responder_no_eku
            b, key = b.responder_id(ocsp.OCSPResponderEncoding.NAME, rcert).certificates([rcert]), pki.responder_key
        try:
            nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
        if nonce is not None and self.nonce != "none":
            b = b.add_extension(x509.OCSPNonce(nonce if self.nonce == "echo" else b"x" * 16), critical=False)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Pki:
    def __init__(self, server: Server) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.rogue_key = ec.generate_private_key(ec.SECP256R1())
        self.responder_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = self._cert(self.ca_key.public_key(), "OCSP test CA", serial=1, ca=True)
        self.rogue = (x509.CertificateBuilder().subject_name(_name("OCSP test CA")).issuer_name(_name("OCSP test CA"))
                      .public_key(self.rogue_key.public_key()).serial_number(99)
                      .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY).sign(self.rogue_key, hashes.SHA256()))
        self.by_serial: dict[int, x509.Certificate] = {}
        self.keys: dict[str, Any] = {}
        base = server.base
        self.responder = self._cert(self.responder_key.public_key(), "OCSP responder", serial=2,
                                    eku=[ExtendedKeyUsageOID.OCSP_SIGNING])
        self.responder_no_eku = self._cert(self.responder_key.public_key(), "OCSP responder", serial=3,
                                           eku=[ExtendedKeyUsageOID.SERVER_AUTH])
        dead = f"http://127.0.0.1:{_closed_port()}"
        # name -> (serial, OCSP URI, CDP URI)
        spec = {
            "both": (10, f"{base}/ocsp", f"{base}/ca.crl"),
            "ocsp-only": (11, f"{base}/ocsp", None),
            "cdp-only": (12, None, f"{base}/ca.crl"),
            "dead": (13, f"{dead}/ocsp", None),
            "none": (14, None, None),
            "ocsp2": (15, f"{base}/ocsp", None),
        }
        self.certs: dict[str, x509.Certificate] = {}
        for name, (serial, ocsp_uri, cdp) in spec.items():
            key = ec.generate_private_key(ec.SECP256R1())
            self.keys[name] = key
            cert = self._cert(key.public_key(), f"{name}.example", serial=serial, ocsp_uri=ocsp_uri, cdp=cdp,
                              san=f"{name}.example")
            self.certs[name] = cert
            self.by_serial[serial] = cert
        server.pki = self

    def _cert(self, pub: Any, cn: str, *, serial: int, ca: bool = False, ocsp_uri: str | None = None,
              cdp: str | None = None, eku: list[Any] | None = None, san: str | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name("OCSP test CA"))
             .public_key(pub).serial_number(serial).not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ocsp_uri:
            b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_uri))]), critical=False)
        if cdp:
            b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(cdp)], None, None, None)]), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return b.sign(self.ca_key, hashes.SHA256())

    def crl(self, *revoked: str, der: bool = True, next_update: datetime.timedelta = 7 * DAY) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(_name("OCSP test CA"))
             .last_update(NOW - DAY).next_update(NOW + next_update).add_extension(x509.CRLNumber(4), critical=False))
        for name in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(self.certs[name].serial_number)
                .revocation_date(NOW - HOUR).add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=False)
                .build())
        crl = b.sign(self.ca_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    srv = Server()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def pki(server: Server) -> Pki:
    return Pki(server)


def _fetcher(pki: Pki, **remote: Any) -> RevocationFetcher:
    f = RevocationFetcher(timeout=2.0, clock=lambda: NOW)
    conn = ConnectionConfig(name="c")
    conn.remote = AuthConfig(auth="pubkey", cacerts=[pki.ca], **remote)
    f.configure([conn])
    return f


async def _check(f: RevocationFetcher, pki: Pki, name: str, policy: str, *, fetch: bool = True) -> list[Any]:
    """A check (which asks for what it lacks), the fetch it caused, then the check again."""
    chain = [pki.certs[name], pki.ca]
    if fetch:
        try:
            auth.check_revocation(chain, [], "relaxed", NOW, peer="p", fetched=f.cache)
        except AuthenticationFailed:
            pass
        await f.refresh()
    return auth.check_revocation(chain, [], policy, NOW, peer="192.0.2.9[peer]", fetched=f.cache)


# --------------------------------------------------------------------------- OCSP answers


@pytest.mark.parametrize("policy", auth.REVOCATION_POLICIES)
async def test_ocsp_good_passes_every_policy_and_names_the_uri(server: Server, pki: Pki, policy: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec")
    f = _fetcher(pki)
    [st] = await _check(f, pki, "ocsp-only", policy)
    assert st.status == "good" and st.crl is not None and f"from {server.base}/ocsp" in st.crl
    assert server.hits["/ocsp"] == 1
    assert any(m.startswith("OCSP check peer=192.0.2.9[peer]: certificate ") and f"{server.base}/ocsp" in m
               and "not revoked" in m and "the issuing CA" in m for m in (r.getMessage() for r in caplog.records))


@pytest.mark.parametrize("policy", auth.REVOCATION_POLICIES)
async def test_ocsp_revoked_fails_every_policy_naming_subject_reason_serial(
        server: Server, pki: Pki, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    server.status[11] = "revoked"
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed) as ei:
        await _check(f, pki, "ocsp-only", policy)
    msg = str(ei.value)
    assert "certificate 'O=ocsp test, CN=ocsp-only.example' is revoked (reason keyCompromise" in msg, msg
    assert "serial 0xb" in msg and f"OCSP response of the issuing CA from {server.base}/ocsp" in msg, msg
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "is revoked" in r.getMessage()]
    assert any("peer=192.0.2.9[peer]" in m for m in warned), warned


@pytest.mark.parametrize(("policy", "ok"), [("strict", False), ("ifuri", False), ("relaxed", True)])
async def test_ocsp_unknown_is_no_status(server: Server, pki: Pki, policy: str, ok: bool) -> None:
    server.status[11] = "unknown"
    f = _fetcher(pki)
    if ok:
        [st] = await _check(f, pki, "ocsp-only", policy)
        assert st.status == "failed"
    else:
        with pytest.raises(AuthenticationFailed, match="unknown: no CRL of its issuer loaded or fetched and no OCSP"):
            await _check(f, pki, "ocsp-only", policy)
    assert server.hits["/ocsp"] == 1


@pytest.mark.parametrize(("policy", "ok"), [("strict", False), ("ifuri", False), ("relaxed", True)])
async def test_unreachable_responder(pki: Pki, policy: str, ok: bool, caplog: pytest.LogCaptureFixture) -> None:
    f = _fetcher(pki)
    if ok:
        [st] = await _check(f, pki, "dead", policy)
        assert st.status == "failed"
    else:
        with pytest.raises(AuthenticationFailed, match="'O=ocsp test, CN=dead.example' unknown"):
            await _check(f, pki, "dead", policy)
    assert any("OCSP request to http://127.0.0.1:" in r.getMessage() and "failed" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize(("policy", "ok"), [("strict", False), ("ifuri", True), ("relaxed", True)])
async def test_no_uri_at_all_is_skipped(server: Server, pki: Pki, policy: str, ok: bool) -> None:
    f = _fetcher(pki)
    if ok:
        [st] = await _check(f, pki, "none", policy)
        assert st.status == "skipped"
    else:
        with pytest.raises(AuthenticationFailed, match="no OCSP responder or CRL URI known"):
            await _check(f, pki, "none", policy)
    assert not f.cache.wanted and sum(server.hits.values()) == 0


@pytest.mark.parametrize("signer", ["wrong", "delegated-no-eku"])
async def test_bad_responder_signature_is_refused(server: Server, pki: Pki, signer: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    server.status[11] = "good"
    server.signer = signer
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed, match="unknown"):
        await _check(f, pki, "ocsp-only", "strict")
    assert server.hits["/ocsp"] == 1 and not f.cache.ocsp
    why = "does not verify with the issuing CA's key" if signer == "wrong" else "lacks the OCSP signing EKU"
    assert any(why in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_delegated_responder_with_ocsp_signing_eku_is_accepted(server: Server, pki: Pki) -> None:
    server.signer = "delegated"
    server.status[11] = "revoked"
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed, match="delegated responder 'O=ocsp test, CN=OCSP responder'"):
        await _check(f, pki, "ocsp-only", "relaxed")


async def test_nonce_mismatch_is_refused_a_missing_one_accepted(server: Server, pki: Pki) -> None:
    server.nonce = "wrong"
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed, match="unknown"):
        await _check(f, pki, "ocsp-only", "strict")
    server.nonce = "none"  # a pre-produced answer without nonce
    f = _fetcher(pki)
    [st] = await _check(f, pki, "ocsp-only", "strict")
    assert st.status == "good"


async def test_stale_ocsp_answer_is_warned_and_only_relaxed_accepts_it(
        server: Server, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    server.this_update = NOW - 3 * DAY
    server.next_update = DAY  # nextUpdate two days ago
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed, match="unknown: only a stale OCSP response"):
        await _check(f, pki, "ocsp-only", "strict")
    [st] = await _check(f, pki, "ocsp-only", "relaxed", fetch=False)
    assert st.status == "stale"
    assert any(r.levelno == logging.WARNING and "is stale (used anyway)" in r.getMessage() for r in caplog.records)
    server.status[11] = "revoked"  # a revocation in a stale answer still counts
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed, match="is revoked"):
        await _check(f, pki, "ocsp-only", "relaxed")


def test_future_this_update_is_refused(server: Server, pki: Pki) -> None:
    server.this_update = NOW + DAY
    cert = pki.certs["ocsp-only"]
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, pki.ca, hashes.SHA1()).build()
    der = server.answer(req)
    with pytest.raises(ValueError, match="is in the future"):
        auth.verify_ocsp_response(der, cert, pki.ca, NOW)
    with pytest.raises(ValueError, match="no status for serial 0xf"):  # an answer about another certificate
        auth.verify_ocsp_response(der, pki.certs["ocsp2"], pki.ca, NOW + 2 * DAY)
    with pytest.raises(ValueError, match="malformed OCSP response"):
        auth.verify_ocsp_response(b"\x30\x03junk", cert, pki.ca, NOW)


# --------------------------------------------------------------------------- CRL distribution points


@pytest.mark.parametrize("der", [True, False])
async def test_cdp_crl_revoking_the_peer(server: Server, pki: Pki, der: bool) -> None:
    server.crl = pki.crl("cdp-only", der=der)
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed) as ei:
        await _check(f, pki, "cdp-only", "relaxed")
    msg = str(ei.value)
    assert "certificate 'O=ocsp test, CN=cdp-only.example' is revoked (reason superseded" in msg, msg
    assert "serial 0xc" in msg and "CRL of 'O=ocsp test, CN=OCSP test CA' #4" in msg, msg
    assert msg.rstrip(")").endswith(f"from {server.base}/ca.crl"), msg
    assert server.hits["/ca.crl"] == 1


async def test_ocsp_unknown_falls_back_to_the_cdp(server: Server, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioipsec")
    server.status[10] = "unknown"
    server.crl = pki.crl("ocsp2")  # lists neither "both" nor "cdp-only"
    f = _fetcher(pki)
    [st] = await _check(f, pki, "both", "strict")
    assert st.status == "good" and st.crl is not None and st.crl.endswith(f"from {server.base}/ca.crl")
    assert server.hits == Counter({"/ocsp": 1, "/ca.crl": 1})
    # the CRL is kept: another certificate of the CA is covered without a request
    [st] = await _check(f, pki, "cdp-only", "relaxed", fetch=False)
    assert st.status == "good"
    # and a file CRL is named as such
    [st] = auth.check_revocation([pki.certs["none"], pki.ca], [x509.load_der_x509_crl(pki.crl())], "strict", NOW)
    assert st.crl is not None and st.crl.endswith("from file")


async def test_broken_crl_download_is_no_status(server: Server, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    server.crl = b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n"
    f = _fetcher(pki)
    with pytest.raises(AuthenticationFailed, match="unknown"):
        await _check(f, pki, "cdp-only", "ifuri")
    assert any("CRL download from" in r.getMessage() and "not a certificate revocation list" in r.getMessage()
               for r in caplog.records)


async def test_configured_crl_uri_is_fetched_up_front(server: Server, pki: Pki) -> None:
    server.crl = pki.crl("none")
    f = _fetcher(pki, crl_uris=[f"{server.base}/ca.crl"])
    await f.refresh()  # what start() does at once
    assert server.hits["/ca.crl"] == 1
    # "none" names no URI itself, but the CA's configured CRL covers it from the first check
    with pytest.raises(AuthenticationFailed, match="CN=none.example' is revoked"):
        auth.check_revocation([pki.certs["none"], pki.ca], [], "relaxed", NOW, fetched=f.cache)


async def test_configured_ocsp_uri_is_asked(server: Server, pki: Pki) -> None:
    server.status[14] = "revoked"
    f = _fetcher(pki, ocsp_uris=[f"{server.base}/ocsp"])
    with pytest.raises(AuthenticationFailed, match="CN=none.example' is revoked"):
        await _check(f, pki, "none", "relaxed")


# --------------------------------------------------------------------------- caching


async def test_answers_are_cached_until_next_update(server: Server, pki: Pki) -> None:
    server.crl = pki.crl()
    f = _fetcher(pki)
    await _check(f, pki, "ocsp-only", "strict")
    await _check(f, pki, "cdp-only", "strict")
    for _ in range(3):  # more handshakes: no more requests
        await _check(f, pki, "ocsp-only", "strict")
        await _check(f, pki, "cdp-only", "strict")
    assert server.hits == Counter({"/ocsp": 1, "/ca.crl": 1})
    # past (close to) nextUpdate the fetcher asks again by itself
    f._clock = lambda: NOW + 2 * DAY  # type: ignore[method-assign]
    await f.refresh()
    assert server.hits["/ca.crl"] == 1 and server.hits["/ocsp"] == 2  # the CRL is good for 7 days


async def test_a_failed_fetch_waits_for_the_retry_time(pki: Pki) -> None:
    f = _fetcher(pki)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await _check(f, pki, "dead", "strict")
    assert f.requests == 1
    f._clock = lambda: NOW + datetime.timedelta(seconds=f.retry + 1)  # type: ignore[method-assign]
    await f.refresh()
    assert f.requests == 2


async def test_fetch_loop_runs_in_the_background(server: Server, pki: Pki) -> None:
    """start(): a check's want wakes the loop, which fetches without blocking."""
    from asyncwait import until

    f = _fetcher(pki)
    f.start()
    try:
        chain = [pki.certs["ocsp-only"], pki.ca]
        with pytest.raises(AuthenticationFailed):
            auth.check_revocation(chain, [], "strict", NOW, fetched=f.cache)
        await until(lambda: bool(f.cache.ocsp), 5, what="the OCSP answer")
        [st] = auth.check_revocation(chain, [], "strict", NOW, fetched=f.cache)
        assert st.status == "good"
    finally:
        await f.close()


async def test_a_check_holds_while_the_fetcher_has_the_certificate(server: Server, pki: Pki) -> None:
    """``hold=True``: a certificate without status that the fetcher will get
    raises RevocationPending (naming it and its URI) instead of a verdict;
    after the fetch the same check decides."""
    f = _fetcher(pki)
    assert f.cache.hold_limit == 5.0  # twice the 2 s timeout, plus 1 s
    chain = [pki.certs["ocsp-only"], pki.ca]
    with pytest.raises(auth.RevocationPending) as ei:
        auth.check_revocation(chain, [], "strict", NOW, peer="p", fetched=f.cache, hold=True)
    assert ei.value.subjects == ["O=ocsp test, CN=ocsp-only.example"] and ei.value.uris == [f"{server.base}/ocsp"]
    assert server.hits["/ocsp"] == 0
    await f.refresh()
    [st] = auth.check_revocation(chain, [], "strict", NOW, peer="p", fetched=f.cache, hold=True)
    assert st.status == "good" and server.hits["/ocsp"] == 1


async def test_an_unreachable_responder_holds_only_until_the_fetch_failed(pki: Pki) -> None:
    """Once the fetcher is done with a certificate (no answer), checks of it
    are decided by policy, not held, until its retry is due (then it is
    pending while fetched again)."""
    f = _fetcher(pki)
    chain = [pki.certs["dead"], pki.ca]
    with pytest.raises(auth.RevocationPending):
        auth.check_revocation(chain, [], "relaxed", NOW, fetched=f.cache, hold=True)
    await f.refresh()
    assert f.requests == 1
    [st] = auth.check_revocation(chain, [], "relaxed", NOW, fetched=f.cache, hold=True)
    assert st.status == "failed"
    with pytest.raises(AuthenticationFailed, match="'O=ocsp test, CN=dead.example' unknown"):
        auth.check_revocation(chain, [], "strict", NOW, fetched=f.cache, hold=True)
    await f.refresh()  # wanted again, but its retry is not due: no request, still settled
    assert f.requests == 1
    [st] = auth.check_revocation(chain, [], "relaxed", NOW, fetched=f.cache, hold=True)
    assert st.status == "failed"
    # while the retry runs, the certificate is pending
    seen: list[bool] = []

    def fetch(*args: Any) -> bytes:
        seen.append(auth.cert_key(pki.certs["dead"]) in f.cache.pending)
        raise OSError("still down")

    f._fetch = fetch  # type: ignore[method-assign]
    f._clock = lambda: NOW + datetime.timedelta(seconds=f.retry + 1)  # type: ignore[method-assign]
    await f.refresh()
    assert seen == [True] and auth.cert_key(pki.certs["dead"]) not in f.cache.pending


async def test_on_settled_names_each_finished_certificate(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """``on_settled`` is called with the key of every certificate the fetcher
    is done with -- answered, unanswered, or settled without a fetch because
    its retry is not due -- after it left ``pending``; the RevocationPending
    of a held check names the same key; a failing callback is logged and
    counted, fetching goes on."""
    f = _fetcher(pki)
    calls: list[tuple[set[Any], bool]] = []
    f.on_settled = lambda keys: calls.append((set(keys), any(k in f.cache.pending for k in keys)))
    good, dead = auth.cert_key(pki.certs["ocsp-only"]), auth.cert_key(pki.certs["dead"])
    for name in ("ocsp-only", "dead"):
        with pytest.raises(auth.RevocationPending) as ei:
            auth.check_revocation([pki.certs[name], pki.ca], [], "relaxed", NOW, fetched=f.cache, hold=True)
        assert ei.value.keys == {auth.cert_key(pki.certs[name])}
    await f.refresh()
    assert sorted(calls) == sorted([({good}, False), ({dead}, False)])
    calls.clear()
    f.cache.want(pki.certs["dead"], pki.ca)  # asked again before its retry is due: settled without a fetch
    await f.refresh()
    assert calls == [({dead}, False)]

    def broken(keys: set[Any]) -> None:
        raise RuntimeError("bug in a session")

    f.on_settled = broken
    f.cache.want(pki.certs["dead"], pki.ca)
    await f.refresh()
    assert f.internal_errors == 1
    assert any("held for a fetched certificate status failed" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- configuration


def test_config_keys() -> None:
    cfg = loads_config("""
[daemon]
fetch_timeout = "3s"
[connections.c]
remote_addrs = ["192.0.2.2"]
local  = { auth = "psk" }
remote = { auth = "psk", ocsp_uris = ["http://ocsp.example/"], crl_uris = ["http://crl.example/ca.crl"] }
[secrets.ike]
secret = "0123456789abcdef"
""")
    assert cfg.daemon.fetch_timeout == 3.0
    r = cfg.connections["c"].remote
    assert r.ocsp_uris == ["http://ocsp.example/"] and r.crl_uris == ["http://crl.example/ca.crl"]


@pytest.mark.parametrize(("snippet", "where"), [
    ('remote = { auth = "psk", ocsp_uris = ["ldap://x/"] }', "connections.c.remote.ocsp_uris[0]"),
    ('remote = { auth = "psk", crl_uris = ["http://"] }', "connections.c.remote.crl_uris[0]"),
    ('remote = { auth = "psk" }\nlocal = { auth = "psk", crl_uris = ["http://x/"] }', "connections.c.local.crl_uris"),
])
def test_config_errors_name_the_field(snippet: str, where: str) -> None:
    text = f'[connections.c]\nremote_addrs = ["192.0.2.2"]\n{snippet}\n'
    if "local" not in snippet:
        text += 'local = { auth = "psk" }\n'
    with pytest.raises(ConfigError) as ei:
        loads_config(text + '[secrets.ike]\nsecret = "0123456789abcdef"\n')
    assert ei.value.path == where, str(ei.value)


def test_config_fetch_timeout_bounds() -> None:
    with pytest.raises(ConfigError, match=r"daemon.fetch_timeout: must be more than 0"):
        loads_config('[daemon]\nfetch_timeout = 0\n')


# --------------------------------------------------------------------------- a daemon refusing a revoked client

CLIENT = """
[connections.hq]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
local  = { auth = "pubkey", id = "ocsp-only.example", certs = ["client.pem"], key = "client.key" }
remote = { auth = "pubkey", id = "none.example", cacerts = ["ca.pem"] }
[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["aes128gcm16"]
"""
GATEWAY = """
[daemon]
fetch_timeout = "2s"
[connections.client]
local_addrs  = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
proposals = ["aes128gcm16-prfsha256-x25519"]
local  = { auth = "pubkey", id = "none.example", certs = ["gw.pem"], key = "gw.key" }
remote = { auth = "pubkey", id = "ocsp-only.example", cacerts = ["ca.pem"]POLICY }
[connections.client.children.net]
local_ts  = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
esp_proposals = ["aes128gcm16"]
"""


@pytest.mark.parametrize("policy", ["relaxed", "strict"])
@pytest.mark.parametrize("client_status", ["revoked", "good"])
async def test_daemon_gateway_checks_the_client_by_ocsp(
        server: Server, pki: Pki, tmp_path: Any, client_status: str, policy: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """IKEv2 over an in-memory network, the gateway with ``revocation =
    relaxed`` (the default) or ``strict`` and no status of the client's
    certificate: its first IKE_AUTH is held (dropped unanswered, counted)
    while the daemon asks the certificate's OCSP responder, and the client's
    retransmission is decided with the answer -- on the FIRST attempt: refused
    when the responder said revoked (naming peer, subject, reason, serial and
    the responder), established when it said good; one OCSP request."""
    from asyncwait import until

    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.daemon import Daemon
    from aioipsec.events import AuthFailed, IkeSaEstablished
    from aioipsec.transports.memory import memory_pipe

    pem = serialization.Encoding.PEM
    pkcs8 = (pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ca.pem").write_bytes(pki.ca.public_bytes(pem))
    (tmp_path / "client.pem").write_bytes(pki.certs["ocsp-only"].public_bytes(pem))
    (tmp_path / "client.key").write_bytes(pki.keys["ocsp-only"].private_bytes(*pkcs8))
    (tmp_path / "gw.pem").write_bytes(pki.certs["none"].public_bytes(pem))
    (tmp_path / "gw.key").write_bytes(pki.keys["none"].private_bytes(*pkcs8))
    (tmp_path / "client.toml").write_text(CLIENT)
    (tmp_path / "gw.toml").write_text(GATEWAY.replace("POLICY", "" if policy == "relaxed" else f', revocation = "{policy}"'))
    server.status[11] = client_status
    caplog.set_level(logging.INFO, logger="aioipsec")
    net = MemoryNetwork()
    c = Daemon(str(tmp_path / "client.toml"), network=net, inner=memory_pipe()[0])
    g = Daemon(str(tmp_path / "gw.toml"), network=net, inner=memory_pipe()[0])
    assert g.config.daemon.fetch_timeout == 2.0
    assert g.config.connections["client"].remote.revocation == policy
    await g.start()
    await c.start()
    try:
        up: list[Any] = []
        refused: list[Any] = []
        g.endpoint.event_listeners.append(
            lambda _p, ev: up.append(ev) if isinstance(ev, IkeSaEstablished) else
            refused.append(ev) if isinstance(ev, AuthFailed) else None)
        c.up("hq")
        await until(lambda: up or refused, 20, what="the gateway's verdict")
        await until(lambda: c.endpoint.find_session("hq") is None or up, 10, what="a refused SA gone")
        held = [r.getMessage() for r in caplog.records if "holding IKE_AUTH" in r.getMessage()]
        assert len(held) == 1 and "peer 192.0.2.1[ocsp-only.example]: status of certificate " in held[0], held
        assert f"'O=ocsp test, CN=ocsp-only.example' being fetched from {server.base}/ocsp" in held[0], held[0]
        if client_status == "revoked":
            [first] = refused
            assert not up
            assert first.peer.endswith("[ocsp-only.example]")
            assert "certificate 'O=ocsp test, CN=ocsp-only.example' is revoked (reason keyCompromise" in first.reason
            assert "serial 0xb" in first.reason and f"from {server.base}/ocsp" in first.reason, first.reason
            assert any("peer=" in m and "ocsp-only.example" in m and "is revoked" in m
                       for m in (r.getMessage() for r in caplog.records if r.levelno == logging.WARNING))
        else:
            assert up and not refused
            assert c.endpoint.find_session("hq") is not None
            assert any(m.startswith("OCSP check peer=") and "ocsp-only.example' not revoked" in m
                       and f"{server.base}/ocsp" in m for m in (r.getMessage() for r in caplog.records))
        assert server.hits["/ocsp"] == 1
    finally:
        await c.shutdown()
        await g.shutdown()


async def test_an_unexpected_error_in_one_fetch_does_not_end_fetching(
        server: Server, pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever escapes a fetch (a bug, an exception type nobody expected) is
    logged with its traceback and retried later; the other certificates of
    the same refresh are still fetched, and refresh() itself never raises
    (it would end the fetcher's loop and with it all revocation checking)."""
    f = _fetcher(pki)
    real = auth.verify_ocsp_response
    calls = {"n": 0}

    def flaky(der: bytes, cert: Any, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if cert.serial_number == pki.certs["ocsp-only"].serial_number:
            raise RuntimeError("unexpected")
        return real(der, cert, *a, **k)

    monkeypatch.setattr(auth, "verify_ocsp_response", flaky)
    for name in ("ocsp-only", "ocsp2"):
        with contextlib.suppress(AuthenticationFailed, auth.RevocationPending):
            auth.check_revocation([pki.certs[name], pki.ca], [], "relaxed", NOW, peer="p", fetched=f.cache)
    with caplog.at_level(logging.ERROR, logger="aioipsec"):
        await f.refresh()  # must not raise
    assert f.internal_errors == 1 and calls["n"] == 2
    assert any("failed unexpectedly" in r.getMessage() and r.exc_info for r in caplog.records)
    # the other certificate got its answer; the failed one has a status only after its retry
    assert auth.check_revocation([pki.certs["ocsp2"], pki.ca], [], "strict", NOW, peer="p", fetched=f.cache) is not None
    monkeypatch.setattr(auth, "verify_ocsp_response", real)
    later = NOW + datetime.timedelta(seconds=f.retry + 1)
    f._clock = lambda: later  # type: ignore[method-assign]
    await f.refresh()
    assert auth.check_revocation([pki.certs["ocsp-only"], pki.ca], [], "strict", later, peer="p", fetched=f.cache) is not None


@pytest.mark.parametrize("client_status", ["revoked", "good"])
async def test_daemon_gateway_decides_the_held_ike_auth_as_soon_as_the_status_is_fetched(
        server: Server, pki: Pki, tmp_path: Any, client_status: str, caplog: pytest.LogCaptureFixture) -> None:
    """The same two daemons: the gateway holds the client's first IKE_AUTH
    while it asks the OCSP responder, and the fetcher's completion makes it
    process the kept request at once -- the verdict comes well before the
    client's first retransmission (4 s), which is never sent."""
    from asyncwait import until

    from aioipsec.asyncio.sockets import MemoryNetwork
    from aioipsec.daemon import Daemon
    from aioipsec.events import AuthFailed, IkeSaEstablished
    from aioipsec.transports.memory import memory_pipe

    pem = serialization.Encoding.PEM
    pkcs8 = (pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ca.pem").write_bytes(pki.ca.public_bytes(pem))
    (tmp_path / "client.pem").write_bytes(pki.certs["ocsp-only"].public_bytes(pem))
    (tmp_path / "client.key").write_bytes(pki.keys["ocsp-only"].private_bytes(*pkcs8))
    (tmp_path / "gw.pem").write_bytes(pki.certs["none"].public_bytes(pem))
    (tmp_path / "gw.key").write_bytes(pki.keys["none"].private_bytes(*pkcs8))
    (tmp_path / "client.toml").write_text(CLIENT)
    (tmp_path / "gw.toml").write_text(GATEWAY.replace("POLICY", ', revocation = "strict"'))
    server.status[11] = client_status
    caplog.set_level(logging.INFO, logger="aioipsec")
    net = MemoryNetwork()
    c = Daemon(str(tmp_path / "client.toml"), network=net, inner=memory_pipe()[0])
    g = Daemon(str(tmp_path / "gw.toml"), network=net, inner=memory_pipe()[0])
    assert c.config.connections["hq"].retransmit_timeout == 4.0
    await g.start()
    await c.start()
    try:
        up: list[Any] = []
        refused: list[Any] = []
        gws: list[Any] = []
        g.endpoint.event_listeners.append(
            lambda p, ev: (up.append(ev), gws.append(p)) if isinstance(ev, IkeSaEstablished) else
            (refused.append(ev), gws.append(p)) if isinstance(ev, AuthFailed) else None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        c.up("hq")
        client = c.endpoint.find_session("hq")
        assert client is not None
        await until(lambda: up or refused, 20, what="the gateway's verdict")
        elapsed = loop.time() - t0
        assert elapsed < 2.0, elapsed  # not the retransmission at 4 s
        held = [r.getMessage() for r in caplog.records if "holding IKE_AUTH" in r.getMessage()]
        assert len(held) == 1, held
        [gw] = gws
        assert gw.session.stats.auth_pending == 1 and gw.session.sa.auth_held is None
        if client_status == "revoked":
            [first] = refused
            assert not up and "CN=ocsp-only.example' is revoked (reason keyCompromise" in first.reason
            await until(lambda: client.session.is_closed, 2, what="the client told AUTHENTICATION_FAILED")
        else:
            assert up and not refused
            await until(lambda: client.session.is_established, 2, what="the client established")
        assert client.session.stats.retransmits == 0
        assert server.hits["/ocsp"] == 1
    finally:
        await c.shutdown()
        await g.shutdown()
