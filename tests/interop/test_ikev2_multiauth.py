"""IKEv2 multiple authentication rounds (RFC 4739) against strongSwan charon, in
network namespaces: round 1 with the ECDSA certificates of the test CA, round 2
EAP-MD5 with the password of ``[secrets.eap-alice]`` (charon: ``secrets {
eap-alice { ... } }``), as swanctl configures it with ``local-2`` / ``remote-2``:

* charon client (``local-2 { auth = eap-md5, id = alice }``) -> aioipsec gateway
  (``remote-2 = { auth = "eap-md5", eap_id = "%any" }``): both rounds, the Child
  SA, pings; our status shows the certificate identity and the EAP identity;
* aioipsec client (``local-2 = { auth = "eap-md5", id = "alice" }``) -> charon
  gateway (``remote-2 { auth = eap-md5, eap_id = %any }``);
* a wrong round-2 password both ways, and a charon client without ``local-2``
  against our gateway requiring it: no SA, AUTHENTICATION_FAILED naming the peer;
* a certificate second round (machine, then user certificate; RFC 4739 as
  charon sequences it: IDi, CERT, AUTH, answered without AUTH) both ways: charon
  client ``local-2 { auth = pubkey, certs = <user>, id = alice@interop.example }``
  -> our ``remote-2 = { auth = "pubkey", cacerts = [...] }``, and our ``local-2``
  -> charon ``remote-2 { auth = pubkey }``; the user certificate is issued by
  the ECDSA test CA (``certs.issue_user_cert``).

Peers are started by ``test_ikev2_eap``'s ``eap_peers`` fixture (the EAP plugins
loaded), which rewrites the rendered configurations before they start."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable

import pytest

from .aioipsec_peer import AioipsecPeer
from .certs import TestPki, issue_user_cert
from .netns import Topology
from .strongswan import StrongSwanPeer
from .test_ikev2_eap import (
    PASSWORD,
    _swanctl_secret,
    _toml_common,
    assert_crossed,
    eap_peers,  # noqa: F401  (the fixture)
)
from .test_ikev2_strongswan import assert_clean_log, ping_both_ways

pytestmark = pytest.mark.interop


def _swanctl_round2(text: str, block: str) -> str:
    """Insert a ``local-2`` / ``remote-2`` block before the children."""
    return text.replace("        children {\n", block + "        children {\n", 1)


def charon_client(password: str, *, round2: bool = True) -> Callable[[str], str]:
    def patch(text: str) -> str:
        if round2:
            text = _swanctl_round2(text, "        local-2 {\n            auth = eap-md5\n"
                                   "            id = alice\n            eap_id = alice\n        }\n")
        return _swanctl_secret(text, password)
    return patch


def charon_gateway() -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = _swanctl_round2(text, "        remote-2 {\n            auth = eap-md5\n"
                               "            eap_id = %any\n        }\n")
        return _swanctl_secret(text, PASSWORD)
    return patch


def our_gateway() -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = re.sub(r"(?m)^(remote = .*)$", r'\1\nremote-2 = { auth = "eap-md5", eap_id = "%any" }', text, count=1)
        return _toml_common(text, PASSWORD)
    return patch


def our_client(password: str) -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = re.sub(r"(?m)^(remote = .*)$", r'\1\nlocal-2 = { auth = "eap-md5", id = "alice" }', text, count=1)
        return _toml_common(text, password)
    return patch


def test_charon_two_round_client_against_our_gateway(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    aio: AioipsecPeer = eap_peers["ours"](topo, "right", our_gateway())
    ss: StrongSwanPeer = eap_peers["charon"](topo, "left", charon_client(PASSWORD))
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    assert re.search(r"EAP method EAP_MD5 succeeded, no MSK established", logs), logs[-3000:]
    # charon verified our AUTH in round 1 (certificate) and again after EAP (SK_pr)
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with \S+ successful", logs)
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with EAP successful", logs)
    alog = aio.logs()
    assert re.search(r"IKE_AUTH round 2 EAP started .*round2_id=alice", alog), alog[-3000:]
    assert re.search(r"EAP succeeded .*eap_id=alice method=EAP-MD5", alog), alog[-3000:]
    (sa,) = aio.status()["ike_sas"]
    # both rounds: the certificate's identity and the EAP identity
    assert sa["remote_id"] == topo.left.fqdn and sa["remote_eap_id"] == "alice", sa
    assert re.search(r"remote '[^']*left\.interop\.example[^']*' @ \S+ EAP: 'alice'", aio.cli("status"))
    ping_both_ways(topo, "right")
    assert PASSWORD not in alog
    aio.stop()
    assert_clean_log(aio)


def test_our_two_round_client_against_charon_gateway(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    ss: StrongSwanPeer = eap_peers["charon"](topo, "right", charon_gateway())
    aio: AioipsecPeer = eap_peers["ours"](topo, "left", our_client(PASSWORD))
    aio.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    assert re.search(r"EAP method EAP_MD5 succeeded, no MSK established", logs), logs[-3000:]
    # charon checked our certificate in round 1, then our EAP round as 'alice'
    assert re.search(r"authentication of '[^']*left\.interop\.example[^']*' with \S+ successful", logs)
    assert re.search(r"authentication of 'alice' with EAP successful", logs), logs[-3000:]
    (sa,) = aio.status()["ike_sas"]
    assert sa["local_id"] == topo.left.fqdn and sa["local_eap_id"] == "alice", sa
    ping_both_ways(topo, "left")
    assert PASSWORD not in aio.logs()
    aio.stop()
    assert_clean_log(aio)


def test_charon_client_wrong_round2_password_is_refused(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    aio: AioipsecPeer = eap_peers["ours"](topo, "right", our_gateway())
    ss: StrongSwanPeer = eap_peers["charon"](topo, "left", charon_client("not-the-password"))
    with pytest.raises(Exception, match="(?i)initiate|auth|fail"):
        ss.initiate(timeout=15)
    peer_ip = topo.left.outer4
    aio.wait_log(rf"AUTHENTICATION_FAILED IKE_AUTH peer={re.escape(peer_ip)}\S*.*"
                 r"EAP-MD5 authentication of EAP identity 'alice' failed \(second round, remote-2\)", timeout=5)
    ss.wait_log(r"received (EAP_FAILURE|AUTHENTICATION_FAILED)", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    assert "not-the-password" not in aio.logs()
    aio.stop()
    assert_clean_log(aio)


def test_our_client_wrong_round2_password_is_refused(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    ss: StrongSwanPeer = eap_peers["charon"](topo, "right", charon_gateway())
    aio: AioipsecPeer = eap_peers["ours"](topo, "left", our_client("not-the-password"))
    with pytest.raises(Exception, match="(?i)initiate|auth|fail"):
        aio.initiate(timeout=15)
    peer_ip = topo.right.outer4
    aio.wait_log(rf"AUTHENTICATION_FAILED IKE_AUTH peer={re.escape(peer_ip)}\S*.*alice", timeout=5)
    ss.wait_log(r"EAP method EAP_MD5 failed", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    assert "not-the-password" not in aio.logs()
    aio.stop()
    assert_clean_log(aio)


def test_charon_client_without_round2_is_refused(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    aio: AioipsecPeer = eap_peers["ours"](topo, "right", our_gateway())
    ss: StrongSwanPeer = eap_peers["charon"](topo, "left", charon_client(PASSWORD, round2=False))
    with pytest.raises(Exception, match="(?i)initiate|auth|fail"):
        ss.initiate(timeout=15)
    peer_ip = topo.left.outer4
    aio.wait_log(rf"AUTHENTICATION_FAILED IKE_AUTH peer={re.escape(peer_ip)}\S*.*"
                 r"did not announce a second authentication round .*remote-2", timeout=5)
    ss.wait_log(r"received AUTHENTICATION_FAILED", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# a certificate second round (RFC 4739: machine certificate, then user certificate)

USER = "alice@interop.example"


def _user_cert(topo: Topology, pki: TestPki) -> tuple[str, str]:
    cert, key = issue_user_cert(pki, topo.run_dir / "user-cert", "ecdsa", USER)
    return str(cert), str(key)


def _install_user_key(ss: StrongSwanPeer, key: str) -> None:
    """charon finds private keys in swanctl/private only: copy it there, reload."""
    dst = ss.swanctl_dir / "private" / "user-ecdsa.key.pem"
    shutil.copyfile(key, dst)
    dst.chmod(0o600)
    ss.load()


def test_charon_certificate_round2_client_against_our_gateway(eap_peers, direct_topology: Topology,  # noqa: F811
                                                              interop_pki: TestPki) -> None:
    topo = direct_topology
    cert, key = _user_cert(topo, interop_pki)

    def gateway(text: str) -> str:
        cacerts = re.search(r"(?m)^remote = .*(cacerts = \[[^\]]*\])", text)
        assert cacerts is not None, text
        return re.sub(r"(?m)^(remote = .*)$", r'\1\nremote-2 = { auth = "pubkey", id = "%any", '
                      + cacerts.group(1).replace("\\", "\\\\") + " }", text, count=1)

    def client(text: str) -> str:
        return _swanctl_round2(text, f"        local-2 {{\n            auth = pubkey\n            certs = {cert}\n"
                               f"            id = {USER}\n        }}\n")

    aio: AioipsecPeer = eap_peers["ours"](topo, "right", gateway)
    ss: StrongSwanPeer = eap_peers["charon"](topo, "left", client)
    _install_user_key(ss, key)
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    # charon signed round 1 as the host and round 2 as the user, and verified our round-1 AUTH
    assert re.search(rf"authentication of '{re.escape(USER)}' \(myself\) with \S+ successful", logs), logs[-3000:]
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with \S+ successful", logs)
    alog = aio.logs()
    assert re.search(rf"IKE_AUTH authenticated .*round2_id={re.escape(USER)}", alog), alog[-3000:]
    (sa,) = aio.status()["ike_sas"]
    assert sa["remote_id"] == topo.left.fqdn and sa["remote_round2_id"] == USER and sa["remote_eap_id"] is None, sa
    assert re.search(rf"remote '[^']*left\.interop\.example[^']*' @ \S+ round 2: '{re.escape(USER)}'",
                     aio.cli("status"))
    ping_both_ways(topo, "right")
    aio.stop()
    assert_clean_log(aio)


def test_our_certificate_round2_client_against_charon_gateway(eap_peers, direct_topology: Topology,  # noqa: F811
                                                              interop_pki: TestPki) -> None:
    topo = direct_topology
    cert, key = _user_cert(topo, interop_pki)

    def gateway(text: str) -> str:
        return _swanctl_round2(text, "        remote-2 {\n            auth = pubkey\n            id = %any\n"
                               "            cacerts = ca-ecdsa.crt.pem\n        }\n")

    def client(text: str) -> str:
        return re.sub(r"(?m)^(remote = .*)$", rf'\1\nlocal-2 = {{ auth = "pubkey", id = "{USER}", '
                      rf'certs = ["{cert}"], key = "{key}" }}', text, count=1)

    ss: StrongSwanPeer = eap_peers["charon"](topo, "right", gateway)
    aio: AioipsecPeer = eap_peers["ours"](topo, "left", client)
    aio.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    # charon checked our host certificate in round 1, then our user certificate as alice
    assert re.search(r"authentication of '[^']*left\.interop\.example[^']*' with \S+ successful", logs)
    assert re.search(rf"authentication of '{re.escape(USER)}' with \S+ successful", logs), logs[-3000:]
    (sa,) = aio.status()["ike_sas"]
    assert sa["local_id"] == topo.left.fqdn and sa["local_round2_id"] == USER, sa
    ping_both_ways(topo, "left")
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# a PSK second round (machine certificate, then the user's pre-shared key)

USER_PSK = "a user pre-shared key for the round-2 interop test"


def test_our_psk_round2_client_against_charon_gateway(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    """Our ``local-2 = { auth = "psk", id = USER }`` (its secret the
    ``[secrets.*]`` entry naming USER) against charon's ``remote-2 { auth =
    psk }``: charon finds the key by the round-2 identity, verifies our AUTH
    over the new IDi and answers without AUTH; the Child SA carries traffic."""
    topo = direct_topology

    def gateway(text: str) -> str:
        text = _swanctl_round2(text, f"        remote-2 {{\n            auth = psk\n            id = {USER}\n        }}\n")
        return text.replace("secrets {\n", f'secrets {{\n    ike-user {{\n        id-1 = {USER}\n'
                            f'        secret = "{USER_PSK}"\n    }}\n', 1)

    def client(text: str) -> str:
        text = re.sub(r"(?m)^(remote = .*)$", rf'\1\nlocal-2 = {{ auth = "psk", id = "{USER}" }}', text, count=1)
        return text + f'\n[secrets.ike-user]\nid = ["{USER}"]\nsecret = "{USER_PSK}"\n'

    ss: StrongSwanPeer = eap_peers["charon"](topo, "right", gateway)
    aio: AioipsecPeer = eap_peers["ours"](topo, "left", client)
    aio.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    # charon checked our host certificate in round 1, then our PSK round as the user
    assert re.search(r"authentication of '[^']*left\.interop\.example[^']*' with \S+ successful", logs)
    assert re.search(rf"authentication of '{re.escape(USER)}' with pre-shared key successful", logs), logs[-3000:]
    (sa,) = aio.status()["ike_sas"]
    assert sa["local_id"] == topo.left.fqdn and sa["local_round2_id"] == USER, sa
    ping_both_ways(topo, "left")
    assert USER_PSK not in aio.logs()
    aio.stop()
    assert_clean_log(aio)


def _psk_round2_pair(eap_peers, topo: Topology, client_psk: str) -> tuple[AioipsecPeer, StrongSwanPeer]:  # noqa: F811
    """Our gateway with ``remote-2 = { auth = "psk", id = USER }`` (its secret
    the ``[secrets.*]`` entry naming USER), a charon client with ``local-2 {
    auth = psk, id = USER }`` whose secret for USER is ``client_psk``."""

    def gateway(text: str) -> str:
        text = re.sub(r"(?m)^(remote = .*)$", rf'\1\nremote-2 = {{ auth = "psk", id = "{USER}" }}', text, count=1)
        return text + f'\n[secrets.ike-user]\nid = ["{USER}"]\nsecret = "{USER_PSK}"\n'

    def client(text: str) -> str:
        text = _swanctl_round2(text, f"        local-2 {{\n            auth = psk\n            id = {USER}\n        }}\n")
        return text.replace("secrets {\n", f'secrets {{\n    ike-user {{\n        id-1 = {USER}\n'
                            f'        secret = "{client_psk}"\n    }}\n', 1)

    aio: AioipsecPeer = eap_peers["ours"](topo, "right", gateway)
    ss: StrongSwanPeer = eap_peers["charon"](topo, "left", client)
    return aio, ss


def test_charon_psk_round2_client_against_our_gateway(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    """charon's ``local-2 { auth = psk }`` against our ``remote-2 = { auth =
    "psk" }``: we find the key by the round-2 identity, verify charon's AUTH
    over the new IDi and answer without AUTH; status names the round-2
    identity and the Child SA carries traffic."""
    topo = direct_topology
    aio, ss = _psk_round2_pair(eap_peers, topo, USER_PSK)
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    # charon authenticated as the host in round 1 and as the user with the PSK in round 2
    assert re.search(rf"authentication of '{re.escape(USER)}' \(myself\) with pre-shared key", logs), logs[-3000:]
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with \S+ successful", logs)
    alog = aio.logs()
    assert re.search(rf"IKE_AUTH authenticated .*round2_id={re.escape(USER)}", alog), alog[-3000:]
    (sa,) = aio.status()["ike_sas"]
    assert sa["remote_id"] == topo.left.fqdn and sa["remote_round2_id"] == USER and sa["remote_eap_id"] is None, sa
    ping_both_ways(topo, "right")
    assert USER_PSK not in alog
    aio.stop()
    assert_clean_log(aio)


def test_charon_psk_round2_client_with_the_wrong_key_is_refused(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    aio, ss = _psk_round2_pair(eap_peers, topo, "not-the-user-psk")
    with pytest.raises(Exception, match="(?i)initiate|auth|fail"):
        ss.initiate(timeout=15)
    peer_ip = topo.left.outer4
    aio.wait_log(rf"AUTHENTICATION_FAILED IKE_AUTH peer={re.escape(peer_ip)}\S*.*second round, remote-2 auth = psk",
                 timeout=5)
    ss.wait_log(r"received AUTHENTICATION_FAILED", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    assert "not-the-user-psk" not in aio.logs() and USER_PSK not in aio.logs()
    aio.stop()
    assert_clean_log(aio)
