"""Status of an endpoint as data: what ``aioipsec status`` prints and
``status --json`` returns, like ``swanctl --list-sas`` and ``show crypto ipsec sa``.

``status --json`` schema, version 1.  Keys may be added without a version
change; removing a key or changing its type bumps ``schema``::

    {
      "schema": 1,
      "ike_sas": [IKE_SA, ...],          # sorted by name
      "static_children": [CHILD, ...],   # SAs installed without IKE (static keys)
      "endpoint": ENDPOINT
    }

    IKE_SA = {
      "name": str,                 # connection name
      "version": int,              # 2 = IKEv2, 1 = IKEv1
      "state": str,                # CONNECTING, ESTABLISHED, REKEYING, DELETING, CLOSED, ...
      "initiator": bool | null,    # we initiated this IKE SA (null before it is established)
      "local_addr": str,           # "192.0.2.1[500]"
      "remote_addr": str,
      "local_id": str | null,      # identities (null before IKE_AUTH / MM5)
      "remote_id": str | null,
      "local_eap_id": str | null,  # IKEv2 EAP: the identity we authenticated with (a client)
      "remote_eap_id": str | null, #   and the peer's (a gateway; swanctl's remote-eap-id); else null
      "local_round2_id": str | null,  # IKEv2 RFC 4739 second certificate/PSK round: our IDi of it (a
      "remote_round2_id": str | null, #   client) and the peer's (a gateway); else null
      "local_xauth_id": str | null,  # IKEv1 XAUTH: the user we passed XAUTH as (a client)
      "remote_xauth_id": str | null, #   and the peer's user (a gateway; swanctl's remote-xauth-id); else null
      "ppk_id": str | null,        # IKEv2 RFC 8784: the PPK_ID whose PPK is mixed into the keys (kept
                                   #   by IKE rekeys); null without a PPK (swanctl shows none)
      "local_vips": [str, ...],    # virtual IPs: ours (assigned by the peer's pool), the peer's
      "remote_vips": [str, ...],   #   (assigned from our pool); [] without them
      "remote_additional_addrs": [str, ...],  # MOBIKE: the peer's other addresses
                                   #   (ADDITIONAL_IP4/6_ADDRESS, RFC 4555); [] without
      "spi_i": str,                # 16 hex digits (IKEv1: initiator cookie)
      "spi_r": str,
      "proposal": str | null,      # strongSwan syntax: "aes128gcm16-prfsha256-x25519"
      "nat_local": bool | null,    # we are behind a NAT
      "nat_remote": bool | null,   # the peer is behind a NAT
      "established": float | null, # seconds since established
      "rekey_in": int | null,      # seconds until rekey (IKEv1: the Phase 1 renewal; null: never)
      "reauth_in": int | null,     # seconds until reauthentication (IKEv2 reauth_time; null: none)
      "expire_in": int | null,     # seconds until hard expiry (null: never)
      "children": [CHILD, ...],    # its Child SAs (IKEv1: its IPsec SAs), by unique id
      "attempt": int | null,       # an IKE SA of ours not established yet: which attempt of the
      "keyingtries": int | null,   #   connection's keyingtries (0 = until established) it is; else null
      "redirected_from": str | null  # IKEv2 (RFC 5685): the gateway that redirected the connection here
    }

    CHILD = {
      "child": str,                # child name
      "unique_id": int,            # local id, stable over the SA's life (swanctl's #N)
      "mode": str,                 # "tunnel" | "transport"
      "protocol": str,             # "esp" | "ah"
      "spi_in": str,               # "0xc1a2b3c4"
      "spi_out": str,
      "proposal": str,             # strongSwan syntax: "aes128gcm16", "aes256-sha256-modp2048"
      "encap": bool,               # ESP in UDP (NAT traversal)
      "esn": bool,                 # extended sequence numbers
      "replay_window": int,        # packets (0: replay protection off)
      "local_ts": [str, ...],      # negotiated selectors: "198.51.100.0/24", "10.0.0.1/32[udp/53]"
      "remote_ts": [str, ...],
      "local_addr": str,           # outer addresses "ip[port]"
      "remote_addr": str,
      "installed": float,          # seconds since installed
      "rekey_in": int | null,      # seconds until rekey (null: never, or rekey already started)
      "expire_in": int | null,     # seconds until hard expiry: the lifetime left
      "packets_in": int,           # decapsulated packets (Cisco "#pkts decaps")
      "bytes_in": int,             # inner bytes
      "packets_out": int,          # encapsulated packets (Cisco "#pkts encaps")
      "bytes_out": int,
      "replay_failed": int,        # inbound drops: replayed or outside the window
      "integrity_failed": int,     # inbound drops: ICV/tag mismatch
      "malformed": int,            # inbound drops: bad length, bad padding
      "policy_dropped": int,       # decrypted but outside the negotiated selectors
      "drops": {str: int},         # every drop by reason: replay, integrity, padding,
                                   # malformed, spi, dummy, policy, expired (zero reasons left out)
      "header_drops": {str: int}   # AH: the "malformed" drops for IP headers in front of AH (IPv6
                                   # extension headers, IPv4 options), by reason, both directions; ESP: {}
                                   # (each SA keeps 32 reasons, later ones as "other reasons")
    }

    ENDPOINT = {"ike_in", "ike_out", "esp_in", "malformed", "unknown_spi", "cookies_sent",
                "no_sa", "no_policy", "held_dropped", "keepalives_in", "keepalives_out",
                "no_transport": int}
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_VERSION = 1


def _spi(v: int) -> str:
    return f"0x{v:08x}"


def _addr(a: Any) -> str | None:
    if not a:
        return None
    return f"{a[0]}[{a[1]}]"


def _left(at: float | None, now: float) -> int | None:
    """Seconds from ``now`` until the absolute time ``at`` (None: never)."""
    if at is None or not math.isfinite(at):
        return None
    return max(0, round(at - now))


def _by_reason(*counters: Any) -> dict[str, int]:
    """Counters by reason (mappings, None for none) summed, zeros left out, sorted."""
    out: dict[str, int] = {}
    for c in counters:
        for reason, n in (c or {}).items():
            if n:
                key = str(reason)
                out[key] = out.get(key, 0) + n
    return dict(sorted(out.items()))


def _drops(pipe: Any) -> dict[str, int]:
    policy = {"policy": pipe.policy_dropped}
    return _by_reason(*(getattr(getattr(sa, "stats", None), "drops", None) for sa in (pipe.sa_in, pipe.sa_out)), policy)


def _header_drops(pipe: Any) -> dict[str, int]:
    """AH SAs' ``header_drops`` of both directions, summed by reason."""
    return _by_reason(*(getattr(sa, "header_drops", None) for sa in (pipe.sa_in, pipe.sa_out)))


