"""Network-namespace test beds for the interop tests, with a per-run prefix.

Two topologies (documentation address ranges only)::

    direct                                       nat
    L  eth0 192.0.2.1/24 ===== eth0 192.0.2.2/24 R    L eth0 192.0.2.1 == 192.0.2.254 [N] 198.51.100.254 == 198.51.100.2 R
          2001:db8:1::1/64       2001:db8:1::2            (N: iptables MASQUERADE, UDP ports rewritten to 40000-49999)

    inner ("protected") addresses on lo, reachable only through a tunnel:
      left  203.0.113.1   in 203.0.113.0/25     2001:db8:a::1 in 2001:db8:a::/64
      right 203.0.113.129 in 203.0.113.128/25   2001:db8:b::1 in 2001:db8:b::/64

(The kernels of this machine kind have no ``dummy`` driver, so the inner
addresses live on ``lo``.)

Every namespace is named ``<prefix><n>-<role>`` with a per-run prefix such as
``aio1f2e-`` (``aio`` + the pytest process id in hex), so parallel runs never
collide.  Veth ends are created directly inside their namespaces: nothing
appears in the host namespace.  Everything created is recorded in the run's
state directory before it is created, so that

* :meth:`Topology.destroy` (context manager exit, pytest finalizer) removes
  the processes (by PID), the namespaces and with them the interfaces, routes,
  TUN devices and iptables rules;
* an :mod:`atexit` hook does the same for whatever a crashed test left;
* :func:`cleanup_stale_runs` removes what a *killed* run (its process id no
  longer alive) left behind, at the start of the next session.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path(os.environ.get("AIOIPSEC_INTEROP_STATE", "/tmp/aioipsec-interop"))
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
DEFAULT_TIMEOUT = 10.0

_lock = threading.Lock()
_counter = 0


class NetnsError(RuntimeError):
    """A command that builds or drives the test bed failed."""


def run_prefix(pid: int | None = None) -> str:
    """The namespace prefix of the run with process id ``pid`` (default: this one)."""
    return f"aio{(os.getpid() if pid is None else pid):x}-"


def _run(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, check: bool = True,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} -> rc {proc.returncode}: {proc.stderr.strip()}")
    return proc


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the field after the parenthesised comm (which may contain spaces)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_pid(pid: int, *, grace: float = 5.0, popen: subprocess.Popen[Any] | None = None) -> None:
    """Stop one process we started, by PID: SIGTERM, wait ``grace`` s, SIGKILL; reap it."""
    def gone() -> bool:
        if popen is not None:
            return popen.poll() is not None
        return not pid_alive(pid)

    if not gone():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not gone():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if popen is not None:
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns() -> list[str]:
    proc = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _libc_setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _namespace_entry(ns_path: str, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Body of :meth:`Namespace.spawn`'s child: enter the namespace, run ``target``."""
    import asyncio
    import inspect

    fd = os.open(ns_path, os.O_RDONLY)
    try:
        _libc_setns(fd)
    finally:
        os.close(fd)
    result = target(*args)
    if inspect.isawaitable(result):
        asyncio.run(_as_coroutine(result))


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


