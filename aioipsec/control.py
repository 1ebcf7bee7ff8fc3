"""The daemon's control socket: one JSON request per line, one JSON answer
per line, over a Unix socket (mode 0600; like charon's vici, much smaller).

Requests::

    {"cmd": "status"}                         -> the status document (aioipsec.status, schema 1)
    {"cmd": "status", "name": "hq"}           -> the same, only connection hq's IKE SAs
    {"cmd": "up", "name": "hq", "child": null, "wait": true, "timeout": 30}
                                              -> initiate; with wait: answer once the Child SA is up
    {"cmd": "down", "name": "hq"}             -> delete the IKE SA and its Child SAs
    {"cmd": "down", "name": "hq", "child": "lan"}
                                              -> delete only child lan's Child SAs; the IKE SA stays
    {"cmd": "rekey", "name": "hq", "child": null, "ike": false, "timeout": 30}
                                              -> rekey now (ike: the IKE SA; child: its Child SAs;
                                                 "reauth": true: reauthenticate the IKEv2 IKE SA;
                                                 neither: every Child SA); answers with the new SPIs
    {"cmd": "clear", "name": null}            -> delete (all / one) and renegotiate
    {"cmd": "reload"}                         -> re-read the config file (applies to new SAs)
    {"cmd": "keys", "dir": "/path"}           -> Wireshark tables of connections with key_export = true
    {"cmd": "list-conns"}                     -> the loaded connections
    {"cmd": "list-pools", "leases": false}    -> the address pools (size, online, offline; leases)
    {"cmd": "roam", "address": "192.0.2.9"}   -> our address changed: rebind, MOBIKE-update the IKE SAs
    {"cmd": "redirect", "name": "hq", "gateway": "192.0.2.3", "peer": null}
                                              -> REDIRECT (RFC 5685) the clients of hq's IKE SAs (peer:
                                                 only the one at that address / with that identity)

Answers: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
A bad request is answered with an error; it never stops the daemon.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

logger = logging.getLogger("aioipsec.control")

MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """A request the daemon refuses (unknown connection, key export off, ...)."""


class ControlServer:
    def __init__(self, daemon: Any, path: str) -> None:
        self.daemon = daemon
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o177)  # no window in which others may connect
        try:
            self._server = await asyncio.start_unix_server(self._client, path=self.path, limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._clients):
                t.cancel()
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    answer: dict[str, Any] = {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
                    writer.write(json.dumps(answer).encode() + b"\n")
                    break
                if not line:
                    break
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ControlError("a request is a JSON object")
                    result = await self.handle(req)
                    answer = {"ok": True, "result": result}
                except Exception as exc:  # report, never kill the daemon
                    answer = {"ok": False, "error": _message(exc)}
                    logger.info("control: %s failed: %s", _cmd_of(line), answer["error"])
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def handle(self, req: dict[str, Any]) -> Any:
        from .status import endpoint_status

        d = self.daemon
        cmd = req.get("cmd")
        name = req.get("name")
        if name is not None and not isinstance(name, str):
            raise ControlError("name must be a string")
        if cmd != "status":
            logger.info("control: %s%s", cmd, f" {name}" if name else "")
        if cmd == "status":
            st = endpoint_status(d.endpoint)
            if name is not None:
                _known(d, name)
                st["ike_sas"] = [sa for sa in st["ike_sas"] if sa["name"] == name]
            return st
        if cmd == "list-conns":
            return _list_conns(d.config)
        if cmd == "up":
            return await self._up(req)
        if cmd == "down":
            _known(d, _required(name))
            child = _child(d, name, req.get("child"))
            if child is None:
                return await d.down(name)
            return await _operator(d.down(name, child, _timeout(req, 10.0)), name)
        if cmd == "rekey":
            _known(d, _required(name))
            child = _child(d, name, req.get("child"))
            ike = _flag(req, "ike")
            reauth = _flag(req, "reauth")
            if ike and child is not None:
                raise ControlError("rekey either the IKE SA or a child, not both")
            if reauth and (ike or child is not None):
                raise ControlError("reauth renews the IKE SA and every Child SA: not with ike or child")
            return await _operator(d.rekey(name, child, ike, _timeout(req, 30.0), reauth=reauth), name)
        if cmd == "list-pools":
            return d.list_pools(_flag(req, "leases"))
        if cmd == "clear":
            if name is not None:
                _known(d, name)
            return await d.clear(name)
        if cmd == "reload":
            return d.reload()
        if cmd == "roam":
            address = req.get("address")
            if not isinstance(address, str) or not address:
                raise ControlError("roam needs an address")
            try:
                return d.roam(address)
            except ValueError as exc:
                raise ControlError(str(exc)) from None
        if cmd == "redirect":
            _known(d, _required(name))
            gateway, peer = req.get("gateway"), req.get("peer")
            if not isinstance(gateway, str) or not gateway:
                raise ControlError("redirect needs a gateway")
            if peer is not None and not isinstance(peer, str):
                raise ControlError("peer must be a string")
            _redirect_target(gateway)
            return await _operator(_call(d.redirect, name, gateway, peer), name)
        if cmd == "keys":
            from .keyexport import export_wireshark

            allowed = {n for n, c in d.config.connections.items() if c.key_export}
            if not allowed:
                raise ControlError("key export is not enabled (set key_export = true in a connection)")
            directory = req.get("dir")
            if not isinstance(directory, str) or not directory:
                raise ControlError("keys needs a directory")
            result = export_wireshark(d.endpoint, directory, allowed)
            logger.warning("control: keys of %s exported to %s", ", ".join(sorted(allowed)), directory)
            return result
        raise ControlError(f"unknown command {cmd!r}")

    async def _up(self, req: dict[str, Any]) -> str:
        d = self.daemon
        name = _required(req.get("name"))
        conn = _known(d, name)
        child = _child(d, name, req.get("child"))
        wait = _flag(req, "wait")
        timeout = _timeout(req, 30.0)
        msg = d.up(name, child)
        if not wait:
            return str(msg)
        proto = d.endpoint.find_session(name)
        if proto is None:
            raise ControlError(f"{name}: no IKE SA was started")
        ike, proto = await _wait_established(d.endpoint, name, proto, timeout)
        lines = [f"{name}: IKE SA established, IKEv{ike.version} {ike.algorithms}, "
                 f"{ike.local_id} <-> {ike.remote_id}, SPIs {ike.spi_i.hex()}_i {ike.spi_r.hex()}_r"]
        if child is not None or conn.children:
            ev = await asyncio.wait_for(proto.wait_child(child), timeout)
            lines.append(
                f"{name}: CHILD_SA {ev.name} installed, {ev.mode} {ev.protocol} {ev.algorithms}, "
                f"SPIs 0x{ev.spi_in:08x}_i 0x{ev.spi_out:08x}_o, "
                f"{', '.join(map(str, ev.local_ts))} === {', '.join(map(str, ev.remote_ts))}"
            )
        return "\n".join(lines)


async def _wait_established(endpoint: Any, name: str, proto: Any, timeout: float) -> tuple[Any, Any]:
    """The IKE SA of ``name`` established, following keyingtries: when an
    attempt ends unanswered and the endpoint starts the next one (a new
    session: :meth:`Endpoint.next_attempt`), wait for that one, within
    ``timeout`` in all.  Other failures, and the last attempt's, are raised.
    Returns the event and the session that made it."""
    from .asyncio.protocol import IkeError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await asyncio.wait_for(proto.wait_established(), max(0.0, deadline - loop.time())), proto
        except (IkeError, ConnectionError):  # this attempt failed
            nxt = await asyncio.wait_for(endpoint.next_attempt(name, proto), max(0.0, deadline - loop.time()))
            if nxt is None:
                raise
            proto = nxt


def _required(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ControlError("this command needs a connection name")
    return name


def _child(d: Any, name: str, child: Any) -> str | None:
    if child is None:
        return None
    if not isinstance(child, str) or not child:
        raise ControlError("child must be a name")
    d.require_child(name, child, ControlError)
    return child


def _flag(req: dict[str, Any], key: str) -> bool:
    v = req.get(key, False)
    if not isinstance(v, bool):
        raise ControlError(f"{key} must be true or false")
    return v


def _redirect_target(gateway: str) -> None:
    """Refuse a target no gateway can have (the client would refuse it);
    each IKE SA's session refuses its own addresses too."""
    import ipaddress

    from .ike.v2.tasks.ike_redirect import unusable_gateway

    try:
        ip = ipaddress.ip_address(gateway)
    except ValueError:
        return  # a gateway name: checked by the session
    why = unusable_gateway(ip)
    if why:
        raise ControlError(f"cannot redirect to '{gateway}': {why}")


