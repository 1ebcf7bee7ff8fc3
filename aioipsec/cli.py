"""The ``aioipsec`` command line (``python -m aioipsec``)."""

from __future__ import annotations

import os
import sys
from typing import Any

DEFAULT_CONTROL = "/run/aioipsec.ctl"
CONTROL_COMMANDS = ("up", "down", "status", "clear", "reload", "keys", "list-conns", "roam", "rekey", "list-pools",
                    "redirect")

USAGE = f"""usage: aioipsec <command> [options]

commands:
  demo      two in-memory gateways negotiate and pass traffic (what `make demo` runs)
  daemon    run a gateway from a TOML config file (-c FILE [--control PATH] [-v|-vv] [--no-tun])
  check     validate a config file and print what it defines (-c FILE)

control commands (talk to a running daemon: aioipsec [--control PATH] <command>;
PATH defaults to $AIOIPSEC_CONTROL, else {DEFAULT_CONTROL}):
  up NAME [CHILD]        initiate a connection and wait until its Child SA is up (--no-wait)
  down NAME              delete its IKE SA and Child SAs (--child CHILD: only that child's, the IKE SA stays)
  rekey NAME             rekey its Child SAs now (--child CHILD: only that child's; --ike: the IKE SA,
                         Child SAs kept; --reauth: reauthenticate it, IKEv2) and print the new SPIs
  status [NAME] [--json] IKE and Child SAs with counters (--json: the schema in aioipsec.status)
  clear [NAME]           delete SAs; `start` children renegotiate at once, `trap` ones on traffic
  reload                 re-read the config file (same as SIGHUP; applies to new SAs)
  keys --wireshark DIR   write Wireshark esp_sa / ikev2_decryption_table / ikev1_decryption_table
                         (connections with key_export = true only)
  list-conns             the loaded connections
  list-pools             address pools: size, online, offline (--leases: each lease; --json)
  roam ADDRESS           our address changed: rebind there; IKEv2 SAs with MOBIKE move, others re-initiate
  redirect NAME --gateway ADDR
                         send REDIRECT (RFC 5685) to the clients of its IKE SAs (--peer ADDR|ID: only
                         that one): they move to ADDR (swanctl --redirect)

run `aioipsec <command> --help` for a command's options"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    control = None
    if argv[0] == "--control" or argv[0].startswith("--control="):
        if "=" in argv[0]:
            control, argv = argv[0].split("=", 1)[1], argv[1:]
        elif len(argv) >= 2:
            control, argv = argv[1], argv[2:]
        if not control or not argv:
            print(USAGE, file=sys.stderr)
            return 2
    cmd, rest = argv[0], argv[1:]
    if control is not None or cmd in CONTROL_COMMANDS:
        return _control(control or os.environ.get("AIOIPSEC_CONTROL") or DEFAULT_CONTROL, cmd, rest)
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

    ap = argparse.ArgumentParser(prog="aioipsec check", description="validate a config file")
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
        print(f"  local  {conn.local.auth} '{conn.local.id or '%address'}'")
        print(f"  remote {conn.remote.auth} '{conn.remote.id or '%address'}'")
        for cname, child in conn.children.items():
            props = child.ah_proposals or child.esp_proposals
            print(f"  {cname}: {child.mode} {', '.join(map(str, child.local_ts)) or 'dynamic'} === "
                  f"{', '.join(map(str, child.remote_ts)) or 'dynamic'} "
                  f"{'ah' if child.ah_proposals else 'esp'} {', '.join(map(str, props))}"
                  f" start_action={child.start_action}")
    print(f"{ns.config}: OK, {len(cfg.connections)} connection{'' if len(cfg.connections) == 1 else 's'}")
    return 0


def format_pools(pools: list[dict[str, Any]]) -> str:
    """``list-pools`` as text (like ``swanctl --list-pools --leases``)."""
    if not pools:
        return "no pools"
    out = []
    for p in pools:
        out.append(f"{p['name']}: {p['addrs']} ({p['first']} - {p['last']}), size {p['size']}, "
                   f"online {p['online']}, offline {p['offline']}")
        for lease in p.get("leases", ()):
            out.append(f"  {lease['address']:<39} {'online' if lease['online'] else 'offline':<7} "
                       f"'{lease['identity']}'")
    return "\n".join(out)


def _control(path: str, cmd: str, argv: list[str]) -> int:
    import argparse
    import asyncio
    import json

    from .control import request
    from .status import format_status

    if cmd not in CONTROL_COMMANDS:
        print(f"aioipsec: unknown control command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(prog=f"aioipsec --control PATH {cmd}")
    req: dict[str, Any] = {"cmd": cmd}
    timeout = 10.0
    if cmd == "up":
        ap.add_argument("name")
        ap.add_argument("child", nargs="?")
        ap.add_argument("--no-wait", action="store_true", help="return once the exchange is started")
        ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    elif cmd == "down":
        ap.add_argument("name")
        ap.add_argument("--child", help="delete only this child's Child SAs; the IKE SA stays")
    elif cmd == "rekey":
        ap.add_argument("name")
        what = ap.add_mutually_exclusive_group()
        what.add_argument("--child", help="rekey only this child's Child SAs")
        what.add_argument("--ike", action="store_true", help="rekey the IKE SA (its Child SAs are kept)")
        what.add_argument("--reauth", action="store_true",
                          help="IKEv2: reauthenticate (a new IKE SA and Child SAs, then the old ones deleted)")
        ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the new SA (default 30)")
    elif cmd == "list-pools":
        ap.add_argument("--leases", action="store_true", help="each lease: address, online/offline, identity")
        ap.add_argument("--json", action="store_true", help="machine-readable")
    elif cmd == "clear":
        ap.add_argument("name", nargs="?")
    elif cmd == "status":
        ap.add_argument("name", nargs="?")
        ap.add_argument("--json", action="store_true", help="machine-readable (schema: aioipsec.status)")
    elif cmd == "roam":
        ap.add_argument("address")
    elif cmd == "redirect":
        ap.add_argument("name")
        ap.add_argument("--gateway", required=True, help="the gateway address to send the clients to")
        ap.add_argument("--peer", help="only the IKE SA of the client at this address or with this identity")
    elif cmd == "keys":
        ap.add_argument("--wireshark", required=True, metavar="DIR", help="directory for the Wireshark tables")
    ns = ap.parse_args(argv)
    for k in ("name", "child"):
        if getattr(ns, k, None) is not None:
            req[k] = getattr(ns, k)
    if cmd == "up" and not ns.no_wait:
        req["wait"] = True
        req["timeout"] = ns.timeout
        timeout = ns.timeout + 5
    if cmd in ("down", "clear"):
        timeout = 30.0
    if cmd == "rekey":
        if ns.ike:
            req["ike"] = True
        if ns.reauth:
            req["reauth"] = True
        req["timeout"] = ns.timeout
        timeout = ns.timeout + 5
    if cmd == "list-pools" and ns.leases:
        req["leases"] = True
    if cmd == "keys":
        req["dir"] = os.path.abspath(ns.wireshark)
    if cmd == "roam":
        req["address"] = ns.address
    if cmd == "redirect":
        req["gateway"] = ns.gateway
        if ns.peer is not None:
            req["peer"] = ns.peer
    try:
        result = asyncio.run(request(path, req, timeout))
    except FileNotFoundError:
        print(f"error: no daemon control socket at {path} (start `aioipsec daemon -c FILE --control {path}`)",
              file=sys.stderr)
        return 1
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    if cmd == "status":
        print(json.dumps(result, indent=2) if ns.json else format_status(result))
    elif cmd == "list-pools":
        print(json.dumps(result, indent=2) if ns.json else format_pools(result))
    elif cmd == "keys":
        recs = result["records"]
        print(f"wrote {result['directory']}: " + ", ".join(f"{k} ({v} records)" for k, v in recs.items()))
        print(f"decrypt a capture: XDG_CONFIG_HOME={os.path.dirname(result['directory']) or '.'} "
              "tshark -o esp.enable_encryption_decode:TRUE -r CAPTURE.pcap"
              + ("" if os.path.basename(result["directory"]) == "wireshark" else
                 "   (after copying the files into a directory named wireshark)"))
    elif isinstance(result, str):
        print(result)
    else:
        print(json.dumps(result, indent=2))
    return 0