def _child_times(pipe: Any, now: float) -> tuple[int | None, int | None]:
    """(rekey_in, expire_in): from the session's Child SA when it keeps the
    deadlines (IKEv2), else from the lifetimes in the install event."""
    ev = pipe.ev
    owner = pipe.owner
    children = getattr(getattr(owner, "session", None), "children", None)
    child = children.get(ev.spi_in) if isinstance(children, dict) else None
    if child is not None and hasattr(child, "rekey_at") and hasattr(child, "expire_at"):
        return _left(child.rekey_at, now), _left(child.expire_at, now)
    installed_at = getattr(pipe, "installed_at", now)
    soft = None if ev.lifetime_soft is None else installed_at + ev.lifetime_soft
    hard = None if ev.lifetime_hard is None else installed_at + ev.lifetime_hard
    return _left(soft, now), _left(hard, now)


def child_row(pipe: Any, now: float) -> dict[str, Any]:
    """One Child SA (both directions) as a ``CHILD`` record."""
    ev = pipe.ev
    sin, sout = pipe.sa_in.stats, pipe.sa_out.stats
    installed_at = getattr(pipe, "installed_at", now)
    rekey_in, expire_in = _child_times(pipe, now)
    proposal = ev.algorithms or (
        (ev.encr.name if ev.encr else "") + (f"-{ev.integ.name}" if ev.integ else "")
    ).strip("-")
    return {
        "child": ev.name,
        "unique_id": ev.unique_id,
        "mode": ev.mode,
        "protocol": ev.protocol,
        "spi_in": _spi(ev.spi_in),
        "spi_out": _spi(ev.spi_out),
        "proposal": proposal,
        "encap": bool(pipe.encap),
        "esn": bool(ev.esn),
        "replay_window": ev.replay_window,
        "local_ts": [str(t) for t in ev.local_ts],
        "remote_ts": [str(t) for t in ev.remote_ts],
        "local_addr": _addr(ev.local_addr),
        "remote_addr": _addr(pipe.remote),
        "installed": round(now - installed_at, 1),
        "rekey_in": rekey_in,
        "expire_in": expire_in,
        "packets_in": getattr(sin, "packets_in", 0),
        "bytes_in": getattr(sin, "bytes_in", 0),
        "packets_out": getattr(sout, "packets_out", 0),
        "bytes_out": getattr(sout, "bytes_out", 0),
        "replay_failed": getattr(sin, "replay_failed", 0),
        "integrity_failed": getattr(sin, "integrity_failed", 0),
        "malformed": getattr(sin, "malformed", 0) + getattr(sin, "padding_failed", 0),
        "policy_dropped": pipe.policy_dropped,
        "drops": _drops(pipe),
        "header_drops": _header_drops(pipe),
    }


