#!/usr/bin/env bash
# install-system-deps.sh - system packages for the interop tests (tests/interop/).
#
#   bash scripts/install-system-deps.sh
#
# Idempotent.  As root, installs with apt-get whatever of the list below is
# missing: strongSwan (charon, swanctl, kernel-libipsec and the crypto
# plugins the test profiles use), iproute2, iptables, iperf3, tcpdump, tshark,
# ping.  Not root, or not a Debian-like system: prints why and exits 0 (the
# interop tests then skip with a clear reason).  Exits 1 only when it is root
# on a system with apt-get and the installation fails.
#
# - --no-install-recommends: strongswan-starter (a Recommends) would bring an
#   init script that starts a system-wide charon.
# - wireshark-common is preseeded so tshark installs without asking whether
#   non-root users may capture.
# - `apt-get update` runs only when the install fails (missing or stale lists),
#   then the install is retried once.
# - the VM tests' dependencies come from scripts/install-vm-deps.sh (run first,
#   unless AIOIPSEC_VM_TESTS=0).
# - strongswan-pki is not needed: tests/interop/certs.py makes the test PKI
#   with the `cryptography` package.
set -o errexit -o nounset -o pipefail

log() { printf '[install-system-deps] %s\n' "$*"; }

# The micro-VM interop tests (tests/interop/vm.py: QEMU, a Debian kernel, Libreswan):
# their smoke case runs by default and all of them with AIOIPSEC_VM_TESTS=1, so their
# dependencies are installed unless AIOIPSEC_VM_TESTS=0.
if [[ ${AIOIPSEC_VM_TESTS:-} != 0 ]]; then
    # optional: without them the VM tests skip with the reason (vm_unavailable)
    bash "$(dirname "${BASH_SOURCE[0]}")/install-vm-deps.sh" ||
        log "WARNING: scripts/install-vm-deps.sh failed; the micro-VM interop tests will be skipped"
fi

# Each entry: a file that must exist -> the Debian package that ships it.
declare -A NEED=(
    [/usr/lib/ipsec/charon]=strongswan-charon
    [/usr/sbin/swanctl]=strongswan-swanctl
    [/usr/lib/ipsec/plugins/libstrongswan-vici.so]=strongswan-swanctl
    [/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so]=libcharon-extra-plugins
    [/usr/lib/ipsec/plugins/libstrongswan-curve25519.so]=libstrongswan-extra-plugins
    [/usr/lib/ipsec/plugins/libstrongswan-chapoly.so]=libstrongswan-extra-plugins
    [/usr/lib/ipsec/plugins/libstrongswan-curl.so]=libstrongswan-extra-plugins
    [/usr/lib/ipsec/plugins/libstrongswan-openssl.so]=libstrongswan-standard-plugins
    [/usr/lib/ipsec/plugins/libstrongswan-gcm.so]=libstrongswan-standard-plugins
    [/usr/lib/ipsec/plugins/libstrongswan-xauth-generic.so]=libcharon-extauth-plugins
    [/usr/sbin/ip]=iproute2
    [/usr/sbin/iptables]=iptables
    [/usr/bin/iperf3]=iperf3
    [/usr/bin/tcpdump]=tcpdump
    [/usr/bin/tshark]=tshark
    [/usr/bin/ping]=iputils-ping
    [/usr/bin/openssl]=openssl
    [/usr/sbin/sysctl]=procps
    [/usr/bin/unshare]=util-linux
    [/usr/bin/mount]=mount
)

missing=()
for f in "${!NEED[@]}"; do
    [[ -e $f ]] || missing+=("${NEED[$f]}")
done
if ((${#missing[@]} == 0)); then
    log "all interop packages present, nothing to do"
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [[ $(id -u) -ne 0 ]]; then
    log "not root: cannot install ${missing[*]} (interop tests will skip)"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    log "no apt-get on this system: cannot install ${missing[*]} (interop tests will skip)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# tshark: do not ask "Should non-superusers be able to capture packets?"
if command -v debconf-set-selections >/dev/null; then
    echo 'wireshark-common wireshark-common/install-setuid boolean false' |
        debconf-set-selections
fi

apt_install() {
    # Wait for a concurrent apt/dpkg run instead of failing on its lock.
    apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${missing[@]}"
}

log "installing: ${missing[*]}"
if ! apt_install; then
    log "install failed; running apt-get update and retrying once"
    apt-get update -q -o DPkg::Lock::Timeout=300
    if ! apt_install; then
        log "ERROR: apt-get install ${missing[*]} failed"
        exit 1
    fi
fi

still=()
for f in "${!NEED[@]}"; do
    [[ -e $f ]] || still+=("$f")
done
if ((${#still[@]})); then
    log "ERROR: still missing after install: ${still[*]}"
    exit 1
fi
log "installed: ${missing[*]}"
