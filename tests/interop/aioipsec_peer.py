"""aioipsec as one end of an interop tunnel: ``python -m aioipsec daemon`` in a namespace.

:class:`AioipsecPeer` implements the harness's :class:`~.peer.Peer` interface on top of
:class:`~.peer.ProcessPeer`, so a test reads the same :class:`~.strongswan.IkeSa` /
:class:`~.strongswan.ChildSa` records from aioipsec as from charon.  Its directory::

    aioipsec.toml        rendered from the same Connection (profile, side, overrides) as charon's
    *.pem                certificates and key for pubkey profiles (from the test PKI)
    control.sock         the daemon's control socket (JSON lines, ``aioipsec --control``)
    aioipsec.log         the daemon's stdout/stderr (``-v``: one line per exchange step)

The daemon creates a TUN device (``aioipsec0`` in its namespace) and routes the peer's
inner subnet through it; the side's inner address stays on ``lo``, so
``ping -I <inner> <peer inner>`` leaves through the TUN device.  charon's
kernel-libipsec always encapsulates ESP in UDP/4500 (it fakes a NAT), so aioipsec
speaks ESP-in-UDP to it; nothing here forces that: the IKEv2 session follows NAT-D.

The connection and its child are both named ``ih``, as on the charon side.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .certs import TestPki
from .netns import Topology
from .peer import PeerError, ProcessPeer
from .strongswan import ChildSa, Connection, IkeSa

TUN_NAME = "aioipsec0"
# like the charon peers (strongswan.conf.in): give up after ~4.4 s instead of minutes
RETRANSMIT = {"retransmit_timeout": "1s", "retransmit_base": 1.4, "retransmit_tries": 3}
# swanctl keys a Connection may override, and what they are called in aioipsec's TOML
_IKE_OPTION_KEYS = {"rekey_time", "over_time", "rand_time", "dpd_delay", "send_cert", "send_certreq",
                    "fragmentation", "encap", "ppk_id", "ppk_required"}
_LIST_OPTION_KEYS = {"vips", "pools"}           # swanctl comma lists, TOML lists in aioipsec
_CHILD_OPTION_KEYS = {"rekey_time", "life_time", "rand_time", "replay_window", "start_action"}
# IKE states in which an IKE SA carries its Child SAs (IKEv2 session; IKEv1 phase 1)
UP_STATES = {"ESTABLISHED", "REKEYING"}
_FAILURE = re.compile(r"AuthFailed\(|NegotiationFailed\(|IkeSaDeleted\(")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)            # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _swanctl_option(key: str, value: str) -> Any:
    """A swanctl option value (always a string there) as aioipsec's TOML wants it."""
    if value in ("yes", "no"):
        return value == "yes"
    if key == "replay_window":
        return int(value)
    return value


