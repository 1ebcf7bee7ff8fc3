"""NAT detection (RFC 7296 §2.23).

Each side sends ``NAT_DETECTION_SOURCE_IP`` (hash of its own address) and
``NAT_DETECTION_DESTINATION_IP`` (hash of the address it sends to) in
IKE_SA_INIT::

    hash = SHA-1(SPIi | SPIr | IP | Port)

In the request SPIr is zero.  A mismatch of the destination hash with our
own address means *we* are behind a NAT; a source hash matching none of the
peer's possible addresses means the *peer* is.  Either way both sides switch
to port 4500 and UDP-encapsulate ESP.

strongSwan's ``encap = yes`` forces encapsulation by sending a random
source hash (the peer then believes we are behind a NAT); :func:`fake_natd`
does the same here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._frozen import fast_init
from ..selectors import Address


@functools.lru_cache(maxsize=1024)
def _packed(ip: str) -> bytes:
    # cached: 4 hashes per IKE_SA_INIT on each side, over a handful of addresses
    return ipaddress.ip_address(ip).packed


def natd_hash(spi_i: bytes, spi_r: bytes, addr: Address) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port) of one address (RFC 7296 §2.23)."""
    ip, port = addr
    return hashlib.sha1(spi_i + spi_r + _packed(ip) + port.to_bytes(2, "big")).digest()


def fake_natd(random: Callable[[int], bytes]) -> bytes:
    """A random 20-byte source hash that matches no address: forces the peer
    (and, through its answer, us) into UDP encapsulation."""
    return random(20)


@fast_init
@dataclass(frozen=True, slots=True)
class NatdResult:
    """Outcome of processing the peer's NAT-D notifies."""

    supported: bool
    """The peer sent NAT-D notifies at all (NAT-T supported)."""
    local_behind_nat: bool
    """Our address was changed on the way (destination hash mismatch)."""
    remote_behind_nat: bool
    """The peer's address was changed (no source hash matched)."""

    @property
    def nat(self) -> bool:
        return self.local_behind_nat or self.remote_behind_nat


def check_natd(
    spi_i: bytes,
    spi_r: bytes,
    source_hashes: Iterable[bytes],
    destination_hashes: Iterable[bytes],
    local: Address,
    remote: Address,
) -> NatdResult:
    """Compare the peer's hashes with the addresses the datagram used.

    ``local`` is our address the datagram arrived on, ``remote`` the address it
    came from.  ``spi_r`` is zero for a request, the responder SPI for a
    response (the SPIs of the message carrying the notifies)."""
    src = list(source_hashes)
    dst = list(destination_hashes)
    if not src and not dst:
        return NatdResult(False, False, False)
    remote_hash = natd_hash(spi_i, spi_r, remote)
    local_hash = natd_hash(spi_i, spi_r, local)
    remote_nat = bool(src) and not any(hmac.compare_digest(h, remote_hash) for h in src)
    local_nat = bool(dst) and not any(hmac.compare_digest(h, local_hash) for h in dst)
    return NatdResult(True, local_nat, remote_nat)