@dataclass
class NamespaceProcess:
    """A process started inside a namespace; stopped by PID."""

    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        stop_pid(self.pid, grace=grace, popen=self.popen)
        return self.popen.returncode

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        """The process's combined stdout/stderr (when started with a log file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


@dataclass
class SpawnedProcess:
    """A Python callable / coroutine function running in a child process in a namespace."""

    process: multiprocessing.process.BaseProcess

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, grace: float = 5.0) -> int | None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(grace)
        return self.process.exitcode

    def join(self, timeout: float) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode


class Namespace:
    """One network namespace of a test bed (``ip netns``), and the processes started in it."""

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.processes: list[NamespaceProcess | SpawnedProcess] = []

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        return netns_exists(self.name)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (bounded by ``timeout``)."""
        return _run(self.exec_argv(argv), timeout=timeout, check=check, input=input)

    def popen(self, argv: Sequence[str], *, log: Path | None = None,
              env: dict[str, str] | None = None) -> NamespaceProcess:
        """Start a command in the namespace in the background; stopped by PID at teardown.

        ``ip netns exec`` execs the command, so the recorded PID is the command's own.
        Output goes to ``log`` (default: a file in the run directory).
        """
        if log is None:
            log = self.run_dir / f"{self.name}-{Path(argv[0]).name}-{len(self.processes)}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(log, "wb") as out:
            popen = subprocess.Popen(self.exec_argv(argv), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env)
        proc = NamespaceProcess(list(argv), popen, log)
        self.processes.append(proc)
        _record(self.run_dir, "pids", str(popen.pid))
        return proc

    def python(self, args: Sequence[str], *, log: Path | None = None,
               env: dict[str, str] | None = None) -> NamespaceProcess:
        """Start this interpreter (the project's venv) in the namespace: ``python ARGS``.

        E.g. ``ns.python(["-m", "aioipsec", "daemon", "-c", str(conf)])``.
        """
        return self.popen([sys.executable, *args], log=log, env=env)

    def spawn(self, target: Callable[..., Any], *args: Any) -> SpawnedProcess:
        """Run ``target(*args)`` in a new Python process inside the namespace.

        ``target`` must be importable (module level); if it returns an awaitable (a
        coroutine function), the child runs it with :func:`asyncio.run`.
        """
        ctx = multiprocessing.get_context("spawn")
        process = ctx.Process(target=_namespace_entry, args=(str(self.path), target, args),
                              daemon=True)
        process.start()
        spawned = SpawnedProcess(process)
        self.processes.append(spawned)
        _record(self.run_dir, "pids", str(process.pid))
        return spawned

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Move the *calling thread* into the namespace for the ``with`` block.

        Sockets created inside the block stay in the namespace after it; use it to open
        sockets for in-process asyncio code.  Not for blocks that start threads.
        """
        with open("/proc/thread-self/ns/net", "rb") as home, open(self.path, "rb") as target:
            _libc_setns(target.fileno())
            try:
                yield
            finally:
                _libc_setns(home.fileno())

    def pids(self) -> list[int]:
        """Every process living in this namespace (``ip netns pids``)."""
        proc = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def sysctl(self, *settings: str) -> None:
        self.run(["sysctl", "-q", "-w", *settings])

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "-n", self.name, *args])

    def stop_processes(self) -> None:
        """Stop our processes (by PID), then anything else still inside the namespace."""
        for proc in reversed(self.processes):
            proc.stop()
        if self.exists():
            for pid in self.pids():
                if pid != os.getpid():
                    stop_pid(pid)


@dataclass(frozen=True)
class Side:
    """One end of a topology as its own IKE daemon sees it."""

    name: str                 # "left" / "right"
    ns: Namespace
    outer4: str               # local outer IPv4 address
    outer6: str | None        # local outer IPv6 address (direct topology only)
    inner4: str               # protected address on lo
    inner_net4: str           # protected subnet (traffic selector)
    inner6: str
    inner_net6: str
    fqdn: str
    iface: str = "eth0"


@dataclass
class Topology:
    """A test bed: left and right (and a NAT router) namespaces."""

    kind: str                         # "direct" or "nat"
    prefix: str
    run_dir: Path
    left: Side
    right: Side
    nat: Namespace | None = None
    destroyed: bool = field(default=False, init=False)

    @property
    def namespaces(self) -> list[Namespace]:
        return [ns for ns in (self.left.ns, self.nat, self.right.ns) if ns is not None]

    def side(self, name: str) -> Side:
        if name not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', not {name!r}")
        return self.left if name == "left" else self.right

    def other(self, name: str) -> Side:
        return self.right if name == "left" else self.left

    def remote_addrs_seen_by(self, name: str) -> str:
        """The peer address a side's IKE daemon should accept: behind the NAT, right sees
        left as the NAT router's address (with rewritten ports), so it accepts any."""
        if self.kind == "nat" and name == "right":
            return "%any"
        return self.other(name).outer4

    def destroy(self) -> None:
        """Stop every process in the namespaces (by PID) and delete the namespaces."""
        if self.destroyed:
            return
        for ns in self.namespaces:
            ns.stop_processes()
        for ns in self.namespaces:
            if ns.exists():
                _run(["ip", "netns", "del", ns.name], check=False)
        self.destroyed = True
        _forget(self)

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


# ---------------------------------------------------------------------------
# bookkeeping: what this run created (for destroy, atexit and stale cleanup)

_live: list[Topology] = []


def _record(run_dir: Path, what: str, value: str) -> None:
    with open(run_dir / f"{what}.txt", "a") as f:
        f.write(value + "\n")


def _forget(topology: Topology) -> None:
    with _lock:
        if topology in _live:
            _live.remove(topology)


@atexit.register
def _destroy_all_at_exit() -> None:
    for topology in list(_live):
        try:
            topology.destroy()
        except Exception as exc:  # noqa: BLE001 - best effort at interpreter exit
            print(f"interop: cleanup of {topology.prefix} failed: {exc}", file=sys.stderr)


def make_run_dir(prefix: str | None = None) -> Path:
    """The state directory of this run (logs, configs, pid and namespace records)."""
    prefix = prefix or run_prefix()
    run_dir = STATE_ROOT / prefix.rstrip("-")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def cleanup_stale_runs(*, remove_dirs: bool = True) -> list[str]:
    """Remove what runs that are no longer alive left behind.

    Only namespaces recorded in a dead run's ``namespaces.txt`` (and processes living in
    them) are touched.  Returns the namespaces deleted.
    """
    removed: list[str] = []
    if not STATE_ROOT.is_dir():
        return removed
    for run_dir in STATE_ROOT.iterdir():
        name = run_dir.name
        if not (run_dir.is_dir() and name.startswith("aio")):
            continue
        try:
            pid = int(name[3:], 16)
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        records = run_dir / "namespaces.txt"
        names = records.read_text().split() if records.exists() else []
        for ns_name in names:
            if not netns_exists(ns_name):
                continue
            ns = Namespace(ns_name, run_dir)
            for p in ns.pids():
                stop_pid(p)
            _run(["ip", "netns", "del", ns_name], check=False)
            removed.append(ns_name)
        if remove_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)
    return removed


