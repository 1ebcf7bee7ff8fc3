"""IKEv2 EAP (RFC 7296 §2.16) against strongSwan charon, in network namespaces.

The gateway proves itself with an ECDSA certificate of the test CA; the client
authenticates with EAP-MD5 (or EAP-GTC) and the password of ``[secrets.eap-alice]``
(charon: ``secrets { eap-alice { ... } }``):

* charon client (``local { auth = eap-md5, eap_id = alice }``) -> aioipsec gateway
  (``remote = { auth = "eap-md5", eap_id = "%any" }``);
* aioipsec client (``local = { auth = "eap-md5", eap_id = "alice" }``) -> charon
  gateway (``remote { auth = eap-md5, eap_id = %any }``);
* a wrong password both ways: no SA, AUTHENTICATION_FAILED, our log names the peer
  and the EAP identity.

The shared harness renders symmetric pubkey configurations; this module starts its
peers itself and rewrites the rendered local/remote sections before they start.
charon gets the eap-identity, eap-md5 and eap-gtc plugins; as a GTC gateway its
xauth-generic backend checks the password against the EAP secret."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import fixtures
from . import strongswan as ss_mod
from .aioipsec_peer import AioipsecPeer
from .certs import TestPki
from .netns import Topology
from .strongswan import XAUTH_PLUGIN, Connection, StrongSwanError, StrongSwanPeer
from .test_ikev2_strongswan import assert_clean_log, ping_both_ways

pytestmark = pytest.mark.interop

PROFILE = "ikev2-cert-ecdsa"
PASSWORD = "alice-eap-pw"
EAP_PLUGINS = " eap-identity eap-md5 eap-gtc"


@pytest.fixture
def eap_peers(request: pytest.FixtureRequest, interop_pki: TestPki,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Callable[..., Any]]]:
    """``charon(topo, side, patch)`` / ``ours(topo, side, patch)``: configure the
    pubkey profile, rewrite the rendered file with ``patch(text)``, start."""
    real = ss_mod.render_strongswan_conf

    def with_eap(**kw: Any) -> str:
        text = real(**kw)
        text = re.sub(r"(\n\s*load = [^\n]*)", lambda m: m.group(1) + EAP_PLUGINS, text, count=1)
        # the GTC server checks the password with an XAUTH backend: the generic
        # one (the EAP/XAUTH secrets), not PAM
        return text.replace("    plugins {\n", "    plugins {\n        eap-gtc {\n"
                            "            backend = generic\n        }\n", 1)

    monkeypatch.setattr(ss_mod, "render_strongswan_conf", with_eap)
    charons: list[StrongSwanPeer] = []
    ours: list[AioipsecPeer] = []

    def charon(topo: Topology, side: str, patch: Callable[[str], str]) -> StrongSwanPeer:
        peer = StrongSwanPeer(topo, side)
        charons.append(peer)
        peer.configure(Connection.named(PROFILE), interop_pki)
        conf = peer.swanctl_dir / "swanctl.conf"
        conf.write_text(patch(conf.read_text()))
        peer.start()
        return peer

    def aio(topo: Topology, side: str, patch: Callable[[str], str]) -> AioipsecPeer:
        peer = AioipsecPeer(topo, side)
        ours.append(peer)
        peer.configure(Connection.named(PROFILE), interop_pki)
        peer.config_path.write_text(patch(peer.config_path.read_text()))
        peer.start()
        return peer

    yield {"charon": charon, "ours": aio}
    failed = fixtures.failed(request, "interop")
    fixtures.stop_peers(ours, failed, "aioipsec.log", lines=80)
    fixtures.stop_peers(charons, failed, "charon.log")


# ---------------------------------------------------------------------------
# config rewriting

def _swanctl_block(text: str, name: str, edit: Callable[[str], str]) -> str:
    m = re.search(rf"\n(\s*){name} \{{\n(.*?)\n\1\}}", text, re.DOTALL)
    assert m is not None, f"no {name} block in\n{text}"
    return text[: m.start(2)] + edit(m.group(2)) + text[m.end(2):]


def _swanctl_secret(text: str, password: str) -> str:
    return text.replace("secrets {\n", f'secrets {{\n    eap-alice {{\n        id = alice\n'
                        f'        secret = "{password}"\n    }}\n', 1)


def charon_client(method: str, password: str) -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = _swanctl_block(text, "local", lambda b: re.sub(
            r"auth = pubkey", f"auth = {method}", re.sub(r"certs = \S+", "eap_id = alice", b)))
        return _swanctl_secret(text, password)
    return patch


def charon_gateway(method: str) -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = _swanctl_block(text, "remote", lambda b: re.sub(
            r"auth = pubkey", f"auth = {method}", re.sub(r"cacerts = \S+", "eap_id = %any", b)))
        return _swanctl_secret(text, PASSWORD)
    return patch


def _toml_common(text: str, password: str) -> str:
    text = text.replace("[connections.ih]\n", "[connections.ih]\nlegacy = true\n", 1)
    return text + f'\n[secrets.eap-alice]\nid = "alice"\nsecret = "{password}"\n'


def our_gateway(method: str) -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = re.sub(r"(?m)^remote = .*$", f'remote = {{ auth = "{method}", eap_id = "%any" }}', text)
        return _toml_common(text, PASSWORD)
    return patch


def our_client(method: str, password: str, my_id: str) -> Callable[[str], str]:
    def patch(text: str) -> str:
        text = re.sub(r"(?m)^local = .*$",
                      f'local = {{ auth = "{method}", id = "{my_id}", eap_id = "alice" }}', text)
        return _toml_common(text, password)
    return patch


def assert_crossed(aio: AioipsecPeer, ss: StrongSwanPeer, timeout: float = 20) -> None:
    ss_child = ss.wait_established(timeout)
    aio_child = aio.wait_established(timeout)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)


# ---------------------------------------------------------------------------
# (a) charon client -> our gateway

@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_charon_eap_client_against_our_gateway(eap_peers, direct_topology: Topology,
                                               method: str) -> None:
    topo = direct_topology
    aio = eap_peers["ours"](topo, "right", our_gateway(method))
    ss = eap_peers["charon"](topo, "left", charon_client(method, PASSWORD))
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    name = method.upper().replace("-", "_")
    assert re.search(rf"EAP method {name} succeeded, no MSK established", logs), logs[-3000:]
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with \S+ successful", logs)
    # charon verified our final AUTH (keyed with SK_pr) and we its AUTH (SK_pi)
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with EAP successful", logs)
    alog = aio.logs()
    assert re.search(rf"EAP succeeded .*eap_id=alice method={name.replace('_', '-')}", alog), alog[-3000:]
    # our status knows charon's client by its EAP identity next to its IDi (swanctl's remote-eap-id)
    (sa,) = aio.status()["ike_sas"]
    assert (sa["remote_eap_id"], sa["local_eap_id"]) == ("alice", None) and sa["remote_id"] != "alice", sa
    assert re.search(r"remote '[^']*' @ \S+ EAP: 'alice'", aio.cli("status"))
    ping_both_ways(topo, "right")
    assert PASSWORD not in alog
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# (b) our client -> charon gateway

@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_our_eap_client_against_charon_gateway(eap_peers, direct_topology: Topology,
                                               method: str) -> None:
    if method == "eap-gtc" and not XAUTH_PLUGIN.exists():
        pytest.skip(f"charon's EAP-GTC server needs an XAUTH backend: {XAUTH_PLUGIN} missing")
    topo = direct_topology
    ss = eap_peers["charon"](topo, "right", charon_gateway(method))
    aio = eap_peers["ours"](topo, "left", our_client(method, PASSWORD, topo.left.fqdn))
    aio.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    name = method.upper().replace("-", "_")
    assert re.search(rf"EAP method {name} succeeded, no MSK established", logs), logs[-3000:]
    assert re.search(r"authentication of '[^']*left\.interop\.example[^']*' with EAP successful", logs)
    (sa,) = aio.status()["ike_sas"]
    assert (sa["local_eap_id"], sa["remote_eap_id"]) == ("alice", None), sa
    ping_both_ways(topo, "left")
    alog = aio.logs()
    assert PASSWORD not in alog
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# (c) wrong passwords

def test_charon_client_with_a_wrong_password_is_refused(eap_peers, direct_topology: Topology) -> None:
    topo = direct_topology
    aio = eap_peers["ours"](topo, "right", our_gateway("eap-md5"))
    ss = eap_peers["charon"](topo, "left", charon_client("eap-md5", "not-the-password"))
    with pytest.raises((StrongSwanError, Exception), match="(?i)initiate|auth|fail"):
        ss.initiate(timeout=15)
    peer_ip = topo.left.outer4
    m = aio.wait_log(rf"AUTHENTICATION_FAILED IKE_AUTH peer={re.escape(peer_ip)}\S*.*"
                     r"EAP-MD5 authentication of EAP identity 'alice' failed", timeout=5)
    assert m
    ss.wait_log(r"received (EAP_FAILURE|AUTHENTICATION_FAILED)", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    assert "not-the-password" not in aio.logs()
    aio.stop()
    assert_clean_log(aio)


def test_our_client_with_a_wrong_password_is_refused(eap_peers, direct_topology: Topology) -> None:
    topo = direct_topology
    ss = eap_peers["charon"](topo, "right", charon_gateway("eap-md5"))
    aio = eap_peers["ours"](topo, "left", our_client("eap-md5", "not-the-password", topo.left.fqdn))
    with pytest.raises(Exception, match="(?i)initiate|auth|fail"):
        aio.initiate(timeout=15)
    peer_ip = topo.right.outer4
    aio.wait_log(rf"AUTHENTICATION_FAILED IKE_AUTH peer={re.escape(peer_ip)}\S*.*alice", timeout=5)
    ss.wait_log(r"EAP method EAP_MD5 failed", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    assert "not-the-password" not in aio.logs()
    aio.stop()
    assert_clean_log(aio)
