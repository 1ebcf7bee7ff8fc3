"""The daemon's control socket: one JSON request per line, one JSON answer
per line, over a Unix socket (like charon's vici, much smaller).

Requests: ``{"cmd": "status"}``, ``{"cmd": "up", "name": "hq"}``,
``{"cmd": "down", "name": "hq"}``, ``{"cmd": "clear", "name": null}``,
``{"cmd": "reload"}``, ``{"cmd": "keys", "dir": "/path"}``.
Answers: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any


class ControlServer:
    def __init__(self, daemon: Any, path: str) -> None:
        self.daemon = daemon
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._client, path=self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    req = json.loads(line)
                    result = await self.handle(req)
                    answer = {"ok": True, "result": result}
                except Exception as exc:  # report, never kill the daemon
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    async def handle(self, req: dict[str, Any]) -> Any:
        from .status import endpoint_status

        d = self.daemon
        cmd = req.get("cmd")
        if cmd == "status":
            return endpoint_status(d.endpoint)
        if cmd == "up":
            return d.up(req["name"], req.get("child"))
        if cmd == "down":
            return await d.down(req["name"])
        if cmd == "clear":
            return await d.clear(req.get("name"))
        if cmd == "reload":
            return d.reload()
        if cmd == "keys":
            from .keyexport import export_wireshark

            if not any(c.key_export for c in d.config.connections.values()):
                raise PermissionError("key export is not enabled (set key_export = true in the connection)")
            return export_wireshark(d.endpoint, req["dir"])
        raise ValueError(f"unknown command {cmd!r}")


async def request(path: str, req: dict[str, Any], timeout: float = 10.0) -> Any:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    answer = json.loads(line)
    if not answer.get("ok"):
        raise RuntimeError(answer.get("error", "unknown error"))
    return answer["result"]
