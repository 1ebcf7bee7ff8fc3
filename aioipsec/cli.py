"""The ``aioipsec`` command line (``python -m aioipsec``)."""

from __future__ import annotations

import sys


USAGE = """usage: aioipsec <command> [options]

commands:
  demo      two in-memory gateways negotiate and pass traffic (what `make demo` runs)
  daemon    run a gateway from a TOML config file (-c FILE)
  check     validate a config file and print what it defines

run `aioipsec <command> --help` for a command's options"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
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