# ---------------------------------------------------------------------------
# building

def _new_namespace(name: str, run_dir: Path) -> Namespace:
    _record(run_dir, "namespaces", name)       # recorded *before* it exists
    _run(["ip", "netns", "add", name])
    ns = Namespace(name, run_dir)
    ns.ip("link", "set", "lo", "up")
    # deterministic regardless of host defaults: no reverse-path filtering (decapsulated
    # packets arrive on ipsec0), no IPv6 duplicate address detection delay
    ns.sysctl("net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
              "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
              "net.ipv6.conf.all.disable_ipv6=0")
    return ns


def _veth(a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
    _run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth",
          "peer", "name", b_if, "netns", b.name])
    a.ip("link", "set", a_if, "up")
    b.ip("link", "set", b_if, "up")


def create_topology(kind: str = "direct", *, prefix: str | None = None,
                    run_dir: Path | None = None) -> Topology:
    """Create a ``direct`` or ``nat`` test bed; destroy it with :meth:`Topology.destroy`
    (or use it as a context manager).  Partially built beds are removed on error."""
    global _counter
    if kind not in ("direct", "nat"):
        raise ValueError(f"kind must be 'direct' or 'nat', not {kind!r}")
    prefix = prefix or run_prefix()
    run_dir = run_dir or make_run_dir(prefix)
    with _lock:
        _counter += 1
        base = f"{prefix}{_counter}-"
    names = {role: f"{base}{role}" for role in ("left", "right", "nat")}
    created: list[Namespace] = []
    topology: Topology | None = None
    try:
        left_ns = _new_namespace(names["left"], run_dir)
        created.append(left_ns)
        right_ns = _new_namespace(names["right"], run_dir)
        created.append(right_ns)
        left_ns.ip("addr", "add", "203.0.113.1/32", "dev", "lo")
        right_ns.ip("addr", "add", "203.0.113.129/32", "dev", "lo")
        left_ns.ip("addr", "add", "2001:db8:a::1/128", "dev", "lo", "nodad")
        right_ns.ip("addr", "add", "2001:db8:b::1/128", "dev", "lo", "nodad")
        nat_ns: Namespace | None = None
        if kind == "direct":
            _veth(left_ns, "eth0", right_ns, "eth0")
            left_ns.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
            right_ns.ip("addr", "add", "192.0.2.2/24", "dev", "eth0")
            left_ns.ip("addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad")
            right_ns.ip("addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
            left_outer, right_outer = "192.0.2.1", "192.0.2.2"
            left6: str | None = "2001:db8:1::1"
            right6: str | None = "2001:db8:1::2"
        else:
            nat_ns = _new_namespace(names["nat"], run_dir)
            created.append(nat_ns)
            _veth(left_ns, "eth0", nat_ns, "eth-left")
            _veth(right_ns, "eth0", nat_ns, "eth-right")
            left_ns.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
            nat_ns.ip("addr", "add", "192.0.2.254/24", "dev", "eth-left")
            nat_ns.ip("addr", "add", "198.51.100.254/24", "dev", "eth-right")
            right_ns.ip("addr", "add", "198.51.100.2/24", "dev", "eth0")
            # left reaches right through the NAT; right has no route back to 192.0.2.0/24
            left_ns.ip("route", "add", "default", "via", "192.0.2.254")
            nat_ns.sysctl("net.ipv4.ip_forward=1")
            # port-changing source NAT, like real NATs: 500 -> 4xxxx, 4500 -> 4xxxx
            nat_ns.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth-right",
                        "-p", "udp", "-j", "MASQUERADE", "--to-ports", "40000-49999"])
            nat_ns.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth-right",
                        "-j", "MASQUERADE"])
            left_outer, right_outer = "192.0.2.1", "198.51.100.2"
            left6 = right6 = None
        left = Side("left", left_ns, left_outer, left6, "203.0.113.1", "203.0.113.0/25",
                    "2001:db8:a::1", "2001:db8:a::/64", "left.interop.example")
        right = Side("right", right_ns, right_outer, right6, "203.0.113.129",
                     "203.0.113.128/25", "2001:db8:b::1", "2001:db8:b::/64",
                     "right.interop.example")
        topology = Topology(kind, prefix, run_dir, left, right, nat_ns)
        with _lock:
            _live.append(topology)
        return topology
    except BaseException:
        for ns in created:
            ns.stop_processes()
            _run(["ip", "netns", "del", ns.name], check=False)
        raise


def netns_usable() -> str | None:
    """None if namespaces and veths can be created here, else the reason why not."""
    if os.geteuid() != 0:
        return "interop tests need root (network namespaces, veth, TUN)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed; run scripts/install-system-deps.sh as root"
    name = f"{run_prefix()}probe"
    try:
        _run(["ip", "netns", "add", name])
        try:
            _run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        finally:
            _run(["ip", "netns", "del", name], check=False)
    except NetnsError as exc:
        return f"ip netns is unusable here: {exc}"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (strongSwan's kernel-libipsec needs TUN)"
    return None
