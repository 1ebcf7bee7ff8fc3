"""Traffic selectors (RFC 7296 §3.13.1, RFC 4301 §4.4.1): address range,
IP protocol and port range.  Shared by IKE (negotiation, narrowing) and the
data plane (SPD lookup, inbound policy check)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ._frozen import fast_init

Address = tuple[str, int]


@fast_init
@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One selector.  Addresses are kept as integers for fast matching."""

    start: int
    """First address of the range, as an integer."""
    end: int
    """Last address of the range, as an integer."""
    version: int = 4
    """4 or 6."""
    proto: int = 0
    """IP protocol number, 0 = any."""
    start_port: int = 0
    end_port: int = 65535

    @classmethod
    def from_cidr(cls, text: str, proto: int = 0, ports: tuple[int, int] = (0, 65535)) -> TrafficSelector:
        """``198.51.100.0/24``, ``2001:db8::/32`` or a single address; an
        optional ``[proto/port]`` suffix is parsed by :func:`parse_ts`."""
        net = ipaddress.ip_network(text, strict=False)
        return cls(
            int(net.network_address),
            int(net.broadcast_address),
            net.version,
            proto,
            ports[0],
            ports[1],
        )

    @classmethod
    def any(cls, version: int = 4) -> TrafficSelector:
        return cls.from_cidr("0.0.0.0/0" if version == 4 else "::/0")

    @property
    def start_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.start) if self.version == 4 else ipaddress.IPv6Address(self.start)

    @property
    def end_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.end) if self.version == 4 else ipaddress.IPv6Address(self.end)

    def intersect(self, other: TrafficSelector) -> TrafficSelector | None:
        """The narrowest selector inside both, or ``None`` (RFC 7296 §2.9)."""
        if self.version != other.version:
            return None
        if self.proto and other.proto and self.proto != other.proto:
            return None
        start, end = max(self.start, other.start), min(self.end, other.end)
        sp, ep = max(self.start_port, other.start_port), min(self.end_port, other.end_port)
        if start > end or sp > ep:
            return None
        return TrafficSelector(start, end, self.version, self.proto or other.proto, sp, ep)

    def is_subset_of(self, other: TrafficSelector) -> bool:
        return self.intersect(other) == self

    def __str__(self) -> str:
        s, e = self.start_addr, self.end_addr
        text = str(s)
        nets = list(ipaddress.summarize_address_range(s, e))
        if len(nets) == 1:
            text = str(nets[0])
        elif s != e:
            text = f"{s}..{e}"
        if self.proto or (self.start_port, self.end_port) != (0, 65535):
            port = "" if (self.start_port, self.end_port) == (0, 65535) else (
                str(self.start_port) if self.start_port == self.end_port else f"{self.start_port}-{self.end_port}"
            )
            text += f"[{self.proto or ''}/{port}]" if port else f"[{self.proto}]"
        return text


def parse_ts(text: str) -> TrafficSelector:
    """Parse strongSwan's syntax: ``10.0.0.0/24``, ``10.0.0.0/24[tcp/443]``,
    ``10.0.0.1[udp]``, an address range ``10.0.0.5..10.0.0.9`` (the form
    ``str()`` gives); ``dynamic`` is handled by the caller."""
    proto, ports = 0, (0, 65535)
    if "[" in text:
        if not text.endswith("]"):
            raise ValueError(f"bad selector '{text}'")
        text, rest = text[:-1].split("[", 1)
        p, _, port = rest.partition("/")
        protos = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "ipv6-icmp": 58, "sctp": 132, "gre": 47}
        if p:
            proto = protos[p] if p in protos else int(p)
        if port:
            if "-" in port:
                a, b = port.split("-", 1)
                ports = (int(a), int(b))
            else:
                ports = (int(port), int(port))
    if not 0 <= proto <= 255:
        raise ValueError(f"protocol {proto} out of range 0..255")
    if not 0 <= ports[0] <= ports[1] <= 65535:
        raise ValueError(f"port range {ports[0]}-{ports[1]} out of 0..65535 or reversed")
    if ".." in text:
        a, b = (ipaddress.ip_address(x) for x in text.split("..", 1))
        if a.version != b.version or a > b:
            raise ValueError(f"bad address range '{text}' (mixed IP versions or reversed)")
        return TrafficSelector(int(a), int(b), a.version, proto, ports[0], ports[1])
    return TrafficSelector.from_cidr(text, proto, ports)
