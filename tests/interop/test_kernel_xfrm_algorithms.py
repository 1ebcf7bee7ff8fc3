"""ESP algorithms against the Linux kernel's XFRM (charon with ``kernel-netlink`` in
the QEMU micro-VM of :mod:`.vm`), above all those kernel-libipsec cannot do, so the
netns suite (``test_ikev2_algorithms.py``) never shows them against a real peer:

* AES-GMAC (RFC 4543, ``aes128gmac``/``aes256gmac``; kernel ``rfc4543(gcm(aes))``);
* ESN (RFC 4303 extended sequence numbers, ``-esn``; libipsec refuses ESN SAs) with
  AES-GCM, AES-CBC + HMAC-SHA-256 (the high-order bits in the ICV input) and AES-GMAC;
* AES-CCM, ChaCha20-Poly1305, AES-CBC with HMAC-SHA-512 or AES-CMAC-96, AES-CTR.

Each case: IKEv2 PSK tunnel between aioipsec (left, TUN + raw ESP) and charon in the
guest, the ESP proposal on both ends; pings both ways; SPIs cross-match; the guest
kernel's two SAs carry the expected algorithm (and for ESN the ``esn`` flag and the
``anti-replay esn context``); aioipsec's packet/byte counters equal the kernel's; no
ICV/replay failure on either end and no guest XFRM error counter grew.  A guest
kernel without the algorithm skips, quoting charon's netlink error.

In those cases every sequence number stays below 2**32 (the high half is zero, though
authenticated).  ``test_esn_wrap`` crosses 2**32 both ways (transport mode, the
datagram API; GCM, CBC + HMAC-SHA-256, GMAC): both ends' sequence state is moved to
just below it before any traffic (the guest kernel's with ``XFRM_MSG_NEWAE``,
aioipsec's in its client process), so each receiver must infer the high half 1
(RFC 4303 Appendix A) and authenticate it.  aioipsec with the high half left out of
the AAD passes the other ESN cases but fails this one.

Opt-in like the other VM cases: ``AIOIPSEC_VM_TESTS=1``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from .aioipsec_peer import AioipsecPeer
from .peer import PeerError
from .strongswan import Connection, Profile, StrongSwanError
from .test_harness_smoke import ping
from .test_kernel_xfrm import (
    COUNT,
    ECHO_PORT,
    ECHO_SERVER,
    PINGS,
    PSK,
    SECRET,
    _wait_file,
    assert_no_kernel_errors,
    check_pair,
    kernel_sas,
)
from .vm import MicroVm, VmPeers, VmStrongSwanPeer

pytestmark = [pytest.mark.interop, pytest.mark.vm, pytest.mark.timeout(240)]

BASE = Connection.named("ikev2-psk-gcm")


@dataclass(frozen=True)
class KernelEspCase:
    proposal: str               # both ends' ESP proposal (strongSwan syntax)
    initiator: str              # "aioipsec" or "strongswan"
    kernel: tuple[str, ...]     # the guest SA's algorithm lines, e.g. ("aead rfc4543(gcm(aes))",)

    @property
    def esn(self) -> bool:
        return self.proposal.endswith("-esn")


GMAC = ("aead rfc4543(gcm(aes))",)
GCM = ("aead rfc4106(gcm(aes))",)

CASES = [
    KernelEspCase("aes128gmac", "aioipsec", GMAC),
    KernelEspCase("aes256gmac", "strongswan", GMAC),
    KernelEspCase("aes128gcm16-esn", "aioipsec", GCM),
    KernelEspCase("aes128gcm16-esn", "strongswan", GCM),
    KernelEspCase("aes128-sha256-esn", "aioipsec", ("enc cbc(aes)", "auth-trunc hmac(sha256)")),
    KernelEspCase("aes256gmac-esn", "strongswan", GMAC),
    KernelEspCase("aes128ccm16", "aioipsec", ("aead rfc4309(ccm(aes))",)),
    KernelEspCase("chacha20poly1305", "strongswan", ("aead rfc7539esp(chacha20,poly1305)",)),
    KernelEspCase("aes256-sha512", "aioipsec", ("enc cbc(aes)", "auth-trunc hmac(sha512)")),
    KernelEspCase("aes128-aescmac", "strongswan", ("enc cbc(aes)", "auth-trunc cmac(aes)")),
    KernelEspCase("aes128ctr-sha256", "aioipsec",
                  ("enc rfc3686(ctr(aes))", "auth-trunc hmac(sha256)")),
]

# charon's lines when the guest kernel refuses the SA (no such algorithm)
_REFUSAL = r"unable to add SAD entry|algorithm .* not supported by kernel"


def _refusal(ss: VmStrongSwanPeer) -> str | None:
    lines = [line.strip() for line in ss.logs().splitlines()
             if re.search(rf"{_REFUSAL}|received netlink error", line)]
    return " | ".join(lines) if lines and any(re.search(_REFUSAL, x) for x in lines) else None


def establish_or_skip(aio: AioipsecPeer, ss: VmStrongSwanPeer, case: KernelEspCase) -> None:
    """Bring the tunnel up from ``case.initiator``; skip with charon's log lines if the
    guest kernel cannot install the SA."""
    try:
        if case.initiator == "aioipsec":
            aio.initiate(timeout=30)
        else:
            ss.initiate(timeout=30)
        ss.wait_log(rf"CHILD_SA ih\{{\d+\}} established|{_REFUSAL}", timeout=20)
    except (StrongSwanError, PeerError):
        if _refusal(ss) is None:
            raise
    refusal = _refusal(ss)
    if refusal is not None:
        pytest.skip(f"the guest kernel cannot do ESP {case.proposal}: {refusal}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.proposal}-{c.initiator}")
def test_kernel_esp_algorithm(vm_peers: VmPeers, micro_vm: MicroVm, case: KernelEspCase) -> None:
    topo = micro_vm.topology
    conn = replace(BASE, profile=replace(BASE.profile, esp_proposals=case.proposal))
    before = micro_vm.xfrm_stats()
    ss = vm_peers.strongswan(conn)
    aio = vm_peers.aioipsec(conn)
    establish_or_skip(aio, ss, case)
    aio_child, sa_in, sa_out = check_pair(aio, ss, micro_vm, mode="tunnel", alg=case.kernel[0])
    for sa in (sa_in, sa_out):
        assert sorted(sa.algorithms) == sorted(case.kernel), sa.raw
        flags = re.search(r"(?m)^\s*replay-window \d+ .*$", sa.raw)
        has_esn = flags is not None and "esn" in flags.group(0).split()
        assert has_esn == case.esn, sa.raw
        assert ("anti-replay esn context" in sa.raw) == case.esn, sa.raw
    assert aio_child.raw["esn"] is case.esn
    assert aio_child.raw["proposal"] == case.proposal

    assert ping(topo, "left", count=PINGS) == (PINGS, PINGS)
    assert micro_vm.ping(topo.left.inner4, source=topo.right.inner4, count=PINGS) == (PINGS, PINGS)

    aio_child = aio.wait_established(5)
    sa_in, sa_out = kernel_sas(micro_vm, aio_child.spi_out, aio_child.spi_in)
    # each end verified and counted every packet the other sent
    assert aio_child.packets_out == sa_in.packets >= 2 * PINGS
    assert aio_child.packets_in == sa_out.packets >= 2 * PINGS
    assert aio_child.bytes_out == sa_in.bytes and aio_child.bytes_in == sa_out.bytes
    assert aio_child.raw["integrity_failed"] == 0 and aio_child.raw["replay_failed"] == 0
    if case.esn:
        # the kernel's ESN replay state: inbound top = aioipsec's last sequence number,
        # outbound = the number of packets it sent, high halves zero
        ctx_in = re.search(r"seq-hi 0x([0-9a-f]+), seq 0x([0-9a-f]+)", sa_in.raw)
        ctx_out = re.search(r"oseq-hi 0x([0-9a-f]+), oseq 0x([0-9a-f]+)", sa_out.raw)
        assert ctx_in is not None and ctx_out is not None, (sa_in.raw, sa_out.raw)
        assert (int(ctx_in.group(1), 16), int(ctx_in.group(2), 16)) == (0, sa_in.packets)
        assert (int(ctx_out.group(1), 16), int(ctx_out.group(2), 16)) == (0, sa_out.packets)
    assert_no_kernel_errors(micro_vm, before)


# ---------------------------------------------------------------------------
# ESN across the 2**32 boundary: both ends' sequence state moved to just below it
# (the guest kernel's with XFRM_MSG_NEWAE, aioipsec's in the client process) before
# any traffic, so the datagrams cross it both ways - the high half becomes 1, is
# authenticated but never sent, and each receiver must infer it (RFC 4303 A2)

WRAP_START = (1 << 32) - 5      # last sequence number "sent"/"received" before the exchange

# in the guest: XFRM_MSG_NEWAE (NLM_F_REPLACE) with XFRMA_REPLAY_ESN_VAL for one SA
SET_ESN = r"""
import socket, struct, sys
dst, spi, bmp_len, window, oseq, seq = sys.argv[1], int(sys.argv[2], 16), *map(int, sys.argv[3:7])
XFRM_MSG_NEWAE, XFRMA_REPLAY_ESN_VAL = 30, 23
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE = 1, 4, 0x100
sa_id = socket.inet_aton(dst) + bytes(12) + struct.pack("!I", spi) + struct.pack("=HBx", socket.AF_INET, 50)
aevent = sa_id + bytes(16) + struct.pack("=II", 0, 0)
esn = struct.pack("=6I", bmp_len, oseq & 0xffffffff, seq & 0xffffffff, oseq >> 32, seq >> 32, window)
esn += bytes(4 * bmp_len)
attr = struct.pack("=HH", 4 + len(esn), XFRMA_REPLAY_ESN_VAL) + esn
body = aevent + attr
msg = struct.pack("=IHHII", 16 + len(body), XFRM_MSG_NEWAE,
                  NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, 1, 0) + body
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)
s.bind((0, 0))
s.send(msg)
reply = s.recv(4096)
err = struct.unpack("=i", reply[16:20])[0]
print("NEWAE", hex(spi), "error", err)
sys.exit(0 if err == 0 else 1)
"""


async def esn_wrap_client(me: str, peer: str, esp: str, out: str) -> None:
    """In the left namespace: a transport-mode child with ``esp``; before any traffic,
    move aioipsec's outbound counter and inbound window top to WRAP_START, report the
    SPIs (``OUT.spis``) and wait for ``OUT.go`` (the guest kernel's state moved too);
    then COUNT datagrams to the guest's echo server and back.  Keeps the SAs until
    ``OUT.close`` appears (at most 60 s)."""
    import asyncio

    from aioipsec.asyncio.client import connect
    from aioipsec.config import child, connection

    conf = connection("vm", psk=PSK, local_id="left.interop.example",
                      remote_id="right.interop.example", local_addrs=[me], remote_addrs=[peer],
                      proposals=["aes128gcm16-prfsha256-x25519"], dpd_delay=0,
                      retransmit_timeout=1.0, retransmit_tries=6,
                      children=[child("ih", local_ts=[f"{me}/32"], remote_ts=[f"{peer}/32"],
                                      esp_proposals=[esp], mode="transport")])
    result: dict[str, object] = {}
    try:
        async with connect(peer, configuration=conf, timeout=30) as ike:
            sock = ike.open_datagram(5555)
            (ch,) = ike.children.values()
            pipe = ike._endpoint.dataplane.sad_in[ch.spi_in]
            pipe.sa_out.seq = WRAP_START
            pipe.sa_in.replay.top = WRAP_START
            Path(out + ".spis").write_text(json.dumps([ch.spi_in, ch.spi_out]))
            for _ in range(600):
                if Path(out + ".go").exists():
                    break
                await asyncio.sleep(0.1)
            echoes = []
            for i in range(COUNT):
                sock.sendto(SECRET + b" %d" % i, ECHO_PORT)
                data, addr = await asyncio.wait_for(sock.recvfrom(), 10)
                echoes.append([data.decode(), list(addr)])
            st_in = pipe.sa_in.stats
            result.update(echoes=echoes, esn=pipe.sa_in.esn and pipe.sa_out.esn,
                          seq_out=pipe.sa_out.seq, top_in=pipe.sa_in.replay.top,
                          integrity_failed=st_in.integrity_failed, replay_failed=st_in.replay_failed)
            Path(out).write_text(json.dumps(result))
            close = Path(out + ".close")
            for _ in range(600):
                if close.exists():
                    break
                await asyncio.sleep(0.1)
    except BaseException as exc:  # noqa: BLE001 - reported through the result file
        result["error"] = repr(exc)
        Path(out).write_text(json.dumps(result))


@pytest.mark.parametrize("esp", ["aes128gcm16-esn", "aes128-sha256-esn", "aes128gmac-esn"])
def test_esn_wrap(vm_peers: VmPeers, micro_vm: MicroVm, esp: str) -> None:
    """ESN across 2**32 both ways (transport mode, aioipsec initiating): every
    datagram's echo comes back, the kernel's ESN state shows high halves 1 in both
    directions, aioipsec's counters passed 2**32, nothing failed."""
    topo = micro_vm.topology
    left, right = topo.left, topo.right
    run_dir = topo.run_dir
    prof = Profile("ikev2-psk-gcm", 2, "aes128gcm16-prfsha256-x25519", esp, mode="transport")
    before = micro_vm.xfrm_stats()
    vm_peers.strongswan(Connection(prof, psk=PSK))
    echo, ready = run_dir / "vm-echo.py", run_dir / "vm-echo.ready"
    setter = run_dir / "vm-set-esn.py"
    out = run_dir / "esn-wrap.json"
    extra = [Path(f"{out}.{s}") for s in ("spis", "go", "close")]
    for p in (ready, out, *extra):
        p.unlink(missing_ok=True)
    echo.write_text(ECHO_SERVER)
    setter.write_text(SET_ESN)
    echo_pid = micro_vm.spawn(["python3", str(echo), right.outer4, str(ECHO_PORT), str(COUNT),
                               str(ready)], log=run_dir / "vm-echo.log")
    client = None
    try:
        _wait_file(ready, 30)
        client = left.ns.spawn(esn_wrap_client, left.outer4, right.outer4, esp, str(out))
        _wait_file(extra[0], 60)
        spi_in, spi_out = json.loads(extra[0].read_text())     # aioipsec's
        sa_in, sa_out = kernel_sas(micro_vm, spi_out, spi_in)   # the guest's
        for sa in (sa_in, sa_out):
            assert "esn" in re.search(r"(?m)^\s*replay-window \d+ .*$", sa.raw).group(0).split()
        for sa, oseq, seq in ((sa_out, WRAP_START, 0), (sa_in, 0, WRAP_START)):
            m = re.search(r"replay_window (\d+), bitmap-length (\d+)", sa.raw)
            assert m is not None, sa.raw
            micro_vm.run(["python3", str(setter), sa.dst, f"{sa.spi:x}", m.group(2), m.group(1),
                          str(oseq), str(seq)]).check()
        extra[1].write_text("1")
        _wait_file(out, 90)
        result = json.loads(out.read_text())
        assert "error" not in result, result
        assert result["echoes"] == [["echo:" + (SECRET + b" %d" % i).decode(),
                                     [right.outer4, ECHO_PORT]] for i in range(COUNT)]
        assert result["esn"] is True
        # every datagram went out and its echo came in, across 2**32
        assert result["seq_out"] == result["top_in"] == WRAP_START + COUNT > 1 << 32
        assert result["integrity_failed"] == result["replay_failed"] == 0
        sa_in, sa_out = kernel_sas(micro_vm, spi_out, spi_in)
        assert sa_in.packets == sa_out.packets == COUNT
        ctx_in = re.search(r"seq-hi 0x([0-9a-f]+), seq 0x([0-9a-f]+)", sa_in.raw)
        ctx_out = re.search(r"oseq-hi 0x([0-9a-f]+), oseq 0x([0-9a-f]+)", sa_out.raw)
        assert ctx_in is not None and ctx_out is not None, (sa_in.raw, sa_out.raw)
        wrapped = (1, (WRAP_START + COUNT) & 0xFFFFFFFF)
        assert (int(ctx_in.group(1), 16), int(ctx_in.group(2), 16)) == wrapped, sa_in.raw
        assert (int(ctx_out.group(1), 16), int(ctx_out.group(2), 16)) == wrapped, sa_out.raw
    finally:
        extra[2].write_text("1")
        if client is not None:
            client.join(20)
            client.stop()
        micro_vm.kill(echo_pid)
    assert_no_kernel_errors(micro_vm, before)
