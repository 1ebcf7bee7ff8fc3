"""aioipsec against strongSwan (charon, kernel-libipsec), IKEv2, in network namespaces.

aioipsec runs as ``python -m aioipsec daemon`` on the left (the right for the NAT case
where charon is behind the NAT), charon on the other side; every case runs with each of
them initiating.  Traffic is a bounded ping between the inner addresses, in both
directions; charon's kernel-libipsec always encapsulates ESP in UDP/4500, so every case
also checks that aioipsec floated to 4500 and speaks ESP-in-UDP.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from .aioipsec_peer import AioipsecPeer
from .netns import Topology
from .strongswan import ChildSa, Connection, StrongSwanError, StrongSwanPeer, short_lifetimes
from .test_harness_profiles import EXPECTED
from .test_harness_smoke import ping

pytestmark = pytest.mark.interop

PINGS = 3
INITIATORS = ["aioipsec", "strongswan"]
# what aioipsec's status reports as the negotiated ESP proposal, per profile
ESP_NAMES = {"ikev2-psk-gcm": "aes128gcm16", "ikev2-psk-chacha20": "chacha20poly1305",
             "ikev2-psk-aescbc-sha256": "aes128-sha256", "ikev2-cert-ecdsa": "aes128gcm16",
             "ikev2-cert-rsa": "aes128gcm16"}


def start_pair(aioipsec, strongswan, topo: Topology, conn: Connection, *,
               aio_side: str = "left", aio_conn: Connection | None = None,
               ss_conn: Connection | None = None, log_keys: bool = False
               ) -> tuple[AioipsecPeer, StrongSwanPeer]:
    ss_side = "right" if aio_side == "left" else "left"
    ss = strongswan(topo, ss_side, ss_conn or conn, log_keys=log_keys)
    aio = aioipsec(topo, aio_side, aio_conn or conn)
    return aio, ss


def establish(aio: AioipsecPeer, ss: StrongSwanPeer, initiator: str,
              timeout: float = 15.0) -> tuple[ChildSa, ChildSa]:
    """Bring the tunnel up from ``initiator``; wait on both ends; SPIs must cross-match."""
    if initiator == "aioipsec":
        aio.initiate(timeout=timeout)
    else:
        ss.initiate(timeout=timeout)
    ss_child = ss.wait_established(timeout)
    aio_child = aio.wait_established(timeout)
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    return aio_child, ss_child


def only_child(peer: AioipsecPeer | StrongSwanPeer) -> ChildSa:
    children = peer.installed_children()
    assert len(children) == 1, f"{peer.name}: expected one Child SA, got {children}"
    return children[0]


def ping_both_ways(topo: Topology, aio_side: str, count: int = PINGS) -> None:
    ss_side = "right" if aio_side == "left" else "left"
    for src in (aio_side, ss_side):
        sent, received = ping(topo, src, count=count)
        assert (sent, received) == (count, count), f"ping from {src}: {received}/{sent}"


def assert_counters_agree(aio: AioipsecPeer, ss: StrongSwanPeer, at_least: int) -> None:
    """Each end's packets out are the other's packets in (roughly: +-2)."""
    a, s = only_child(aio), only_child(ss)
    assert a.packets_out >= at_least and a.packets_in >= at_least, a
    assert abs(a.packets_out - s.packets_in) <= 2, (a, s)
    assert abs(a.packets_in - s.packets_out) <= 2, (a, s)
    assert a.bytes_in > 0 and a.bytes_out > 0


def assert_clean_log(aio: AioipsecPeer) -> None:
    """No tracebacks and no ERROR records in aioipsec's log (stop() it first to include
    what is logged at shutdown and garbage collection)."""
    bad = [line for line in aio.logs().splitlines()
           if " ERROR " in line or line.startswith("Traceback")]
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# algorithms and authentication

@pytest.mark.parametrize("initiator", INITIATORS)
@pytest.mark.parametrize("profile", ["ikev2-psk-gcm", "ikev2-psk-chacha20",
                                     "ikev2-psk-aescbc-sha256", "ikev2-cert-ecdsa",
                                     "ikev2-cert-rsa"])
def test_tunnel(aioipsec, strongswan, direct_topology: Topology, profile: str,
                initiator: str) -> None:
    topo = direct_topology
    conn = Connection.named(profile)
    aio, ss = start_pair(aioipsec, strongswan, topo, conn, log_keys=(profile == "ikev2-psk-gcm"))
    aio_child, ss_child = establish(aio, ss, initiator)

    # what was negotiated, as both ends report it
    ike_encr, esp_encr, esp_integ = EXPECTED[profile]
    (ss_ike,) = ss.list_sas()
    assert ss_ike.version == 2 and ss_ike.raw["encr-alg"] == ike_encr
    assert ss_ike.initiator == (initiator == "strongswan")
    assert ss_child.raw["encr-alg"] == esp_encr and ss_child.raw.get("integ-alg") == esp_integ
    assert ss_child.raw["encap"] == "yes" and ss_ike.raw["remote-port"] == "4500"
    (aio_ike,) = aio.list_sas()
    assert aio_ike.state == "ESTABLISHED" and aio_ike.version == 2
    assert aio_ike.initiator == (initiator == "aioipsec")
    assert (aio_ike.spi_i, aio_ike.spi_r) == (ss_ike.spi_i, ss_ike.spi_r)
    assert aio_ike.raw["proposal"] == "aes128gcm16-prfsha256-x25519"
    assert aio_ike.raw["remote_addr"].endswith("[4500]")      # floated (libipsec fakes NAT-D)
    assert aio_child.raw["proposal"] == ESP_NAMES[profile]
    assert aio_child.raw["encap"] is True
    assert aio_child.raw["remote_ts"] == [topo.right.inner_net4]
    if profile.startswith("ikev2-cert"):
        assert aio_ike.raw["remote_id"] and "right.interop.example" in aio_ike.raw["remote_id"]
        assert re.search(r"authentication of '[^']*left\.interop\.example[^']*' with "
                         r"(ECDSA|RSA|\(\d+\)|RSA_EMSA|.*signature)", ss.logs()), \
            "charon did not log a signature authentication of aioipsec"
    if profile == "ikev2-cert-rsa":
        # RSA-3072 certificates make IKE_AUTH larger than one datagram: RFC 7383
        assert "EF(1/" in ss.logs()

    ping_both_ways(topo, "left")
    assert_counters_agree(aio, ss, 2 * PINGS)
    # every IKE message was understood at once: nothing garbled, nothing retransmitted
    for bad in ("unsupported IKE version", "INVALID_MAJOR_VERSION", "retransmit",
                "message verification failed", "integrity check failed", "ICV"):
        assert bad not in ss.logs(), bad

    if profile == "ikev2-psk-gcm":
        # the command line shows the same SAs as the control socket
        st = json.loads(aio.cli("status", "--json"))
        (row,) = st["ike_sas"][0]["children"]
        assert (row["spi_in"], row["spi_out"]) == (f"0x{aio_child.spi_in:08x}",
                                                   f"0x{aio_child.spi_out:08x}")
        text = aio.cli("status")
        assert "INSTALLED" in text and "aes128gcm16" in text
        assert f"{aio_child.spi_in:08x}" in text and f"{aio_child.spi_out:08x}" in text

    # the daemon deletes its SAs when stopped (SIGTERM)
    aio.stop()
    ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
    assert ss.list_sas() == []
    assert_clean_log(aio)

    if profile == "ikev2-psk-gcm":
        # no key material in aioipsec's log (charon logged the keys it derived)
        log = aio.logs()
        keys = ss.keys()
        for label in ("encryption initiator key", "encryption responder key", "Sk_ei secret",
                      "Sk_er secret"):
            key = keys.last(label)
            assert key.hex() not in log.lower() and repr(key)[2:-1] not in log, label


# ---------------------------------------------------------------------------
# rekeying under traffic

def _background_ping(topo: Topology, src: str, count: int, interval: float
                     ) -> subprocess.Popen[str]:
    me, peer = topo.side(src), topo.other(src)
    return subprocess.Popen(
        me.ns.exec_argv(["ping", "-4", "-c", str(count), "-i", str(interval), "-W", "1",
                         "-I", me.inner4, peer.inner4]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL)


def _ping_result(proc: subprocess.Popen[str], timeout: float) -> tuple[int, int]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("rekeyer", INITIATORS)
@pytest.mark.parametrize("initiator", INITIATORS)
def test_rekey_child_and_ike_under_traffic(aioipsec, strongswan, direct_topology: Topology,
                                           initiator: str, rekeyer: str) -> None:
    """Short lifetimes on one end (``rekeyer``): its Child SA rekeys every 3 s and its IKE
    SA after 5 s while a ping runs; few or no packets may be lost."""
    topo = direct_topology
    ike_opts, child_opts = short_lifetimes(ike_rekey=5, child_rekey=3)
    plain = Connection.named("ikev2-psk-gcm")
    short = Connection.named("ikev2-psk-gcm", ike_options=ike_opts, child_options=child_opts)
    aio, ss = start_pair(aioipsec, strongswan, topo, plain,
                         aio_conn=short if rekeyer == "aioipsec" else plain,
                         ss_conn=short if rekeyer == "strongswan" else plain)
    first_aio, _ = establish(aio, ss, initiator)
    (ike0,) = ss.list_sas()
    count, interval = 45, 0.2                           # 9 s of traffic
    pinger = _background_ping(topo, "left", count, interval)
    deadline = time.monotonic() + count * interval + 5
    child_spis: set[int] = {first_aio.spi_in}
    ike_rekeyed = False
    while pinger.poll() is None and time.monotonic() < deadline:
        for c in aio.installed_children():
            child_spis.add(c.spi_in)
        ike_rekeyed = ike_rekeyed or any(
            (sa.spi_i, sa.spi_r) != (ike0.spi_i, ike0.spi_r)
            for sa in ss.list_sas() if sa.state == "ESTABLISHED")
        time.sleep(0.2)
    sent, received = _ping_result(pinger, timeout=5)
    print(f"\nrekey (initiator {initiator}, rekeyer {rekeyer}): {received}/{sent} pings, "
          f"{len(child_spis) - 1} Child SA rekeys")
    # the end with the short lifetimes started the CREATE_CHILD_SA exchanges
    direction = "sent" if rekeyer == "aioipsec" else "received"
    rekeys = re.findall(rf"CREATE_CHILD_SA {direction} .* kind=request", aio.logs())
    assert len(rekeys) >= 3, f"{len(rekeys)} CREATE_CHILD_SA requests {direction} by aioipsec"
    assert len(child_spis) >= 3, f"Child SA rekeyed {len(child_spis) - 1} times in 9 s, not >= 2"
    assert ike_rekeyed, "IKE SA not rekeyed (rekey_time 5 s)"
    assert sent == count and received >= count - 2, f"{received}/{sent} pings through rekeys"
    # both ends still agree on one current Child SA and one IKE SA, and it carries traffic
    aio_now, ss_now = aio.wait_established(), ss.wait_established()
    assert (aio_now.spi_in, aio_now.spi_out) == (ss_now.spi_out, ss_now.spi_in)
    sas = [sa for sa in aio.list_sas() if sa.state in ("ESTABLISHED", "REKEYING")]
    assert len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != (ike0.spi_i, ike0.spi_r)
    ping_both_ways(topo, "left")


# ---------------------------------------------------------------------------
# deleting from either end

@pytest.mark.parametrize("deleter", INITIATORS)
@pytest.mark.parametrize("initiator", INITIATORS)
def test_delete(aioipsec, strongswan, direct_topology: Topology, initiator: str,
                deleter: str) -> None:
    topo = direct_topology
    aio, ss = start_pair(aioipsec, strongswan, topo, Connection.named("ikev2-psk-gcm"))
    establish(aio, ss, initiator)
    ping_both_ways(topo, "left", count=1)
    if deleter == "aioipsec":
        assert "IKE SA deleted" in aio.cli("down", "ih")        # the command line's `down`
        aio.wait_gone(timeout=5)
        ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
        deadline = time.monotonic() + 5
        while ss.list_sas() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ss.list_sas() == []
    else:
        ss.terminate()
        assert ss.list_sas() == []
        aio.wait_gone(timeout=5)
    sent, received = ping(topo, "left", count=1)
    assert received == 0, "traffic still flows after the delete"


# ---------------------------------------------------------------------------
# authentication failure

@pytest.mark.parametrize("initiator", INITIATORS)
def test_wrong_psk(aioipsec, strongswan, direct_topology: Topology, initiator: str) -> None:
    """The initiator has the wrong PSK: the responder refuses it with AUTHENTICATION_FAILED;
    both logs say so, aioipsec's naming the peer; no SA stays up."""
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm")
    wrong = conn.with_wrong_psk()
    aio, ss = start_pair(aioipsec, strongswan, topo, conn,
                         aio_conn=wrong if initiator == "aioipsec" else conn,
                         ss_conn=wrong if initiator == "strongswan" else conn)
    with pytest.raises((StrongSwanError, Exception), match="(?i)initiate|auth"):
        if initiator == "aioipsec":
            aio.initiate(timeout=10)
        else:
            ss.initiate(timeout=10)
    if initiator == "aioipsec":
        # charon, the responder, could not verify aioipsec's AUTH and said so
        # "generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]" (AUTHENTICATION_FAILED, enc=1)
        ss.wait_log(r"IKE_AUTH response \d+ \[ N\(AUTH_FAILED\) \]", timeout=5)
        assert re.search(r"tried \d+ shared key for '\S+' - '\S+', but MAC mismatched",
                         ss.logs())
    else:
        ss.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=5)
    peer_ip = topo.right.outer4
    aio.wait_log(rf"(?i)auth\w*[ _]?fail\w*.*{re.escape(peer_ip)}|"
                 rf"{re.escape(peer_ip)}.*auth\w*[ _]?fail", timeout=5)
    assert ss.installed_children() == [] and aio.installed_children() == []
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# through a NAT

