"""The aioipsec interop adapter's pure parts: TOML rendering (checked with aioipsec's own
loader) and status mapping.  No root, no namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioipsec.config_file import load_config

from .aioipsec_peer import AioipsecPeer, child_from_status, ike_from_status, render_aioipsec_config
from .certs import generate_pki
from .peer import Peer
from .strongswan import DEFAULT_PSK, PROFILES, WRONG_PSK, Connection, short_lifetimes
from .test_harness_units import make_topology


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return generate_pki(tmp_path_factory.mktemp("pki"), kinds=("ecdsa",))


def _load(tmp_path: Path, text: str):
    path = tmp_path / "aioipsec.toml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("side", ["left", "right"])
def test_every_profile_loads(tmp_path: Path, pki, profile: str, side: str) -> None:
    prof = PROFILES[profile]
    files = None
    if prof.auth == "pubkey":
        kind = "ecdsa"           # the loader only needs readable PEM files
        files = {"cert": pki.cert(side, kind), "key": pki.key(side, kind),
                 "cacert": pki.ca_cert(kind)}
    cfg = _load(tmp_path, render_aioipsec_config(Connection(prof), make_topology("direct"),
                                                 side, files=files))
    conn = cfg.connections["ih"]
    other = "right" if side == "left" else "left"
    outer = {"left": "192.0.2.1", "right": "192.0.2.2"}
    assert conn.version == prof.version and conn.aggressive == prof.aggressive
    assert conn.local_addrs == [outer[side]] and conn.remote_addrs == [outer[other]]
    assert [str(p) for p in conn.proposals] == [prof.proposals]
    if prof.id_kind == "ip":
        assert (conn.local.id, conn.remote.id) == (outer[side], outer[other])
    else:
        assert (conn.local.id, conn.remote.id) == (f"{side}.interop.example",
                                                   f"{other}.interop.example")
    if prof.auth == "pubkey":
        assert conn.local.auth == conn.remote.auth == "pubkey"
        assert conn.local.cert is not None and conn.local.private_key is not None
        assert len(conn.remote.cacerts) == 1 and conn.send_cert == "always"
        assert conn.psk is None
    else:
        assert conn.psk == DEFAULT_PSK.encode()
    (child,) = conn.children.values()
    assert child.name == "ih" and child.mode == "tunnel" and child.start_action == "none"
    assert [str(p) for p in child.esp_proposals] == [prof.esp_proposals]
    inner = {"left": "203.0.113.0/25", "right": "203.0.113.128/25"}
    assert [str(t) for t in child.local_ts] == [inner[side]]
    assert [str(t) for t in child.remote_ts] == [inner[other]]
    assert cfg.tun["name"] == "aioipsec0"


def test_overrides_nat_ipv6_and_wrong_psk(tmp_path: Path) -> None:
    direct, nat = make_topology("direct"), make_topology("nat")
    ike, child = short_lifetimes(ike_rekey=6, child_rekey=3)
    conn = Connection.named("ikev2-psk-gcm", ike_options=ike, child_options=child)
    cfg = _load(tmp_path, render_aioipsec_config(conn, direct, "left"))
    c = cfg.connections["ih"]
    assert (c.rekey_time, c.over_time, c.rand_time) == (6.0, 3.0, 0.0)
    ch = c.children["ih"]
    assert (ch.rekey_time, ch.life_time, ch.rand_time) == (3.0, 4.0, 0.0)
    v1_ike, _ = short_lifetimes(ike_rekey=8, version=1)
    v1 = Connection.named("ikev1-main-psk-aes128-sha1", ike_options=v1_ike)
    assert _load(tmp_path, render_aioipsec_config(v1, direct, "left")).connections["ih"].rekey_time == 8.0
    right_nat = _load(tmp_path, render_aioipsec_config(conn, nat, "right")).connections["ih"]
    assert right_nat.remote_addrs == ["%any"] and right_nat.local_addrs == ["198.51.100.2"]
    v6 = _load(tmp_path, render_aioipsec_config(Connection.named("ikev2-psk-gcm", family=6),
                                                direct, "left")).connections["ih"]
    assert v6.remote_addrs == ["2001:db8:1::2"]
    assert [str(t) for t in v6.children["ih"].remote_ts] == ["2001:db8:b::/64"]
    wrong = _load(tmp_path, render_aioipsec_config(conn.with_wrong_psk(), direct, "left"))
    assert wrong.connections["ih"].psk == WRONG_PSK.encode()
    with pytest.raises(Exception, match="no aioipsec equivalent"):
        render_aioipsec_config(Connection.named("ikev2-psk-gcm", ike_options={"mobike": "yes"}),
                               direct, "left")


def test_status_mapping() -> None:
    row = {"child": "ih", "spi_in": "0xc1a2b3c4", "spi_out": "0x0000abcd", "bytes_in": 252,
           "bytes_out": 168, "packets_in": 3, "packets_out": 2}
    child = child_from_status(row)
    assert (child.name, child.state, child.spi_in, child.spi_out) == ("ih", "INSTALLED",
                                                                      0xC1A2B3C4, 0xABCD)
    assert (child.bytes_in, child.bytes_out, child.packets_in, child.packets_out) == (252, 168, 3, 2)
    sa = ike_from_status({"name": "ih", "version": 2, "state": "ESTABLISHED", "initiator": False,
                          "spi_i": "00112233aabbccdd", "spi_r": "8899aabbccddeeff",
                          "children": [row]})
    assert (sa.state, sa.version, sa.initiator) == ("ESTABLISHED", 2, False)
    assert (sa.spi_i, sa.spi_r) == (0x00112233AABBCCDD, 0x8899AABBCCDDEEFF)
    assert sa.children == (child,)


def test_aioipsec_peer_satisfies_peer_protocol(tmp_path: Path) -> None:
    topology = make_topology("direct")
    topology.run_dir = tmp_path
    peer = AioipsecPeer(topology, "left")
    assert isinstance(peer, Peer)
    assert peer.dir.parent == tmp_path and not peer.alive() and peer.pid is None
    assert peer.args[:3] == ["-m", "aioipsec", "daemon"] and str(peer.control_path) in peer.args


def test_virtual_ip_client_and_pool_gateway_render_for_both_products(tmp_path: Path) -> None:
    from .strongswan import render_swanctl

    topo = make_topology("direct")
    client = Connection.named("ikev2-psk-gcm", local_ts="dynamic", ike_options={"vips": "0.0.0.0, ::"})
    gateway = Connection.named("ikev2-psk-gcm", remote_ts="dynamic", ike_options={"pools": "rw"},
                               pools={"rw": {"addrs": "10.3.0.0/28", "dns": "10.3.0.53"}})
    c = _load(tmp_path, render_aioipsec_config(client, topo, "left")).connections["ih"]
    assert c.vips == ["0.0.0.0", "::"] and c.children["ih"].local_ts == []   # dynamic
    g_cfg = _load(tmp_path, render_aioipsec_config(gateway, topo, "right"))
    g = g_cfg.connections["ih"]
    assert g.pools == ["rw"] and g.children["ih"].remote_ts == []
    assert g_cfg.pools["rw"].addrs == "10.3.0.0/28" and g_cfg.pools["rw"].dns == ["10.3.0.53"]
    text = render_swanctl(gateway, topo, "right")
    assert "pools = rw" in text and "remote_ts = dynamic" in text
    assert "pools {\n    rw {\n        addrs = 10.3.0.0/28\n        dns = 10.3.0.53\n    }\n}" in text
    assert "vips = 0.0.0.0, ::" in render_swanctl(client, topo, "left")


def test_ppk_renders_for_both_products(tmp_path: Path) -> None:
    """RFC 8784: ``ppk_secrets`` and the ppk_id / ppk_required options, in
    aioipsec's TOML (loaded by its loader) and in charon's swanctl.conf."""
    from .strongswan import render_swanctl

    direct = make_topology("direct")
    conn = Connection.named("ikev2-psk-gcm", ppk_secrets={"ppk-1": "0x" + "ab" * 32},
                            ike_options={"ppk_id": "ppk-1", "ppk_required": "yes"})
    c = _load(tmp_path, render_aioipsec_config(conn, direct, "left")).connections["ih"]
    assert (c.ppk_id, c.ppk_required, c.ppks) == ("ppk-1", True, {"ppk-1": b"\xab" * 32})
    text = render_swanctl(conn, direct, "right")
    assert "ppk_id = ppk-1" in text and "ppk_required = yes" in text
    assert "ppk-0 {" in text and "id = ppk-1" in text and f'secret = "0x{"ab" * 32}"' in text
