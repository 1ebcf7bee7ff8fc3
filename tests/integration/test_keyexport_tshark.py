"""Exported keys decrypt real traffic in Wireshark.

Two peers negotiate over the in-memory network (IKEv2 with AES-GCM and with
AES-CBC/HMAC, IKEv1); every datagram is written to a pcap from the network's
tap.  Pings cross the tunnel both ways and an encrypted IKE exchange (DPD)
runs.  The Wireshark tables from :func:`aioipsec.keyexport.export_wireshark`
are put in a tshark profile directory (``XDG_CONFIG_HOME``): tshark then
shows the inner ICMP of every ESP packet and decrypts the IKE messages.
Without the tables it shows neither (the control run)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from aioipsec.keyexport import esp_sa_lines, export_wireshark, ike_lines
from aioipsec.netutil import echo_reply_for, icmp_echo, parse_icmp_echo
from aioipsec.testing import IpsecPair, open_pair

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (scripts/install-system-deps.sh installs it)")

CASES = [
    pytest.param(dict(version=2, ike_proposals=["aes128gcm16-prfsha256-x25519"], esp_proposals=["aes256gcm16"]), id="ikev2-gcm"),
    pytest.param(dict(version=2, ike_proposals=["aes256-sha256-modp2048"], esp_proposals=["aes128-sha256"]), id="ikev2-cbc"),
    pytest.param(dict(version=1, ike_proposals=["aes256-sha256-modp2048"], esp_proposals=["aes256-sha1"]), id="ikev1-cbc"),
    # Wireshark has no AES-CMAC: the ESP SA says "any 96-bit ICV", so it decrypts without checking
    pytest.param(dict(version=2, ike_proposals=["aes128gcm16-prfsha256-x25519"], esp_proposals=["aes128-aescmac"]),
                 id="ikev2-aescmac"),
    # encap = true: IKE floats to 4500 and ESP travels in UDP (RFC 3948), as behind a NAT
    pytest.param(dict(version=2, encap=True), id="ikev2-esp-in-udp"),
    pytest.param(dict(version=1, encap=True, ike_proposals=["aes128-sha256-modp2048"]), id="ikev1-esp-in-udp"),
]


async def _traffic(pair: IpsecPair, n: int) -> None:
    """n pings left -> right, each answered by the right host."""
    src, dst = pair.left.host, pair.right.host
    pair.left.app.send_batch([icmp_echo(src, dst, 0x5151, i, b"decrypt me") for i in range(1, n + 1)])
    replies = 0
    async with asyncio.timeout(5):
        while replies < n:
            for pkt in await pair.right.app.recv_batch():
                r = echo_reply_for(pkt)
                if r:
                    pair.right.app.send_batch([r])
            # collect replies on the left
            while replies < n:
                try:
                    got = await asyncio.wait_for(pair.left.app.recv_batch(), 0.5)
                except TimeoutError:
                    break
                replies += sum(1 for p in got if (info := parse_icmp_echo(p)) and info[2] == 0)


def _tshark(pcap: Path, profile_home: Path | None, *fields: str, verbose: bool = False) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "HOME")}
    env["HOME"] = str(pcap.parent)  # never the user's own profile
    if profile_home is not None:
        env["XDG_CONFIG_HOME"] = str(profile_home)
    argv = [TSHARK or "tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE"]
    if verbose:
        argv.append("-V")
    else:
        argv += ["-T", "fields", "-E", "separator=|"] + [a for f in fields for a in ("-e", f)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


@needs_tshark
@pytest.mark.parametrize("options", CASES)
async def test_tshark_decrypts_esp_and_ike(tmp_path: Path, options: dict) -> None:
    pcap = tmp_path / "capture.pcap"
    async with open_pair(mode="tunnel", inner="pipe", key_export=True, pcap=pcap, **options) as pair:
        await _traffic(pair, 3)
        assert pair.left.session is not None
        await pair.left.session.dpd()  # an encrypted IKE exchange
        await asyncio.sleep(0.05)
        result = pair.export_keys(tmp_path / "profile" / "wireshark")
        spis = {pair.left.child.spi_in, pair.left.child.spi_out}  # type: ignore[union-attr]
    v1 = options["version"] == 1
    if options.get("encap"):
        assert pair.left.child is not None and pair.left.child.encap
    assert result["records"] == {
        "esp_sa": 2,
        "ikev2_decryption_table": 0 if v1 else 1,
        "ikev1_decryption_table": 1 if v1 else 0,
    }
    for name in result["records"]:
        assert stat.S_IMODE(os.stat(tmp_path / "profile" / "wireshark" / name).st_mode) == 0o600

    fields = ("frame.number", "esp.spi", "ip.src", "ip.dst", "icmp.type", "icmp.seq")
    # control run: no keys, no ICMP
    out, _ = _tshark(pcap, None, *fields)
    esp_rows = [r.split("|") for r in out.splitlines() if r.split("|")[1]]
    assert len(esp_rows) == 6, out  # 3 requests, 3 replies
    assert all(r[4] == "" for r in esp_rows), "nothing is readable without the keys"

    out, err = _tshark(pcap, tmp_path / "profile", *fields)
    assert "Error" not in err, err
    esp_rows = [r.split("|") for r in out.splitlines() if r.split("|")[1]]
    assert {int(r[1], 16) for r in esp_rows} == spis
    seen = sorted((r[2].split(",")[1], r[3].split(",")[1], r[4], r[5]) for r in esp_rows)
    lhost, rhost = "198.51.100.10", "203.0.113.10"
    assert seen == sorted(
        [(lhost, rhost, "8", str(i)) for i in (1, 2, 3)] + [(rhost, lhost, "0", str(i)) for i in (1, 2, 3)]
    ), out

    # IKE: the encrypted messages (authentication, DPD, delete) are decrypted
    text, err = _tshark(pcap, tmp_path / "profile", verbose=True)
    assert "Error" not in err, err
    if v1:
        # MM5/MM6 carry the identities; informational messages the R-U-THERE and the delete
        assert "Identification Data:192.0.2.1" in text and "Identification Data:198.51.100.0/255.255.255.0" in text
        assert "R-U-THERE" in text
        assert "Payload: Delete (12)" in text
    else:
        # IKE_AUTH, DPD and delete: the identities and the Delete payload are readable
        assert text.count("Decrypted Data") >= 6, text[-3000:]
        assert "Payload: Identification - Initiator (35)" in text and "Identification Data:192.0.2.1" in text
        assert "Payload: Traffic Selector - Initiator (44) # 1" in text
        assert "Payload: Delete (42)" in text
        if not options.get("ike_proposals", ["aes128gcm16"])[0].startswith("aes128gcm"):
            assert text.count("[correct]") >= 6, "SK_ai/SK_ar verify every ICV"


@needs_tshark
async def test_single_record_on_the_command_line(tmp_path: Path) -> None:
    """The esp_sa records also work as ``-o uat:esp_sa:<record>`` (no profile)."""
    pcap = tmp_path / "c.pcap"
    async with open_pair(mode="tunnel", inner="pipe") as pair:
        with pair.capture(pcap):
            await _traffic(pair, 1)
        records = esp_sa_lines(pair.left.endpoint)
        out_spi = pair.left.child.spi_out  # type: ignore[union-attr]
    [rec] = [r for r in records if f'"0x{out_spi:08x}"' in r]
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("XDG_CONFIG_HOME", None)
    r = subprocess.run(
        [TSHARK or "tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE", "-o", f"uat:esp_sa:{rec}",
         "-Y", "icmp", "-T", "fields", "-e", "icmp.type", "-e", "icmp.seq"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["8", "1"]


async def test_export_is_limited_to_allowed_connections(tmp_path: Path) -> None:
    async with open_pair() as pair:
        ep = pair.left.endpoint
        assert export_wireshark(ep, str(tmp_path / "none"), allowed=set())["records"] == {
            "esp_sa": 0, "ikev2_decryption_table": 0, "ikev1_decryption_table": 0,
        }
        assert all(p.read_text() == "" for p in (tmp_path / "none").iterdir())
        v2, v1 = ike_lines(ep, allowed={"pair"})
        assert len(v2) == 1 and v1 == []
        spi_i = pair.left.session.session.spi_i.hex()  # type: ignore[union-attr]
        assert v2[0].startswith(f"{spi_i},")
