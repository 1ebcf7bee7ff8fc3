"""The child option ``updown`` with real daemons in network namespaces: the
script adds an ``ip rule`` for the tunnel (from the peer's subnet, in on the
TUN device that PLUTO_TUN_INTERFACE names) when the Child SA comes up and
removes it when the SA goes down, as an operator's firewall hook would;
PLUTO_INTERFACE is the outer interface holding PLUTO_ME, as charon's."""

from __future__ import annotations

import time
from pathlib import Path

from interop.aioipsec_peer import TUN_NAME
from interop.netns import Topology
from interop.strongswan import Connection

from .traffic import ping

PREF = "3210"
SCRIPT = f"""\
#!/bin/sh
# $1: a file that records the runs
case "$PLUTO_VERB" in
  up-client)   ip rule add from "$PLUTO_PEER_CLIENT" iif "$PLUTO_TUN_INTERFACE" lookup main pref {PREF} ;;
  down-client) ip rule del from "$PLUTO_PEER_CLIENT" iif "$PLUTO_TUN_INTERFACE" lookup main pref {PREF} ;;
esac
echo "$PLUTO_VERB $PLUTO_CONNECTION $PLUTO_ME $PLUTO_PEER $PLUTO_MY_CLIENT $PLUTO_PEER_CLIENT rc=$? \
if=$PLUTO_INTERFACE tun=$PLUTO_TUN_INTERFACE" >> "$1"
"""


def rules(topo: Topology) -> str:
    return topo.left.ns.run(["ip", "-4", "rule", "list", "pref", PREF]).stdout.strip()


def outer_interface(topo: Topology) -> str:
    """The interface holding left's outer address, as ``ip`` names it."""
    out = topo.left.ns.run(["ip", "-o", "-4", "addr", "show", "to", topo.left.outer4]).stdout.split()
    return out[1]


def wait_for(cond, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_updown_adds_and_removes_an_ip_rule(direct: Topology, aio, tmp_path: Path) -> None:
    script = tmp_path / "updown.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    record = tmp_path / "runs"
    conn = Connection.named("ikev2-psk-gcm")
    right = aio(direct, "right", conn)
    left = aio(direct, "left", conn, extra={"child": {"updown": f"{script} {record}"}})
    try:
        assert rules(direct) == ""
        left.initiate()
        left.wait_established(15)
        right.wait_established(15)
        wait_for(lambda: record.exists() and record.read_text(), "the up run")
        peer_net = direct.right.inner_net4
        ifs = f"if={outer_interface(direct)} tun={TUN_NAME}"
        assert outer_interface(direct) != TUN_NAME
        assert record.read_text().splitlines() == [
            f"up-client ih {direct.left.outer4} {direct.right.outer4} {direct.left.inner_net4} {peer_net} rc=0 {ifs}"]
        assert rules(direct) == f"{PREF}:\tfrom {peer_net} iif {TUN_NAME} lookup main"
        assert ping(direct.left, direct.right.inner4, count=3) == (3, 3)

        left.terminate()
        left.wait_gone()
        wait_for(lambda: len(record.read_text().splitlines()) == 2, "the down run")
        assert record.read_text().splitlines()[1] == (
            f"down-client ih {direct.left.outer4} {direct.right.outer4} {direct.left.inner_net4} {peer_net} rc=0 {ifs}")
        assert rules(direct) == ""
    finally:
        # the module's topology is shared: never leave the rule behind
        while rules(direct):
            direct.left.ns.run(["ip", "-4", "rule", "del", "pref", PREF])
