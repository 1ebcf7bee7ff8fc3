"""Logging set-up for the daemon and the CLI: one stdlib logger per layer and
charon-like debug levels per group.

Loggers (the *groups*, as charon's ``[IKE]``, ``[ESP]``, ``[NET]``, ``[CFG]``)::

    aioipsec.ike      IKE exchanges: one line per step ("IKE_SA_INIT sent", "MM3 received"),
                      SA established/rekeyed/deleted, authentication results
    aioipsec.esp      data plane: SAs installed, lifetimes, PKT_REPLAY_ERR, drops
    aioipsec.net      sockets, IKE/ESP demultiplexing, unknown SPIs
    aioipsec.cfg      configuration loading, legacy algorithms
    aioipsec.daemon   the gateway: TUN device, routes, signals, events
    aioipsec.control  the control socket: commands received
    aioipsec.transports  transport plugins

Levels, as charon's ``-1..4``: ``-1`` silent, ``0`` errors and warnings,
``1`` what happens (one line per exchange step; the default of ``-v``),
``2`` details (payloads, retransmits, drops; ``-vv``), ``3``/``4`` the same as
2 (charon uses them for raw packet dumps; aioipsec never logs key material
at any level: keys leave only through ``keys --wireshark`` when a connection
sets ``key_export = true``).

Every line carries the group tag (``[IKE]``); IKE lines carry the peer and the
SPIs, ESP lines the SPI.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TextIO

GROUPS: dict[str, str] = {
    "ike": "aioipsec.ike",
    "esp": "aioipsec.esp",
    "net": "aioipsec.net",
    "cfg": "aioipsec.cfg",
    "dmn": "aioipsec.daemon",
    "ctl": "aioipsec.control",
    "tnl": "aioipsec.transports",
}
"""Debug group name -> logger name (``--debug ike=2,esp=1``)."""

_TAGS = {logger: f"[{group.upper()}]" for group, logger in GROUPS.items()}

FORMAT = "%(asctime)s %(tag)s %(levelname)s %(message)s"


def level_for(n: int) -> int:
    """charon's debug level (-1..4) as a stdlib logging level."""
    if n < 0:
        return logging.CRITICAL + 10
    if n == 0:
        return logging.WARNING
    if n == 1:
        return logging.INFO
    return logging.DEBUG


def parse_debug(spec: str) -> dict[str, int]:
    """``"ike=2,esp=1"`` -> ``{"ike": 2, "esp": 1}``; raises ``ValueError``
    naming the bad part."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in GROUPS:
            raise ValueError(f"bad debug group {part!r}: expected GROUP=LEVEL with GROUP one of {', '.join(GROUPS)}")
        try:
            level = int(value)
        except ValueError:
            raise ValueError(f"bad debug level in {part!r}: expected an integer -1..4") from None
        if not -1 <= level <= 4:
            raise ValueError(f"bad debug level in {part!r}: expected an integer -1..4")
        out[name] = level
    return out


class _TagFilter(logging.Filter):
    """Adds ``record.tag``: ``[IKE]`` for ``aioipsec.ike`` and its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        tag = _TAGS.get(name)
        while tag is None and "." in name:
            name = name.rpartition(".")[0]
            tag = _TAGS.get(name)
        record.tag = tag or f"[{record.name}]"
        return True


def configure(
    verbosity: int = 0,
    debug: Mapping[str, int] | None = None,
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Log aioipsec to ``stream`` (stderr): every group at ``verbosity``
    (0: warnings, 1: ``-v``, 2: ``-vv``), groups in ``debug`` at their own
    level.  Returns the handler (remove it to undo)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_TagFilter())
    root = logging.getLogger("aioipsec")
    for h in list(root.handlers):
        if getattr(h, "_aioipsec_configured", False):
            root.removeHandler(h)
    handler._aioipsec_configured = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False
    base = level_for(verbosity)
    root.setLevel(base)
    for group, logger in GROUPS.items():
        logging.getLogger(logger).setLevel(level_for((debug or {}).get(group, verbosity)))
    return handler


_HIDDEN = ("key",)
"""Event fields never shown (``encr_key_in``, ``integ_key_out``, ...)."""


def describe_event(ev: object) -> str:
    """An event as one log line: ``IkeSaDeleted(spi_i=282304c3228fc793, ...)``.

    Like the dataclass repr, but IKE SPIs in hex, Child SA SPIs as
    ``0x%08x``, selectors and algorithms by name, and never a key field."""
    import dataclasses

    if not dataclasses.is_dataclass(ev):
        return repr(ev)
    parts = []
    for f in dataclasses.fields(ev):
        if any(h in f.name for h in _HIDDEN):
            continue
        v = getattr(ev, f.name)
        if isinstance(v, (bytes, bytearray)):
            text = v.hex() if v else "''"
        elif isinstance(v, int) and not isinstance(v, bool) and (f.name.startswith("spi") or f.name == "rekeyed_from"):
            text = f"0x{v:08x}"
        elif isinstance(v, (list, tuple)) and v and not isinstance(v[0], (str, int)):
            text = "[" + ", ".join(str(x) for x in v) + "]"
        elif hasattr(v, "name") and not isinstance(v, (str, int)):
            text = str(v.name)
        elif isinstance(v, float):
            text = f"{round(v, 1):g}"
        elif isinstance(v, dict) and not v:
            continue
        else:
            text = repr(v)
        parts.append(f"{f.name}={text}")
    return f"{type(ev).__name__}({', '.join(parts)})"
