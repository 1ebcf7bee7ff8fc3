"""OCSP (RFC 6960) against a third-party responder: ``openssl ocsp`` answers from an
``openssl ca`` style index of the test PKI (``left-ecdsa`` and ``right-ecdsa`` valid, a
second left certificate from the same CA revoked, reason keyCompromise).  It runs in
right's namespace, listening on a free port there (reached at right's outer address),
and is started and stopped by PID around each test.  Two signers:

* ``delegated``: a responder certificate the CA issued with the id-kp-OCSPSigning EKU
  (and id-pkix-ocsp-nocheck), carried in the answer, responder ID by name;
* ``ca``: the CA itself, responder ID by key hash (``-resp_key_id``).

Our OCSP client itself (``ocsp_request`` POSTed by ``http_fetch`` from left's namespace):
openssl echoes our nonce, names itself by name or key hash as configured, and
``verify_ocsp_response`` accepts the answer (good / revoked, keyCompromise).

aioipsec gateway (right, ``remote.ocsp_uris`` = the responder, ``revocation =
"strict"``), charon client (left):

* the valid certificate connects; our log names the OCSP answer used (responder, URI,
  thisUpdate/nextUpdate) and the responder saw our POST;
* the revoked one is refused: AUTHENTICATION_FAILED naming the peer, the subject,
  "revoked", the reason, the serial and the responder; charon is told and lists no SA.

Reverse direction: charon gateway (right, ``revocation = strict``, plugins
``revocation`` + ``curl``, the responder as ``ocsp_uris`` of its ``authorities``
entry for the CA), aioipsec client (left): charon's OCSP check admits our valid client
certificate and refuses the revoked one.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aioipsec.asyncio.revocation_fetch import http_fetch
from aioipsec.ike.auth import ocsp_request, verify_ocsp_response

from . import fixtures
from .aioipsec_peer import AioipsecPeer
from .certs import TestPki, reissue_host_cert
from .netns import NamespaceProcess, Topology
from .peer import PeerError
from .strongswan import Connection, StrongSwanError, StrongSwanPeer

OPENSSL = shutil.which("openssl")
CURL_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-curl.so")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(OPENSSL is None, reason="openssl (the OCSP responder) is not installed"),
]

KIND = "ecdsa"
PROFILE = "ikev2-cert-ecdsa"
LEFT_SUBJECT = "C=XX, O=aioipsec interop, CN=left.interop.example"
RESPONDER_CN = "aioipsec interop ecdsa OCSP responder"
RESPONDER_DN = f"C=XX, O=aioipsec interop, CN={RESPONDER_CN}"
SIGNERS = ("delegated", "ca")


@dataclass(frozen=True)
class OcspSetup:
    """The responder's files and the two client PKIs."""

    directory: Path
    index: Path
    responder_cert: Path
    responder_key: Path
    good: TestPki          # interop_pki: left-ecdsa is "V" in the index
    revoked: TestPki       # a second left-ecdsa from the same CA, "R" (keyCompromise)


def _index_line(cert: x509.Certificate, revoked_at: datetime.datetime | None) -> str:
    """One line of an ``openssl ca`` index.txt: status, expiry, revocation[,reason],
    serial (upper-case hex, even length, as openssl looks it up), file, subject."""
    serial = format(cert.serial_number, "X")
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    subject = "".join("/" + rdn.rfc4514_string() for rdn in cert.subject.rdns)
    if revoked_at is None:
        return f"V\t{expiry}\t\t{serial}\tunknown\t{subject}\n"
    return f"R\t{expiry}\t{revoked_at:%y%m%d%H%M%SZ},keyCompromise\t{serial}\tunknown\t{subject}\n"