def render_aioipsec_config(conn: Connection, topology: Topology, side: str, *,
                           files: Mapping[str, Path] | None = None,
                           extra: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """aioipsec's TOML for ``side`` of ``topology``: the same tunnel charon gets from
    :func:`~.strongswan.render_swanctl` for ``conn``.  ``files`` names the PEM files of
    pubkey profiles (``cert``, ``key``, ``cacert``).  ``extra`` sets aioipsec-only keys
    as they are spelt in its TOML, overriding the rendered ones: ``{"global":
    {"cookie_threshold": 0}, "ike": {"retransmit_tries": 2}, "child": {...}}``;
    ``local`` / ``remote`` go into the connection's auth tables (``{"local":
    {"rsa_pss": True}}``)."""
    extra = extra or {}
    unknown = set(extra) - {"global", "ike", "child", "local", "remote"}
    if unknown:
        raise PeerError(f"extra sections {sorted(unknown)}: only global, ike, child, local, remote")
    me, peer = topology.side(side), topology.other(side)
    prof = conn.profile
    if conn.family == 6:
        if me.outer6 is None or peer.outer6 is None:
            raise PeerError(f"{topology.kind} topology has no IPv6 outer addresses")
        local_addr, remote_addr = me.outer6, peer.outer6
        local_ts, remote_ts = me.inner_net6, peer.inner_net6
    else:
        local_addr, remote_addr = me.outer4, topology.remote_addrs_seen_by(side)
        local_ts, remote_ts = me.inner_net4, peer.inner_net4
    local_ts = conn.local_ts or local_ts
    remote_ts = conn.remote_ts or remote_ts
    if prof.id_kind == "ip":
        local_id = me.outer6 if conn.family == 6 else me.outer4
        remote_id = peer.outer6 if conn.family == 6 else peer.outer4
    else:
        local_id, remote_id = me.fqdn, peer.fqdn

    ike: dict[str, Any] = {
        "version": prof.version,
        "local_addrs": [local_addr],
        "remote_addrs": [remote_addr],
        "proposals": [prof.proposals],
        "fragmentation": conn.fragmentation == "yes",
        "dpd_delay": conn.dpd_delay,
        **RETRANSMIT,
    }
    if prof.aggressive:
        ike["aggressive"] = True
    for key, value in conn.ike_options.items():
        # IKEv1 has no IKE rekey in strongSwan (it re-authenticates); aioipsec's
        # IKEv1 rekey_time plays that part
        key = "rekey_time" if key == "reauth_time" else key
        if key in _LIST_OPTION_KEYS:
            ike[key] = [v.strip() for v in value.split(",")]
            continue
        if key not in _IKE_OPTION_KEYS:
            raise PeerError(f"IKE option {key!r} has no aioipsec equivalent here")
        ike[key] = _swanctl_option(key, value)
    if prof.auth == "pubkey":
        if files is None:
            raise PeerError(f"profile {prof.name} needs certificate files")
        ike.setdefault("send_cert", "always")
        local = {"auth": "pubkey", "id": local_id, "certs": [str(files["cert"])],
                 "key": str(files["key"])}
        remote = {"auth": "pubkey", "id": remote_id, "cacerts": [str(files["cacert"])]}
    else:
        local = {"auth": "psk", "id": local_id}
        remote = {"auth": "psk", "id": remote_id}
    local.update(extra.get("local", {}))
    remote.update(extra.get("remote", {}))

    ike.update(extra.get("ike", {}))
    child: dict[str, Any] = {
        "local_ts": [ts.strip() for ts in local_ts.split(",")],
        "remote_ts": [ts.strip() for ts in remote_ts.split(",")],
        "esp_proposals": [prof.esp_proposals],
        "mode": prof.mode,
        "start_action": conn.start_action,
    }
    for key, value in conn.child_options.items():
        if key not in _CHILD_OPTION_KEYS:
            raise PeerError(f"child option {key!r} has no aioipsec equivalent here")
        child[key] = _swanctl_option(key, value)
    child.update(extra.get("child", {}))

    lines = [f"# aioipsec interop peer ({side}), profile {prof.name}", "",
             "[tun]", f"name = {_toml_value(TUN_NAME)}", "mtu = 1400", ""]
    if extra.get("global"):
        lines += ["[global]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in extra["global"].items()]
        lines += [""]
    for name, keys in conn.pools.items():
        lines += [f"[pools.{name}]", f"addrs = {_toml_value(keys['addrs'])}"]
        if "dns" in keys:
            lines += [f"dns = {_toml_value([d.strip() for d in keys['dns'].split(',')])}"]
        lines += [""]
    lines += ["[connections.ih]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in ike.items()]
    lines += [f"local = {_toml_value(local)}", f"remote = {_toml_value(remote)}"]
    for key, keys in (("local-2", conn.local2), ("remote-2", conn.remote2)):
        if keys:
            lines += [f"{key} = {_toml_value(dict(keys))}"]
    lines += ["", "[connections.ih.children.ih]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in child.items()]
    if prof.auth == "psk":
        # no id list: the secret matches any identity pair (like the charon side)
        lines += ["", "[secrets.ih]", f"secret = {_toml_value(conn.psk)}"]
    for user, password in conn.xauth_secrets.items():
        lines += ["", f"[secrets.xauth-{user}]", f"id = {_toml_value(user)}", f"secret = {_toml_value(password)}"]
    for n, (ppk_id, ppk) in enumerate(conn.ppk_secrets.items()):
        lines += ["", f"[secrets.ppk-{n}]", f"id = {_toml_value(ppk_id)}", f"secret = {_toml_value(ppk)}"]
    return "\n".join(lines) + "\n"


def _hex_int(value: str | None) -> int:
    if not value:
        return 0
    return int(value, 16)


def child_from_status(row: Mapping[str, Any]) -> ChildSa:
    """A ``status --json`` child row as the harness's :class:`ChildSa` (state INSTALLED:
    the status lists only Child SAs installed in the data plane)."""
    return ChildSa(row["child"], "INSTALLED", _hex_int(row["spi_in"]), _hex_int(row["spi_out"]),
                   int(row.get("bytes_in", 0)), int(row.get("bytes_out", 0)),
                   int(row.get("packets_in", 0)), int(row.get("packets_out", 0)), row)


def ike_from_status(sa: Mapping[str, Any]) -> IkeSa:
    children = tuple(child_from_status(c) for c in sa.get("children", []))
    return IkeSa(sa["name"], str(sa.get("state", "")).upper(), int(sa.get("version") or 0),
                 bool(sa.get("initiator")), _hex_int(sa.get("spi_i")), _hex_int(sa.get("spi_r")),
                 children, sa)


class AioipsecPeer(ProcessPeer):
    """``python -m aioipsec daemon`` in ``side``'s namespace of ``topology``.

    ``peer = AioipsecPeer(topology, "left"); peer.configure(conn, pki); peer.start()``,
    then ``initiate()``, ``wait_established()``, ``list_sas()``, ``status()``,
    ``terminate()``, ``logs()``, ``stop()`` (SIGTERM, then SIGKILL, by PID).
    """

    _instances: dict[str, int] = {}

    def __init__(self, topology: Topology, side: str, *, verbose: int = 1,
                 extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        ns_name = topology.side(side).ns.name
        n = AioipsecPeer._instances.get(ns_name, 0) + 1
        AioipsecPeer._instances[ns_name] = n
        self.dir = topology.run_dir / f"{ns_name}-aioipsec{n}"
        self.dir.mkdir(parents=True, exist_ok=False)
        args = ["-m", "aioipsec", "daemon", "-c", str(self.config_path),
                "--control", str(self.control_path), "-" + "v" * max(1, verbose)]
        super().__init__(topology, side, args, ready=r"listening on",
                         log=self.dir / "aioipsec.log")
        self.connection: Connection | None = None
        self.extra = {k: dict(v) for k, v in (extra or {}).items()}

    def __repr__(self) -> str:
        return f"AioipsecPeer({self.side.name}, {self.side.ns.name}, pid={self.pid})"

    @property
    def name(self) -> str:
        return f"aioipsec-{self.side.name}"

    @property
    def config_path(self) -> Path:
        return self.dir / "aioipsec.toml"

    @property
    def control_path(self) -> Path:
        return self.dir / "control.sock"

    @property
    def log_path(self) -> Path:
        return self.dir / "aioipsec.log"

    # -- configuration
    def configure(self, conn: Connection, pki: TestPki | None = None) -> None:
        """Write the TOML for ``conn`` (and the PEM files of pubkey profiles)."""
        prof = conn.profile
        files: dict[str, Path] | None = None
        if prof.auth == "pubkey":
            if pki is None or prof.cert_kind is None:
                raise PeerError(f"profile {prof.name} needs the test PKI")
            kind, side = prof.cert_kind, self.side.name
            files = {}
            for role, src in (("cert", pki.cert(side, kind)), ("key", pki.key(side, kind)),
                              ("cacert", pki.ca_cert(kind))):
                dst = self.dir / src.name
                shutil.copyfile(src, dst)
                if role == "key":
                    dst.chmod(0o600)
                files[role] = dst
        self.config_path.write_text(render_aioipsec_config(
            conn, self.topology, self.side.name, files=files, extra=self.extra))
        self.connection = conn

    # -- process
    def start(self, timeout: float = 15.0) -> None:
        """Start the daemon, wait for ``listening on`` and an answering control socket."""
        if self.alive():
            raise PeerError(f"{self} already running")
        if self.connection is None:
            raise PeerError("configure() the peer before start()")
        self.control_path.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        super().start(timeout)
        while True:
            try:
                self.control({"cmd": "status"}, timeout=2.0)
                return
            except (OSError, PeerError):
                if not self.alive():
                    raise PeerError(f"{self.name} exited:\n{self.logs()[-3000:]}") from None
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    # -- control socket (the protocol of aioipsec.control: one JSON line each way)
    def control(self, request: Mapping[str, Any], timeout: float = 10.0) -> Any:
        """Send one request to the daemon's control socket; return its ``result``."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control_path))
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        if not data:
            raise PeerError(f"{self.name}: control socket closed without an answer to {request}")
        answer = json.loads(data)
        if not answer.get("ok"):
            raise PeerError(f"{self.name}: {request.get('cmd')} failed: {answer.get('error')}")
        return answer["result"]

    def cli(self, *args: str, timeout: float = 15.0) -> str:
        """Run the ``aioipsec --control SOCK ARGS`` command line; return its output."""
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "aioipsec", "--control", str(self.control_path), *args],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"aioipsec {' '.join(args)} timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise PeerError(f"aioipsec {' '.join(args)} -> rc {proc.returncode}\n"
                            f"{proc.stdout}{proc.stderr}")
        return proc.stdout

    def status(self) -> dict[str, Any]:
        """The daemon's ``status --json`` document (schema 1)."""
        result = self.control({"cmd": "status"})
        assert isinstance(result, dict)
        return result

    def list_sas(self) -> list[IkeSa]:
        return [ike_from_status(sa) for sa in self.status()["ike_sas"]]

    def installed_children(self, child: str = "ih") -> list[ChildSa]:
        return [c for sa in self.list_sas() if sa.state in UP_STATES
                for c in sa.children if c.name == child]

    def wait_established(self, timeout: float = 10.0, child: str = "ih") -> ChildSa:
        """Wait until an IKE SA is up with ``child`` installed; return the newest one."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise PeerError(f"{self.name} died:\n{self.logs()[-3000:]}")
            children = self.installed_children(child)
            if children:
                return children[-1]
            if time.monotonic() > deadline:
                raise PeerError(f"no installed Child SA {child!r} on {self.name} after "
                                f"{timeout}s:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def initiate(self, child: str = "ih", ike: str = "ih", timeout: float = 15.0) -> str:
        """``up ike child`` and wait for the Child SA (or the failure in the log)."""
        if not self.alive():
            raise PeerError(f"{self} is not running")
        mark = len(self.logs())
        answer = self.control({"cmd": "up", "name": ike, "child": child})
        deadline = time.monotonic() + timeout
        while True:
            if self.installed_children(child):
                return str(answer)
            m = _FAILURE.search(self.logs(), mark)
            if m is not None:
                line_end = self.logs().find("\n", m.start())
                raise PeerError(f"initiate {ike}/{child} failed: "
                                f"{self.logs()[m.start():line_end if line_end > 0 else None]}")
            if not self.alive():
                raise PeerError(f"{self.name} died:\n{self.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise PeerError(f"initiate {ike}/{child}: no Child SA after {timeout}s:\n"
                                f"{self.logs()[-3000:]}")
            time.sleep(0.05)

    def terminate(self, ike: str = "ih", timeout: float = 10.0) -> str:
        """``down ike``: delete the IKE SA (the daemon waits for the peer's answer)."""
        return str(self.control({"cmd": "down", "name": ike}, timeout=timeout))

    def wait_gone(self, timeout: float = 10.0) -> None:
        """Wait until the daemon lists no IKE SA and no Child SA."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if not st["ike_sas"] and not st["static_children"]:
                return
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name} still lists SAs after {timeout}s: "
                                f"{json.dumps(st)[:2000]}")
            time.sleep(0.05)


__all__ = ["AioipsecPeer", "TUN_NAME", "child_from_status", "ike_from_status",
           "render_aioipsec_config"]
