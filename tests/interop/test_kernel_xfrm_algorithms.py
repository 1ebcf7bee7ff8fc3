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

Every ESN sequence number here stays below 2**32 (the high half is zero but is
still authenticated), so a wrong high-order half after a wrap is not covered.

Opt-in like the other VM cases: ``AIOIPSEC_VM_TESTS=1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pytest

from .aioipsec_peer import AioipsecPeer
from .peer import PeerError
from .strongswan import Connection, StrongSwanError
from .test_harness_smoke import ping
from .test_kernel_xfrm import PINGS, assert_no_kernel_errors, check_pair, kernel_sas
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