def _timeout(req: dict[str, Any], default: float) -> float:
    t = req.get("timeout", default)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 3600:
        raise ControlError("timeout must be a number of seconds (0 < timeout <= 3600)")
    return float(t)


async def _operator(coro: Any, name: str) -> Any:
    """Run a daemon operation; its refusals (no SA, a session that cannot do
    it now, no answer in time) become errors that name the connection."""
    from .errors import LocalProtocolError

    try:
        return await coro
    except KeyError as exc:
        raise ControlError(str(exc.args[0]) if exc.args else f"{name}: not found") from None
    except (LookupError, RuntimeError) as exc:
        raise ControlError(str(exc)) from None
    except TimeoutError as exc:
        raise ControlError(str(exc) or f"{name}: timed out") from None
    except LocalProtocolError as exc:
        raise ControlError(f"{name}: {exc}") from None


async def _call(fn: Any, *args: Any) -> Any:
    """A synchronous daemon operation as a coroutine (for :func:`_operator`)."""
    return fn(*args)


def _known(d: Any, name: str) -> Any:
    conn = d.config.connections.get(name)
    if conn is None:
        known = ", ".join(sorted(d.config.connections)) or "none"
        raise ControlError(f"no connection named {name!r} (loaded: {known})")
    return conn


def _message(exc: BaseException) -> str:
    if isinstance(exc, ControlError):
        return str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return f"{type(exc).__name__}: {exc}"


