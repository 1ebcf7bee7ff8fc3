"""aioipsec.testing and its pytest plugin: the fixtures work in this suite,
the documented example test passes when pytest runs it (the plugin found
through its ``pytest11`` entry point, in auto and strict asyncio modes), and
importing the plugin stays cheap."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aioipsec.testing import IpsecPair, PcapWriter, open_pair

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "test_example.py"


async def test_fixture_gives_an_established_pair(ipsec_pair: IpsecPair) -> None:
    # the fixture comes from the installed plugin, not from a conftest
    assert ipsec_pair.left.session is not None and ipsec_pair.right.session is not None
    assert ipsec_pair.left.session.session.is_established
    assert ipsec_pair.left.child is not None and ipsec_pair.right.child is not None
    assert ipsec_pair.left.child.spi_out == ipsec_pair.right.child.spi_in
    a, b = ipsec_pair.left.open_datagram(1111), ipsec_pair.right.open_datagram(2222)
    a.sendto(b"x", 2222)
    assert await asyncio.wait_for(b.recvfrom(), 2) == (b"x", ("192.0.2.1", 1111))


async def test_factory_pairs_and_impairments(ipsec_pair_factory) -> None:  # type: ignore[no-untyped-def]
    lossy = await ipsec_pair_factory(link={"loss": 0.2, "seed": 7}, retransmit_timeout=0.2)
    v1 = await ipsec_pair_factory(version=1, network=None)
    assert lossy.left.child is not None and v1.left.child is not None
    assert lossy.network is not v1.network


async def test_tunnel_mode_pipe_carries_ip_packets() -> None:
    from aioipsec.netutil import icmp_echo, parse_icmp_echo

    async with open_pair(mode="tunnel", inner="pipe") as pair:
        pair.left.app.send_batch([icmp_echo(pair.left.host, pair.right.host, 1, 1, b"hi")])
        [pkt] = await asyncio.wait_for(pair.right.app.recv_batch(), 2)
        assert parse_icmp_echo(pkt) == (pair.left.host, pair.right.host, 8, 1, 1)
        assert pair.right.status()["ike_sas"][0]["children"][0]["packets_in"] == 1


async def test_datagram_endpoint_wraps_an_asyncio_protocol() -> None:
    received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
    lost: list[object] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.put_nowait((data, addr))

        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)

    async with open_pair() as pair:
        t_right, _ = await pair.right.create_datagram_endpoint(Proto, local_port=53)
        t_left, _ = await pair.left.create_datagram_endpoint(asyncio.DatagramProtocol, local_port=5353, remote_port=53)
        assert t_left.get_extra_info("sockname") == ("192.0.2.1", 5353)
        assert t_left.get_extra_info("peername") == ("192.0.2.2", 53)
        t_left.sendto(b"query")
        assert await asyncio.wait_for(received.get(), 2) == (b"query", ("192.0.2.1", 5353))
        with pytest.raises(ValueError, match="no remote_port"):
            t_right.sendto(b"answer")
        t_right.close()
        assert t_right.is_closing() and lost == [None]


def test_pcap_writer_format(tmp_path: Path) -> None:
    import struct

    with PcapWriter(tmp_path / "x.pcap") as w:
        w.write_datagram(("192.0.2.1", 500), b"\x01" * 28, ("192.0.2.2", 500), 1.5)
        w.write_datagram(("192.0.2.1", 0), b"\x02" * 16, ("192.0.2.2", 0), 2.25)
    data = (tmp_path / "x.pcap").read_bytes()
    magic, major, minor, _, _, snap, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 101)
    sec, usec, incl, orig = struct.unpack("<IIII", data[24:40])
    assert (sec, usec, incl, orig) == (1, 500000, 20 + 8 + 28, 20 + 8 + 28)
    ip1 = data[40 : 40 + incl]
    assert ip1[9] == 17 and ip1[20:22] == (500).to_bytes(2, "big")
    off = 40 + incl
    sec, usec, incl2, _ = struct.unpack("<IIII", data[off : off + 16])
    ip2 = data[off + 16 : off + 16 + incl2]
    assert (sec, usec, ip2[9], ip2[20:]) == (2, 250000, 50, b"\x02" * 16)


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_example_file_passes_under_pytest(mode: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", f"asyncio_mode={mode}",
         "--rootdir", str(tmp_path), "-c", "/dev/null", str(EXAMPLE)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed" in r.stdout


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, time, json\n"
        "import pytest\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        "import aioipsec.testing as m\n"
        "dt = time.perf_counter() - t\n"
        "new = set(sys.modules) - before\n"
        "print(json.dumps({'ms': dt * 1000, 'fixtures': [hasattr(m, 'ipsec_pair'), hasattr(m, 'ipsec_pair_factory')],"
        " 'heavy': sorted(n for n in new if n.split('.')[0] in ('cryptography', 'aioipsec') and n not in"
        " ('aioipsec', 'aioipsec.testing'))}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["fixtures"] == [True, True]
    assert info["heavy"] == [], "the plugin imports nothing of aioipsec's stack or cryptography"
    # without pytest (an application importing the helpers): no pytest, no asyncio
    r = subprocess.run(
        [sys.executable, "-c", "import sys, aioipsec.testing; print('pytest' in sys.modules, 'asyncio' in sys.modules)"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.stdout.split() == ["False", "False"], r.stderr


def _readme_block(after: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(f"```{lang}\n")
    return text[start : text.index("```", start)]


def test_readme_embedding_example_runs() -> None:
    code = _readme_block("## Embedding it", "python")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "aes128gcm16-prfsha256-x25519 hq.example"
    assert out[2] == "(b'hello', ('192.0.2.1', 5000))"
    assert out[3].startswith("hq: ESTABLISHED, IKEv2, ")
    assert "#pkts encaps: 1, #pkts decaps: 0" in r.stdout


def test_readme_config_example_is_examples_site_a() -> None:
    """The README's site-to-site config is examples/site-a.toml (which the config tests load)."""
    block = _readme_block("## Running a gateway", "toml")
    example = (ROOT / "examples" / "site-a.toml").read_text()
    body = example[example.index("[daemon]"):]
    assert block.strip() == body.strip()
