"""RFC 8784 PPKs with EAP authentication against charon 5.9.8 (EAP-MD5 /
EAP-GTC, no MSK; the gateway proves itself with a certificate): the PPK
goes in at the client's AUTH after EAP, as charon does it.

* charon EAP client with ``ppk_id`` -> our EAP gateway with the PPK;
* our EAP client with ``ppk_id`` -> charon EAP gateway with the PPK;
* charon EAP client with a PPK_ID our gateway does not know (not required):
  our gateway checks its NO_PPK_AUTH and both continue without the PPK;
* RFC 4739 two rounds (certificate with the PPK, then EAP-MD5) both ways,
  with :mod:`.test_ikev2_multiauth`'s rewrites.

The peers are started by :mod:`.test_ikev2_eap`'s ``eap_peers`` fixture;
this module adds the PPK settings to the rewritten configurations."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from . import test_ikev2_multiauth as multiauth
from .netns import Topology
from .strongswan import XAUTH_PLUGIN
from .test_ikev2_eap import (  # noqa: F401  (eap_peers: the fixture)
    PASSWORD,
    assert_crossed,
    charon_client,
    charon_gateway,
    eap_peers,
    our_client,
    our_gateway,
)
from .test_ikev2_strongswan import assert_clean_log, ping_both_ways

pytestmark = pytest.mark.interop

PPK_ID = "ppk-eap-interop"
PPK = "0x" + "c5" * 32


def charon_ppk(then: Callable[[str], str], ppk_id: str | None, ppk_ids: tuple[str, ...] = (PPK_ID,), *,
               required: bool = False) -> Callable[[str], str]:
    """``then`` (the EAP rewrite), plus swanctl ``ppk_id`` / ``ppk_required``
    and ``secrets.ppk-<n>``."""
    def patch(text: str) -> str:
        text = then(text)
        opts = (f"\n        ppk_id = {ppk_id}" if ppk_id else "") + f"\n        ppk_required = {'yes' if required else 'no'}"
        text = re.sub(r"(\n\s*dpd_delay = [^\n]*)", lambda m: m.group(1) + opts, text, count=1)
        for n, i in enumerate(ppk_ids):
            text = text.replace("secrets {\n", f'secrets {{\n    ppk-{n} {{\n        id = {i}\n'
                                f'        secret = {PPK}\n    }}\n', 1)
        return text
    return patch


def our_ppk(then: Callable[[str], str], ppk_id: str | None, ppk_ids: tuple[str, ...] = (PPK_ID,), *,
            required: bool = False) -> Callable[[str], str]:
    """``then`` (the EAP rewrite), plus ``ppk_id`` / ``ppk_required`` and ``[secrets.ppk-<n>]``."""
    def patch(text: str) -> str:
        text = then(text)
        opts = (f'ppk_id = "{ppk_id}"\n' if ppk_id else "") + f"ppk_required = {'true' if required else 'false'}\n"
        text = text.replace("[connections.ih]\n", "[connections.ih]\n" + opts, 1)
        for n, i in enumerate(ppk_ids):
            text += f'\n[secrets.ppk-{n}]\nid = "{i}"\nsecret = "{PPK}"\n'
        return text
    return patch


def assert_no_secrets(log: str) -> None:
    assert PASSWORD not in log and "c5c5c5c5" not in log.lower()


@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_charon_eap_client_with_ppk_against_our_gateway(eap_peers, direct_topology: Topology,  # noqa: F811
                                                        method: str) -> None:
    """Both require the PPK: charon mixes it ("using PPK for PPK_ID"), we do
    ("PPK used"); the Child SA (keyed from the mixed SK_d) carries pings."""
    topo = direct_topology
    aio = eap_peers["ours"](topo, "right", our_ppk(our_gateway(method), None, required=True))
    ss = eap_peers["charon"](topo, "left", charon_ppk(charon_client(method, PASSWORD), PPK_ID, required=True))
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    name = method.upper().replace("-", "_")
    assert re.search(rf"EAP method {name} succeeded, no MSK established", logs), logs[-3000:]
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with EAP successful", logs)
    ss.wait_log(rf"using PPK for PPK_ID '{PPK_ID}'", timeout=5)
    aio.wait_log(rf"PPK used .*ppk_id={PPK_ID}", timeout=5)
    (sa,) = aio.status()["ike_sas"]
    assert sa["ppk_id"] == PPK_ID and sa["remote_eap_id"] == "alice", sa
    ping_both_ways(topo, "right")
    assert_no_secrets(aio.logs())
    aio.stop()
    assert_clean_log(aio)


@pytest.mark.parametrize("method", ["eap-md5", "eap-gtc"])
def test_our_eap_client_with_ppk_against_charon_gateway(eap_peers, direct_topology: Topology,  # noqa: F811
                                                        method: str) -> None:
    if method == "eap-gtc" and not XAUTH_PLUGIN.exists():
        pytest.skip(f"charon's EAP-GTC server needs an XAUTH backend: {XAUTH_PLUGIN} missing")
    topo = direct_topology
    ss = eap_peers["charon"](topo, "right", charon_ppk(charon_gateway(method), None, required=True))
    aio = eap_peers["ours"](topo, "left", our_ppk(our_client(method, PASSWORD, topo.left.fqdn), PPK_ID,
                                                  required=True))
    aio.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    assert re.search(r"authentication of '[^']*left\.interop\.example[^']*' with EAP successful", logs), logs[-3000:]
    ss.wait_log(rf"using PPK for PPK_ID '{PPK_ID}'", timeout=5)
    aio.wait_log(rf"PPK used .*ppk_id={PPK_ID}", timeout=5)
    (sa,) = aio.status()["ike_sas"]
    assert sa["ppk_id"] == PPK_ID and sa["local_eap_id"] == "alice", sa
    ping_both_ways(topo, "left")
    assert_no_secrets(aio.logs())
    aio.stop()
    assert_clean_log(aio)


def test_charon_eap_client_unknown_ppk_id_falls_back(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    """charon's PPK_ID is unknown to our gateway, neither requires a PPK: we
    verify charon's NO_PPK_AUTH (its AUTH after EAP with the unmodified
    SK_pi), answer without PPK_IDENTITY, and charon continues without it."""
    topo = direct_topology
    aio = eap_peers["ours"](topo, "right", our_ppk(our_gateway("eap-md5"), None, ("ppk-other",)))
    ss = eap_peers["charon"](topo, "left", charon_ppk(charon_client("eap-md5", PASSWORD), PPK_ID))
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    ss.wait_log(rf"peer didn't use PPK for PPK_ID '{PPK_ID}'", timeout=5)
    aio.wait_log(rf"no PPK for PPK_ID '{PPK_ID}', ignored because PPK is not required; using NO_PPK_AUTH",
                 timeout=5)
    (sa,) = aio.status()["ike_sas"]
    assert sa["ppk_id"] is None, sa
    ping_both_ways(topo, "right")
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# RFC 4739: certificate round with the PPK, then an EAP-MD5 round

def test_charon_two_round_client_with_ppk_against_our_gateway(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    """charon (``local-2``, ``ppk_id``) mixes the PPK at its first round's
    AUTH; our gateway (``remote-2``, PPK required) answers PPK_IDENTITY
    there; round 2's AUTH after EAP and the Child SA use the mixed keys."""
    topo = direct_topology
    aio = eap_peers["ours"](topo, "right", our_ppk(multiauth.our_gateway(), None, required=True))
    ss = eap_peers["charon"](topo, "left", charon_ppk(multiauth.charon_client(PASSWORD), PPK_ID, required=True))
    ss.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    assert re.search(r"authentication of '[^']*right\.interop\.example[^']*' with EAP successful", logs), logs[-3000:]
    ss.wait_log(rf"using PPK for PPK_ID '{PPK_ID}'", timeout=5)
    aio.wait_log(rf"PPK used .*ppk_id={PPK_ID}", timeout=5)
    (sa,) = aio.status()["ike_sas"]
    assert sa["ppk_id"] == PPK_ID and sa["remote_eap_id"] == "alice", sa
    ping_both_ways(topo, "right")
    assert_no_secrets(aio.logs())
    aio.stop()
    assert_clean_log(aio)


def test_our_two_round_client_with_ppk_against_charon_gateway(eap_peers, direct_topology: Topology) -> None:  # noqa: F811
    topo = direct_topology
    ss = eap_peers["charon"](topo, "right", charon_ppk(multiauth.charon_gateway(), None, required=True))
    aio = eap_peers["ours"](topo, "left", our_ppk(multiauth.our_client(PASSWORD), PPK_ID, required=True))
    aio.initiate(timeout=20)
    assert_crossed(aio, ss)
    logs = ss.logs()
    assert re.search(r"authentication of 'alice' with EAP successful", logs), logs[-3000:]
    ss.wait_log(rf"using PPK for PPK_ID '{PPK_ID}'", timeout=5)
    aio.wait_log(rf"PPK used .*ppk_id={PPK_ID}", timeout=5)
    (sa,) = aio.status()["ike_sas"]
    assert sa["ppk_id"] == PPK_ID and sa["local_eap_id"] == "alice", sa
    ping_both_ways(topo, "left")
    assert_no_secrets(aio.logs())
    aio.stop()
    assert_clean_log(aio)
