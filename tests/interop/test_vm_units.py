"""The micro-VM harness's pure parts (parsers, rendering, selection, guest scripts):
no root, no VM needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .libreswan import ALGORITHMS, LibreswanError, parse_trafficstatus, render_ipsec_conf
from .strongswan import PROFILES, Connection, Profile
from .test_harness_units import make_topology
from .vm import (GUEST_INIT, INITRAMFS_INIT, PRELOAD_MODULES, VM_TESTS_ENV, parse_xfrm_state,
                 vm_tests_skip_reason)

# `ip -s xfrm state` in the guest (Debian 12's iproute2, kernel 6.1): charon's AES-GCM
# tunnel SA, pluto's AES-CBC + HMAC-SHA256 SA (ESN context) and a UDP-encapsulated one;
# keys replaced by zeros
XFRM_STATE = """\
src 192.0.2.2 dst 192.0.2.1
\tproto esp spi 0xccb4907a(3434385530) reqid 1(0x00000001) mode tunnel
\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
\taead rfc4106(gcm(aes)) 0x0000000000000000000000000000000000000000 (160 bits) 128
\tanti-replay context: seq 0x0, oseq 0x3, bitmap 0x00000000
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\t  limit: soft (INF)(packets), hard (INF)(packets)
\t  expire add: soft 3398(sec), hard 3960(sec)
\t  expire use: soft 0(sec), hard 0(sec)
\tlifetime current:
\t  252(bytes), 3(packets)
\t  add 2026-11-26 19:31:24 use 2026-11-26 19:31:25
\tstats:
\t  replay-window 0 replay 0 failed 0
src 192.0.2.1 dst 192.0.2.2
\tproto esp spi 0x4c095018(1275678744) reqid 16389(0x00004005) mode transport
\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
\tauth-trunc hmac(sha256) 0x0000000000000000000000000000000000000000000000000000000000000000 (256 bits) 128
\tenc cbc(aes) 0x0000000000000000000000000000000000000000000000000000000000000000 (256 bits)
\tanti-replay esn context:
\t seq-hi 0x0, seq 0x3, oseq-hi 0x0, oseq 0x0
\t replay_window 128, bitmap-length 4
\t 00000000 00000000 00000000 00000007 
\tlifetime config:
\t  limit: soft 4570182528833445577(bytes), hard 9223372036854775808(bytes)
\t  limit: soft 4153035455279939344(packets), hard 9223372036854775808(packets)
\t  expire add: soft 0(sec), hard 0(sec)
\t  expire use: soft 0(sec), hard 0(sec)
\tlifetime current:
\t  1404(bytes), 17(packets)
\t  add 2026-11-26 19:32:35 use 2026-11-26 19:32:39
\tstats:
\t  replay-window 0 replay 0 failed 0
src 192.0.2.2 dst 192.0.2.1
\tproto esp spi 0x0000abcd(43981) reqid 2(0x00000002) mode tunnel
\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
\taead rfc4106(gcm(aes)) 0x0000000000000000000000000000000000000000 (160 bits) 128
\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0
\tlifetime current:
\t  0(bytes), 0(packets)
"""

TRAFFIC = """\
006 #2: "ih", type=ESP, add_time=1795721542, inBytes=252, outBytes=168, maxBytes=2^63B, id='@left.interop.example'
006 #4: "ih", type=ESP, add_time=1795721553, inBytes=0, outBytes=0, maxBytes=2^63B, id='192.0.2.1'
000 some other line
"""


def test_parse_xfrm_state() -> None:
    gcm, cbc, udp = parse_xfrm_state(XFRM_STATE)
    assert (gcm.src, gcm.dst, gcm.proto, gcm.spi, gcm.mode) == (
        "192.0.2.2", "192.0.2.1", "esp", 0xccb4907a, "tunnel")
    assert gcm.algorithms == ("aead rfc4106(gcm(aes))",)
    assert (gcm.bytes, gcm.packets, gcm.encap) == (252, 3, None)
    assert (cbc.spi, cbc.mode, cbc.bytes, cbc.packets) == (0x4c095018, "transport", 1404, 17)
    assert cbc.algorithms == ("auth-trunc hmac(sha256)", "enc cbc(aes)")
    assert udp.encap == "espinudp sport 4500 dport 4500 addr 0.0.0.0"
    assert (udp.spi, udp.bytes, udp.packets) == (0xabcd, 0, 0)
    assert parse_xfrm_state("") == []


def test_parse_trafficstatus() -> None:
    a, b = parse_trafficstatus(TRAFFIC)
    assert (a.serial, a.name, a.in_bytes, a.out_bytes) == (2, "ih", 252, 168)
    assert (b.serial, b.in_bytes, b.out_bytes) == (4, 0, 0)


def conf_lines(text: str) -> dict[str, str]:
    return dict(line.strip().split("=", 1) for line in text.splitlines()
                if line.startswith("    ") and "=" in line)


def test_render_ipsec_conf_ikev2_tunnel() -> None:
    topo = make_topology("direct")
    text = render_ipsec_conf(Connection.named("ikev2-psk-gcm"), topo, "right",
                             logfile=Path("/x/pluto.log"), rundir="/run/p")
    kv = conf_lines(text)
    assert kv["left"] == "192.0.2.2" and kv["right"] == "192.0.2.1"
    assert kv["leftid"] == "@right.interop.example" and kv["rightid"] == "@left.interop.example"
    assert kv["ike"] == "aes_gcm_16_128-sha2_256-dh31" and kv["esp"] == "aes_gcm_16_128"
    assert kv["ikev2"] == "insist" and kv["type"] == "tunnel"
    assert kv["leftsubnet"] == "203.0.113.128/25" and kv["rightsubnet"] == "203.0.113.0/25"
    assert kv["leftsourceip"] == "203.0.113.129"
    assert kv["ikev1-policy"] == "accept" and kv["logfile"] == "/x/pluto.log"


def test_render_ipsec_conf_ikev1_main_mode_and_transport() -> None:
    topo = make_topology("direct")
    kv = conf_lines(render_ipsec_conf(Connection.named("ikev1-main-psk-aes256-sha256-pfs"), topo,
                                      "right", logfile=Path("/l"), rundir="/r"))
    assert kv["ikev2"] == "no" and "aggressive" not in kv
    assert kv["leftid"] == "192.0.2.2" and kv["rightid"] == "192.0.2.1"   # Main Mode PSK: IPs
    assert kv["esp"] == "aes256-sha2_256-modp2048" and kv["pfs"] == "yes"
    transport = Profile("ikev2-psk-gcm", 2, "aes128gcm16-prfsha256-x25519", "aes128gcm16",
                        mode="transport")
    kv = conf_lines(render_ipsec_conf(Connection(transport), topo, "left", logfile=Path("/l"),
                                      rundir="/r"))
    assert kv["type"] == "transport" and "leftsubnet" not in kv and "leftsourceip" not in kv
    assert kv["left"] == "192.0.2.1"
    # behind the NAT the right side accepts left from any address
    kv = conf_lines(render_ipsec_conf(Connection.named("ikev2-psk-gcm"), make_topology("nat"),
                                      "right", logfile=Path("/l"), rundir="/r"))
    assert kv["right"] == "%any"


def test_render_ipsec_conf_refuses_what_it_cannot_express() -> None:
    topo = make_topology("direct")
    with pytest.raises(LibreswanError, match="only PSK"):
        render_ipsec_conf(Connection.named("ikev2-cert-ecdsa"), topo, "right",
                          logfile=Path("/l"), rundir="/r")
    with pytest.raises(LibreswanError, match="IPv4"):
        render_ipsec_conf(Connection.named("ikev2-psk-gcm", family=6), topo, "right",
                          logfile=Path("/l"), rundir="/r")
    odd = Profile("odd", 2, "aes256-sha512-modp4096", "aes256-sha512")
    with pytest.raises(LibreswanError, match="no Libreswan algorithm names"):
        render_ipsec_conf(Connection(odd), topo, "right", logfile=Path("/l"), rundir="/r")
    # every mapped profile exists in the harness and is PSK
    for name in ALGORITHMS:
        assert PROFILES[name].auth == "psk"


@pytest.mark.parametrize(("env", "smoke", "runs"), [
    (None, True, True), (None, False, False), ("1", False, True), ("1", True, True),
    ("0", True, False), ("0", False, False),
])
def test_vm_test_selection(monkeypatch: pytest.MonkeyPatch, env: str | None, smoke: bool,
                           runs: bool) -> None:
    if env is None:
        monkeypatch.delenv(VM_TESTS_ENV, raising=False)
    else:
        monkeypatch.setenv(VM_TESTS_ENV, env)
    reason = vm_tests_skip_reason(smoke=smoke)
    assert (reason is None) is runs
    if reason is not None:
        assert VM_TESTS_ENV in reason


def test_guest_scripts_parse() -> None:
    """The guest's PID 1 (bash) and the initramfs /init (busybox sh) are valid shell."""
    guest = GUEST_INIT.replace("@PRELOAD@", PRELOAD_MODULES)
    assert "@" not in guest.replace("$@", "")
    subprocess.run(["bash", "-n"], input=guest, text=True, check=True, timeout=10)
    sh = shutil.which("dash") or shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n"], input=INITRAMFS_INIT, text=True, check=True, timeout=10)


def test_kernel_refusal_quotes_charons_lines() -> None:
    """test_kernel_xfrm_algorithms skips on the guest kernel's refusal, quoting charon's
    netlink error and SAD line; a plain netlink error alone is no refusal."""
    from .test_kernel_xfrm_algorithms import _refusal

    class Log:
        def __init__(self, text: str) -> None:
            self.text = text

        def logs(self) -> str:
            return self.text

    log = ("12[KNL] received netlink error: Function not implemented (38)\n"
           "12[KNL] unable to add SAD entry with SPI c1a2b3c4 (FAILED)\n"
           "12[IKE] CHILD_SA ih{1} established\n")
    assert _refusal(Log(log)) == ("12[KNL] received netlink error: Function not implemented (38)"
                                  " | 12[KNL] unable to add SAD entry with SPI c1a2b3c4 (FAILED)")
    assert _refusal(Log("09[KNL] algorithm NULL_AES_GMAC not supported by kernel!\n")) == (
        "09[KNL] algorithm NULL_AES_GMAC not supported by kernel!")
    assert _refusal(Log("05[KNL] received netlink error: File exists (17)\n")) is None
    assert _refusal(Log("")) is None