@pytest.fixture(scope="module")
def ocsp_setup(interop_run_dir: Path, interop_pki: TestPki) -> OcspSetup:
    directory = interop_run_dir / "ocsp"
    directory.mkdir(parents=True, exist_ok=True)
    revoked = reissue_host_cert(interop_pki, directory / "pki-revoked-left", "left", KIND)
    ca = x509.load_pem_x509_certificate(interop_pki.ca_cert(KIND).read_bytes())
    ca_key = serialization.load_pem_private_key(interop_pki.ca_key(KIND).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    # the delegated responder (RFC 6960 §4.2.2.2): issued by the CA, OCSPSigning EKU,
    # ocsp-nocheck (nobody asks about the responder's own certificate)
    key = ec.generate_private_key(ec.SECP256R1())
    responder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aioipsec interop"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, RESPONDER_CN)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    responder_cert = directory / "responder.crt.pem"
    responder_key = directory / "responder.key.pem"
    responder_cert.write_bytes(responder.public_bytes(serialization.Encoding.PEM))
    responder_key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    responder_key.chmod(0o600)

    def load(path: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate(path.read_bytes())

    index = directory / "index.txt"
    index.write_text(
        _index_line(load(interop_pki.cert("left", KIND)), None)
        + _index_line(load(interop_pki.cert("right", KIND)), None)
        + _index_line(load(revoked.cert("left", KIND)), now - datetime.timedelta(hours=2)))
    # two entries share left's subject (one valid, one revoked)
    (directory / "index.txt.attr").write_text("unique_subject = no\n")
    assert revoked.serial("left", KIND) != interop_pki.serial("left", KIND)
    return OcspSetup(directory, index, responder_cert, responder_key, interop_pki, revoked)


class OpensslOcspResponder:
    """``openssl ocsp -index ...`` in ``topology``'s right namespace on a free port."""

    def __init__(self, topology: Topology, setup: OcspSetup, signer: str) -> None:
        self.topology = topology
        self.setup = setup
        self.signer = signer
        self.ns = topology.right.ns
        self.log = setup.directory / f"openssl-ocsp-{signer}-{time.monotonic_ns()}.log"
        self.process: NamespaceProcess | None = None
        self.port = 0

    @property
    def uri(self) -> str:
        return f"http://{self.topology.right.outer4}:{self.port}/"

    def _free_port(self) -> int:
        with self.ns.entered():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with s:
            s.bind((self.topology.right.outer4, 0))
            return int(s.getsockname()[1])

    def start(self, timeout: float = 10.0) -> None:
        assert OPENSSL is not None
        pki = self.setup.good
        if self.signer == "delegated":
            sign = ["-rsigner", str(self.setup.responder_cert), "-rkey", str(self.setup.responder_key)]
        else:
            sign = ["-rsigner", str(pki.ca_cert(KIND)), "-rkey", str(pki.ca_key(KIND)), "-resp_key_id"]
        self.port = self._free_port()
        self.process = self.ns.popen(
            [OPENSSL, "ocsp", "-port", str(self.port), "-index", str(self.setup.index),
             "-CA", str(pki.ca_cert(KIND)), *sign, "-ndays", "1", "-ignore_err"], log=self.log)
        deadline = time.monotonic() + timeout
        while "waiting for OCSP client connections" not in self.logs():
            if not self.process.alive():
                raise RuntimeError(f"openssl ocsp exited: {self.logs()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"openssl ocsp not listening after {timeout}s: {self.logs()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def requests(self) -> int:
        return self.logs().count("Received request")


@pytest.fixture(params=SIGNERS)
def responder(request: pytest.FixtureRequest, direct_topology: Topology,
              ocsp_setup: OcspSetup) -> Iterator[OpensslOcspResponder]:
    r = OpensslOcspResponder(direct_topology, ocsp_setup, request.param)
    try:
        r.start()
        yield r
    finally:
        r.stop()
        if fixtures.failed(request, "interop"):
            print(f"\n----- openssl ocsp ({r.signer}) log -----\n{r.logs()[-3000:]}")
    assert r.process is not None and not r.process.alive()


@contextmanager
def aioipsec_gateway(topo: Topology, client_pki: TestPki, gateway_pki: TestPki, ocsp_uri: str
                     ) -> Iterator[tuple[AioipsecPeer, StrongSwanPeer]]:
    """aioipsec gateway (right) asking ``ocsp_uri`` under ``revocation = "strict"``,
    charon client (left) with ``client_pki``'s left certificate; both stopped after."""
    conn = Connection.named(PROFILE)
    started: list[AioipsecPeer | StrongSwanPeer] = []
    failed = False
    try:
        gw = AioipsecPeer(topo, "right")
        started.append(gw)
        gw.configure(conn, gateway_pki)
        text = gw.config_path.read_text()
        remote = 'remote = { auth = "pubkey"'
        assert text.count(remote) == 1, text
        text = text.replace(remote, f'{remote}, revocation = "strict", ocsp_uris = ["{ocsp_uri}"]')
        gw.config_path.write_text(text + '\n[daemon]\nfetch_timeout = "3s"\n')
        gw.start()
        client = StrongSwanPeer(topo, "left")
        started.append(client)
        client.configure(conn, client_pki)
        client.start()
        yield gw, client
    except BaseException:
        failed = True
        raise
    finally:
        fixtures.stop_peers(started, failed, "log", lines=80)


def _charon_signer(responder: OpensslOcspResponder) -> str:
    """How charon names who signed the answer."""
    dn = RESPONDER_DN if responder.signer == "delegated" else f"C=XX, O=aioipsec interop, CN=aioipsec interop {KIND} CA"
    return f'ocsp response correctly signed by "{dn}"'


def _answer_label(responder: OpensslOcspResponder) -> str:
    """How our log names the answer (``OcspStatus.label``), up to its times."""
    who = f"delegated responder '{RESPONDER_DN}'" if responder.signer == "delegated" else "the issuing CA"
    return f"OCSP response of {who} from {responder.uri} (thisUpdate "


def test_openssl_answers_our_client_requests_with_our_nonce(
        direct_topology: Topology, ocsp_setup: OcspSetup, responder: OpensslOcspResponder) -> None:
    """aioipsec's own request (POST, SHA-1 CertID, 16-byte nonce) from left's namespace:
    openssl echoes the nonce, names itself as configured, and the answer verifies."""
    ca = x509.load_pem_x509_certificate(ocsp_setup.good.ca_cert(KIND).read_bytes())
    for pki, status in ((ocsp_setup.good, "good"), (ocsp_setup.revoked, "revoked")):
        cert = x509.load_pem_x509_certificate(pki.cert("left", KIND).read_bytes())
        nonce = os.urandom(16)
        with direct_topology.left.ns.entered():   # the socket is made (and used) in left's namespace
            der = http_fetch(responder.uri, 5.0, ocsp_request(cert, ca, nonce), "application/ocsp-request")
        raw = ocsp.load_der_ocsp_response(der)
        assert raw.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
        if responder.signer == "delegated":
            assert raw.responder_name is not None and raw.responder_key_hash is None
            assert [c.subject.rfc4514_string() for c in raw.certificates] == [f"CN={RESPONDER_CN},O=aioipsec interop,C=XX"]
        else:
            assert raw.responder_name is None and raw.responder_key_hash is not None
        answer = verify_ocsp_response(der, cert, ca, datetime.datetime.now(datetime.UTC), nonce=nonce,
                                      uri=responder.uri)
        assert answer.status == status
        assert answer.label.startswith(_answer_label(responder)), answer.label
        if status == "revoked":
            assert answer.reason == "keyCompromise"
        # a different nonce is refused (the echo is checked, not just tolerated)
        with pytest.raises(ValueError, match="nonce does not match"):
            verify_ocsp_response(der, cert, ca, datetime.datetime.now(datetime.UTC), nonce=bytes(16))
    assert responder.requests() == 2


def test_aioipsec_gateway_admits_a_good_client_by_openssl_ocsp(
        direct_topology: Topology, ocsp_setup: OcspSetup, responder: OpensslOcspResponder) -> None:
    with aioipsec_gateway(direct_topology, ocsp_setup.good, ocsp_setup.good, responder.uri) as (gw, client):
        client.initiate(timeout=10)
        client.wait_established(10)
        gw.wait_established(10)
        logs = gw.logs()
        serial = ocsp_setup.good.serial("left", KIND)
        assert f"OCSP {responder.uri} answered good for '{LEFT_SUBJECT}' (serial {serial:#x})" in logs, logs[-3000:]
        m = re.search(r"OCSP check peer=192\.0\.2\.1\[left\.interop\.example\]: certificate "
                      rf"'{re.escape(LEFT_SUBJECT)}' not revoked, (.*)", logs)
        assert m is not None, logs[-3000:]
        assert m.group(1).startswith(_answer_label(responder)), m.group(1)
        assert "nextUpdate " in m.group(1)    # -ndays 1: a current answer, as strict needs
        assert "revoked (" not in logs and "failed:" not in logs
        assert responder.requests() >= 1


def test_aioipsec_gateway_refuses_a_revoked_client_by_openssl_ocsp(
        direct_topology: Topology, ocsp_setup: OcspSetup, responder: OpensslOcspResponder) -> None:
    with aioipsec_gateway(direct_topology, ocsp_setup.revoked, ocsp_setup.good, responder.uri) as (gw, client):
        with pytest.raises(StrongSwanError):
            client.initiate(timeout=10)
        line = gw.wait_log(r"AUTHENTICATION_FAILED IKE_AUTH peer=\S+ .*", timeout=10).group(0)
        serial = ocsp_setup.revoked.serial("left", KIND)
        assert f"{direct_topology.left.outer4}[left.interop.example]" in line, line
        assert f"certificate '{LEFT_SUBJECT}' is revoked (reason keyCompromise, since " in line, line
        assert f"serial {serial:#x}, {_answer_label(responder)}" in line, line
        assert f"OCSP {responder.uri} answered revoked for '{LEFT_SUBJECT}' (serial {serial:#x})" in gw.logs()
        client.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=5)
        assert client.list_sas() == []
        assert gw.list_sas() == []
        assert responder.requests() >= 1


@contextmanager
def charon_gateway(topo: Topology, client_pki: TestPki, gateway_pki: TestPki, ocsp_uri: str
                   ) -> Iterator[tuple[StrongSwanPeer, AioipsecPeer]]:
    """charon gateway (right, ``revocation = strict``, ``curl``, the CA's ``ocsp_uris``),
    aioipsec client (left) with ``client_pki``'s left certificate; both stopped after."""
    conn = Connection.named(PROFILE)
    started: list[AioipsecPeer | StrongSwanPeer] = []
    failed = False
    try:
        gw = StrongSwanPeer(topo, "right", extra_plugins=["curl"])
        started.append(gw)
        gw.configure(conn, gateway_pki)
        conf = gw.swanctl_dir / "swanctl.conf"
        text = conf.read_text()
        cacerts = f"            cacerts = ca-{KIND}.crt.pem\n"
        assert text.count(cacerts) == 1, text
        text = text.replace(cacerts, cacerts + "            revocation = strict\n")
        text += (f"authorities {{\n    ca-{KIND} {{\n        cacert = ca-{KIND}.crt.pem\n"
                 f"        ocsp_uris = {ocsp_uri}\n    }}\n}}\n")
        conf.write_text(text)
        gw.start()
        client = AioipsecPeer(topo, "left")
        started.append(client)
        client.configure(conn, client_pki)
        client.start()
        yield gw, client
    except BaseException:
        failed = True
        raise
    finally:
        fixtures.stop_peers(started, failed, "log", lines=80)


needs_curl = pytest.mark.skipif(not CURL_PLUGIN.exists(),
                                reason=f"strongSwan's curl plugin ({CURL_PLUGIN}) is not installed")


@needs_curl
def test_charon_gateway_admits_our_good_client_certificate_by_openssl_ocsp(
        direct_topology: Topology, ocsp_setup: OcspSetup, responder: OpensslOcspResponder) -> None:
    with charon_gateway(direct_topology, ocsp_setup.good, ocsp_setup.good, responder.uri) as (gw, client):
        client.initiate(timeout=15)
        gw.wait_established(10)
        logs = gw.logs()
        assert f"requesting ocsp status from '{responder.uri}'" in logs, logs[-3000:]
        assert _charon_signer(responder) in logs, logs[-3000:]
        assert "certificate status is good" in logs, logs[-3000:]
        assert responder.requests() >= 1


@needs_curl
def test_charon_gateway_refuses_our_revoked_client_certificate_by_openssl_ocsp(
        direct_topology: Topology, ocsp_setup: OcspSetup, responder: OpensslOcspResponder) -> None:
    with charon_gateway(direct_topology, ocsp_setup.revoked, ocsp_setup.good, responder.uri) as (gw, client):
        with pytest.raises(PeerError, match=r"AuthFailed\(peer='192\.0\.2\.2', step='IKE_AUTH', "
                                            r"reason='peer answered AUTHENTICATION_FAILED'"):
            client.initiate(timeout=15)
        gw.wait_log(r"certificate was revoked on .*, reason: key compromise", timeout=5)
        assert _charon_signer(responder) in gw.logs()
        assert "certificate status is good" not in gw.logs()
        assert gw.list_sas() == []
        assert client.list_sas() == []
        assert responder.requests() >= 1
