"""CRLs and ``reload`` in the daemon: two :class:`~aioipsec.daemon.Daemon`
objects with certificates on an in-memory network.  A reload re-reads the
top-level ``crls`` files: a certificate revoked in the new CRL is refused on
its next connection; the CRLs loaded are logged (issuer, CRL number, next
update); a CRL file that became unreadable or invalid fails the reload with
the field and keeps the old configuration (and its CRLs) running."""

from __future__ import annotations

import datetime
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
from asyncwait import until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aioipsec.asyncio.sockets import MemoryNetwork
from aioipsec.daemon import Daemon
from aioipsec.events import AuthFailed, IkeSaEstablished
from aioipsec.transports.memory import memory_pipe

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)

SITE_A = """
[connections.hq]
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
local  = { auth = "pubkey", id = "site-a.example", certs = ["a.pem"], key = "a.key" }
remote = { auth = "pubkey", id = "hq.example", cacerts = ["ca.pem"] }
[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["aes128gcm16"]
"""
HQ = """
crls = ["ca.crl"]
[connections.site-a]
local_addrs  = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
proposals = ["aes128gcm16-prfsha256-x25519"]
local  = { auth = "pubkey", id = "hq.example", certs = ["h.pem"], key = "h.key" }
remote = { auth = "pubkey", id = "site-a.example", cacerts = ["ca.pem"] }
[connections.site-a.children.net]
local_ts  = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
esp_proposals = ["aes128gcm16"]
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aioipsec test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = self._cert(self.ca_key, "reload test CA", ca=True, serial=1)
        self.serials: dict[str, int] = {}
        self._write("ca.pem", self.ca.public_bytes(serialization.Encoding.PEM))
        for n, (short, fqdn) in enumerate((("a", "site-a.example"), ("h", "hq.example")), 2):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self._cert(key, fqdn, ca=False, serial=n, san=fqdn)
            self.serials[short] = n
            self._write(f"{short}.pem", cert.public_bytes(serialization.Encoding.PEM))
            self._write(f"{short}.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))

    def _write(self, name: str, data: bytes) -> None:
        (self.dir / name).write_bytes(data)

    def _cert(self, key: Any, cn: str, *, ca: bool, serial: int, san: str | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name("reload test CA"))
             .public_key(key.public_key()).serial_number(serial)
             .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return b.sign(self.ca_key, hashes.SHA256())

    def crl(self, number: int, *revoked: str, der: bool = False,
            next_update: datetime.timedelta = 7 * DAY) -> x509.CertificateRevocationList:
        """Writes ca.crl: CRL ``number`` revoking the named hosts' certificates."""
        b = (x509.CertificateRevocationListBuilder().issuer_name(_name("reload test CA"))
             .last_update(NOW - 2 * DAY).next_update(NOW + next_update)
             .add_extension(x509.CRLNumber(number), critical=False))
        for host in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(self.serials[host])
                                          .revocation_date(NOW - datetime.timedelta(hours=2)).build())
        crl = b.sign(self.ca_key, hashes.SHA256())
        self._write("ca.crl", crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
        return crl


@pytest.fixture
async def gateways(tmp_path: Path):  # type: ignore[no-untyped-def]
    pki = Pki(tmp_path)
    pki.crl(1)  # revokes nobody
    (tmp_path / "site-a.toml").write_text(textwrap.dedent(SITE_A))
    (tmp_path / "hq.toml").write_text(textwrap.dedent(HQ))
    net = MemoryNetwork()
    a = Daemon(str(tmp_path / "site-a.toml"), network=net, inner=memory_pipe()[0])
    h = Daemon(str(tmp_path / "hq.toml"), network=net, inner=memory_pipe()[0])
    await h.start()
    await a.start()
    try:
        yield pki, a, h
    finally:
        await a.shutdown()
        await h.shutdown()


def events(d: Daemon, kind: type) -> list[Any]:
    got: list[Any] = []
    d.endpoint.event_listeners.append(lambda _p, ev: got.append(ev) if isinstance(ev, kind) else None)
    return got


async def connect(a: Daemon, h: Daemon) -> bool:
    """site-a initiates; True once both have the IKE SA up, False when hq refused it.

    Both: hq is up when it sends its IKE_AUTH response, before site-a has read
    it; a down() in between closes site-a's half-open IKE SA without a Delete
    (as charon does outside ESTABLISHED), leaving hq's up until DPD."""
    up, refused, a_up = events(h, IkeSaEstablished), events(h, AuthFailed), events(a, IkeSaEstablished)
    a.up("hq")
    await until(lambda: (up and a_up) or refused, 20, what="hq's verdict")
    return bool(up) and not refused


async def disconnect(a: Daemon, h: Daemon) -> None:
    if a.endpoint.find_session("hq") is not None:
        await a.down("hq")
    await until(lambda: h.endpoint.find_session("site-a") is None and a.endpoint.find_session("hq") is None,
                what="both sides closed", timeout=20)


async def test_reload_reads_a_new_crl_and_refuses_the_revoked_certificate(
        gateways, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    pki, a, h = gateways
    assert await connect(a, h)
    await disconnect(a, h)

    caplog.set_level(logging.INFO, logger="aioipsec")
    crl = pki.crl(2, "a", der=True)  # the new file revokes site-a (DER this time)
    result = h.reload()
    assert result.startswith("reloaded 1 connections"), result
    loaded = [r for r in caplog.records if r.name == "aioipsec.daemon" and r.getMessage().startswith("CRL ")]
    assert [r.levelno for r in loaded] == [logging.INFO]
    msg = loaded[0].getMessage()
    assert msg.startswith(f"CRL loaded from {pki.dir / 'ca.crl'}: CRL of 'O=aioipsec test, CN=reload test CA' #2 "), msg
    assert f"nextUpdate {crl.next_update_utc:%Y-%m-%d %H:%M:%S}Z" in msg and msg.endswith(", 1 revoked"), msg

    assert not await connect(a, h)
    lines = [r.getMessage() for r in caplog.records if "revoked" in r.getMessage() and "site-a.example" in r.getMessage()]
    assert lines, "the refusal names the peer's certificate as revoked"
    await until(lambda: a.endpoint.find_session("hq") is None, what="site-a's refused SA gone", timeout=20)


@pytest.mark.parametrize("broken", ["garbage", "missing"])
async def test_a_broken_crl_on_reload_keeps_the_old_configuration(
        gateways, broken: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    pki, a, h = gateways
    old = h.config
    pki.crl(2, "a")  # revoked in the file... but the file is broken before anyone reloads it
    if broken == "garbage":
        (pki.dir / "ca.crl").write_bytes(b"-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n")
    else:
        (pki.dir / "ca.crl").unlink()
    caplog.set_level(logging.INFO, logger="aioipsec.daemon")
    result = h.reload()
    assert result.startswith("reload failed: ") and "crls[0]" in result, result
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "keeping the old configuration" in errors[0].getMessage()
    assert "crls[0]" in errors[0].getMessage()
    assert h.config is old
    assert not [r for r in caplog.records if r.getMessage().startswith("CRL ")], "nothing new was loaded"
    # the old CRL (revoking nobody) still applies
    assert await connect(a, h)


async def test_crls_logged_at_start_and_a_stale_one_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = Pki(tmp_path)
    pki.crl(5, "h")
    (tmp_path / "hq.toml").write_text(textwrap.dedent(HQ))
    caplog.set_level(logging.INFO, logger="aioipsec.daemon")
    h = Daemon(str(tmp_path / "hq.toml"), network=MemoryNetwork(), inner=memory_pipe()[0])
    (start,) = [r for r in caplog.records if r.getMessage().startswith("CRL loaded")]
    assert start.levelno == logging.INFO and " #5 " in start.getMessage()
    assert start.getMessage().endswith(", 1 revoked")
    await h.start()
    try:
        caplog.clear()
        pki.crl(6, next_update=-DAY)  # its next update is yesterday
        assert h.reload().startswith("reloaded")
        (stale,) = [r for r in caplog.records if r.getMessage().startswith("CRL loaded")]
        assert stale.levelno == logging.WARNING and " #6 " in stale.getMessage()
        assert stale.getMessage().endswith("0 revoked -- stale, its next update has passed")
    finally:
        await h.shutdown()
