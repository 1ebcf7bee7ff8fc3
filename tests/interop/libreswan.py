"""Libreswan's pluto as a reference peer, inside the micro-VM (:mod:`.vm`).

Libreswan's data plane is the kernel's XFRM only (no userspace ESP): on this
project's machines, whose kernel has no ESP, the IKE SA comes up but every Child SA
fails ("netlink response for Add SA ...: Function not implemented (errno 38)",
answered with TS_UNACCEPTABLE / no Quick Mode reply).  So :class:`LibreswanPeer` runs
pluto in a :class:`~.vm.MicroVm` that has taken over one side of a topology.

pluto comes from a private ``dpkg -x`` of Debian's ``libreswan`` package
(``scripts/install-vm-deps.sh``; never apt-installed: it conflicts with strongSwan's
packages).  Its directory, in the run directory (the guest sees it at the same path)::

    ipsec.conf       rendered from the same Connection/Profile as charon's swanctl.conf
    ipsec.secrets    the PSK (any identity pair)
    nss/             its own NSS database (pluto needs one even for PSK)
    pluto.log        the log (plutodebug=base unless told otherwise)
    pluto.stdout     pluto's stdout/stderr

Pitfalls handled (see tests/interop/README.md):

* pluto execs ``/usr/libexec/ipsec/addconn`` and the updown script from compiled-in
  paths: it runs in a private mount namespace (in the guest) where the extracted
  ``usr/libexec`` is bind-mounted over ``/usr/libexec``;
* Debian's 4.x build refuses IKEv1 unless ``ikev1-policy=accept``;
* algorithm names differ from strongSwan's (``aes_gcm_16_128-sha2_256-dh31`` for
  ``aes128gcm16-prfsha256-x25519``): :data:`ALGORITHMS` maps the harness profiles;
* ``_updown`` adds the route to the remote subnet only when ``leftsourceip`` is set
  (or ``ip route get`` says "No route to host"): without it the SAs are up but no
  packet enters them;
* the control socket (``pluto.ctl``) lives on the guest's tmpfs (unix sockets do not
  work across 9p), so ``whack`` runs in the guest too.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .netns import Topology
from .strongswan import Connection
from .vm import VM_ROOT, MicroVm, VmError, VmResult

LIBRESWAN_ROOT = Path(os.environ.get("AIOIPSEC_LIBRESWAN_ROOT", str(VM_ROOT / "libreswan")))
PLUTO = LIBRESWAN_ROOT / "usr/libexec/ipsec/pluto"
WHACK = LIBRESWAN_ROOT / "usr/libexec/ipsec/whack"
CERTUTIL = Path("/usr/bin/certutil")


@dataclass(frozen=True)
class LibreswanAlgorithms:
    ike: str
    esp: str
    pfs: bool


# harness profile -> Libreswan's names for the same algorithms
# (check a string with usr/libexec/ipsec/algparse -v2 'ike=...')
ALGORITHMS: dict[str, LibreswanAlgorithms] = {
    "ikev2-psk-gcm": LibreswanAlgorithms("aes_gcm_16_128-sha2_256-dh31", "aes_gcm_16_128", False),
    "ikev2-psk-chacha20": LibreswanAlgorithms("aes_gcm_16_128-sha2_256-dh31", "chacha20_poly1305",
                                              False),
    "ikev2-psk-aescbc-sha256": LibreswanAlgorithms("aes_gcm_16_128-sha2_256-dh31", "aes128-sha2_256",
                                                   False),
    "ikev1-main-psk-aes128-sha1": LibreswanAlgorithms("aes128-sha1-modp2048", "aes128-sha1", False),
    "ikev1-main-psk-aes256-sha256-pfs": LibreswanAlgorithms("aes256-sha2_256-modp2048",
                                                            "aes256-sha2_256-modp2048", True),
    "ikev1-aggr-psk": LibreswanAlgorithms("aes256-sha2_256-modp2048", "aes128-sha2_256-modp2048",
                                          True),
}


class LibreswanError(RuntimeError):
    """pluto could not be started or driven, or a bounded wait ran out."""


def libreswan_unavailable() -> str | None:
    """None if the extracted pluto and certutil are there, else why not."""
    for path in (PLUTO, WHACK, CERTUTIL):
        if not path.exists():
            return f"{path} is missing; run scripts/install-vm-deps.sh as root"
    return None


def render_ipsec_conf(conn: Connection, topology: Topology, side: str, *, logfile: Path,
                      rundir: str, plutodebug: str = "base") -> str:
    """ipsec.conf for ``side`` of ``topology``: the tunnel ``conn`` describes (only PSK
    profiles listed in :data:`ALGORITHMS`; IPv4)."""
    prof = conn.profile
    if prof.auth != "psk":
        raise LibreswanError(f"profile {prof.name}: only PSK profiles are rendered for Libreswan")
    if conn.family != 4:
        raise LibreswanError("only IPv4 connections are rendered for Libreswan")
    try:
        algs = ALGORITHMS[prof.name]
    except KeyError:
        raise LibreswanError(f"no Libreswan algorithm names for profile {prof.name}") from None
    me, peer = topology.side(side), topology.other(side)
    remote = topology.remote_addrs_seen_by(side)       # %any behind the NAT
    if prof.id_kind == "ip":
        local_id, remote_id = me.outer4, peer.outer4
    else:
        local_id, remote_id = f"@{me.fqdn}", f"@{peer.fqdn}"
    lines = [
        f"# aioipsec interop: Libreswan peer ({side}), profile {prof.name}",
        "config setup",
        f"    logfile={logfile}",
        "    logappend=no",
        f"    plutodebug={plutodebug}",
        "    dnssec-enable=no",
        "    protostack=xfrm",
        f"    dumpdir={rundir}",
        # Debian's 4.x build refuses IKEv1 connections unless told otherwise
        "    ikev1-policy=accept",
        "",
        "conn ih",
        f"    left={me.outer4}",
        f"    right={remote}",
        f"    leftid={local_id}",
        f"    rightid={remote_id}",
        "    authby=secret",
        f"    ike={algs.ike}",
        f"    esp={algs.esp}",
        f"    pfs={'yes' if algs.pfs else 'no'}",
        # the same retransmission budget as the other peers: fail within seconds
        "    retransmit-interval=1000",
        "    retransmit-timeout=10s",
        # one attempt: no re-initiation once the test's aioipsec peer has gone
        "    keyingtries=1",
        # the updown script's path as seen in pluto's private mount namespace
        "    leftupdown=/usr/libexec/ipsec/_updown",
        "    auto=add",
    ]
    if prof.version == 2:
        lines.append("    ikev2=insist")
    else:
        lines.append("    ikev2=no")
        if prof.aggressive:
            lines.append("    aggressive=yes")
    if prof.mode == "transport":
        lines.append("    type=transport")
    else:
        lines += ["    type=tunnel", f"    leftsubnet={me.inner_net4}",
                  f"    rightsubnet={peer.inner_net4}",
                  # the source address for traffic from here into the tunnel; without it
                  # _updown adds no route to rightsubnet and nothing enters the SA
                  f"    leftsourceip={me.inner4}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TrafficStatus:
    """One line of ``whack --trafficstatus``."""

    serial: int
    name: str
    in_bytes: int
    out_bytes: int
    raw: str


_TRAFFIC = re.compile(r'#(\d+): "([^"]+)"[^,]*,.*?inBytes=(\d+), outBytes=(\d+)')


def parse_trafficstatus(text: str) -> list[TrafficStatus]:
    out = []
    for line in text.splitlines():
        m = _TRAFFIC.search(line)
        if m:
            out.append(TrafficStatus(int(m.group(1)), m.group(2), int(m.group(3)),
                                     int(m.group(4)), line))
    return out


class LibreswanPeer:
    """pluto inside ``vm`` (which has taken over one side of the topology).

    ``peer = LibreswanPeer(vm); peer.configure(conn); peer.start()``, then
    ``initiate()``, ``wait_established()``, ``traffic()``, ``whack(...)``, ``logs()``,
    ``stop()`` (kills pluto by its guest PID and flushes the guest's SAs/policies).
    """

    _instances = 0

    def __init__(self, vm: MicroVm, *, plutodebug: str = "base") -> None:
        LibreswanPeer._instances += 1
        self.vm = vm
        self.topology = vm.topology
        self.side = vm.side
        self.plutodebug = plutodebug
        self.dir = vm.topology.run_dir / f"{vm.ns.name}-pluto{LibreswanPeer._instances}"
        self.dir.mkdir(parents=True, exist_ok=False)
        # pid file and control socket on the guest's tmpfs
        self.rundir = f"/run/aioipsec-{self.dir.name}"
        self.connection: Connection | None = None
        self.guest_pid: int | None = None

    def __repr__(self) -> str:
        return f"LibreswanPeer({self.side.name}, guest pid={self.guest_pid})"

    @property
    def name(self) -> str:
        return f"libreswan-vm-{self.side.name}"

    @property
    def ctl(self) -> str:
        return f"{self.rundir}/pluto.ctl"

    @property
    def log_path(self) -> Path:
        return self.dir / "pluto.log"

    @property
    def conf_path(self) -> Path:
        return self.dir / "ipsec.conf"

    def configure(self, conn: Connection) -> None:
        self.conf_path.write_text(render_ipsec_conf(
            conn, self.topology, self.side.name, logfile=self.log_path, rundir=self.rundir,
            plutodebug=self.plutodebug))
        secrets = self.dir / "ipsec.secrets"
        secrets.write_text(f'%any %any : PSK "{conn.psk}"\n')
        secrets.chmod(0o600)
        self.connection = conn

    def start(self, timeout: float = 60.0) -> None:
        """Start pluto in the guest; wait until connection ``ih`` is loaded."""
        reason = libreswan_unavailable()
        if reason is not None:
            raise LibreswanError(reason)
        if self.connection is None:
            raise LibreswanError("configure() the peer before start()")
        nss = self.dir / "nss"
        nss.mkdir(exist_ok=True)
        self.vm.run([str(CERTUTIL), "-N", "--empty-password", "-d", f"sql:{nss}"], check=True)
        self.vm.run(["mkdir", "-p", self.rundir], check=True)
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                'mount --bind "$1/usr/libexec" /usr/libexec && shift && exec "$@"', "aioipsec-pluto",
                str(LIBRESWAN_ROOT), str(PLUTO), "--nofork", "--config", str(self.conf_path),
                "--rundir", self.rundir, "--nssdir", str(nss),
                "--secretsfile", str(self.dir / "ipsec.secrets"), "--ipsecdir", str(self.dir),
                "--no-dnssec"]
        self.guest_pid = self.vm.spawn(argv, log=self.dir / "pluto.stdout")
        deadline = time.monotonic() + timeout
        while True:
            st = self.whack("--status", check=False)
            if st.returncode == 0 and '"ih"' in st.output:
                return
            if not self.vm.alive(self.guest_pid):
                raise LibreswanError(f"pluto exited in the VM:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise LibreswanError(f"connection ih not loaded after {timeout}s:\n{self._tail()}")
            time.sleep(0.3)

    def alive(self) -> bool:
        return self.guest_pid is not None and self.vm.alive(self.guest_pid)

    def stop(self, grace: float = 5.0) -> None:
        if self.guest_pid is not None:
            self.vm.kill(self.guest_pid, grace)
            self.vm.flush_xfrm()
            self.guest_pid = None

    def whack(self, *args: str, timeout: float = 20.0, check: bool = True) -> VmResult:
        r = self.vm.run([str(WHACK), "--ctlsocket", self.ctl, *args], timeout=timeout)
        if check and r.returncode != 0:
            raise LibreswanError(f"whack {' '.join(args)} -> rc {r.returncode}\n{r.output}")
        return r

    def initiate(self, timeout: float = 30.0) -> str:
        """``whack --name ih --initiate`` (waits for the result, bounded)."""
        r = self.whack("--name", "ih", "--initiate", timeout=timeout, check=False)
        if r.returncode != 0:
            raise LibreswanError(f"initiate failed (rc {r.returncode}):\n{r.output[-3000:]}")
        return r.output

    def traffic(self) -> list[TrafficStatus]:
        """The IPsec SAs pluto has up, with byte counters (``--trafficstatus``)."""
        return parse_trafficstatus(self.whack("--trafficstatus").output)

    def wait_established(self, timeout: float = 20.0) -> TrafficStatus:
        """Wait until pluto lists an IPsec SA for ``ih``; return the newest."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sas = [t for t in self.traffic() if t.name.startswith("ih")]
            except (LibreswanError, VmError):
                sas = []
            if sas:
                return max(sas, key=lambda t: t.serial)
            if time.monotonic() > deadline:
                raise LibreswanError(f"no IPsec SA on {self.name} after {timeout}s:\n{self._tail()}")
            time.sleep(0.3)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _tail(self, n: int = 40) -> str:
        parts: list[str] = []
        for path in (self.dir / "pluto.stdout", self.log_path):
            if path.exists():
                parts.extend(path.read_text(errors="replace").splitlines()[-n:])
        return "\n".join(parts)

    def grep_log(self, patterns: Sequence[str]) -> list[str]:
        rx = re.compile("|".join(patterns))
        return [line for line in self.logs().splitlines() if rx.search(line)]


__all__ = ["ALGORITHMS", "LibreswanError", "LibreswanPeer", "TrafficStatus",
           "libreswan_unavailable", "parse_trafficstatus", "render_ipsec_conf"]
