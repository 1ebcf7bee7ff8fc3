"""Wireshark decrypts a real interop capture with the keys aioipsec exports.

aioipsec (left, ``python -m aioipsec daemon`` with ``key_export = true`` on its
connection) initiates an IKEv2 PSK tunnel to charon (right, kernel-libipsec); the ESP is
AES-GCM in one case and AES-CBC with HMAC-SHA-256 in the other.  tcpdump on left's
outer interface writes the UDP 500/4500 traffic to a pcap while the tunnel comes up
and pings cross it both ways (charon's libipsec fakes a NAT, so the ESP travels in UDP
on 4500).  ``aioipsec --control SOCK keys --wireshark DIR`` writes ``esp_sa`` and
``ikev2_decryption_table``; tshark, pointed at them through ``XDG_CONFIG_HOME`` (as
the command's own hint says), then shows the inner ICMP echo requests and replies
between the inner addresses in both directions, and the decrypted IKE_AUTH with both
identities.  The same tshark run without the tables shows the ESP packets but no ICMP
(the control run).

That the control command refuses ``keys`` when no connection sets ``key_export`` is
covered by ``tests/integration/test_cli_daemon.py::test_errors_are_reported_not_fatal``
(the real daemon and command line), so it is not repeated here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .netns import NamespaceProcess, Side, Topology
from .strongswan import Connection
from .test_harness_smoke import ping

pytestmark = pytest.mark.interop

TSHARK = shutil.which("tshark")
TCPDUMP = shutil.which("tcpdump")
PINGS = 3
# the ESP proposal aioipsec's status reports per profile (IKE is aes128gcm16 in both)
ESP_NAMES = {"ikev2-psk-gcm": "aes128gcm16", "ikev2-psk-aescbc-sha256": "aes128-sha256"}
FIELDS = ("frame.number", "udp.dstport", "esp.spi", "ip.src", "ip.dst", "icmp.type", "icmp.seq",
          "esp.icv_good")


class PcapCapture:
    """``tcpdump -w FILE`` of UDP 500/4500 on ``side``'s outer interface, bounded by a
    packet count (``-c``) and ``timeout``; stopped by PID (SIGTERM flushes the file)."""

    def __init__(self, side: Side, path: Path, *, max_packets: int = 500,
                 max_seconds: int = 30) -> None:
        self.path = path
        # --immediate-mode -U: hand over and write every packet at once (else the last
        # ones may still sit in the kernel's ring buffer when tcpdump is stopped);
        # -Z root: keep writing to our run directory
        self.proc: NamespaceProcess = side.ns.popen(
            ["timeout", str(max_seconds), TCPDUMP or "tcpdump", "-i", side.iface, "-n", "-p",
             "--immediate-mode", "-U", "-Z", "root", "-c", str(max_packets), "-w", str(path),
             "udp port 500 or udp port 4500"],
            log=path.with_suffix(".tcpdump.log"))
        deadline = time.monotonic() + 5
        while "listening on" not in self.proc.output():
            if not self.proc.alive() or time.monotonic() > deadline:
                self.proc.stop(grace=1)
                raise AssertionError(f"tcpdump did not start: {self.proc.output()}")
            time.sleep(0.05)

    def stop(self) -> int:
        """Stop tcpdump; the number of packets it says it captured."""
        self.proc.stop(grace=3)
        m = re.search(r"(\d+) packets? captured", self.proc.output())
        assert m is not None, self.proc.output()
        return int(m.group(1))


def run_tshark(pcap: Path, profile_home: Path | None, *args: str) -> str:
    """tshark on ``pcap`` with ESP decryption and ICV checks on; the Wireshark tables
    come from ``profile_home``/wireshark (``XDG_CONFIG_HOME``) or, with None, nowhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "HOME")}
    env["HOME"] = str(pcap.parent)          # never anybody's own Wireshark profile
    if profile_home is not None:
        env["XDG_CONFIG_HOME"] = str(profile_home)
    r = subprocess.run([TSHARK or "tshark", "-n", "-r", str(pcap),
                        "-o", "esp.enable_encryption_decode:TRUE",
                        "-o", "esp.enable_authentication_check:TRUE", *args],
                       capture_output=True, text=True, timeout=30, env=env,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "rror" not in r.stderr, r.stderr
    return r.stdout


def esp_rows(pcap: Path, profile_home: Path | None) -> list[list[str]]:
    """One row of FIELDS per ESP packet (``esp.spi`` set)."""
    out = run_tshark(pcap, profile_home, "-T", "fields", "-E", "separator=|",
                     *[a for f in FIELDS for a in ("-e", f)])
    rows = [line.split("|") for line in out.splitlines()]
    return [r for r in rows if len(r) == len(FIELDS) and r[2]]


@pytest.mark.skipif(TSHARK is None or TCPDUMP is None,
                    reason="tshark/tcpdump not installed (scripts/install-system-deps.sh installs them)")
@pytest.mark.parametrize("profile", list(ESP_NAMES))
def test_wireshark_decrypts_interop_capture(aioipsec, strongswan, direct_topology: Topology,
                                            interop_run_dir: Path, profile: str) -> None:
    topo = direct_topology
    left, right = topo.left, topo.right
    conn = Connection.named(profile)
    ss = strongswan(topo, "right", conn)
    aio = aioipsec(topo, "left", conn, extra={"ike": {"key_export": True}})
    work = interop_run_dir / f"keyexport-{profile}"
    work.mkdir()
    pcap = work / "outer.pcap"

    capture = PcapCapture(left, pcap)
    try:
        aio.initiate(timeout=15)
        ss_child = ss.wait_established(10)
        aio_child = aio.wait_established(10)
        for src in ("left", "right"):
            assert ping(topo, src, count=PINGS) == (PINGS, PINGS), f"ping from {src}"
        time.sleep(0.2)                     # the last reply reaches the wire
    finally:
        captured = capture.stop()
    assert captured >= 4 + 4 * PINGS, captured     # IKE_SA_INIT, IKE_AUTH, 12 ESP
    assert aio_child.raw["proposal"] == ESP_NAMES[profile]
    assert aio_child.raw["encap"] is True
    spis = {aio_child.spi_in, aio_child.spi_out}
    assert spis == {ss_child.spi_in, ss_child.spi_out}

    # the command line writes the tables and says how to use them
    out = aio.cli("keys", "--wireshark", str(work / "profile" / "wireshark"))
    assert "esp_sa (2 records)" in out and "ikev2_decryption_table (1 records)" in out, out
    m = re.search(r"XDG_CONFIG_HOME=(\S+) tshark", out)
    assert m is not None and Path(m.group(1)) == work / "profile", out
    profile_home = Path(m.group(1))
    esp_sa = (profile_home / "wireshark" / "esp_sa").read_text()
    assert all(f"0x{spi:08x}" in esp_sa for spi in spis), esp_sa

    # control run: the ESP packets are there, nothing inside them is readable
    plain = esp_rows(pcap, None)
    assert len(plain) == 4 * PINGS, plain
    assert {r[1] for r in plain} == {"4500"}                    # ESP-in-UDP
    assert all(r[5] == "" for r in plain), "ICMP visible without the keys"
    assert all(r[7] != "1" for r in plain), "ICV checked without the keys"
    assert run_tshark(pcap, None, "-Y", "icmp") == ""

    # with the tables: every ESP packet shows its inner ICMP, both directions
    rows = esp_rows(pcap, profile_home)
    assert {int(r[2], 16) for r in rows} == spis
    assert all(r[7] == "1" for r in rows), "tshark found a wrong ESP ICV"
    inner = sorted((r[3].split(",")[-1], r[4].split(",")[-1], r[5], r[6]) for r in rows)
    a, b = left.inner4, right.inner4
    expected = []
    for src, dst in ((a, b), (b, a)):                   # left pings, then right pings
        for seq in range(1, PINGS + 1):
            expected += [(src, dst, "8", str(seq)), (dst, src, "0", str(seq))]
    assert inner == sorted(expected), "\n".join("|".join(r) for r in rows)
    # the outer addresses are the gateways'
    assert {r[3].split(",")[0] for r in rows} == {left.outer4, right.outer4}

    # IKE: IKE_AUTH (on 4500 after the float) decrypts, with both identities in it
    text = run_tshark(pcap, profile_home, "-Y", "isakmp.exchangetype == 35", "-V")
    assert text.count("Decrypted Data") >= 2, text[-3000:]
    assert len(re.findall(r"Integrity Checksum Data: .*\[correct\]", text)) >= 2, text[-3000:]
    assert "Payload: Identification - Initiator (35)" in text, text[-3000:]
    assert "Payload: Identification - Responder (36)" in text, text[-3000:]
    assert f"Identification Data:{left.fqdn}" in text, text[-3000:]
    assert f"Identification Data:{right.fqdn}" in text, text[-3000:]
    assert "Payload: Traffic Selector - Initiator (44)" in text
    no_keys = run_tshark(pcap, None, "-Y", "isakmp.exchangetype == 35", "-V")
    assert "Payload: Encrypted and Authenticated (46)" in no_keys
    assert left.fqdn not in no_keys and "Decrypted Data" not in no_keys

    # shown with pytest -s / -rP: a few lines of what tshark printed
    summary = run_tshark(pcap, profile_home, "-Y", "icmp or isakmp").splitlines()
    print(f"\n[{profile}] tshark with the exported tables ({len(summary)} lines):")
    print("\n".join("    " + line.strip() for line in summary[:8]))