@pytest.mark.parametrize("aio_side", ["left", "right"])
def test_nat(aioipsec, strongswan, nat_topology: Topology, aio_side: str) -> None:
    """left sits behind a port-rewriting NAT and initiates; aioipsec is either end."""
    topo = nat_topology
    conn = Connection.named("ikev2-psk-gcm")
    aio, ss = start_pair(aioipsec, strongswan, topo, conn, aio_side=aio_side)
    initiator = "aioipsec" if aio_side == "left" else "strongswan"
    aio_child, ss_child = establish(aio, ss, initiator)
    (aio_ike,) = aio.list_sas()
    (ss_ike,) = ss.list_sas()
    if aio_side == "left":
        # charon (right) sees aioipsec as the NAT router with a rewritten port
        assert ss_ike.raw["remote-host"] == "198.51.100.254"
        assert 40000 <= int(ss_ike.raw["remote-port"]) <= 49999
        assert ss_ike.raw.get("nat-remote") == "yes"
        assert aio_ike.raw["nat_local"] is True
        assert aio_ike.raw["remote_addr"] == "198.51.100.2[4500]"
    else:
        host, port = re.fullmatch(r"(.*)\[(\d+)\]", aio_ike.raw["remote_addr"]).groups()
        assert host == "198.51.100.254" and 40000 <= int(port) <= 49999
        assert aio_ike.raw["nat_remote"] is True
        assert aio_child.raw["remote_addr"] == aio_ike.raw["remote_addr"]
    assert aio_child.raw["encap"] is True and ss_child.raw["encap"] == "yes"
    sent, received = ping(topo, "left", count=PINGS)
    assert (sent, received) == (PINGS, PINGS)
    assert_counters_agree(aio, ss, PINGS)


