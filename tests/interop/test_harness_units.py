"""The harness's pure parts (rendering, parsing): no root, no namespaces needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .certs import generate_pki
from . import netns, strongswan
from .netns import Namespace, Side, Topology, run_prefix
from .peer import Peer, ProcessPeer
from .strongswan import (
    PROFILES, WRONG_PSK, Connection, StrongSwanPeer, parse_key_log, parse_vici_pretty, render_strongswan_conf,
    render_swanctl, render_template, sas_from_pretty, short_lifetimes,
)

# captured from `swanctl --list-sas --pretty` of a kernel-libipsec peer (strongSwan 5.9.8)
PRETTY = """\
list-sa event {
  ih {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 192.0.2.1
    local-id = C=XX, O=aioipsec interop, CN=left.interop.example
    initiator = yes
    initiator-spi = d94c758181f336d7
    responder-spi = 35c17e598783e0d7
    encr-alg = AES_GCM_16
    child-sas {
      ih-1 {
        name = ih
        state = INSTALLED
        mode = TUNNEL
        spi-in = 83592d8a
        spi-out = a95efabc
        bytes-in = 252
        packets-in = 3
        bytes-out = 168
        packets-out = 2
        local-ts = [
          203.0.113.0/25
        ]
        remote-ts = [
          203.0.113.128/25
          203.0.113.200/32
        ]
      }
    }
  }
}
list-sas reply {
}
"""

KEY_LOG = """\
19:03:35 11[IKE] <ih|1> Sk_ei secret => 20 bytes @ 0x7ff7bc00c430
19:03:35 11[IKE] <ih|1>    0: 39 EE 08 E7 B1 02 D6 94 86 AD FC 7D 68 31 1C D2  9..........}h1..
19:03:35 11[IKE] <ih|1>   16: B1 8F 52 26                                      ..R&
19:03:35 15[CHD] <ih|1> encryption initiator key => 20 bytes @ 0x7ff7c0003410
19:03:35 15[CHD] <ih|1>    0: D9 6B F8 60 19 DE 3E 3B 90 69 09 DC B5 3E 70 62  .k.`..>;.i...>pb
19:03:35 15[CHD] <ih|1>   16: A4 A6 C8 E9                                      ....
19:03:35 15[CHD] <ih|1> adding inbound ESP SA
19:03:35 15[IKE] <ih|1> CHILD_SA ih{1} established with SPIs 83592d8a_i a95efabc_o and TS \
203.0.113.0/25 === 203.0.113.128/25
"""


def make_topology(kind: str) -> Topology:
    """Topology objects without creating anything (rendering needs only addresses)."""
    run_dir = Path("/nonexistent")
    left_ns, right_ns = Namespace("t-left", run_dir), Namespace("t-right", run_dir)
    right_outer = "192.0.2.2" if kind == "direct" else "198.51.100.2"
    v6 = kind == "direct"
    left = Side("left", left_ns, "192.0.2.1", "2001:db8:1::1" if v6 else None, "203.0.113.1",
                "203.0.113.0/25", "2001:db8:a::1", "2001:db8:a::/64", "left.interop.example")
    right = Side("right", right_ns, right_outer, "2001:db8:1::2" if v6 else None,
                 "203.0.113.129", "203.0.113.128/25", "2001:db8:b::1", "2001:db8:b::/64",
                 "right.interop.example")
    nat = Namespace("t-nat", run_dir) if kind == "nat" else None
    return Topology(kind, "t-", run_dir, left, right, nat)


def setting(conf: str, key: str) -> list[str]:
    return re.findall(rf"^\s*{re.escape(key)} = (.*)$", conf, re.M)


def test_parse_pretty_sections_lists_and_values_with_blanks() -> None:
    (label, msg), (label2, reply) = parse_vici_pretty(PRETTY)
    assert (label, label2, reply) == ("list-sa event", "list-sas reply", {})
    ike = msg["ih"]
    assert ike["local-id"] == "C=XX, O=aioipsec interop, CN=left.interop.example"
    child = ike["child-sas"]["ih-1"]
    assert child["remote-ts"] == ["203.0.113.128/25", "203.0.113.200/32"]
    assert child["local-ts"] == ["203.0.113.0/25"]


def test_sas_from_pretty() -> None:
    (sa,) = sas_from_pretty(PRETTY)
    assert (sa.name, sa.state, sa.version, sa.initiator) == ("ih", "ESTABLISHED", 2, True)
    assert (sa.spi_i, sa.spi_r) == (0xD94C758181F336D7, 0x35C17E598783E0D7)
    (child,) = sa.children
    assert (child.name, child.spi_in, child.spi_out) == ("ih", 0x83592D8A, 0xA95EFABC)
    assert (child.bytes_in, child.packets_in, child.bytes_out, child.packets_out) == (
        252, 3, 168, 2)


def test_parse_pretty_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_vici_pretty("list-sa event {\n  ih {\n")
    with pytest.raises(ValueError):
        parse_vici_pretty("key value without section\n")


def test_parse_key_log() -> None:
    keys = parse_key_log(KEY_LOG)
    assert keys.last("Sk_ei secret") == bytes.fromhex("39EE08E7B102D69486ADFC7D68311CD2B18F5226")
    assert keys.last("encryption initiator key") == bytes.fromhex(
        "D96BF86019DE3E3B906909DCB53E7062A4A6C8E9")
    assert keys.child_spis == [("ih", 0x83592D8A, 0xA95EFABC)]


def test_render_template_refuses_unknown_placeholders() -> None:
    assert render_template("a @X@ b", {"X": "1"}) == "a 1 b"
    with pytest.raises(KeyError):
        render_template("a @Y@ b", {"X": "1"})


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("side", ["left", "right"])
def test_render_every_profile(profile: str, side: str) -> None:
    prof = PROFILES[profile]
    conf = render_swanctl(Connection(prof), make_topology("direct"), side)
    assert "@" not in conf.replace("unix://", "")
    assert setting(conf, "version") == [str(prof.version)]
    assert setting(conf, "proposals") == [prof.proposals]
    assert setting(conf, "esp_proposals") == [prof.esp_proposals]
    assert setting(conf, "aggressive") == ["yes" if prof.aggressive else "no"]
    me, other = ("left", "right") if side == "left" else ("right", "left")
    local_id, remote_id = setting(conf, "id")
    if prof.id_kind == "ip":
        assert (local_id, remote_id) == ({"left": "192.0.2.1", "right": "192.0.2.2"}[me],
                                         {"left": "192.0.2.1", "right": "192.0.2.2"}[other])
    else:
        assert (local_id, remote_id) == (f"{me}.interop.example", f"{other}.interop.example")
    if prof.auth == "pubkey":
        assert setting(conf, "certs") == [f"{me}-{prof.cert_kind}.crt.pem"]
        assert setting(conf, "cacerts") == [f"ca-{prof.cert_kind}.crt.pem"]
        assert setting(conf, "send_cert") == ["always"]
        assert setting(conf, "secret") == []
    else:
        assert setting(conf, "auth") == ["psk", "psk"]
        assert len(setting(conf, "secret")) == 1
    assert conf.count("{") == conf.count("}")


def test_render_views_and_overrides() -> None:
    conn = Connection.named("ikev2-psk-gcm")
    direct, nat = make_topology("direct"), make_topology("nat")
    right = render_swanctl(conn, direct, "right")
    assert setting(right, "local_addrs") == ["192.0.2.2"]
    assert setting(right, "remote_addrs") == ["192.0.2.1"]
    assert setting(right, "local_ts") == ["203.0.113.128/25"]
    assert setting(right, "remote_ts") == ["203.0.113.0/25"]
    # behind the NAT right accepts left from any address; left still targets right
    assert setting(render_swanctl(conn, nat, "right"), "remote_addrs") == ["%any"]
    assert setting(render_swanctl(conn, nat, "left"), "remote_addrs") == ["198.51.100.2"]
    v6 = render_swanctl(Connection.named("ikev2-psk-gcm", family=6), direct, "left")
    assert setting(v6, "remote_addrs") == ["2001:db8:1::2"]
    assert setting(v6, "remote_ts") == ["2001:db8:b::/64"]
    with pytest.raises(Exception, match="IPv6"):
        render_swanctl(Connection.named("ikev2-psk-gcm", family=6), nat, "left")
    wrong = render_swanctl(conn.with_wrong_psk(), direct, "left")
    assert setting(wrong, "secret") == [f'"{WRONG_PSK}"']
    ike, child = short_lifetimes(ike_rekey=30, child_rekey=10)
    timed = render_swanctl(Connection.named("ikev2-psk-gcm", ike_options=ike,
                                            child_options=child), direct, "left")
    assert setting(timed, "rekey_time") == ["30s", "10s"]
    assert setting(timed, "life_time") == ["15s"]
    assert setting(timed, "rand_time") == ["0s", "0s"]
    v1_ike, _ = short_lifetimes(ike_rekey=30, version=1)
    assert "reauth_time" in v1_ike and "rekey_time" not in v1_ike


def test_strongswan_conf_plugin_order_and_log_levels(tmp_path: Path) -> None:
    conf = render_strongswan_conf(logfile=tmp_path / "c.log", vici=tmp_path / "c.vici",
                                  log_keys=True)
    (load,) = setting(conf, "load")[:1]
    plugins = load.split()
    # the first kernel-ipsec backend wins: libipsec must come before netlink
    assert plugins.index("kernel-libipsec") < plugins.index("kernel-netlink")
    assert {"vici", "socket-default", "curve25519", "chapoly", "gcm"} <= set(plugins)
    assert setting(conf, "install_routes") == ["yes"]
    assert setting(conf, "ike") == ["4"] and setting(conf, "chd") == ["4"]
    assert setting(conf, "net") == ["1"] and setting(conf, "esp") == ["1"]
    assert conf.count(f"unix://{tmp_path / 'c.vici'}") == 2
    quiet = render_strongswan_conf(logfile=tmp_path / "c.log", vici=tmp_path / "c.vici")
    assert setting(quiet, "ike") == ["2"]


def test_pki(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pki = generate_pki(tmp_path, kinds=("ecdsa",))
    cert = x509.load_pem_x509_certificate(pki.cert("left", "ecdsa").read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert("ecdsa").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["left.interop.example"]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (pki.key("left", "ecdsa").stat().st_mode & 0o077) == 0
    swanctl = tmp_path / "swanctl"
    pki.install_swanctl(swanctl, "right", "ecdsa")
    assert sorted(p.relative_to(swanctl).as_posix() for p in swanctl.rglob("*.pem")) == [
        "private/right-ecdsa.key.pem", "x509/right-ecdsa.crt.pem", "x509ca/ca-ecdsa.crt.pem"]
    assert not isinstance(cert.public_key(), rsa.RSAPublicKey)


def test_run_prefix_is_per_process() -> None:
    assert run_prefix(0x1F2E) == "aio1f2e-"
    assert run_prefix().startswith("aio") and run_prefix().endswith("-")


def test_unavailable_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "root" in (netns.netns_usable() or "")
    monkeypatch.setattr(strongswan, "CHARON", Path("/nonexistent/charon"))
    reason = strongswan.charon_available() or ""
    assert "/nonexistent/charon" in reason and "install-system-deps.sh" in reason


def test_strongswan_peer_satisfies_peer_protocol(tmp_path: Path) -> None:
    topology = make_topology("direct")
    topology.run_dir = tmp_path
    peer = StrongSwanPeer(topology, "left")
    assert isinstance(peer, Peer)
    assert peer.dir.parent == tmp_path and (peer.dir / "run").is_dir()
    assert not peer.alive() and peer.pid is None
    # a process peer is only a partial Peer until the aioipsec adapter adds control
    assert not isinstance(ProcessPeer(topology, "left", ["-c", "pass"]), Peer)