def _pipes(endpoint: Any) -> list[Any]:
    live = [p for p in endpoint.dataplane.sad_in.values() if not getattr(p, "deleted", False)]
    return sorted(live, key=lambda p: (p.ev.unique_id, p.ev.spi_in))


def child_rows(endpoint: Any) -> list[dict[str, Any]]:
    """One row per installed Child SA with both directions' counters."""
    now = endpoint.loop.time()
    return [child_row(p, now) for p in _pipes(endpoint)]


def _ike_state(s: Any) -> str:
    """The session's state name; sessions without a ``state`` (IKEv1) from their flags."""
    state = getattr(s, "state", None)
    if state is not None:
        return str(getattr(state, "name", state))
    if getattr(s, "is_closed", False):
        return "CLOSED"
    if getattr(s, "is_established", False):
        return "ESTABLISHED"
    return "CONNECTING"


def _ike_times(s: Any, now: float) -> tuple[int | None, int | None, int | None]:
    """(rekey_in, reauth_in, expire_in) of the session's current IKE SA:
    IKEv2 keeps ``rekey_at``/``reauth_at``/``expire_at``, IKEv1
    ``soft_at``/``hard_at`` (no reauthentication)."""
    sa = getattr(s, "sa", None)
    if sa is None:
        return None, None, None
    soft = getattr(sa, "rekey_at", getattr(sa, "soft_at", None))
    hard = getattr(sa, "expire_at", getattr(sa, "hard_at", None))
    return _left(soft, now), _left(getattr(sa, "reauth_at", None), now), _left(hard, now)


def ike_row(proto: Any, now: float, children: list[dict[str, Any]]) -> dict[str, Any]:
    """One IKE SA as an ``IKE_SA`` record."""
    s = proto.session
    info = proto.ike_info
    est_at = getattr(proto, "established_at", None)
    rekey_in, reauth_in, expire_in = _ike_times(s, now) if getattr(s, "is_established", False) else (None,) * 3
    version = getattr(s, "version", None) or (info.version if info else None)
    if version is None:
        version = 1 if type(s).__name__.endswith("V1") else 2
    return {
        "name": proto.name,
        "version": int(version),
        "state": _ike_state(s),
        "initiator": bool(info.initiator) if info else None,
        "local_addr": _addr(getattr(s, "local_addr", None)),
        "remote_addr": _addr(getattr(s, "remote_addr", None)),
        "local_id": info.local_id if info else None,
        "remote_id": info.remote_id if info else None,
        "local_eap_id": getattr(info, "local_eap_id", None),
        "remote_eap_id": getattr(info, "remote_eap_id", None),
        "local_round2_id": getattr(info, "local_round2_id", None),
        "remote_round2_id": getattr(info, "remote_round2_id", None),
        "local_xauth_id": getattr(info, "local_xauth_id", None),
        "remote_xauth_id": getattr(info, "remote_xauth_id", None),
        # the session's current IKE SA (IKEv2 IkeSa.ppk_id; IKEv1 has none)
        "ppk_id": getattr(getattr(s, "sa", None), "ppk_id", None),
        "local_vips": list(getattr(info, "local_vips", ()) or ()),
        "remote_vips": list(getattr(info, "remote_vips", ()) or ()),
        "remote_additional_addrs": list(getattr(getattr(s, "sa", None), "peer_addrs", ()) or ()),
        "spi_i": (getattr(s, "spi_i", b"") or bytes(8)).hex(),
        "spi_r": (getattr(s, "spi_r", b"") or bytes(8)).hex(),
        "proposal": info.algorithms if info else None,
        "nat_local": info.nat_local if info else None,
        "nat_remote": info.nat_remote if info else None,
        "established": None if est_at is None else round(now - est_at, 1),
        "rekey_in": rekey_in,
        "reauth_in": reauth_in,
        "expire_in": expire_in,
        "children": children,
        "redirected_from": getattr(s, "redirected_from", "") or None,
    }