# ---------------------------------------------------------------------------
# IPv6 outside and inside; near-MTU packets

def ping_sized(topo: Topology, src: str, size: int, count: int = 2, family: int = 4
               ) -> tuple[int, int]:
    me, peer = topo.side(src), topo.other(src)
    source, dest = (me.inner4, peer.inner4) if family == 4 else (me.inner6, peer.inner6)
    proc = me.ns.run(["ping", f"-{family}", "-c", str(count), "-s", str(size), "-M", "do",
                      "-i", "0.2", "-W", "3", "-I", source, dest], timeout=count + 8,
                     check=False)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert m is not None, proc.stdout + proc.stderr
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("initiator", INITIATORS)
def test_ipv6(aioipsec, strongswan, direct_topology: Topology, initiator: str) -> None:
    topo = direct_topology
    conn = Connection.named("ikev2-psk-gcm", family=6)
    aio, ss = start_pair(aioipsec, strongswan, topo, conn)
    aio_child, _ = establish(aio, ss, initiator)
    (aio_ike,) = aio.list_sas()
    assert aio_ike.raw["remote_addr"].startswith("2001:db8:1::2")
    assert aio_child.raw["remote_ts"] == [topo.right.inner_net6]
    for src in ("left", "right"):
        sent, received = ping(topo, src, count=PINGS, family=6)
        assert (sent, received) == (PINGS, PINGS), f"ping -6 from {src}"
    assert_counters_agree(aio, ss, 2 * PINGS)


@pytest.mark.parametrize("profile", ["ikev2-psk-gcm", "ikev2-psk-aescbc-sha256"])
def test_large_packets(aioipsec, strongswan, direct_topology: Topology, profile: str) -> None:
    """Inner packets up to the TUN MTU (1400) cross both ways unfragmented (-M do)."""
    topo = direct_topology
    aio, ss = start_pair(aioipsec, strongswan, topo, Connection.named(profile))
    establish(aio, ss, "aioipsec")
    for size in (1, 1000, 1372):                         # 1372 + 28 = 1400 bytes of IP
        for src in ("left", "right"):
            sent, received = ping_sized(topo, src, size)
            assert (sent, received) == (2, 2), f"{size}-byte ping from {src}"
    a = only_child(aio)
    assert a.raw["integrity_failed"] == 0 and a.raw["malformed"] == 0
