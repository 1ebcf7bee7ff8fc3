"""A QEMU micro-VM attached to one side of a test bed: a real Linux XFRM data plane.

The kernels of this project's machines have no ESP (``CONFIG_INET_ESP`` off, no
modules), so strongSwan there runs kernel-libipsec (userspace ESP, always UDP-
encapsulated, tunnel mode only) and Libreswan, whose data plane is XFRM only,
cannot install a Child SA at all.  :class:`MicroVm` boots Debian's stock kernel
in QEMU (TCG by default) and lets it take over one side of a topology:

* **file system**: the guest's root is the HOST's ``/`` shared read-only over
  virtio-9p (``cache=loose``: binaries are read once), so it runs exactly the
  host's charon, swanctl, pluto, ip and python; ``/run`` and ``/tmp`` are tmpfs in
  the guest, and the run's state directory (configs, logs, the command channel) is
  a second, read-write 9p share mounted at the same path as on the host;
* **network**: in the side's namespace the veth end ``eth0`` loses its addresses
  and is bridged (``vmbr0``) with a tap (``vmtap0``) that QEMU uses for a
  virtio-net NIC; the guest's ``eth0`` takes the side's outer addresses and its
  ``lo`` the inner ones, so to the other side the VM looks exactly like the
  namespace did (tcpdump on the namespace's ``eth0`` still sees every frame);
* **control**: the guest's PID 1 (:data:`GUEST_INIT`, bash from the host's root)
  runs the command files :meth:`MicroVm.run` / :meth:`MicroVm.spawn` drop into
  ``<vm dir>/cmd/`` (unix sockets do not work across 9p, so vici and pluto.ctl live
  on the guest's tmpfs and their clients run in the guest too);
* **kernel and modules**: ``scripts/install-vm-deps.sh`` extracts Debian's
  ``linux-image-*`` package (never installed) into ``$AIOIPSEC_VM_ROOT/kroot``;
  the initramfs (busybox + the virtio/9p modules, :data:`INITRAMFS_INIT`) is built
  here on first use and cached by content hash.  Under TCG every on-demand module
  load costs seconds, so the guest loads ESP, XFRM and the cipher modules at boot.

Bounded everywhere: boot (``boot_timeout``), every command (run with ``timeout`` in
the guest), halt (ACPI-less power-off through sysrq, then SIGTERM/SIGKILL of QEMU by
PID).  :meth:`MicroVm.halt` gives the namespace its addresses back.

Pitfalls (measured on this machine kind): a KVM guest hangs right after SeaBIOS on
these hosts although ``/dev/kvm`` opens (``AIOIPSEC_VM_ACCEL=kvm`` elsewhere); a
boot under TCG takes 10-25 s.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .certs import TestPki
from .netns import NamespaceProcess, Side, Topology
from .strongswan import (CHARON, SWANCTL, Connection, StrongSwanError, StrongSwanPeer,
                         render_strongswan_conf)

if TYPE_CHECKING:
    from .aioipsec_peer import AioipsecPeer
    from .libreswan import LibreswanPeer

VM_ROOT = Path(os.environ.get("AIOIPSEC_VM_ROOT", "/opt/aioipsec-vm"))
QEMU = Path(os.environ.get("AIOIPSEC_QEMU", "/usr/bin/qemu-system-x86_64"))
BUSYBOX = Path("/bin/busybox")
INSTALL_HINT = "run scripts/install-vm-deps.sh as root"
BRIDGE, TAP = "vmbr0", "vmtap0"

# Modules the guest loads at boot (ESP/XFRM and the algorithms the tests use);
# built-in ones are skipped by modprobe.
PRELOAD_MODULES = (
    "esp4 esp6 xfrm_user xfrm4_tunnel xfrm6_tunnel tunnel4 tunnel6 xfrm_interface af_key "
    "aesni_intel aes_generic gcm ghash_generic ccm ctr cbc chacha20poly1305 chacha_generic "
    "chacha_x86_64 poly1305_generic poly1305_x86_64 authenc authencesn echainiv seqiv hmac "
    "sha1_generic sha256_generic sha512_generic xcbc cmac des_generic"
)

# /init of the initramfs (busybox sh): load the virtio/9p modules, mount the host's
# root read-only over 9p, tmpfs on /run and /tmp, the run's state directory
# read-write at its host path, then switch_root into GUEST_INIT (run by the host's
# bash).  The state share stays uncached because host and guest both write there.
INITRAMFS_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod "/modules/$m" 2>/dev/null; done
for kv in $(cat /proc/cmdline); do
    case $kv in
        aio_state=*) STATE=${kv#aio_state=} ;;
        aio_init=*) INIT=${kv#aio_init=} ;;
    esac
done
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || { echo "aio: no host root"; poweroff -f; }
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mkdir -p "/newroot$STATE"
mount -t 9p -o "$opts,rw" aiostate "/newroot$STATE" || echo "aio: cannot mount the state dir"
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot /bin/bash "$INIT"
"""

