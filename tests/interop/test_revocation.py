"""Certificate revocation (CRLs) against charon: the aioipsec daemon is the gateway
(right) with a top-level ``crls`` file from the test CA that revokes the client's
original certificate (``left-ecdsa``, reason keyCompromise).

* charon (left) authenticating with that certificate is refused: our log has
  AUTHENTICATION_FAILED naming the peer, the subject and "revoked"; charon's
  initiate fails and it lists no SA.
* the same client with a new certificate from the same CA (not on the CRL)
  connects, under ``revocation = "strict"`` (so the CRL was found, verified and
  current), and our log names the CRL used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from . import fixtures
from .aioipsec_peer import AioipsecPeer
from .certs import TestPki, reissue_host_cert, write_crl
from .netns import Topology
from .strongswan import Connection, StrongSwanError, StrongSwanPeer

pytestmark = pytest.mark.interop

KIND = "ecdsa"
PROFILE = "ikev2-cert-ecdsa"


@pytest.fixture(scope="module")
def crl_setup(interop_run_dir: Path, interop_pki: TestPki) -> tuple[Path, TestPki]:
    """(CRL revoking left's original certificate, a PKI with a fresh left certificate)."""
    revoked = interop_pki.serial("left", KIND)
    crl = write_crl(interop_pki, KIND, interop_run_dir / "crl" / f"ca-{KIND}.crl",
                    {revoked: x509.ReasonFlags.key_compromise}, number=5, der=True)
    fresh = reissue_host_cert(interop_pki, interop_run_dir / "pki-fresh-left", "left", KIND)
    assert fresh.serial("left", KIND) != revoked
    return crl, fresh


@contextmanager
def peers(topo: Topology, client_pki: TestPki,
          gateway_pki: TestPki, crl: Path, revocation: str | None
          ) -> Iterator[tuple[AioipsecPeer, StrongSwanPeer]]:
    """aioipsec gateway (right) with ``crls = [crl]`` (and ``remote.revocation``),
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
        if revocation is not None:
            text = text.replace(remote, f'{remote}, revocation = "{revocation}"')
        # top-level keys go before the first table
        gw.config_path.write_text(f'crls = ["{crl}"]\n' + text)
        gw.start()
        client = StrongSwanPeer(topo, "left")
        started.append(client)
        client.configure(conn, client_pki)
        client.start()
        yield gw, client
    except BaseException:
        failed = True  # print both logs' tails
        raise
    finally:
        fixtures.stop_peers(started, failed, "log", lines=80)


def test_revoked_client_certificate_is_refused(direct_topology: Topology, interop_pki: TestPki,
                                               crl_setup: tuple[Path, TestPki]) -> None:
    crl, _fresh = crl_setup
    with peers(direct_topology, interop_pki, interop_pki, crl, None) as (gw, client):
        with pytest.raises(StrongSwanError):
            client.initiate(timeout=10)
        line = gw.wait_log(r"AUTHENTICATION_FAILED IKE_AUTH peer=\S+ .*", timeout=10).group(0)
        assert f"{direct_topology.left.outer4}[left.interop.example]" in line
        assert "certificate 'C=XX, O=aioipsec interop, CN=left.interop.example' is revoked" in line
        assert "reason keyCompromise" in line and "#5" in line
        # charon was told: AUTHENTICATION_FAILED, no IKE SA left
        client.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=5)
        assert client.list_sas() == []
        assert gw.list_sas() == []


def test_fresh_certificate_from_the_same_ca_connects_under_strict(
        direct_topology: Topology, interop_pki: TestPki, crl_setup: tuple[Path, TestPki]) -> None:
    crl, fresh = crl_setup
    with peers(direct_topology, fresh, interop_pki, crl, "strict") as (gw, client):
        client.initiate(timeout=10)
        client.wait_established(10)
        gw.wait_established(10)
        assert re.search(
            r"CRL check peer=192\.0\.2\.1\[left\.interop\.example\]: certificate "
            r"'C=XX, O=aioipsec interop, CN=left\.interop\.example' not revoked, "
            r"CRL of 'C=XX, O=aioipsec interop, CN=aioipsec interop ecdsa CA' #5", gw.logs()), gw.logs()[-3000:]
        assert "revoked (" not in gw.logs()
