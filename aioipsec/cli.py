"""The ``aioipsec`` command line (``python -m aioipsec``)."""

from __future__ import annotations

import sys


USAGE = """usage: aioipsec <command> [options]

commands:
  demo      two in-memory gateways negotiate and pass traffic (what `make demo` runs)
  daemon    run a gateway from a TOML config file (-c FILE [--control PATH])
  check     validate a config file and print what it defines

control commands (talk to a running daemon: aioipsec --control PATH <command>):
  up NAME [CHILD]   initiate a connection
  down NAME         delete its IKE SA
  status [--json]   IKE and Child SAs with counters
  clear [NAME]      delete SAs; traffic renegotiates them (trap) or `up` does
  reload            re-read the config file (applies to new SAs)
  keys --wireshark DIR   write Wireshark esp_sa / ikev2_decryption_table files

run `aioipsec <command> --help` for a command's options"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    control = None
    if argv[0] == "--control":
        if len(argv) < 3:
            print(USAGE, file=sys.stderr)
            return 2
        control, argv = argv[1], argv[2:]
    cmd, rest = argv[0], argv[1:]
    if control is not None or cmd in ("up", "down", "status", "clear", "reload", "keys"):
        return _control(control or "/run/aioipsec.ctl", cmd, rest)
    if cmd == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    if cmd == "check":
        return _check(rest)
    if cmd == "daemon":
        from .daemon import main as daemon_main

        return daemon_main(rest)
    print(f"aioipsec: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
    return 2


def _check(argv: list[str]) -> int:
    import argparse

    from .config_file import load_config
    from .errors import ConfigError

    ap = argparse.ArgumentParser(prog="aioipsec check")
    ap.add_argument("-c", "--config", required=True)
    ns = ap.parse_args(argv)
    try:
        cfg = load_config(ns.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, conn in cfg.connections.items():
        print(f"{name}: IKEv{conn.version} {','.join(conn.local_addrs) or '%any'} <-> {','.join(conn.remote_addrs) or '%any'}"
              f" proposals {', '.join(map(str, conn.proposals))}")
        for cname, child in conn.children.items():
            print(f"  {cname}: {child.mode} {', '.join(map(str, child.local_ts)) or 'dynamic'} === "
                  f"{', '.join(map(str, child.remote_ts)) or 'dynamic'} esp {', '.join(map(str, child.esp_proposals))}"
                  f" start_action={child.start_action}")
    return 0


def _control(path: str, cmd: str, argv: list[str]) -> int:
    import argparse
    import asyncio
    import json

    from .control import request
    from .status import format_status

    ap = argparse.ArgumentParser(prog=f"aioipsec --control PATH {cmd}")
    req: dict[str, object] = {"cmd": cmd}
    if cmd == "up":
        ap.add_argument("name")
        ap.add_argument("child", nargs="?")
    elif cmd == "down":
        ap.add_argument("name")
    elif cmd == "clear":
        ap.add_argument("name", nargs="?")
    elif cmd == "status":
        ap.add_argument("--json", action="store_true")
    elif cmd == "keys":
        ap.add_argument("--wireshark", required=True, metavar="DIR")
    elif cmd != "reload":
        print(f"aioipsec: unknown control command '{cmd}'", file=sys.stderr)
        return 2
    ns = ap.parse_args(argv)
    for k in ("name", "child"):
        if hasattr(ns, k):
            req[k] = getattr(ns, k)
    if cmd == "keys":
        req["dir"] = ns.wireshark
    try:
        result = asyncio.run(request(path, req))
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if cmd == "status":
        print(json.dumps(result, indent=2) if ns.json else format_status(result))
    else:
        print(result if isinstance(result, str) else json.dumps(result, indent=2))
    return 0