def _cmd_of(line: bytes) -> str:
    try:
        return str(json.loads(line).get("cmd"))
    except Exception:
        return "request"


def _list_conns(config: Any) -> list[dict[str, Any]]:
    out = []
    for name, c in config.connections.items():
        out.append(
            {
                "name": name,
                "version": c.version,
                "local_addrs": list(c.local_addrs),
                "remote_addrs": list(c.remote_addrs),
                "proposals": [str(p) for p in c.proposals],
                "local_id": c.local.id,
                "remote_id": c.remote.id,
                "auth": [c.local.auth, c.remote.auth],
                "key_export": c.key_export,
                "children": [
                    {
                        "name": ch.name,
                        "mode": ch.mode,
                        "start_action": ch.start_action,
                        "local_ts": [str(t) for t in ch.local_ts],
                        "remote_ts": [str(t) for t in ch.remote_ts],
                        "esp_proposals": [str(p) for p in (ch.ah_proposals or ch.esp_proposals)],
                    }
                    for ch in c.children.values()
                ],
            }
        )
    return out


async def request(path: str, req: dict[str, Any], timeout: float = 10.0) -> Any:
    """Send one request to the daemon at ``path``; return its result or raise
    ``RuntimeError`` with the daemon's error message."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=1 << 24), timeout)
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise RuntimeError("the daemon closed the connection")
    answer = json.loads(line)
    if not answer.get("ok"):
        raise RuntimeError(answer.get("error", "unknown error"))
    return answer["result"]
