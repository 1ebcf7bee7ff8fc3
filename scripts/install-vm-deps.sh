#!/usr/bin/env bash
# install-vm-deps.sh - what the micro-VM interop tests need (tests/interop/vm.py,
# test_kernel_xfrm.py, test_libreswan.py; run with AIOIPSEC_VM_TESTS=1).
#
#   bash scripts/install-vm-deps.sh
#
# The kernels of this project's machines have no ESP (CONFIG_INET_ESP off, no
# modules), so the tests that need a real Linux XFRM data plane, and Libreswan
# (whose data plane is XFRM only), run the peer in a QEMU micro-VM booting
# Debian's stock kernel with the HOST's root file system shared read-only over
# 9p.  This script, idempotent, as root:
#
#  1. apt-get installs qemu-system-x86, busybox-static (the initramfs), kmod
#     (depmod/modprobe -d), cpio, and libnss3-tools (certutil: pluto wants an
#     NSS database);
#  2. downloads Debian's kernel image package (the one behind
#     linux-image-amd64) with `apt-get download` and extracts it with
#     `dpkg -x` into $AIOIPSEC_VM_ROOT/kroot - never installed - keeping only
#     the module directories a network-only guest uses (~400 MB -> ~90 MB),
#     then runs depmod there;
#  3. downloads Debian's libreswan package and extracts it into
#     $AIOIPSEC_VM_ROOT/libreswan - never installed: Debian's libreswan
#     conflicts with strongSwan's packages and apt would remove strongSwan -
#     then installs the shared libraries its Depends line names (lib*, so the
#     list follows the Debian release) and checks pluto with ldd.
#
# AIOIPSEC_VM_ROOT defaults to /opt/aioipsec-vm; it must not be below /tmp or
# /run (the guest mounts its own tmpfs there).  The initramfs is built by
# tests/interop/vm.py itself (its init scripts live there).
# Not root, or no apt-get: prints why and exits 0 (the VM tests then skip with
# the reason).  Exits 1 only when it is root with apt-get and a step fails.
set -o errexit -o nounset -o pipefail

log() { printf '[install-vm-deps] %s\n' "$*"; }

ROOT=${AIOIPSEC_VM_ROOT:-/opt/aioipsec-vm}
case $ROOT in
    /tmp/*|/run/*) log "ERROR: AIOIPSEC_VM_ROOT must not be below /tmp or /run"; exit 1 ;;
esac

if [[ $(id -u) -ne 0 ]]; then
    log "not root: cannot install the VM dependencies (VM tests will skip)"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    log "no apt-get on this system (VM tests will skip)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive

# --- 1. packages --------------------------------------------------------------
declare -A NEED=(
    [/usr/bin/qemu-system-x86_64]=qemu-system-x86
    [/bin/busybox]=busybox-static
    [/usr/sbin/depmod]=kmod
    [/usr/bin/cpio]=cpio
    [/usr/bin/certutil]=libnss3-tools
)
missing=()
for f in "${!NEED[@]}"; do
    [[ -e $f ]] || missing+=("${NEED[$f]}")
done

apt_install() {  # apt_install PACKAGE... (only those not installed yet)
    local todo=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || todo+=("$p")
    done
    ((${#todo[@]})) || return 0
    mapfile -t todo < <(printf '%s\n' "${todo[@]}" | sort -u)
    if apt-get -s install --no-install-recommends "${todo[@]}" 2>/dev/null |
            grep -E '^Remv .*(strongswan|libcharon)'; then
        log "ERROR: apt would remove strongSwan packages - refusing"
        exit 1
    fi
    log "installing: ${todo[*]}"
    local cmd=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${todo[@]}")
    if ! "${cmd[@]}"; then
        log "install failed; running apt-get update and retrying once"
        apt-get update -q -o DPkg::Lock::Timeout=300
        "${cmd[@]}"
    fi
}
apt_install "${missing[@]}"

# apt-get download writes into the current directory as the _apt user when it
# can; a root-only directory makes it warn and download as root (harmless).
download() {  # download PACKAGE DIR -> path of the .deb
    local pkg=$1 dir=$2
    mkdir -p "$dir"
    (cd "$dir" && apt-get download -q "$pkg") 2>&1 | grep -v 'Download is performed unsandboxed' >&2 || true
    ls -t "$dir"/*.deb 2>/dev/null | head -n1
}

# --- 2. the guest kernel --------------------------------------------------------
kernel_version() { ls "$ROOT/kroot/lib/modules" 2>/dev/null | head -n1; }
if [[ -z $(kernel_version) || ! -e $ROOT/kroot/.trimmed ]]; then
    rm -rf -- "$ROOT/kroot"
    kpkg=$(apt-cache show linux-image-amd64 | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -n1)
    if [[ -z $kpkg ]]; then
        apt-get update -q -o DPkg::Lock::Timeout=300
        kpkg=$(apt-cache show linux-image-amd64 | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -n1)
    fi
    [[ -n $kpkg ]] || { log "ERROR: cannot resolve linux-image-amd64"; exit 1; }
    log "downloading $kpkg"
    deb=$(download "$kpkg" "$ROOT/deb")
    [[ -n $deb ]] || { log "ERROR: apt-get download $kpkg failed"; exit 1; }
    dpkg -x "$deb" "$ROOT/kroot"
    rm -rf -- "$ROOT/deb"               # ~70 MB; downloaded again in seconds if needed
    kv=$(kernel_version)
    mods="$ROOT/kroot/lib/modules/$kv/kernel"
    for d in "$mods"/*; do
        case ${d##*/} in net|crypto|lib|arch|fs|drivers) ;; *) rm -rf -- "$d" ;; esac
    done
    for d in "$mods"/fs/*; do
        case ${d##*/} in 9p|netfs|fscache) ;; *) rm -rf -- "$d" ;; esac
    done
    for d in "$mods"/drivers/*; do
        case ${d##*/} in virtio|net) ;; *) rm -rf -- "$d" ;; esac
    done
    # drivers/net: keep the top-level modules (virtio_net, tun, net_failover ...)
    find "$mods/drivers/net" -mindepth 1 -maxdepth 1 -type d -exec rm -rf -- {} +
    depmod -b "$ROOT/kroot" "$kv"
    touch "$ROOT/kroot/.trimmed"
    log "guest kernel $kv in $ROOT/kroot ($(du -sh "$ROOT/kroot" | cut -f1))"
fi

# --- 3. Libreswan (extracted, never installed) -----------------------------------
if [[ ! -x $ROOT/libreswan/usr/libexec/ipsec/pluto ]]; then
    rm -rf -- "$ROOT/libreswan"
    log "downloading libreswan"
    deb=$(download libreswan "$ROOT/deb")
    [[ -n $deb ]] || { log "ERROR: apt-get download libreswan failed"; exit 1; }
    dpkg -x "$deb" "$ROOT/libreswan"
    # its Depends line (first alternative, no versions): the shared libraries
    dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
        grep '^lib' >"$ROOT/libreswan/.depends"
    rm -rf -- "$ROOT/deb"
fi
mapfile -t libs <"$ROOT/libreswan/.depends"
apt_install "${libs[@]}"
if ldd "$ROOT/libreswan/usr/libexec/ipsec/pluto" | grep -q 'not found'; then
    log "ERROR: pluto misses shared libraries:"
    ldd "$ROOT/libreswan/usr/libexec/ipsec/pluto" | grep 'not found' >&2
    exit 1
fi
log "ready: $(kernel_version) kernel, $("$ROOT/libreswan/usr/libexec/ipsec/pluto" --version 2>&1 | head -n1)"
