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
