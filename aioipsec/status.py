"""Status of an endpoint as data: what ``aioipsec status`` prints and
``status --json`` returns (stable schema), like ``swanctl --list-sas`` and
``show crypto ipsec sa``."""

from __future__ import annotations

from typing import Any


def _spi(v: int) -> str:
    return f"0x{v:08x}"


def child_rows(endpoint: Any) -> list[dict[str, Any]]:
    """One row per installed Child SA with both directions' counters."""
    rows = []
    now = endpoint.loop.time()
    for spi_in, pipe in sorted(endpoint.dataplane.sad_in.items(), key=lambda kv: kv[1].ev.unique_id):
        ev = pipe.ev
        st = endpoint.dataplane.child_stats(spi_in)
        installed_at = getattr(pipe, "installed_at", now)
        rows.append(
            {
                "child": ev.name,
                "mode": ev.mode,
                "protocol": ev.protocol,
                "spi_in": _spi(ev.spi_in),
                "spi_out": _spi(ev.spi_out),
                "proposal": ev.algorithms or (ev.encr.name if ev.encr else "") + (f"-{ev.integ.name}" if ev.integ else ""),
                "encap": ev.encap,
                "local_ts": [str(t) for t in ev.local_ts],
                "remote_ts": [str(t) for t in ev.remote_ts],
                "local_addr": f"{ev.local_addr[0]}[{ev.local_addr[1]}]",
                "remote_addr": f"{pipe.remote[0]}[{pipe.remote[1]}]",
                "installed": round(now - installed_at, 1),
                "rekey_in": None if ev.lifetime_soft is None else max(0, round(installed_at + ev.lifetime_soft - now)),
                "expire_in": None if ev.lifetime_hard is None else max(0, round(installed_at + ev.lifetime_hard - now)),
                "packets_in": st.get("packets_in", 0),
                "bytes_in": st.get("bytes_in", 0),
                "packets_out": st.get("packets_out", 0),
                "bytes_out": st.get("bytes_out", 0),
                "replay_failed": st.get("replay_failed", 0),
                "integrity_failed": st.get("integrity_failed", 0),
                "malformed": st.get("malformed", 0),
                "policy_dropped": st.get("policy_dropped", 0),
                "drops": st.get("drops", {}),
            }
        )
    return rows


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


def endpoint_status(endpoint: Any) -> dict[str, Any]:
    """The whole endpoint: IKE SAs with their Child SAs (``status --json`` schema v1)."""
    now = endpoint.loop.time()
    rows = child_rows(endpoint)
    by_owner: dict[int, list[dict[str, Any]]] = {}
    for row, pipe in zip(rows, sorted(endpoint.dataplane.sad_in.values(), key=lambda p: p.ev.unique_id)):
        by_owner.setdefault(id(pipe.owner), []).append(row)
    ike_sas = []
    for proto in sorted(endpoint.sessions, key=lambda p: p.name):
        s = proto.session
        info = proto.ike_info
        est_at = getattr(proto, "established_at", None)
        ike_sas.append(
            {
                "name": proto.name,
                "version": getattr(s, "version", info.version if info else None),
                "state": _ike_state(s),
                "initiator": bool(info.initiator) if info else None,
                "local_addr": f"{s.local_addr[0]}[{s.local_addr[1]}]" if hasattr(s, "local_addr") else None,
                "remote_addr": f"{s.remote_addr[0]}[{s.remote_addr[1]}]" if hasattr(s, "remote_addr") else None,
                "local_id": info.local_id if info else None,
                "remote_id": info.remote_id if info else None,
                "spi_i": (getattr(s, "spi_i", b"") or b"").hex(),
                "spi_r": (getattr(s, "spi_r", b"") or b"").hex(),
                "proposal": info.algorithms if info else None,
                "nat_local": info.nat_local if info else None,
                "nat_remote": info.nat_remote if info else None,
                "established": None if est_at is None else round(now - est_at, 1),
                "children": by_owner.pop(id(proto), []),
            }
        )
    static = [r for rows_ in by_owner.values() for r in rows_]
    return {
        "schema": 1,
        "ike_sas": ike_sas,
        "static_children": static,
        "endpoint": {
            "ike_in": endpoint.stats.ike_in,
            "ike_out": endpoint.stats.ike_out,
            "esp_in": endpoint.stats.esp_in,
            "malformed": endpoint.stats.malformed,
            "unknown_spi": endpoint.stats.unknown_spi,
            "cookies_sent": endpoint.stats.cookies_sent,
            "no_sa": endpoint.dataplane.stats.no_sa,
            "no_policy": endpoint.dataplane.stats.no_policy,
            "held_dropped": endpoint.dataplane.stats.held_dropped,
        },
    }


def format_status(st: dict[str, Any]) -> str:
    """Text like ``swanctl --list-sas`` / ``show crypto ipsec sa``."""
    out: list[str] = []

    def child_lines(c: dict[str, Any], indent: str) -> None:
        out.append(
            f"{indent}{c['child']}: INSTALLED, {c['mode'].upper()}, {c['protocol'].upper()}"
            f"{' in UDP' if c['encap'] else ''} SPIs: {c['spi_in'][2:]}_i {c['spi_out'][2:]}_o"
        )
        out.append(f"{indent}  {c['proposal']}")
        when = []
        if c.get("installed") is not None:
            when.append(f"installed {c['installed']:g}s ago")
        if c.get("rekey_in") is not None:
            when.append(f"rekeying in {c['rekey_in']}s")
        if c.get("expire_in") is not None:
            when.append(f"expires in {c['expire_in']}s")
        if when:
            out.append(f"{indent}  {', '.join(when)}")
        out.append(f"{indent}  in  {c['spi_in'][2:]}, {c['bytes_in']:>8} bytes, {c['packets_in']:>6} packets")
        out.append(f"{indent}  out {c['spi_out'][2:]}, {c['bytes_out']:>8} bytes, {c['packets_out']:>6} packets")
        out.append(f"{indent}  local  {', '.join(c['local_ts'])}")
        out.append(f"{indent}  remote {', '.join(c['remote_ts'])}")
        out.append(
            f"{indent}  #pkts encaps: {c['packets_out']}, #pkts decaps: {c['packets_in']}, "
            f"#replay failed: {c['replay_failed']}, #integrity failed: {c['integrity_failed']}, "
            f"#malformed: {c['malformed']}, #policy dropped: {c['policy_dropped']}"
        )

    for sa in st["ike_sas"]:
        out.append(
            f"{sa['name']}: {sa['state']}, IKEv{sa['version']}, {sa['spi_i']}_i{'*' if sa['initiator'] else ''} "
            f"{sa['spi_r']}_r{'' if sa['initiator'] else '*'}"
        )
        out.append(f"  local  '{sa['local_id'] or ''}' @ {sa['local_addr']}{' (NAT)' if sa['nat_local'] else ''}")
        out.append(f"  remote '{sa['remote_id'] or ''}' @ {sa['remote_addr']}{' (NAT)' if sa['nat_remote'] else ''}")
        if sa["proposal"]:
            out.append(f"  {sa['proposal']}")
        if sa["established"] is not None:
            out.append(f"  established {sa['established']:g}s ago")
        for c in sa["children"]:
            child_lines(c, "  ")
    for c in st.get("static_children", []):
        child_lines(c, "")
    if not out:
        out.append("no SAs")
    return "\n".join(out)