def endpoint_status(endpoint: Any) -> dict[str, Any]:
    """The whole endpoint: IKE SAs with their Child SAs (``status --json`` schema v1)."""
    now = endpoint.loop.time()
    by_owner: dict[int, list[dict[str, Any]]] = {}
    for pipe in _pipes(endpoint):
        by_owner.setdefault(id(pipe.owner), []).append(child_row(pipe, now))
    ike_sas = []
    keying = getattr(endpoint, "keying_attempt", None)
    for proto in sorted(endpoint.sessions, key=lambda p: (p.name, getattr(p, "established_at", None) or 0.0)):
        row = ike_row(proto, now, by_owner.pop(id(proto), []))
        attempt = keying(proto) if keying is not None else None
        row["attempt"], row["keyingtries"] = attempt if attempt is not None else (None, None)
        ike_sas.append(row)
    static = [r for rows in by_owner.values() for r in rows]
    es, ds = endpoint.stats, endpoint.dataplane.stats
    return {
        "schema": SCHEMA_VERSION,
        "ike_sas": ike_sas,
        "static_children": static,
        "endpoint": {
            "ike_in": es.ike_in,
            "ike_out": es.ike_out,
            "esp_in": es.esp_in,
            "malformed": es.malformed + ds.malformed,
            "unknown_spi": es.unknown_spi,
            "cookies_sent": es.cookies_sent,
            "no_sa": ds.no_sa,
            "no_policy": ds.no_policy,
            "held_dropped": ds.held_dropped,
            "keepalives_in": es.keepalives_in,
            "keepalives_out": es.keepalives_out,
            "no_transport": ds.no_transport,
        },
    }


# ---------------------------------------------------------------------------- text


def _ago(seconds: float) -> str:
    return f"{seconds:g}s ago" if seconds < 120 else f"{_dur(seconds)} ago"