# PID 1 of the guest (bash, from the host's root; path in the VM directory).
# Brings up the network from net.env, then serves command files: NAME.cmd is run
# (output NAME.out, exit code NAME.rc written last), NAME.bg is started in the
# background in its own session (its PID goes to NAME.pid).  A file "halt" powers
# the guest off.
GUEST_INIT = r"""# shellcheck shell=bash
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
for kv in $(cat /proc/cmdline); do
    case $kv in
        aio_vmdir=*) VMDIR=${kv#aio_vmdir=} ;;
        aio_root=*) ROOT=${kv#aio_root=} ;;
    esac
done
exec >"$VMDIR/guest-init.log" 2>&1
set -x
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
hostname aioipsec-vm
# the host has no /lib/modules: auto-loading goes through `modprobe -d <kroot>`
echo "$ROOT/modprobe-wrapper" >/proc/sys/kernel/modprobe
"$ROOT/modprobe-wrapper" -a @PRELOAD@
# shellcheck disable=SC1091
source "$VMDIR/net.env"
ip link set lo up
ip link set eth0 up
ip addr add "$VM_OUTER4" dev eth0
[[ -n ${VM_OUTER6:-} ]] && ip addr add "$VM_OUTER6" dev eth0 nodad
[[ -n ${VM_GATEWAY:-} ]] && ip route add default via "$VM_GATEWAY"
ip addr add "$VM_INNER4" dev lo
[[ -n ${VM_INNER6:-} ]] && ip addr add "$VM_INNER6" dev lo nodad
sysctl -q -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv6.conf.all.accept_dad=0
set +x
uname -r >"$VMDIR/ready.tmp" && mv "$VMDIR/ready.tmp" "$VMDIR/ready"
shopt -s nullglob
while :; do
    for f in "$VMDIR"/cmd/*.cmd; do
        n=${f%.cmd}
        bash "$f" >"$n.out" 2>&1 </dev/null
        echo $? >"$n.rc.tmp" && mv "$n.rc.tmp" "$n.rc"
        rm -f "$f"
    done
    for f in "$VMDIR"/cmd/*.bg; do
        n=${f%.bg}
        mv "$f" "$n.sh"
        setsid bash "$n.sh" >"$n.out" 2>&1 </dev/null &
        echo $! >"$n.pid.tmp" && mv "$n.pid.tmp" "$n.pid"
    done
    if [[ -e $VMDIR/halt ]]; then
        sync
        echo o >/proc/sysrq-trigger
    fi
    sleep 0.05
done
"""


class VmError(RuntimeError):
    """The VM could not be prepared, booted or driven, or a bounded wait ran out."""


def kernel_version(root: Path = VM_ROOT) -> str | None:
    mods = root / "kroot" / "lib" / "modules"
    try:
        versions = sorted(p.name for p in mods.iterdir())
    except OSError:
        return None
    return versions[0] if versions else None


