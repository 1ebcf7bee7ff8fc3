"""The harness options the negotiation tests use (no root, no namespaces): traffic
selector overrides rendered into both ends' configurations, extra charon settings in
strongswan.conf, aioipsec-only TOML keys (``extra``), all loaded by aioipsec's own
loader where aioipsec is concerned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aioipsec.config_file import load_config

from .aioipsec_peer import render_aioipsec_config
from .certs import generate_pki
from .peer import PeerError
from .strongswan import Connection, render_strongswan_conf, render_swanctl
from .test_harness_units import make_topology, setting

BASE = Connection.named("ikev2-psk-gcm")


def _load(tmp_path: Path, text: str):
    path = tmp_path / "aioipsec.toml"
    path.write_text(text)
    return load_config(path)


def test_ts_overrides_both_ends(tmp_path: Path) -> None:
    topo = make_topology("direct")
    conn = replace(BASE, local_ts="203.0.113.128/26",
                   remote_ts="203.0.113.0/26,203.0.113.64/26")
    swanctl = render_swanctl(conn, topo, "right")
    assert setting(swanctl, "local_ts") == ["203.0.113.128/26"]
    assert setting(swanctl, "remote_ts") == ["203.0.113.0/26,203.0.113.64/26"]
    cfg = _load(tmp_path, render_aioipsec_config(conn, topo, "left"))
    (child,) = cfg.connections["ih"].children.values()
    assert [str(ts) for ts in child.local_ts] == ["203.0.113.128/26"]
    assert [str(ts) for ts in child.remote_ts] == ["203.0.113.0/26", "203.0.113.64/26"]
    # without overrides: the topology's inner subnets
    assert setting(render_swanctl(BASE, topo, "right"), "local_ts") == ["203.0.113.128/25"]


def test_charon_options(tmp_path: Path) -> None:
    conf = render_strongswan_conf(logfile=tmp_path / "c.log", vici=tmp_path / "c.vici",
                                  options={"cookie_threshold": "1", "dos_protection": "yes"})
    assert setting(conf, "cookie_threshold") == ["1"]
    assert setting(conf, "dos_protection") == ["yes"]
    plain = render_strongswan_conf(logfile=tmp_path / "c.log", vici=tmp_path / "c.vici")
    assert setting(plain, "cookie_threshold") == []
    # inside the charon section, before the logger
    assert conf.index("cookie_threshold") < conf.index("filelog {")


def test_extra_plugins_are_loaded_last(tmp_path: Path) -> None:
    conf = render_strongswan_conf(logfile=tmp_path / "c.log", vici=tmp_path / "c.vici",
                                  extra_plugins=["curl"])
    plugins = setting(conf, "load")[0].split()
    assert plugins[-1] == "curl" and plugins.count("curl") == 1
    plain = render_strongswan_conf(logfile=tmp_path / "c.log", vici=tmp_path / "c.vici")
    assert "curl" not in setting(plain, "load")[0].split()
    assert setting(plain, "load")[0].split() == plugins[:-1]


def test_aioipsec_extra(tmp_path: Path) -> None:
    topo = make_topology("direct")
    text = render_aioipsec_config(
        replace(BASE, dpd_delay="1s"), topo, "left",
        extra={"global": {"cookie_threshold": 0},
               "ike": {"retransmit_timeout": "0.5s", "retransmit_tries": 2},
               "child": {"dpd_action": "clear"}})
    cfg = _load(tmp_path, text)
    assert cfg.global_config.cookie_threshold == 0
    conn = cfg.connections["ih"]
    assert conn.dpd_delay == 1.0
    assert (conn.retransmit_timeout, conn.retransmit_tries) == (0.5, 2)
    assert conn.children["ih"].dpd_action == "clear"
    # the defaults without extra
    cfg = _load(tmp_path, render_aioipsec_config(BASE, topo, "left"))
    assert cfg.global_config.cookie_threshold == 10
    assert cfg.connections["ih"].retransmit_tries == 3
    with pytest.raises(PeerError, match="only global, ike, child"):
        render_aioipsec_config(BASE, topo, "left", extra={"tun": {"mtu": 1300}})


def test_charon_auth_overrides_and_aioipsec_auth_extra(tmp_path: Path) -> None:
    """test_ikev2_algorithms.py's options: charon's local/remote ``auth`` (RFC 7427
    signature schemes) and aioipsec's auth tables (``rsa_pss``)."""
    pki = generate_pki(tmp_path / "pki", kinds=("ecdsa",))    # the loader only reads the PEM files
    topo = make_topology("direct")
    conn = Connection.named("ikev2-cert-rsa")
    plain = render_swanctl(conn, topo, "right")
    assert setting(plain, "auth") == ["pubkey", "pubkey"]
    pss = render_swanctl(replace(conn, local_auth="ike:rsa/pss-sha256", remote_auth="ike:rsa/pss-sha384"),
                         topo, "right")
    assert setting(pss, "auth") == ["ike:rsa/pss-sha256", "ike:rsa/pss-sha384"]
    files = {"cert": pki.cert("left", "ecdsa"), "key": pki.key("left", "ecdsa"), "cacert": pki.ca_cert("ecdsa")}
    cfg = _load(tmp_path, render_aioipsec_config(conn, topo, "left", files=files,
                                                 extra={"local": {"rsa_pss": True}}))
    ih = cfg.connections["ih"]
    assert ih.local.rsa_pss is True and ih.local.auth == "pubkey" and ih.remote.auth == "pubkey"
    assert _load(tmp_path, render_aioipsec_config(conn, topo, "left", files=files)
                 ).connections["ih"].local.rsa_pss is False


def test_pki_eddsa_and_p521(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    pki = generate_pki(tmp_path, kinds=("ecdsa521", "ed25519", "ed448"))
    for kind, key_type in (("ecdsa521", ec.EllipticCurvePublicKey), ("ed25519", ed25519.Ed25519PublicKey),
                           ("ed448", ed448.Ed448PublicKey)):
        ca = x509.load_pem_x509_certificate(pki.ca_cert(kind).read_bytes())
        for side in ("left", "right"):
            cert = x509.load_pem_x509_certificate(pki.cert(side, kind).read_bytes())
            assert isinstance(cert.public_key(), key_type) and isinstance(ca.public_key(), key_type)
            cert.verify_directly_issued_by(ca)