def _dur(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def format_child(c: dict[str, Any], indent: str = "  ") -> list[str]:
    """A Child SA as ``swanctl --list-sas`` prints it, with Cisco-style counters."""
    out = [
        f"{indent}{c['child']}: #{c.get('unique_id', 0)}, INSTALLED, {c['mode'].upper()}"
        f"{'-in-UDP' if c['encap'] else ''}, {c['protocol'].upper()}:{c['proposal']}"
        f"{', ESN' if c.get('esn') else ''}",
    ]
    when = [f"installed {_ago(c['installed'])}"]
    if c.get("rekey_in") is not None:
        when.append(f"rekeying in {_dur(c['rekey_in'])}")
    if c.get("expire_in") is not None:
        when.append(f"expires in {_dur(c['expire_in'])}")
    out.append(f"{indent}  {', '.join(when)}")
    out.append(f"{indent}  in  {c['spi_in'][2:]}, {c['bytes_in']:>10} bytes, {c['packets_in']:>8} packets")
    out.append(f"{indent}  out {c['spi_out'][2:]}, {c['bytes_out']:>10} bytes, {c['packets_out']:>8} packets")
    out.append(f"{indent}  local  {', '.join(c['local_ts']) or 'dynamic'}")
    out.append(f"{indent}  remote {', '.join(c['remote_ts']) or 'dynamic'}")
    out.append(
        f"{indent}  #pkts encaps: {c['packets_out']}, #pkts decaps: {c['packets_in']}, "
        f"#replay failed: {c['replay_failed']}, #integrity failed: {c['integrity_failed']}"
    )
    drops = c.get("drops") or {}
    # AH: which IP headers in front of AH made the "malformed" drops
    hdr = c.get("header_drops") or {}
    out.append(
        f"{indent}  drops: " + (", ".join(f"{k} {v}" for k, v in drops.items()) if drops else "none")
        + (f"; AH header drops: {', '.join(f'{k} {v}' for k, v in hdr.items())}" if hdr else "")
        + f"; replay window {c.get('replay_window', 0)}"
    )
    return out


def format_status(st: dict[str, Any]) -> str:
    """Text like ``swanctl --list-sas`` / ``show crypto ipsec sa``."""
    out: list[str] = []
    for sa in st["ike_sas"]:
        init = sa["initiator"]
        out.append(
            f"{sa['name']}: {sa['state']}, IKEv{sa['version']}, {sa['spi_i']}_i{'*' if init else ''} "
            f"{sa['spi_r']}_r{'*' if init is False else ''}"
        )
        # as swanctl --list-sas: virtual IPs in brackets after the address
        lv = "".join(f" [{v}]" for v in sa.get("local_vips") or ())
        rv = "".join(f" [{v}]" for v in sa.get("remote_vips") or ())
        # and, as swanctl, the EAP identity after the address: "EAP: 'alice'"
        le = f" EAP: '{sa['local_eap_id']}'" if sa.get("local_eap_id") is not None else ""
        re_ = f" EAP: '{sa['remote_eap_id']}'" if sa.get("remote_eap_id") is not None else ""
        # a second certificate/PSK round's identity likewise: "round 2: 'CN=alice'"
        le += f" round 2: '{sa['local_round2_id']}'" if sa.get("local_round2_id") is not None else ""
        re_ += f" round 2: '{sa['remote_round2_id']}'" if sa.get("remote_round2_id") is not None else ""
        # the IKEv1 XAUTH user likewise: "XAuth: 'alice'"
        le += f" XAuth: '{sa['local_xauth_id']}'" if sa.get("local_xauth_id") is not None else ""
        re_ += f" XAuth: '{sa['remote_xauth_id']}'" if sa.get("remote_xauth_id") is not None else ""
        out.append(f"  local  '{sa['local_id'] or ''}' @ {sa['local_addr']}{le}{' (NAT)' if sa['nat_local'] else ''}{lv}")
        out.append(
            f"  remote '{sa['remote_id'] or ''}' @ {sa['remote_addr']}{re_}{' (NAT)' if sa['nat_remote'] else ''}{rv}")
        if sa.get("remote_additional_addrs"):
            out.append(f"  remote additional addresses: {', '.join(sa['remote_additional_addrs'])}")
        if sa.get("redirected_from"):
            out.append(f"  redirected to {sa['remote_addr']} by {sa['redirected_from']}")
        if sa.get("attempt") is not None:
            tries = sa.get("keyingtries")
            out.append(f"  connecting: attempt {sa['attempt']} of {tries}" if tries else
                       f"  connecting: attempt {sa['attempt']}, keyingtries = 0 (until established)")
        if sa["proposal"]:
            out.append(f"  {sa['proposal']}")
        if sa.get("ppk_id") is not None:  # RFC 8784; swanctl --list-sas shows no PPK
            out.append(f"  ppk: '{sa['ppk_id']}'")
        if sa["established"] is not None:
            when = [f"established {_ago(sa['established'])}"]
            if sa.get("rekey_in") is not None:
                when.append(f"rekeying in {_dur(sa['rekey_in'])}")
            if sa.get("reauth_in") is not None:
                when.append(f"reauth in {_dur(sa['reauth_in'])}")
            if sa.get("expire_in") is not None:
                when.append(f"expires in {_dur(sa['expire_in'])}")
            out.append(f"  {', '.join(when)}")
        for c in sa["children"]:
            out += format_child(c, "  ")
    for c in st.get("static_children", []):
        out += format_child(c, "")
    if not out:
        out.append("no SAs")
    return "\n".join(out)
