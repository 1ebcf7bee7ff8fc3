"""TOML configuration loader with swanctl.conf names.

Every error names the file, the key path and the reason, e.g.::

    gw.toml: connections.hq.children.lan.mode: expected "tunnel" or "transport", got "tunel"

Unknown keys are rejected with a suggestion (``did you mean "remote_ts"?``).
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import AuthConfig, ChildConfig, ConnectionConfig, GlobalConfig, PoolConfig
from .crypto.transforms import Proposal, parse_proposal
from .errors import AlgorithmError, ConfigError
from .ike.auth import REVOCATION_POLICIES
from .ike.v2.tasks.ppk import ppk_for
from .selectors import TrafficSelector, parse_ts


@dataclass
class Configuration:
    """A whole configuration file."""

    connections: dict[str, ConnectionConfig] = field(default_factory=dict)
    global_config: GlobalConfig = field(default_factory=GlobalConfig)
    tun: dict[str, Any] = field(default_factory=dict)
    """Gateway TUN settings: ``name``, ``mtu``."""
    daemon: DaemonConfig = field(default_factory=lambda: DaemonConfig())
    """Where the daemon listens (``[daemon]``)."""
    pools: dict[str, PoolConfig] = field(default_factory=dict)
    """Virtual IP address pools (``[pools.<name>]``), named by ``connections.<name>.pools``."""
    crls: list[Any] = field(default_factory=list)
    """Certificate revocation lists (top-level ``crls``, like swanctl's
    ``x509crl/``), shared by the ``remote`` side of every connection; read
    on every load, so a daemon ``reload`` picks up new CRL files."""
    crl_files: list[str] = field(default_factory=list)
    """The file each of :attr:`crls` was read from, in the same order."""
    source: str | None = None


@dataclass
class DaemonConfig:
    """``[daemon]``: the gateway's sockets (strongswan.conf's ``charon.port``,
    ``charon.port_nat_t``)."""

    address: str | None = None
    """Local address to bind; default: the first ``local_addrs`` of a
    connection, else the source address towards the first peer."""
    port: int = 500
    """IKE port."""
    port_nat_t: int = 4500
    """NAT-T port (IKE with the non-ESP marker, and ESP in UDP)."""
    keep_alive: float = 20.0
    """NAT keepalive interval (RFC 3948; strongswan.conf ``charon.keep_alive``), sent
    only by the end behind a NAT; 0 disables."""
    fetch_timeout: float = 5.0
    """Seconds one OCSP request or CRL download may take (strongswan.conf's
    ``libcharon.plugins.curl.timeout``)."""
    roam_events: bool = True
    """Follow this host's own address changes (strongswan.conf's
    ``charon.roam_events``): the daemon watches rtnetlink and, when its local
    address goes away or the kernel routes to the peer from another one,
    roams as the ``roam`` command does.  Not for a daemon bound to the
    wildcard (a gateway) or to ``address``.

    ``make_before_break`` (strongswan.conf's ``charon.make_before_break``,
    default true) is kept in :attr:`Configuration.global_config`
    (:attr:`GlobalConfig.make_before_break`), which the endpoint reads."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _Ctx:
    def __init__(self, file: str | None, base: Path | None) -> None:
        self.file = file
        self.base = base

    def err(self, path: str, reason: str) -> ConfigError:
        return ConfigError(path, reason, file=self.file)

    def check_keys(self, path: str, table: dict[str, Any], allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suggestion = f'; did you mean "{hint[0]}"?' if hint else ""
                raise self.err(f"{path}.{key}" if path else key, f"unknown key{suggestion}")

    def table(self, path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(path, f"expected a table, got {_show(value)}")
        return value

    def string(self, path: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.err(path, f"expected a string, got {_show(value)}")
        return value

    def boolean(self, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.err(path, f"expected true or false, got {_show(value)}")
        return value

    def integer(self, path: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(path, f"expected an integer, got {_show(value)}")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise self.err(path, f"expected an integer in {lo}..{hi}, got {value}")
        return value

    def choice(self, path: str, value: Any, choices: tuple[str, ...]) -> str:
        if value not in choices:
            expect = " or ".join(f'"{c}"' for c in choices) if len(choices) <= 2 else ", ".join(
                f'"{c}"' for c in choices
            )
            raise self.err(path, f"expected {expect}, got {_show(value)}")
        return value

    def duration(self, path: str, value: Any) -> float:
        if isinstance(value, bool):
            raise self.err(path, f"expected a duration like \"30s\", \"4h\", got {_show(value)}")
        if isinstance(value, (int, float)):
            if value < 0:
                raise self.err(path, f"duration must not be negative, got {value}")
            return float(value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return float(m.group(1)) * _UNITS[m.group(2)]
        raise self.err(path, f"expected a duration like \"30s\", \"4h\", got {_show(value)}")

    def strings(self, path: str, value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(path, f"expected a list of strings, got {_show(value)}")
        return list(value)

    def path(self, path: str, value: Any) -> Path:
        p = Path(self.string(path, value))
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        if not p.exists():
            raise self.err(path, f"file not found: {p}")
        return p

    def read(self, path: str, value: Any) -> bytes:
        """The bytes of the file named at ``path`` (a directory or an
        unreadable file is a ConfigError, never a bare OSError)."""
        p = self.path(path, value)
        try:
            return p.read_bytes()
        except OSError as exc:
            raise self.err(path, f"cannot read {p}: {exc.strerror or exc}") from None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_CONN_KEYS = {
    "version", "local_addrs", "remote_addrs", "local_port", "remote_port", "proposals", "aggressive",
    "encap", "fragmentation", "fragment_size", "dpd_delay", "dpd_timeout", "rekey_time", "reauth_time",
    "over_time", "rand_time", "local", "remote", "children", "legacy", "retransmit_timeout", "retransmit_base",
    "retransmit_tries", "retransmit_jitter", "keyingtries", "send_certreq", "send_cert", "initial_contact", "key_export", "unique",
    "vips", "pools", "mobike", "follow_redirects", "redirect_init", "local-2", "remote-2", "ppk_id", "ppk_required",
}
_CHILD_KEYS = {
    "local_ts", "remote_ts", "esp_proposals", "ah_proposals", "mode", "start_action", "rekey_time",
    "life_time", "rand_time", "rekey_bytes", "life_bytes", "rekey_packets", "life_packets",
    "replay_window", "dpd_action", "close_action", "updown", "updown_timeout",
}
_AUTH_KEYS = {"auth", "id", "certs", "cert", "key", "private_key", "cacerts", "intermediates", "rsa_pss", "revocation",
              "ocsp_uris", "crl_uris", "eap_id"}
_SECRET_KEYS = {"id", "secret", "secret_file"}
_ROUND2_KEYS = {"auth", "xauth_id"}
_REMOTE2_KEYS = {"auth", "xauth_tries"}
_ROUND2_V2_KEYS = {"auth", "id", "eap_id"}
_TOP_KEYS = {"connections", "secrets", "global", "tun", "daemon", "pools", "crls"}
_POOL_KEYS = {"addrs", "dns", "nbns", "subnet", "split_include"}
_DAEMON_KEYS = {"address", "port", "port_nat_t", "keep_alive", "fetch_timeout", "roam_events", "make_before_break"}
_GLOBAL_KEYS = {"cookie_threshold", "half_open_max", "init_limit_per_peer", "fragment_reassembly_max"}


def loads_config(text: str, *, file: str | None = None, base: str | Path | None = None) -> Configuration:
    """Load and validate TOML text (``file`` names it in errors; relative
    certificate and secret paths resolve against ``base``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", file=file) from None
    return parse_config(data, file=file, base=Path(base) if base is not None else None)


def load_config(path: str | Path) -> Configuration:
    """Load and validate a TOML configuration file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror}", file=str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", file=str(p)) from None
    return loads_config(text, file=str(p), base=p.parent)


def parse_config(data: dict[str, Any], *, file: str | None = None, base: Path | None = None) -> Configuration:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    ctx = _Ctx(file, base)
    ctx.check_keys("", data, _TOP_KEYS)
    cfg = Configuration(source=file)
    if "global" in data:
        g = ctx.table("global", data["global"])
        ctx.check_keys("global", g, _GLOBAL_KEYS)
        for key in g:
            setattr(cfg.global_config, key, ctx.integer(f"global.{key}", g[key], 0))
    if "tun" in data:
        t = ctx.table("tun", data["tun"])
        ctx.check_keys("tun", t, {"name", "mtu"})
        if "name" in t:
            cfg.tun["name"] = ctx.string("tun.name", t["name"])
        if "mtu" in t:
            cfg.tun["mtu"] = ctx.integer("tun.mtu", t["mtu"], 576, 65535)
    if "daemon" in data:
        d = ctx.table("daemon", data["daemon"])
        ctx.check_keys("daemon", d, _DAEMON_KEYS)
        if "address" in d:
            cfg.daemon.address = _addrs(ctx, "daemon.address", [ctx.string("daemon.address", d["address"])])[0]
        for key in ("port", "port_nat_t"):
            if key in d:
                setattr(cfg.daemon, key, ctx.integer(f"daemon.{key}", d[key], 1, 65535))
        if "keep_alive" in d:
            cfg.daemon.keep_alive = ctx.duration("daemon.keep_alive", d["keep_alive"])
        if "roam_events" in d:
            cfg.daemon.roam_events = ctx.boolean("daemon.roam_events", d["roam_events"])
        if "make_before_break" in d:
            # the endpoint's setting (GlobalConfig: a reload replaces it there too)
            cfg.global_config.make_before_break = ctx.boolean("daemon.make_before_break", d["make_before_break"])
        if "fetch_timeout" in d:
            cfg.daemon.fetch_timeout = ctx.duration("daemon.fetch_timeout", d["fetch_timeout"])
            if not 0 < cfg.daemon.fetch_timeout <= 300:
                raise ctx.err("daemon.fetch_timeout", f"must be more than 0 and at most 300 seconds, got {_show(d['fetch_timeout'])}")
        if cfg.daemon.port == cfg.daemon.port_nat_t:
            raise ctx.err("daemon.port_nat_t", f"must differ from daemon.port ({cfg.daemon.port})")
    cfg.pools = _parse_pools(ctx, data.get("pools", {}))
    if "crls" in data:
        for i, q in enumerate(ctx.strings("crls", data["crls"])):
            cfg.crls.append(_load_crl(ctx, f"crls[{i}]", q))
            cfg.crl_files.append(str(ctx.path(f"crls[{i}]", q)))
    conns = ctx.table("connections", data.get("connections", {}))
    all_secrets = _parse_secrets(ctx, data.get("secrets", {}))
    secrets = [x for x in all_secrets
               if not _is_xauth_secret(x[0]) and not _is_eap_secret(x[0]) and not _is_ppk_secret(x[0])]
    xauth = [x for x in all_secrets if _is_xauth_secret(x[0])]
    eap = [x for x in all_secrets if _is_eap_secret(x[0])]
    ppks = [x for x in all_secrets if _is_ppk_secret(x[0])]
    for name, raw_conn in conns.items():
        cfg.connections[name] = _parse_connection(ctx, name, ctx.table(f"connections.{name}", raw_conn), secrets, xauth)
        _eap_connection(ctx, f"connections.{name}", cfg.connections[name], eap)
        _eap_round2(ctx, f"connections.{name}", cfg.connections[name], eap)
        _ppk_connection(ctx, f"connections.{name}", cfg.connections[name], raw_conn, ppks)
        for i, pool in enumerate(cfg.connections[name].pools):
            if pool not in cfg.pools:
                known = ", ".join(sorted(cfg.pools)) or "none"
                raise ctx.err(f"connections.{name}.pools[{i}]", f'no pool named "{pool}" (defined: {known})')
        cfg.connections[name].remote.crls = cfg.crls
        if cfg.connections[name].remote2 is not None:
            cfg.connections[name].remote2.crls = cfg.crls
    return cfg


def _parse_pools(ctx: _Ctx, raw: Any) -> dict[str, PoolConfig]:
    from .ike.v2.pools import parse_pool_addrs

    out: dict[str, PoolConfig] = {}
    spans: list[tuple[str, int, int, int]] = []
    for name, pool in ctx.table("pools", raw).items():
        path = f"pools.{name}"
        pool = ctx.table(path, pool)
        ctx.check_keys(path, pool, _POOL_KEYS)
        if "addrs" not in pool:
            raise ctx.err(path, 'missing "addrs" (a subnet like "10.3.0.0/28" or a range "10.3.0.1..10.3.0.9")')
        addrs = ctx.string(f"{path}.addrs", pool["addrs"])
        try:
            first, last = parse_pool_addrs(addrs)
        except ValueError as exc:
            raise ctx.err(f"{path}.addrs", f'expected a subnet or an address range a..b, got "{addrs}" ({exc})') from None
        for other, version, lo, hi in spans:
            if version == first.version and lo <= int(last) and int(first) <= hi:
                raise ctx.err(f"{path}.addrs", f'overlaps pool "{other}"')
        spans.append((name, first.version, int(first), int(last)))
        dns = _addrs(ctx, f"{path}.dns", pool.get("dns", []), any_ok=False)
        nbns = _addrs(ctx, f"{path}.nbns", pool.get("nbns", []), any_ok=False)
        subnet = _pool_nets(ctx, f"{path}.subnet", pool.get("subnet", []))
        split = _pool_nets(ctx, f"{path}.split_include", pool.get("split_include", []), v4_only=True)
        out[name] = PoolConfig(name=name, addrs=addrs, dns=dns, nbns=nbns, subnet=subnet, split_include=split)
    return out


def _pool_nets(ctx: _Ctx, path: str, raw: Any, *, v4_only: bool = False) -> list[str]:
    """A pool's ``subnet`` / ``split_include``: networks (``10.1.0.0/16``;
    an address alone is a host), normalized; ``v4_only``: Cisco Unity
    split includes are IPv4."""
    out = []
    for i, text in enumerate(ctx.strings(path, raw)):
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ctx.err(f"{path}[{i}]", f'expected a subnet like "10.1.0.0/16", got "{text}"') from None
        if v4_only and net.version != 4:
            raise ctx.err(f"{path}[{i}]", f'expected an IPv4 subnet (Cisco Unity split includes are IPv4), got "{text}"')
        out.append(str(net))
    return out


def _is_xauth_secret(name: str) -> bool:
    """swanctl names secrets by type: ``xauth<suffix>`` (``xauth-alice``)
    is an XAUTH user's password; every other section is a pre-shared key."""
    return name.startswith("xauth")


def _is_eap_secret(name: str) -> bool:
    """swanctl ``eap<suffix>`` (``eap-alice``): an EAP user's password."""
    return name.startswith("eap")


def _is_ppk_secret(name: str) -> bool:
    """swanctl ``ppk<suffix>`` (``ppk-hq``): a Postquantum Preshared Key
    (RFC 8784), its ``id`` the PPK_ID(s)."""
    return name.startswith("ppk")


PPK_MIN_BYTES = 32
"""RFC 8784 §6: a PPK should have at least 256 bits of entropy; a shorter
one is loaded with a warning."""


def _ppk_connection(ctx: _Ctx, path: str, c: ConnectionConfig, raw: dict[str, Any],
                    ppks: list[tuple[str, list[str], bytes]]) -> None:
    """RFC 8784 PPK settings (swanctl ``ppk_id``, ``ppk_required``); every
    connection gets all ``[secrets.ppk*]`` (a responder looks the PPK up
    by the PPK_ID the peer sends), EAP ones too (the PPK goes in at the
    AUTH after EAP) and two-round ones (``local-2`` / ``remote-2``: at the
    first round's AUTH)."""
    if "ppk_id" in raw:
        c.ppk_id = ctx.string(f"{path}.ppk_id", raw["ppk_id"])
        if not c.ppk_id:
            raise ctx.err(f"{path}.ppk_id", "must not be empty")
    if "ppk_required" in raw:
        c.ppk_required = ctx.boolean(f"{path}.ppk_required", raw["ppk_required"])
    c.ppks = {i: secret for _n, ids, secret in ppks for i in ids}
    if c.ppk_id is None and not c.ppk_required:
        return
    key = "ppk_id" if c.ppk_id is not None else "ppk_required"
    if c.version != 2:
        raise ctx.err(f"{path}.{key}", "PPKs (RFC 8784) are supported with IKEv2 only (version = 2)")
    # the same PPK_ID if its encoding is the same ("@ppk-hq" and "ppk-hq"; a DN spelled otherwise), as charon
    if c.ppk_id is not None and ppk_for(c.ppks, c.ppk_id) is None:
        raise ctx.err(f"{path}.ppk_id", f"no [secrets.ppk*] entry with id = {_show(c.ppk_id)}")
    if not c.ppks:
        raise ctx.err(f"{path}.ppk_required", "ppk_required = true but no [secrets.ppk*] entry (id = PPK_ID, secret = PPK)")


_EAP_LOCAL = ("eap", "eap-md5", "eap-gtc")
_EAP_REMOTE = ("eap-md5", "eap-gtc")
_log = logging.getLogger("aioipsec.cfg")


def _eap_connection(ctx: _Ctx, path: str, c: ConnectionConfig, eap: list[tuple[str, list[str], bytes]]) -> None:
    """IKEv2 EAP (RFC 7296 §2.16): the version, the passwords, and MD5's
    ``legacy`` opt-in."""
    local, remote = c.local.auth.startswith("eap"), c.remote.auth.startswith("eap")
    if not (local or remote):
        if c.local.eap_id is not None or c.remote.eap_id is not None:
            side = "local" if c.local.eap_id is not None else "remote"
            raise ctx.err(f"{path}.{side}.eap_id", 'applies only with auth = "eap-md5", "eap-gtc" (or local "eap")')
        return
    side = "local" if local else "remote"
    if c.version != 2:
        raise ctx.err(f"{path}.{side}.auth", "EAP authentication is supported with IKEv2 only (version = 2)")
    if local and remote:
        raise ctx.err(f"{path}.remote.auth", "EAP on both sides: the gateway authenticates with psk or pubkey")
    a = c.local if local else c.remote
    _eap_round(ctx, f"{path}.{side}", c, a, remote, c.eap_user() if local else None, eap)


def _eap_round2(ctx: _Ctx, path: str, c: ConnectionConfig, eap: list[tuple[str, list[str], bytes]]) -> None:
    """IKEv2 ``local-2`` / ``remote-2`` (EAP, RFC 4739): the passwords and
    MD5's ``legacy`` opt-in, as for a first EAP round."""
    if c.version != 2:
        return
    if c.local2 is not None and c.local2.auth.startswith("eap"):
        user = c.eap_user(round2=True)
        _eap_round(ctx, f"{path}.local-2", c, c.local2, False, user, eap)
    if c.remote2 is not None and c.remote2.auth.startswith("eap"):
        _eap_round(ctx, f"{path}.remote-2", c, c.remote2, True, None, eap)


def _eap_round(ctx: _Ctx, path: str, c: ConnectionConfig, a: AuthConfig, remote: bool, user: str | None,
               eap: list[tuple[str, list[str], bytes]]) -> None:
    """One EAP round (``path``: the connection's ``local``, ``remote``,
    ``local-2`` or ``remote-2``): MD5's ``legacy`` opt-in, the passwords
    (``c.eap_secrets``), and a gateway's ``eap_id`` or a client's ``user``
    among them."""
    if a.auth == "eap-md5":
        if not c.legacy:
            raise ctx.err(f"{path}.auth", "EAP-MD5 is weak (MD5, no mutual authentication, "
                          "no keys): it needs the connection's legacy = true")
        _log.warning("%s.auth: EAP-MD5 is weak (allowed by legacy = true)", path)
    c.eap_secrets = {ids[0]: secret for _n, ids, secret in eap if ids}
    if remote:
        if not c.eap_secrets:
            raise ctx.err(f"{path}.auth", f'auth = "{a.auth}" but no [secrets.eap*] entry '
                          "(id = EAP identity, secret = password)")
        if a.eap_id is not None and a.eap_id not in c.eap_secrets:
            raise ctx.err(f"{path}.eap_id", f"no [secrets.eap*] entry with id = {_show(a.eap_id)}")
        return
    if user is None or user not in c.eap_secrets:
        raise ctx.err(f"{path}.eap_id", f"no [secrets.eap*] entry with id = {_show(user or '')} (the EAP password)")


def _parse_secrets(ctx: _Ctx, raw: Any) -> list[tuple[str, list[str], bytes]]:
    out = []
    for name, sec in ctx.table("secrets", raw).items():
        path = f"secrets.{name}"
        sec = ctx.table(path, sec)
        ctx.check_keys(path, sec, _SECRET_KEYS)
        ids = ctx.strings(f"{path}.id", sec.get("id", []))
        if "secret" in sec and "secret_file" in sec:
            raise ctx.err(path, 'give either "secret" or "secret_file", not both')
        if "secret" in sec:
            value = ctx.string(f"{path}.secret", sec["secret"])
            if value.startswith("0x"):
                try:
                    secret = bytes.fromhex(value[2:])
                except ValueError:
                    raise ctx.err(f"{path}.secret", "a secret starting with 0x must be hex digits") from None
            else:
                secret = value.encode()
        elif "secret_file" in sec:
            secret = ctx.read(f"{path}.secret_file", sec["secret_file"]).strip()
        else:
            raise ctx.err(path, 'missing "secret" or "secret_file"')
        if not secret:
            raise ctx.err(f"{path}.secret", "must not be empty")
        if _is_xauth_secret(name) and len(ids) != 1:
            raise ctx.err(f"{path}.id", "an xauth secret needs exactly one id: the XAUTH user name")
        if _is_eap_secret(name) and len(ids) != 1:
            raise ctx.err(f"{path}.id", "an eap secret needs exactly one id: the EAP identity")
        if _is_ppk_secret(name):
            if not ids:
                raise ctx.err(f"{path}.id", "a ppk secret needs an id: the PPK_ID")
            if len(secret) < PPK_MIN_BYTES:
                _log.warning("%s.secret: the PPK has %d bytes; RFC 8784 recommends at least %d bits of entropy",
                             path, len(secret), 8 * PPK_MIN_BYTES)
        out.append((name, ids, secret))
    return out


def _proposals(ctx: _Ctx, path: str, raw: Any, protocol: str, legacy: bool) -> list[Proposal]:
    out = []
    for i, text in enumerate(ctx.strings(path, raw)):
        try:
            out.append(parse_proposal(text, protocol, allow_legacy=legacy))
        except AlgorithmError as exc:
            raise ctx.err(f"{path}[{i}]", exc.reason) from None
    if not out:
        raise ctx.err(path, "at least one proposal is needed")
    return out


def _selectors(ctx: _Ctx, path: str, raw: Any) -> list[TrafficSelector]:
    out = []
    for i, text in enumerate(ctx.strings(path, raw)):
        if text == "dynamic":
            continue
        try:
            out.append(parse_ts(text))
        except (ValueError, KeyError) as exc:
            raise ctx.err(f"{path}[{i}]", f'invalid traffic selector "{text}" ({exc})') from None
    return out


def _addrs(ctx: _Ctx, path: str, raw: Any, *, any_ok: bool = True, expected: str = "an IP address") -> list[str]:
    """A list of IP address strings; ``%any`` too when ``any_ok``."""
    out = ctx.strings(path, raw)
    for i, a in enumerate(out):
        if any_ok and a == "%any":
            continue
        try:
            ipaddress.ip_address(a)
        except ValueError:
            raise ctx.err(f"{path}[{i}]", f'expected {expected}, got "{a}"') from None
    return out


def _redirect_gateway(ctx: _Ctx, path: str, raw: Any, ours: Iterable[str] = ()) -> str:
    """``redirect_init``: an IP address a gateway can have (not one of
    ``ours``, the connection's ``local_addrs``), or "" (never)."""
    from .ike.v2.tasks.ike_redirect import unusable_gateway

    text = ctx.string(path, raw)
    if text:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ctx.err(path, f'expected an IP address, got "{text}"') from None
        why = unusable_gateway(ip, ours)
        if why:
            raise ctx.err(path, f'"{text}" cannot be a gateway to redirect to: {why}')
    return text


def _load_cert(ctx: _Ctx, path: str, raw: Any) -> Any:
    from cryptography import x509

    data = ctx.read(path, raw)
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise ctx.err(path, f"not a certificate: {exc}") from None


def _load_crl(ctx: _Ctx, path: str, raw: Any) -> Any:
    """A CRL file, PEM or DER (swanctl ``x509crl/``)."""
    from cryptography import x509

    from .ike.auth import decode_crl_fields

    data = ctx.read(path, raw)
    try:
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise ctx.err(path, f"not a certificate revocation list (PEM or DER): {exc}") from None
    try:
        decode_crl_fields(crl)  # a broken field fails here, not in the check of every IKE_AUTH
    except ValueError as exc:
        raise ctx.err(path, f"malformed certificate revocation list: {exc}") from None
    return crl


def _load_key(ctx: _Ctx, path: str, raw: Any) -> Any:
    from cryptography.hazmat.primitives import serialization

    data = ctx.read(path, raw)
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ctx.err(path, f"not an unencrypted private key: {exc}") from None


def _parse_auth(ctx: _Ctx, path: str, raw: Any, local: bool) -> AuthConfig:
    raw = ctx.table(path, raw)
    ctx.check_keys(path, raw, _AUTH_KEYS)
    a = AuthConfig()
    if "auth" in raw:
        if raw["auth"] == "eap-mschapv2":
            raise ctx.err(f"{path}.auth", "EAP-MSCHAPv2 is not supported: it needs MD4, which this "
                          "cryptography/OpenSSL does not offer (use eap-gtc inside the IKE SA)")
        a.auth = ctx.choice(f"{path}.auth", raw["auth"], ("psk", "pubkey", *(_EAP_LOCAL if local else _EAP_REMOTE)))
    if "eap_id" in raw:
        a.eap_id = ctx.string(f"{path}.eap_id", raw["eap_id"]).strip()
        if not a.eap_id:
            raise ctx.err(f"{path}.eap_id", "must not be empty")
        if a.eap_id in ("%any", "%any6"):
            if local:
                raise ctx.err(f"{path}.eap_id", "our own EAP identity cannot be %any")
            a.eap_id = None
    if "id" in raw:
        a.id = ctx.string(f"{path}.id", raw["id"])
        if not a.id.strip():
            raise ctx.err(f"{path}.id", "must not be empty (leave it out to use the address)")
    if "rsa_pss" in raw:
        a.rsa_pss = ctx.boolean(f"{path}.rsa_pss", raw["rsa_pss"])
    if "revocation" in raw:
        if local:
            raise ctx.err(f"{path}.revocation", "a revocation policy applies to the remote side only")
        a.revocation = ctx.choice(f"{path}.revocation", raw["revocation"], REVOCATION_POLICIES)
    for key in ("ocsp_uris", "crl_uris"):
        if key not in raw:
            continue
        if local:
            raise ctx.err(f"{path}.{key}", "revocation URIs apply to the remote side only")
        uris = ctx.strings(f"{path}.{key}", raw[key])
        for i, uri in enumerate(uris):
            if not uri.lower().startswith("http://") or len(uri) <= len("http://"):
                raise ctx.err(f"{path}.{key}[{i}]", f"must be an http:// URI, got {_show(uri)}")
        setattr(a, key, uris)
    certs = raw.get("certs", raw.get("cert"))
    if certs is not None:
        key = "certs" if "certs" in raw else "cert"
        paths = ctx.strings(f"{path}.{key}", certs)
        if paths:
            a.cert = _load_cert(ctx, f"{path}.{key}[0]", paths[0])
            a.intermediates = [_load_cert(ctx, f"{path}.{key}[{i}]", q) for i, q in enumerate(paths[1:], 1)]
    keyp = raw.get("key", raw.get("private_key"))
    if keyp is not None:
        a.private_key = _load_key(ctx, f"{path}.key", keyp)
    if "cacerts" in raw:
        a.cacerts = [_load_cert(ctx, f"{path}.cacerts[{i}]", q) for i, q in enumerate(ctx.strings(f"{path}.cacerts", raw["cacerts"]))]
    if local and a.auth == "pubkey" and (a.cert is None or a.private_key is None):
        raise ctx.err(path, 'auth = "pubkey" needs "certs" and "key"')
    if a.cert is not None and a.private_key is not None and not _key_matches(a.cert, a.private_key):
        key = "key" if "key" in raw else "private_key"
        raise ctx.err(f"{path}.{key}", "does not match the public key of the certificate")
    if not local and a.auth == "pubkey" and not a.cacerts:
        raise ctx.err(path, 'auth = "pubkey" needs "cacerts" (trust anchors for the peer\'s certificate)')
    return a


def _key_matches(cert: Any, key: Any) -> bool:
    from cryptography.hazmat.primitives import serialization

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        return bool(cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki))
    except Exception:
        return False


def _parse_child(ctx: _Ctx, path: str, name: str, raw: dict[str, Any], legacy: bool) -> ChildConfig:
    ctx.check_keys(path, raw, _CHILD_KEYS)
    c = ChildConfig(name=name)
    if "local_ts" in raw:
        c.local_ts = _selectors(ctx, f"{path}.local_ts", raw["local_ts"])
    if "remote_ts" in raw:
        c.remote_ts = _selectors(ctx, f"{path}.remote_ts", raw["remote_ts"])
    if "esp_proposals" in raw:
        c.esp_proposals = _proposals(ctx, f"{path}.esp_proposals", raw["esp_proposals"], "esp", legacy)
    if "ah_proposals" in raw:
        if "esp_proposals" in raw:
            raise ctx.err(f"{path}.ah_proposals", 'give either "esp_proposals" or "ah_proposals", not both')
        c.ah_proposals = _proposals(ctx, f"{path}.ah_proposals", raw["ah_proposals"], "ah", legacy)
    if "mode" in raw:
        c.mode = ctx.choice(f"{path}.mode", raw["mode"], ("tunnel", "transport"))
    if "start_action" in raw:
        c.start_action = ctx.choice(f"{path}.start_action", raw["start_action"], ("none", "trap", "start"))
    if "dpd_action" in raw:
        c.dpd_action = ctx.choice(f"{path}.dpd_action", raw["dpd_action"], ("clear", "trap", "restart"))
    if "close_action" in raw:
        c.close_action = ctx.choice(f"{path}.close_action", raw["close_action"], ("none", "trap", "start"))
    for key in ("rekey_time", "life_time", "rand_time"):
        if key in raw:
            setattr(c, key, ctx.duration(f"{path}.{key}", raw[key]))
    for key in ("rekey_bytes", "life_bytes", "rekey_packets", "life_packets"):
        if key in raw:
            setattr(c, key, ctx.integer(f"{path}.{key}", raw[key], 0))
    if "replay_window" in raw:
        c.replay_window = ctx.integer(f"{path}.replay_window", raw["replay_window"], 0, 1 << 20)
    if "updown" in raw:
        c.updown = _updown(ctx, f"{path}.updown", raw["updown"])
    if "updown_timeout" in raw:
        from .config import check_updown_timeout

        key, value = f"{path}.updown_timeout", raw["updown_timeout"]
        c.updown_timeout = check_updown_timeout(key, ctx.duration(key, value), shown=_show(value), file=ctx.file)
    if c.life_time is not None and c.life_time < c.rekey_time:
        raise ctx.err(f"{path}.life_time", f"must not be shorter than rekey_time ({c.rekey_time:g}s)")
    return c


def _updown(ctx: _Ctx, path: str, raw: Any) -> str:
    """swanctl ``updown``: a script (relative to the file) and optional
    arguments; it must exist and be executable now."""
    import shlex

    from .config import updown_argv

    text = ctx.string(path, raw)
    try:
        argv = updown_argv(text, ctx.base)
    except ValueError as exc:
        raise ctx.err(path, str(exc)) from None
    return shlex.join(argv)


def _parse_round2_v2(ctx: _Ctx, path: str, raw: Any, local: bool, first: AuthConfig) -> AuthConfig:
    """IKEv2 ``local-2`` / ``remote-2``: a second authentication round (RFC
    4739) after a ``psk``/``pubkey`` first round.  EAP: ``auth``, ``id``
    (the round's IDi; local default ``eap_id``, else the first round's
    identity) and ``eap_id`` (local: sent, default ``id``; remote: the only
    one accepted, default ``%any``).  ``pubkey`` / ``psk``: the keys of a
    first round (``id``, ``certs``, ``key`` locally; ``id``, ``cacerts``
    and the revocation settings remotely), checked as there."""
    raw = ctx.table(path, raw)
    if raw.get("auth") in ("psk", "pubkey"):
        ctx.check_keys(path, raw, _AUTH_KEYS - {"eap_id"})
    else:
        ctx.check_keys(path, raw, _ROUND2_V2_KEYS)
    if raw.get("auth") == "xauth":
        raise ctx.err(path, "a second authentication round (XAUTH) is supported with IKEv1 only (version = 1); "
                      'IKEv2 second rounds are "pubkey", "psk" or EAP ("eap-md5", "eap-gtc")')
    if first.auth.startswith("eap"):
        side = "local" if local else "remote"
        raise ctx.err(f"{path}.auth", f"a second round after an EAP first round ({side}.auth = {_show(first.auth)}) "
                      'is not supported: the first round is "psk" or "pubkey"')
    if raw.get("auth") in ("psk", "pubkey"):
        return _parse_auth(ctx, path, raw, local)
    a = AuthConfig(auth=ctx.choice(f"{path}.auth", raw.get("auth"),
                                   ("pubkey", "psk", *(_EAP_LOCAL if local else _EAP_REMOTE))))
    for key in ("id", "eap_id"):
        if key in raw:
            value = ctx.string(f"{path}.{key}", raw[key]).strip()
            if not value:
                raise ctx.err(f"{path}.{key}", "must not be empty")
            if value in ("%any", "%any6"):
                if local:
                    raise ctx.err(f"{path}.{key}", "our own identity cannot be %any")
                continue
            setattr(a, key, value)
    return a


def _parse_round2(ctx: _Ctx, path: str, raw: Any, local: bool) -> AuthConfig:
    """``local-2`` / ``remote-2``: a second authentication round; IKEv1 XAUTH."""
    raw = ctx.table(path, raw)
    ctx.check_keys(path, raw, _ROUND2_KEYS if local else _REMOTE2_KEYS)
    a = AuthConfig(auth=ctx.choice(f"{path}.auth", raw.get("auth"), ("xauth",)))
    if "xauth_tries" in raw:
        a.xauth_tries = ctx.integer(f"{path}.xauth_tries", raw["xauth_tries"], 1, 10)
    if "xauth_id" in raw:
        a.xauth_id = ctx.string(f"{path}.xauth_id", raw["xauth_id"])
        if not a.xauth_id.strip():
            raise ctx.err(f"{path}.xauth_id", "must not be empty")
    return a


def _parse_connection(
    ctx: _Ctx,
    name: str,
    raw: dict[str, Any],
    secrets: list[tuple[str, list[str], bytes]],
    xauth: list[tuple[str, list[str], bytes]] | None = None,
) -> ConnectionConfig:
    path = f"connections.{name}"
    ctx.check_keys(path, raw, _CONN_KEYS)
    legacy = ctx.boolean(f"{path}.legacy", raw["legacy"]) if "legacy" in raw else False
    c = ConnectionConfig(name=name, legacy=legacy)
    if "version" in raw:
        c.version = ctx.integer(f"{path}.version", raw["version"])
        if c.version not in (1, 2):
            raise ctx.err(f"{path}.version", f"expected 1 (IKEv1) or 2 (IKEv2), got {c.version}")
    for key in ("local_addrs", "remote_addrs"):
        if key in raw:
            setattr(c, key, _addrs(ctx, f"{path}.{key}", raw[key]))
    for key in ("local_port", "remote_port"):
        if key in raw:
            setattr(c, key, ctx.integer(f"{path}.{key}", raw[key], 1, 65535))
    if "proposals" in raw:
        c.proposals = _proposals(ctx, f"{path}.proposals", raw["proposals"], "ike", legacy)
    for key in ("aggressive", "encap", "mobike", "follow_redirects", "fragmentation", "send_certreq", "initial_contact",
                "key_export"):
        if key in raw:
            setattr(c, key, ctx.boolean(f"{path}.{key}", raw[key]))
    if "send_cert" in raw:
        c.send_cert = ctx.choice(f"{path}.send_cert", raw["send_cert"], ("always", "ifasked", "never"))
    if "redirect_init" in raw:
        c.redirect_init = _redirect_gateway(ctx, f"{path}.redirect_init", raw["redirect_init"], c.local_addrs)
    if "unique" in raw:
        c.unique = ctx.choice(f"{path}.unique", raw["unique"], ("no", "never", "replace", "keep"))
    for key in ("dpd_delay", "dpd_timeout", "rekey_time", "reauth_time", "over_time", "rand_time",
                "retransmit_timeout"):
        if key in raw:
            setattr(c, key, ctx.duration(f"{path}.{key}", raw[key]))
    if c.reauth_time and c.rand_time is not None and c.rand_time >= c.reauth_time:
        raise ctx.err(f"{path}.rand_time", f"must be shorter than reauth_time ({c.reauth_time:g}s)")
    if c.reauth_time and c.version == 1:
        # IKEv1 has no IKE rekey: like charon, its Phase 1 is re-done at the
        # earlier of the two (an IKEv1 "rekey" here already is a reauthentication)
        c.rekey_time = min(c.rekey_time, c.reauth_time) if c.rekey_time else c.reauth_time
        c.reauth_time = 0.0
    if "retransmit_base" in raw:
        v = raw["retransmit_base"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 1:
            raise ctx.err(f"{path}.retransmit_base", f"expected a number >= 1, got {_show(v)}")
        c.retransmit_base = float(v)
    if "retransmit_jitter" in raw:
        v = raw["retransmit_jitter"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ctx.err(f"{path}.retransmit_jitter", f"expected a number in 0..1, got {_show(v)}")
        c.retransmit_jitter = float(v)
    if "retransmit_tries" in raw:
        c.retransmit_tries = ctx.integer(f"{path}.retransmit_tries", raw["retransmit_tries"], 0, 100)
    if "keyingtries" in raw:
        c.keyingtries = ctx.integer(f"{path}.keyingtries", raw["keyingtries"], 0, 0xFFFFFFFF)
    if "vips" in raw:
        c.vips = _addrs(ctx, f"{path}.vips", raw["vips"], any_ok=False, expected='"0.0.0.0", "::" or an IP address')
    if "pools" in raw:
        c.pools = ctx.strings(f"{path}.pools", raw["pools"])
    if "fragment_size" in raw:
        c.fragment_size = ctx.integer(f"{path}.fragment_size", raw["fragment_size"], 576, 65535)
    c.local = _parse_auth(ctx, f"{path}.local", raw.get("local", {}), True)
    c.remote = _parse_auth(ctx, f"{path}.remote", raw.get("remote", {}), False)
    for key, local in (("local-2", True), ("remote-2", False)):
        if key not in raw:
            continue
        if c.version == 2:
            round2 = _parse_round2_v2(ctx, f"{path}.{key}", raw[key], local, c.local if local else c.remote)
        else:
            round2 = _parse_round2(ctx, f"{path}.{key}", raw[key], local)
        if local:
            c.local2 = round2
        else:
            c.remote2 = round2
    if c.version == 1 and c.vips:
        # IKEv1 virtual IPs come by Mode Config pull, which the Phase 1
        # initiator starts (after XAUTH with local-2); a gateway asks for none
        if c.xauth_server:
            raise ctx.err(f"{path}.vips", 'an XAUTH gateway (remote-2 = { auth = "xauth" }) assigns virtual IPs '
                          "from its pools; it asks for none (IKEv1 Mode Config is pulled by the client)")
        if not [a for a in c.remote_addrs if a not in ("%any", "%any6", "0.0.0.0", "::")]:
            raise ctx.err(f"{path}.vips", "IKEv1 virtual IPs are pulled by Mode Config after a Phase 1 we start: "
                          "the connection needs remote_addrs")
    if c.xauth_server or c.xauth_client:
        c.xauth_secrets = {ids[0]: secret for _n, ids, secret in (xauth or [])}
        if c.xauth_server and not c.xauth_secrets:
            raise ctx.err(f"{path}.remote-2", 'auth = "xauth" but no [secrets.xauth*] entry (id = user, secret = password)')
        if c.xauth_client:
            assert c.local2 is not None
            user = c.local2.xauth_id or c.local.id or (c.local_addrs[0] if c.local_addrs else None)
            if user is None or user not in c.xauth_secrets:
                raise ctx.err(f"{path}.local-2", f"no [secrets.xauth*] entry with id = {_show(user or '')} (the XAUTH password)")
    if c.aggressive and c.version != 1:
        raise ctx.err(f"{path}.aggressive", "Aggressive Mode exists only in IKEv1 (version = 1)")
    children = ctx.table(f"{path}.children", raw.get("children", {}))
    for cname, craw in children.items():
        c.children[cname] = _parse_child(
            ctx, f"{path}.children.{cname}", cname, ctx.table(f"{path}.children.{cname}", craw), legacy
        )
    if c.local.auth == "psk" or c.remote.auth == "psk":
        c.psk = _find_psk(c, secrets)
        if c.psk is None:
            raise ctx.err(f"{path}", "uses auth = \"psk\" but no [secrets.*] entry matches its IDs or addresses")
    l2 = c.local2 if c.local2 is not None and c.local2.auth == "psk" else None
    r2 = c.remote2 if c.remote2 is not None and c.remote2.auth == "psk" else None
    if l2 is not None or r2 is not None:
        # as round 1, by the identities of this round (ours or the peer's round-2 IDi)
        c.psk2 = _find_psk(c, secrets, local=(l2 or c.local).id, remote=(r2 or c.remote).id)
        if c.psk2 is None:
            which = "local-2" if l2 is not None else "remote-2"
            raise ctx.err(f"{path}.{which}", "uses auth = \"psk\" but no [secrets.*] entry matches its IDs or addresses")
    return c


def _find_psk(c: ConnectionConfig, secrets: list[tuple[str, list[str], bytes]], *,
              local: str | None = None, remote: str | None = None) -> bytes | None:
    """swanctl semantics: the secret whose ``id`` list matches our and/or the
    peer's identity best; a secret with no ids matches any connection.
    ``local`` / ``remote``: the identities of a second round (default the
    first round's)."""
    ours = {x for x in (local or c.local.id, *c.local_addrs) if x}
    theirs = {x for x in (remote or c.remote.id, *c.remote_addrs) if x}
    best: tuple[int, bytes] | None = None
    for _name, ids, secret in secrets:
        if not ids:
            score = 0
        else:
            hit_l = any(i in ours for i in ids)
            hit_r = any(i in theirs for i in ids)
            if not (hit_l or hit_r):
                continue
            score = hit_l + hit_r
        if best is None or score > best[0]:
            best = (score, secret)
    return best[1] if best else None