def vm_unavailable(root: Path = VM_ROOT) -> str | None:
    """None if a micro-VM can be booted here, else the reason why not."""
    if os.geteuid() != 0:
        return "VM tests need root (network namespaces, tap devices, QEMU)"
    if str(root).startswith(("/tmp/", "/run/")):
        return f"AIOIPSEC_VM_ROOT={root} must not be below /tmp or /run (tmpfs in the guest)"
    for path in (QEMU, BUSYBOX, Path("/usr/bin/cpio"), Path("/usr/sbin/modprobe")):
        if not path.exists():
            return f"{path} is missing; {INSTALL_HINT}"
    kv = kernel_version(root)
    if kv is None or not (root / "kroot" / "boot" / f"vmlinuz-{kv}").exists():
        return f"no guest kernel in {root}/kroot; {INSTALL_HINT}"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (QEMU's tap device needs it)"
    return None


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def prepare(root: Path = VM_ROOT) -> tuple[Path, Path]:
    """(kernel image, initramfs): builds the initramfs and the modprobe wrapper on
    first use (cached by a hash of their inputs; safe against concurrent runs)."""
    reason = vm_unavailable(root)
    if reason is not None:
        raise VmError(reason)
    kv = kernel_version(root)
    assert kv is not None
    kroot = root / "kroot"
    wrapper = f'#!/bin/sh\nexec /usr/sbin/modprobe -d {kroot} "$@"\n'
    if not (root / "modprobe-wrapper").exists() or (root / "modprobe-wrapper").read_text() != wrapper:
        _write_atomic(root / "modprobe-wrapper", wrapper, 0o755)
    guest_init = GUEST_INIT.replace("@PRELOAD@", PRELOAD_MODULES)
    if not (root / "guest-init.sh").exists() or (root / "guest-init.sh").read_text() != guest_init:
        _write_atomic(root / "guest-init.sh", guest_init)

    deps = subprocess.run(
        ["modprobe", "-d", str(kroot), "-S", kv, "--show-depends", "-a",
         "virtio_pci", "9pnet_virtio", "9p", "virtio_net"],
        capture_output=True, text=True, timeout=30, check=False)
    modules: list[Path] = []
    for line in deps.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "insmod":
            p = Path(parts[1])
            if p.name not in {m.name for m in modules}:
                modules.append(p)
    if not any(m.name.startswith("9p.") for m in modules):
        raise VmError(f"modprobe -d {kroot} found no 9p module: {deps.stderr.strip()}")
    h = hashlib.sha256(INITRAMFS_INIT.encode())
    h.update(kv.encode())
    for m in modules:
        h.update(m.name.encode())
    initrd = root / f"initrd-{h.hexdigest()[:16]}.gz"
    if not initrd.exists():
        with tempfile.TemporaryDirectory(dir=root, prefix=".initramfs-") as tmp:
            b = Path(tmp)
            for d in ("bin", "modules", "proc", "sys", "dev", "newroot"):
                (b / d).mkdir()
            shutil.copy2(BUSYBOX, b / "bin" / "busybox")
            (b / "init").write_text(INITRAMFS_INIT)
            (b / "init").chmod(0o755)
            for m in modules:
                shutil.copy2(m, b / "modules" / m.name)
            (b / "modules.list").write_text("".join(m.name + "\n" for m in modules))
            out = root / f".{initrd.name}.{os.getpid()}.tmp"
            subprocess.run(f"find . | cpio -o -H newc --quiet | gzip -1 > {shlex.quote(str(out))}",
                           shell=True, cwd=b, check=True, timeout=60)
            os.replace(out, initrd)
    return kroot / "boot" / f"vmlinuz-{kv}", initrd


@dataclass
class VmResult:
    """What a command run in the guest returned."""

    argv: list[str]
    returncode: int
    output: str          # stdout and stderr, interleaved

    def check(self) -> VmResult:
        if self.returncode != 0:
            raise VmError(f"in the VM: {shlex.join(self.argv)} -> rc {self.returncode}\n"
                          f"{self.output[-3000:]}")
        return self


class MicroVm:
    """A QEMU micro-VM that takes over ``side`` of ``topology``.

    ``vm = MicroVm(topology, "right"); vm.boot()``; then :meth:`run` (a command,
    waited for), :meth:`spawn` (a daemon; returns its guest PID), :meth:`kill`,
    :meth:`alive`, :meth:`xfrm_state`; :meth:`halt` powers it off and gives the
    namespace its addresses back (also via the context manager).
    """

    def __init__(self, topology: Topology, side: str = "right", *, memory_mb: int = 512,
                 accel: str | None = None, root: Path = VM_ROOT) -> None:
        self.topology = topology
        self.side: Side = topology.side(side)
        self.ns = self.side.ns
        self.root = root
        self.memory_mb = memory_mb
        self.accel = accel or os.environ.get("AIOIPSEC_VM_ACCEL", "tcg")
        self.dir = topology.run_dir / f"{self.ns.name}-vm"
        self.process: NamespaceProcess | None = None
        self.boot_seconds: float | None = None
        self.kernel_release: str | None = None
        self._seq = 0
        self._addresses: list[tuple[str, str]] = []
        self._gateway: str | None = None

    def __repr__(self) -> str:
        return f"MicroVm({self.side.name}, {self.ns.name}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def cmd_dir(self) -> Path:
        return self.dir / "cmd"

    def qemu_alive(self) -> bool:
        return self.process is not None and self.process.alive()

    # -- boot / halt
    def _net_env(self) -> str:
        s, topo = self.side, self.topology
        lines = [f"VM_OUTER4={s.outer4}/24", f"VM_INNER4={s.inner4}/32", f"VM_INNER6={s.inner6}/128"]
        if s.outer6:
            lines.append(f"VM_OUTER6={s.outer6}/64")
        if topo.kind == "nat" and s.name == "left":
            lines.append("VM_GATEWAY=192.0.2.254")
        return "\n".join(lines) + "\n"

    def _take_over_interface(self) -> None:
        """Move the side's outer addresses from the namespace to the guest: bridge the
        veth end with a tap device for QEMU (remembered for :meth:`_give_back`)."""
        iface = self.side.iface
        out = self.ns.ip("-o", "addr", "show", "dev", iface).stdout
        self._addresses = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("inet", "inet6") and not parts[3].startswith("fe80"):
                self._addresses.append((parts[2], parts[3]))
        routes = self.ns.ip("route", "show", "default").stdout.split()
        self._gateway = routes[2] if len(routes) >= 3 and routes[0] == "default" else None
        self.ns.ip("addr", "flush", "dev", iface)
        self.ns.ip("link", "add", BRIDGE, "type", "bridge")
        self.ns.ip("link", "set", iface, "master", BRIDGE)
        self.ns.ip("tuntap", "add", TAP, "mode", "tap")
        self.ns.ip("link", "set", TAP, "master", BRIDGE)
        self.ns.ip("link", "set", TAP, "up")
        self.ns.ip("link", "set", BRIDGE, "up")

    def _give_back(self) -> None:
        if not self.ns.exists():
            return
        for dev in (TAP, BRIDGE):
            self.ns.run(["ip", "link", "del", dev], check=False)
        iface = self.side.iface
        for family, cidr in self._addresses:
            extra = ["nodad"] if family == "inet6" else []
            self.ns.run(["ip", "addr", "replace", cidr, "dev", iface, *extra], check=False)
        if self._gateway:
            self.ns.run(["ip", "route", "replace", "default", "via", self._gateway], check=False)
        self._addresses = []

    def boot(self, timeout: float = 90.0) -> float:
        """Start QEMU in the side's namespace and wait until the guest serves commands;
        returns the boot time in seconds."""
        if self.qemu_alive():
            raise VmError(f"{self} already running")
        kernel, initrd = prepare(self.root)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.cmd_dir.mkdir(parents=True)
        (self.dir / "net.env").write_text(self._net_env())
        if self.accel == "kvm":
            accel = ["-enable-kvm", "-cpu", "host"]
        elif self.accel == "tcg":
            accel = ["-accel", "tcg,thread=multi", "-cpu", "max"]
        else:
            raise VmError(f"AIOIPSEC_VM_ACCEL must be tcg or kvm, not {self.accel!r}")
        mac = "52:54:00:00:00:02" if self.side.name == "right" else "52:54:00:00:00:01"
        append = (f"console=ttyS0 {os.environ.get('AIOIPSEC_VM_KERNEL_ARGS', 'quiet')} panic=-1 "
                  f"aio_state={self.topology.run_dir} aio_vmdir={self.dir} aio_root={self.root} "
                  f"aio_init={self.root / 'guest-init.sh'}")
        argv = [str(QEMU), *accel, "-smp", "1", "-m", str(self.memory_mb),
                "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-monitor", "none",
                "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
                "-serial", f"file:{self.dir / 'console.log'}",
                # multidevs=remap: / spans several file systems (QEMU warns of inode
                # number collisions otherwise)
                "-fsdev", "local,id=hostroot,path=/,security_model=passthrough,readonly=on,"
                          "multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
                "-fsdev", f"local,id=aiostate,path={self.topology.run_dir},security_model=passthrough,"
                          "multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=aiostate,mount_tag=aiostate",
                "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile="]
        self._take_over_interface()
        t0 = time.monotonic()
        try:
            self.process = self.ns.popen(argv, log=self.dir / "qemu.out")
            ready = self.dir / "ready"
            deadline = t0 + timeout
            while not ready.exists():
                if not self.qemu_alive():
                    raise VmError(f"QEMU exited during boot:\n{self.diagnostics()}")
                if time.monotonic() > deadline:
                    raise VmError(f"VM did not boot within {timeout}s:\n{self.diagnostics()}")
                time.sleep(0.1)
        except BaseException:
            self.halt()
            raise
        self.boot_seconds = time.monotonic() - t0
        self.kernel_release = (self.dir / "ready").read_text().strip()
        return self.boot_seconds

    def diagnostics(self, lines: int = 25) -> str:
        parts = []
        for name in ("qemu.out", "console.log", "guest-init.log"):
            p = self.dir / name
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def halt(self, timeout: float = 15.0) -> None:
        """Power the guest off (QEMU exits), else stop QEMU by PID; restore the side."""
        if self.process is not None:
            if self.process.alive() and (self.dir / "ready").exists():
                (self.dir / "halt").touch()
                deadline = time.monotonic() + timeout
                while self.process.alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
            self.process.stop(grace=5.0)
        self._give_back()

    def __enter__(self) -> MicroVm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt()

    # -- commands
    def _name(self) -> Path:
        self._seq += 1
        return self.cmd_dir / f"{time.monotonic_ns()}-{os.getpid()}-{self._seq}"

    @staticmethod
    def _script(argv: Sequence[str], env: Mapping[str, str] | None) -> str:
        prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
        return shlex.join([*prefix, *argv])

    def run(self, argv: Sequence[str], *, timeout: float = 30.0,
            env: Mapping[str, str] | None = None, check: bool = False) -> VmResult:
        """Run ``argv`` in the guest (killed after ``timeout`` s) and return its result."""
        if not self.qemu_alive():
            raise VmError(f"{self} is not running")
        n = self._name()
        secs = max(1, int(timeout))
        script = f"exec timeout -k 2 {secs} {self._script(argv, env)}\n"
        tmp = n.with_suffix(".tmp")
        tmp.write_text(script)
        os.replace(tmp, n.with_suffix(".cmd"))
        rc_path = n.with_suffix(".rc")
        deadline = time.monotonic() + secs + 15   # the guest may still be busy with others
        while not rc_path.exists():
            if not self.qemu_alive():
                raise VmError(f"QEMU died while running {shlex.join(argv)}:\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise VmError(f"no answer from the VM for {shlex.join(argv)} after {secs + 15}s")
            time.sleep(0.02)
        rc = int(rc_path.read_text().strip() or "255")
        out_path = n.with_suffix(".out")
        output = out_path.read_text(errors="replace") if out_path.exists() else ""
        rc_path.unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)
        result = VmResult(list(argv), rc, output)
        return result.check() if check else result

    def sh(self, command: str, *, timeout: float = 30.0, check: bool = True) -> str:
        """Run a shell command line in the guest; return its output."""
        return self.run(["bash", "-c", command], timeout=timeout, check=check).output

    def spawn(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              timeout: float = 20.0) -> int:
        """Start ``argv`` in the background in the guest (own session, output to ``log``,
        a path in the run directory); returns its PID in the guest."""
        if not self.qemu_alive():
            raise VmError(f"{self} is not running")
        n = self._name()
        script = f"exec {self._script(argv, env)} >{shlex.quote(str(log))} 2>&1\n"
        tmp = n.with_suffix(".tmp")
        tmp.write_text(script)
        os.replace(tmp, n.with_suffix(".bg"))
        pid_path = n.with_suffix(".pid")
        deadline = time.monotonic() + timeout
        while not pid_path.exists():
            if time.monotonic() > deadline or not self.qemu_alive():
                raise VmError(f"the VM did not start {shlex.join(argv)}")
            time.sleep(0.02)
        return int(pid_path.read_text().strip())

    def alive(self, pid: int) -> bool:
        """True if guest process ``pid`` exists and is not a zombie."""
        if not self.qemu_alive():
            return False
        r = self.run(["cat", f"/proc/{pid}/stat"], timeout=10)
        return r.returncode == 0 and r.output.rsplit(")", 1)[-1].split()[:1] != ["Z"]

    def kill(self, pid: int, grace: float = 5.0) -> None:
        """Stop guest process ``pid``: SIGTERM, then SIGKILL after ``grace`` s."""
        if not self.qemu_alive():
            return
        tries = max(1, int(grace / 0.1))
        self.sh(f"kill {pid} 2>/dev/null || exit 0; for i in $(seq {tries}); do "
                f"kill -0 {pid} 2>/dev/null || exit 0; sleep 0.1; done; kill -9 {pid}",
                timeout=grace + 10, check=False)

    # -- kernel state
    def xfrm_state(self) -> list[XfrmState]:
        """The guest kernel's SAs (``ip -s xfrm state``), with counters."""
        return parse_xfrm_state(self.run(["ip", "-s", "xfrm", "state"], check=True).output)

    def xfrm_policy(self) -> str:
        return self.run(["ip", "xfrm", "policy"], check=True).output

    def xfrm_stats(self) -> dict[str, int]:
        """The guest kernel's XFRM error counters (``/proc/net/xfrm_stat``)."""
        out = self.run(["cat", "/proc/net/xfrm_stat"], check=True).output
        return {k: int(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}

    def ping(self, dest: str, *, source: str, count: int = 3) -> tuple[int, int]:
        """Bounded ping from the guest; (sent, received)."""
        r = self.run(["ping", "-c", str(count), "-i", "0.2", "-W", "2", "-I", source, dest],
                     timeout=count + 10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", r.output)
        if m is None:
            return 0, 0
        return int(m.group(1)), int(m.group(2))

    def flush_xfrm(self) -> None:
        """Remove every SA and policy (what a stopped IKE daemon left behind)."""
        self.run(["ip", "xfrm", "state", "flush"], check=False)
        self.run(["ip", "xfrm", "policy", "flush"], check=False)


# ---------------------------------------------------------------------------
# a session's VM test bed, and which VM tests run

VM_TESTS_ENV = "AIOIPSEC_VM_TESTS"


def vm_tests_skip_reason(*, smoke: bool) -> str | None:
    """Why a VM test is not selected (None: run it).

    ``AIOIPSEC_VM_TESTS=1`` runs every VM test, ``0`` none; unset, only the smoke
    case runs (one boot, ~40 s under TCG) - and only where the VM's dependencies are
    installed, which ``scripts/install-system-deps.sh`` does unless the variable is 0.
    """
    mode = os.environ.get(VM_TESTS_ENV, "").strip()
    if mode == "1":
        return None
    if mode == "0":
        return f"VM tests disabled ({VM_TESTS_ENV}=0)"
    if smoke:
        return None
    return (f"VM test not in the default selection: set {VM_TESTS_ENV}=1 to run all "
            "micro-VM interop tests (QEMU/TCG boot ~15-20 s, ~10 s per case)")


class VmBed:
    """A VM test bed shared by the tests that need one: its own topology (``direct``
    or ``nat``) with a :class:`MicroVm` on the right, created and booted on first use
    (:meth:`get`; a test asking for the other kind replaces it) and halted (topology
    deleted) by :meth:`close` - which the conftest calls as soon as the next test does
    not need the VM (an idle TCG guest still costs about a third of a core).  A failed
    boot is remembered, not retried."""

    def __init__(self, run_dir: Path, side: str = "right") -> None:
        self.run_dir = run_dir
        self.side = side
        self.topology: Topology | None = None
        self.vm: MicroVm | None = None
        self.error: str | None = None
        self.boots: list[float] = []

    def get(self, kind: str = "direct") -> MicroVm:
        if self.error is not None:
            raise VmError(f"the VM failed to boot earlier in this session: {self.error}")
        if (self.vm is not None and self.vm.qemu_alive() and self.topology is not None
                and self.topology.kind == kind):
            return self.vm
        self.close()
        from .netns import create_topology

        try:
            self.topology = create_topology(kind, run_dir=self.run_dir)
            self.vm = MicroVm(self.topology, self.side)
            self.boots.append(self.vm.boot())
        except BaseException as exc:
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.close()
            raise
        return self.vm

    def close(self) -> None:
        if self.vm is not None:
            self.vm.halt()
            self.vm = None
        if self.topology is not None:
            self.topology.destroy()
            self.topology = None


# ---------------------------------------------------------------------------
# charon in the guest (kernel-netlink: the guest kernel's XFRM holds the SAs)

class VmStrongSwanPeer(StrongSwanPeer):
    """A :class:`~.strongswan.StrongSwanPeer` whose charon runs inside ``vm`` with the
    ``kernel-netlink`` data plane (real XFRM: plain ESP or ESP-in-UDP as negotiated,
    tunnel or transport mode; SAs and counters in :meth:`MicroVm.xfrm_state`).

    Its files stay in the run directory (the guest sees it at the same path); the vici
    socket is on the guest's tmpfs and swanctl runs in the guest.  :meth:`stop` kills
    charon by its guest PID and flushes the guest's SAs and policies, so the VM can
    host the next peer.
    """

    def __init__(self, vm: MicroVm, *, log_keys: bool = False,
                 debug: Mapping[str, int] | None = None, retransmit_tries: int = 3) -> None:
        super().__init__(vm.topology, vm.side.name, log_keys=log_keys, debug=debug,
                         dataplane="kernel", retransmit_tries=retransmit_tries)
        self.vm = vm
        self.guest_pid: int | None = None

    def __repr__(self) -> str:
        return f"VmStrongSwanPeer({self.side.name}, guest pid={self.guest_pid})"

    @property
    def name(self) -> str:
        return f"strongswan-vm-{self.side.name}"

    @property
    def vici(self) -> Path:
        return Path(f"/run/aioipsec-{self.dir.name}.vici")

    @property
    def pid(self) -> int | None:
        return self.guest_pid

    def configure(self, conn: Connection, pki: TestPki | None = None) -> None:
        super().configure(conn, pki)
        if conn.profile.mode == "transport":
            # host-to-host: the traffic selectors are the outer addresses (swanctl's
            # default "dynamic"), not the inner subnets the shared template renders
            path = self.swanctl_dir / "swanctl.conf"
            lines = [line for line in path.read_text().splitlines()
                     if not line.strip().startswith(("local_ts =", "remote_ts ="))]
            path.write_text("\n".join(lines) + "\n")

    def alive(self) -> bool:
        return self.guest_pid is not None and self.vm.alive(self.guest_pid)

    def start(self, timeout: float = 60.0) -> None:
        """Start charon in the guest, wait until vici answers, load the config."""
        if self.guest_pid is not None and self.alive():
            raise StrongSwanError(f"{self} already running")
        self.conf.write_text(render_strongswan_conf(
            logfile=self.log_path, vici=self.vici, dataplane=self.dataplane,
            log_keys=self.log_keys, debug=self.debug, retransmit_tries=self.retransmit_tries))
        self.vm.run(["rm", "-f", str(self.vici)])
        self.guest_pid = self.vm.spawn([str(CHARON)], log=self.dir / "charon.stdout",
                                       env={"STRONGSWAN_CONF": str(self.conf)})
        deadline = time.monotonic() + timeout
        while self._swanctl(["--stats"], check=False, timeout=10).returncode != 0:
            if not self.vm.alive(self.guest_pid):
                raise StrongSwanError(f"charon exited in the VM: {self._tail()}")
            if time.monotonic() > deadline:
                raise StrongSwanError(f"charon not answering in the VM after {timeout}s: "
                                      f"{self._tail()}")
            time.sleep(0.2)
        if self.connection is not None:
            self.load()

    def stop(self, grace: float = 5.0) -> None:
        if self.guest_pid is not None:
            self.vm.kill(self.guest_pid, grace)
            self.vm.flush_xfrm()
            self.guest_pid = None

    def _swanctl(self, args: Sequence[str], *, check: bool = True,
                 timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        r = self.vm.run([str(SWANCTL), *args], timeout=timeout,
                        env={"STRONGSWAN_CONF": str(self.conf),
                             "SWANCTL_DIR": str(self.swanctl_dir)})
        proc = subprocess.CompletedProcess([str(SWANCTL), *args], r.returncode, r.output, "")
        if check and r.returncode != 0:
            raise StrongSwanError(f"swanctl {' '.join(args)} (VM) -> rc {r.returncode}\n{r.output}")
        return proc


# ---------------------------------------------------------------------------
# the peers of one VM test

# Under TCG the guest takes 1-3 s to answer IKE_AUTH (it installs the SAs first):
# aioipsec's default interop budget (3 retransmits, ~4.4 s) is too tight for that.
VM_RETRANSMIT_TRIES = 6


class VmPeers:
    """The peers of one test: charon or pluto in the VM, aioipsec daemons on the other
    side (the VM's topology); :meth:`stop_all` stops them (by PID) in reverse order."""

    def __init__(self, vm: MicroVm) -> None:
        self.vm = vm
        self.topology = vm.topology
        self.started: list[object] = []

    def strongswan(self, conn: Connection, **kwargs: object) -> VmStrongSwanPeer:
        peer = VmStrongSwanPeer(self.vm, **kwargs)  # type: ignore[arg-type]
        self.started.append(peer)
        peer.configure(conn)
        peer.start()
        return peer

    def libreswan(self, conn: Connection, **kwargs: object) -> LibreswanPeer:
        from .libreswan import LibreswanPeer

        peer = LibreswanPeer(self.vm, **kwargs)  # type: ignore[arg-type]
        self.started.append(peer)
        peer.configure(conn)
        peer.start()
        return peer

    def aioipsec(self, conn: Connection, side: str | None = None) -> AioipsecPeer:
        """``python -m aioipsec daemon`` on the side opposite the VM (TUN + raw ESP)."""
        from .aioipsec_peer import AioipsecPeer

        side = side or self.topology.other(self.vm.side.name).name
        peer = AioipsecPeer(self.topology, side)
        self.started.append(peer)
        peer.configure(conn)
        text = peer.config_path.read_text()
        patched = re.sub(r"(?m)^retransmit_tries = \d+$",
                         f"retransmit_tries = {VM_RETRANSMIT_TRIES}", text)
        peer.config_path.write_text(patched)
        peer.start()
        return peer

    def stop_all(self) -> None:
        for peer in reversed(self.started):
            peer.stop()  # type: ignore[attr-defined]

    def log_tails(self, lines: int = 60) -> str:
        out = []
        for peer in self.started:
            tail = "\n".join(peer.logs().splitlines()[-lines:])  # type: ignore[attr-defined]
            out.append(f"\n----- {peer.name} ({peer.dir}) log tail -----\n{tail}")  # type: ignore[attr-defined]
        out.append(f"\n----- VM ({self.vm.dir}) -----\n{self.vm.diagnostics(10)}")
        return "\n".join(out)


# ---------------------------------------------------------------------------
# ip -s xfrm state

@dataclass(frozen=True)
class XfrmState:
    """One SA of the guest kernel as ``ip -s xfrm state`` shows it."""

    src: str
    dst: str
    proto: str
    spi: int
    mode: str
    algorithms: tuple[str, ...]     # e.g. ("aead rfc4106(gcm(aes))",) or ("enc cbc(aes)", "auth-trunc hmac(sha256)")
    encap: str | None               # "espinudp sport 4500 dport 4500 ..." or None
    bytes: int
    packets: int
    raw: str


_XFRM_HEAD = re.compile(r"^src (\S+) dst (\S+)$")
_XFRM_PROTO = re.compile(r"proto (\S+) spi 0x([0-9a-f]+)\S* .*?mode (\S+)")
_XFRM_ALG = re.compile(r"^\s*(aead|enc|auth|auth-trunc|comp) (\S+)")
_XFRM_COUNT = re.compile(r"^\s*(\d+)\(bytes\), (\d+)\(packets\)")


def parse_xfrm_state(text: str) -> list[XfrmState]:
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if _XFRM_HEAD.match(line):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    states = []
    for block in blocks:
        m = _XFRM_HEAD.match(block[0])
        assert m is not None
        body = "\n".join(block)
        p = _XFRM_PROTO.search(body)
        if p is None:
            continue
        algs = tuple(f"{a.group(1)} {a.group(2)}" for line in block
                     if (a := _XFRM_ALG.match(line)) is not None)
        encap = next((line.strip()[len("encap type "):] for line in block
                      if line.strip().startswith("encap type ")), None)
        nbytes = npackets = 0
        in_current = False
        for line in block:
            if line.strip() == "lifetime current:":
                in_current = True
                continue
            c = _XFRM_COUNT.match(line)
            if in_current and c:
                nbytes, npackets = int(c.group(1)), int(c.group(2))
                break
        states.append(XfrmState(m.group(1), m.group(2), p.group(1), int(p.group(2), 16),
                                p.group(3), algs, encap, nbytes, npackets, body))
    return states


__all__ = ["INSTALL_HINT", "MicroVm", "VM_ROOT", "VM_TESTS_ENV", "VmBed", "VmError", "VmResult",
           "VmPeers", "VmStrongSwanPeer", "XfrmState", "vm_tests_skip_reason",
           "kernel_version", "parse_xfrm_state", "prepare", "vm_unavailable"]
