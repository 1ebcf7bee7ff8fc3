"""A private strongSwan (charon) instance inside a test-bed namespace.

Each :class:`StrongSwanPeer` has its own directory under the run's state directory::

    strongswan.conf      rendered from templates/strongswan.conf.in (found via STRONGSWAN_CONF)
    swanctl/             swanctl.conf + x509/, x509ca/, private/ (found via SWANCTL_DIR)
    charon.vici          the control socket
    charon.log           charon's debug log (file logger; never syslog)
    charon.stdout        stdout/stderr of the charon process
    run/                 bind-mounted over /run for this charon only (its pid file)

Data plane: the kernels of this machine kind have no ESP, so charon uses
``kernel-libipsec`` (userspace ESP over a TUN device ``ipsec0`` in the namespace):
tunnel mode only, no ESN, and it *always* encapsulates ESP in UDP/4500 (it fakes a
NAT).  Pitfalls handled here (see tests/interop/README.md):

* charon's pid file is hard-wired to ``/run/charon.pid``: each charon runs in a private
  mount namespace with its own ``run/`` bind-mounted over ``/run``; we stop it by the PID
  of the process we started, never via the pid file (which charon deletes on exit);
* ``kernel-libipsec`` must precede ``kernel-netlink`` in the plugin list, and
  ``install_routes = yes`` (the routes into ``ipsec0`` carry the traffic);
* IKEv1 responders install their SAs only after Quick Mode message 3:
  :meth:`StrongSwanPeer.wait_established` is meant to be called on *both* peers
  (:func:`wait_both`) before any traffic is sent;
* Aggressive Mode PSK as responder needs
  ``i_dont_care_about_security_and_use_aggressive_mode_psk``;
* RSA-3072 certificates make IKE_AUTH larger than the MTU: ``fragmentation = yes``
  (RFC 7383 for IKEv2), configurable per connection.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .certs import TestPki
from .netns import NamespaceProcess, Topology

CHARON = Path(os.environ.get("AIOIPSEC_CHARON", "/usr/lib/ipsec/charon"))
SWANCTL = Path(os.environ.get("AIOIPSEC_SWANCTL", "/usr/sbin/swanctl"))
TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_PSK = "aioipsec-interop-test-psk-0123456789abcdef"
WRONG_PSK = "aioipsec-interop-WRONG-psk-fedcba9876543210"

BASE_PLUGINS = ("random nonce openssl aes sha1 sha2 md5 hmac xcbc cmac ctr ccm gcm chapoly "
                "curve25519 gmp x509 pem pkcs1 pkcs8 pubkey revocation constraints kdf drbg")
# XAUTH (IKEv1 second round, user name + password) lives in libcharon-extauth-plugins
XAUTH_PLUGIN = Path("/usr/lib/ipsec/plugins/libstrongswan-xauth-generic.so")
DATAPLANE_PLUGINS = {"libipsec": "kernel-libipsec kernel-netlink", "kernel": "kernel-netlink"}
# ike=2 state machine, cfg=2 proposals, net=1 each IKE packet, enc=1 payload lists,
# knl=2 SA/route install, chd=2 CHILD_SA, esp=1 libipsec errors (ICV failures ...)
LOG_LEVELS = {"ike": 2, "cfg": 2, "net": 1, "enc": 1, "knl": 2, "esp": 1, "chd": 2,
              "dmn": 1, "mgr": 1, "lib": 1}


class StrongSwanError(RuntimeError):
    """charon could not be started or driven, or a bounded wait ran out."""


def charon_available() -> str | None:
    """None if charon, swanctl and the needed plugins are installed, else why not."""
    plugin_dir = Path("/usr/lib/ipsec/plugins")
    needed = [CHARON, SWANCTL] + [plugin_dir / f"libstrongswan-{p}.so" for p in
                                  ("kernel-libipsec", "vici", "curve25519", "chapoly", "gcm")]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        return (f"strongSwan is not installed ({', '.join(missing)} missing); "
                "run scripts/install-system-deps.sh as root")
    return None


# ---------------------------------------------------------------------------
# configuration: profiles (algorithms, auth) and connections (one side's view)

@dataclass(frozen=True)
class Profile:
    """What is negotiated: IKE version, exchange, algorithms (strongSwan syntax), auth."""

    name: str
    version: int
    proposals: str
    esp_proposals: str
    auth: str = "psk"                # "psk" or "pubkey"
    cert_kind: str | None = None     # pubkey: a certs.KINDS entry ("ecdsa", "rsa", "ed25519" ...)
    aggressive: bool = False
    id_kind: str = "fqdn"            # "fqdn" (left/right.interop.example) or "ip" (outer)
    mode: str = "tunnel"


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("ikev2-psk-gcm", 2, "aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    Profile("ikev2-psk-chacha20", 2, "aes128gcm16-prfsha256-x25519", "chacha20poly1305"),
    Profile("ikev2-psk-aescbc-sha256", 2, "aes128gcm16-prfsha256-x25519", "aes128-sha256"),
    Profile("ikev2-cert-ecdsa", 2, "aes128gcm16-prfsha256-x25519", "aes128gcm16",
            auth="pubkey", cert_kind="ecdsa"),
    Profile("ikev2-cert-rsa", 2, "aes128gcm16-prfsha256-x25519", "aes128gcm16",
            auth="pubkey", cert_kind="rsa"),
    # Main Mode PSK: IDs are the outer addresses (the PSK must be chosen before the
    # encrypted ID payload arrives)
    Profile("ikev1-main-psk-aes128-sha1", 1, "aes128-sha1-modp2048", "aes128-sha1",
            id_kind="ip"),
    Profile("ikev1-main-psk-aes256-sha256-pfs", 1, "aes256-sha256-modp2048",
            "aes256-sha256-modp2048", id_kind="ip"),
    # Aggressive Mode: one DH group, the initiator's KE and ID in message 1
    Profile("ikev1-aggr-psk", 1, "aes256-sha256-modp2048", "aes128-sha256-modp2048",
            aggressive=True),
)}


def short_lifetimes(ike_rekey: int | None = None, child_rekey: int | None = None,
                    version: int = 2) -> tuple[dict[str, str], dict[str, str]]:
    """(ike_options, child_options) for rekey tests: rekey after the given seconds,
    hard expiry 50 % later, no randomisation.  IKEv1 has no IKE rekey: strongSwan
    re-authenticates the ISAKMP SA at ``reauth_time`` instead."""
    ike: dict[str, str] = {}
    child: dict[str, str] = {}
    if ike_rekey is not None:
        key = "rekey_time" if version == 2 else "reauth_time"
        ike = {key: f"{ike_rekey}s", "over_time": f"{max(1, ike_rekey // 2)}s",
               "rand_time": "0s"}
    if child_rekey is not None:
        child = {"rekey_time": f"{child_rekey}s",
                 "life_time": f"{child_rekey + max(1, child_rekey // 2)}s", "rand_time": "0s"}
    return ike, child


@dataclass(frozen=True)
class Connection:
    """Everything that goes into one side's swanctl.conf besides the topology."""

    profile: Profile
    family: int = 4                  # 4 or 6 (outer and inner; 6: direct topology only)
    psk: str = DEFAULT_PSK
    start_action: str = "none"       # none | trap | start (initiate() is explicit)
    dpd_delay: str = "0s"
    fragmentation: str = "yes"
    ike_options: Mapping[str, str] = field(default_factory=dict)
    child_options: Mapping[str, str] = field(default_factory=dict)
    # traffic selectors instead of the topology's inner subnets (swanctl lists,
    # comma-separated: "203.0.113.128/26,203.0.113.192/26")
    local_ts: str | None = None
    remote_ts: str | None = None
    # address pools (swanctl's top-level ``pools``), name -> keys: {"rw": {"addrs": "10.3.0.0/28"}};
    # a connection names them with ike_options={"pools": "rw"}
    pools: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # second authentication rounds (swanctl ``local-2`` / ``remote-2`` sections), e.g.
    # {"auth": "xauth", "xauth_id": "alice"}, and XAUTH passwords by user name
    # (``secrets.xauth-<user>``)
    local2: Mapping[str, str] | None = None
    remote2: Mapping[str, str] | None = None
    xauth_secrets: Mapping[str, str] = field(default_factory=dict)
    # RFC 8784 Postquantum Preshared Keys by PPK_ID (``secrets.ppk-<n>``); a
    # connection uses one with ike_options={"ppk_id": ..., "ppk_required": "yes"}
    ppk_secrets: Mapping[str, str] = field(default_factory=dict)
    # charon only: the ``auth`` of its local / remote section instead of the profile's
    # (RFC 7427 signature constraints), e.g. "ike:rsa/pss-sha256": local signs with
    # RSASSA-PSS, remote accepts only that in IKE_AUTH (without "ike:" the certificate
    # chain's signatures would have to match too)
    local_auth: str | None = None
    remote_auth: str | None = None

    @classmethod
    def named(cls, profile: str, **kwargs: Any) -> Connection:
        return cls(PROFILES[profile], **kwargs)

    def with_wrong_psk(self) -> Connection:
        return replace(self, psk=WRONG_PSK)


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Replace ``@NAME@`` placeholders; refuse to leave one unreplaced."""
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for placeholder @{name}@")
        return values[name]

    return re.sub(r"@([A-Z0-9_]+)@", sub, text)


def _option_lines(options: Mapping[str, str], indent: int) -> str:
    pad = " " * indent
    return "\n".join(f"{pad}{key} = {value}" for key, value in options.items())


def render_swanctl(conn: Connection, topology: Topology, side: str) -> str:
    """swanctl.conf for ``side`` ("left"/"right") of ``topology``."""
    me, peer = topology.side(side), topology.other(side)
    prof = conn.profile
    if conn.family == 6:
        if me.outer6 is None or peer.outer6 is None:
            raise StrongSwanError(f"{topology.kind} topology has no IPv6 outer addresses")
        local_addrs, remote_addrs = me.outer6, peer.outer6
        local_ts, remote_ts = me.inner_net6, peer.inner_net6
    else:
        local_addrs, remote_addrs = me.outer4, topology.remote_addrs_seen_by(side)
        local_ts, remote_ts = me.inner_net4, peer.inner_net4
    local_ts = conn.local_ts or local_ts
    remote_ts = conn.remote_ts or remote_ts
    if prof.id_kind == "ip":
        local_id = me.outer6 if conn.family == 6 else me.outer4
        remote_id = peer.outer6 if conn.family == 6 else peer.outer4
    else:
        local_id, remote_id = me.fqdn, peer.fqdn
    ike_options = dict(conn.ike_options)
    local_extra = remote_extra = ""
    if prof.auth == "pubkey":
        assert prof.cert_kind is not None
        ike_options.setdefault("send_cert", "always")   # even without a CERTREQ
        local_extra = f"            certs = {side}-{prof.cert_kind}.crt.pem"
        remote_extra = f"            cacerts = ca-{prof.cert_kind}.crt.pem"
        secrets = ""
    else:
        # no id entries: the secret matches any identity pair
        secrets = f'    ike-ih {{\n        secret = "{conn.psk}"\n    }}'
    for user, password in conn.xauth_secrets.items():
        secrets += f'\n    xauth-{user} {{\n        id = {user}\n        secret = "{password}"\n    }}'
    for n, (ppk_id, ppk) in enumerate(conn.ppk_secrets.items()):
        secrets += f'\n    ppk-{n} {{\n        id = {ppk_id}\n        secret = "{ppk}"\n    }}'
    rounds = ""
    for name, keys in (("local-2", conn.local2), ("remote-2", conn.remote2)):
        if keys:
            rounds += f"        {name} {{\n{_option_lines(keys, 12)}\n        }}\n"
    values = {
        "LOCAL_AUTH": conn.local_auth or prof.auth,
        "REMOTE_AUTH": conn.remote_auth or prof.auth,
        "PROFILE": prof.name,
        "VERSION": str(prof.version),
        "AGGRESSIVE": "yes" if prof.aggressive else "no",
        "LOCAL_ADDRS": local_addrs, "REMOTE_ADDRS": remote_addrs,
        "PROPOSALS": prof.proposals, "ESP_PROPOSALS": prof.esp_proposals,
        "FRAGMENTATION": conn.fragmentation, "DPD_DELAY": conn.dpd_delay,
        "IKE_OPTIONS": _option_lines(ike_options, 8),
        "LOCAL_ID": local_id, "REMOTE_ID": remote_id,
        "LOCAL_EXTRA": local_extra, "REMOTE_EXTRA": remote_extra,
        "MODE": prof.mode, "LOCAL_TS": local_ts, "REMOTE_TS": remote_ts,
        "START_ACTION": conn.start_action,
        "CHILD_OPTIONS": _option_lines(conn.child_options, 16),
        "SECRETS": secrets,
        "AUTH_ROUNDS": rounds,
    }
    text = render_template((TEMPLATES / "swanctl.conf.in").read_text(), values)
    if conn.pools:
        text += "pools {\n" + "".join(
            f"    {name} {{\n{_option_lines(keys, 8)}\n    }}\n" for name, keys in conn.pools.items()) + "}\n"
    # placeholders that rendered to nothing leave blank lines behind: drop them
    return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


def render_strongswan_conf(*, logfile: Path, vici: Path, dataplane: str = "libipsec",
                           log_keys: bool = False, debug: Mapping[str, int] | None = None,
                           retransmit_tries: int = 3,
                           options: Mapping[str, str] | None = None,
                           extra_plugins: Sequence[str] = ()) -> str:
    """strongswan.conf; ``options`` are extra ``charon.<key> = <value>`` settings
    (``{"cookie_threshold": "1"}``, ``{"dos_protection": "no"}`` ...), ``extra_plugins``
    plugins loaded after the others (``["curl"]``: OCSP and CRL fetching over HTTP)."""
    levels = dict(LOG_LEVELS)
    if log_keys:
        levels.update(ike=4, chd=4)
    levels.update(debug or {})
    xauth = " xauth-generic" if XAUTH_PLUGIN.exists() else ""
    return render_template((TEMPLATES / "strongswan.conf.in").read_text(), {
        "PLUGINS": " ".join([f"{BASE_PLUGINS}{xauth} {DATAPLANE_PLUGINS[dataplane]} socket-default vici",
                             *extra_plugins]),
        "LOGFILE": str(logfile),
        "VICI_SOCKET": str(vici),
        "RETRANSMIT_TRIES": str(retransmit_tries),
        "CHARON_OPTIONS": _option_lines(options or {}, 4),
        "LOGLEVELS": "\n".join(f"            {k} = {v}" for k, v in levels.items()),
    })


# ---------------------------------------------------------------------------
# swanctl --list-sas --pretty parsing

def parse_vici_pretty(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse swanctl's ``--pretty`` dump of raw vici messages.

    ``--raw`` prints the same messages on one line, separated by blanks, which is
    ambiguous for values containing blanks (DN identities); ``--pretty`` puts each
    element on its own line.  Returns ``[(label, message), ...]``: sections become
    dicts, lists become lists of strings, values stay strings.
    """
    messages: list[tuple[str, dict[str, Any]]] = []
    stack: list[dict[str, Any]] = []
    current_list: list[str] | None = None
    label = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if current_list is not None:
            if line == "]":
                current_list = None
            else:
                current_list.append(line)
            continue
        if line == "}":
            stack.pop()
            continue
        if line.endswith(" {"):
            name = line[:-2]
            section: dict[str, Any] = {}
            if not stack:
                label = name
                messages.append((label, section))
            else:
                stack[-1][name] = section
            stack.append(section)
            continue
        if line.endswith(" ["):            # "local-ts = ["
            current_list = []
            stack[-1][line[:-2].removesuffix(" =")] = current_list
            continue
        key, sep, value = line.partition(" = ")
        if not sep or not stack:
            raise ValueError(f"unexpected line in vici dump: {raw!r}")
        stack[-1][key] = value
    if stack:
        raise ValueError("unterminated section in vici dump")
    return messages


def _int(d: Mapping[str, Any], key: str) -> int:
    try:
        return int(d.get(key, 0))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class ChildSa:
    """One CHILD_SA as charon lists it (counters from the data plane)."""

    name: str
    state: str
    spi_in: int
    spi_out: int
    bytes_in: int
    bytes_out: int
    packets_in: int
    packets_out: int
    raw: Mapping[str, Any]

    @classmethod
    def from_vici(cls, key: str, d: Mapping[str, Any]) -> ChildSa:
        return cls(d.get("name", key), d.get("state", ""), int(d.get("spi-in", "0"), 16),
                   int(d.get("spi-out", "0"), 16), _int(d, "bytes-in"), _int(d, "bytes-out"),
                   _int(d, "packets-in"), _int(d, "packets-out"), d)


@dataclass(frozen=True)
class IkeSa:
    name: str
    state: str
    version: int
    initiator: bool
    spi_i: int
    spi_r: int
    children: tuple[ChildSa, ...]
    raw: Mapping[str, Any]

    @classmethod
    def from_vici(cls, name: str, d: Mapping[str, Any]) -> IkeSa:
        children = tuple(ChildSa.from_vici(k, v) for k, v in d.get("child-sas", {}).items())
        return cls(name, d.get("state", ""), _int(d, "version"), d.get("initiator") == "yes",
                   int(d.get("initiator-spi", "0"), 16), int(d.get("responder-spi", "0"), 16),
                   children, d)


def sas_from_pretty(text: str) -> list[IkeSa]:
    sas = []
    for _label, message in parse_vici_pretty(text):
        for name, ike in message.items():
            if isinstance(ike, dict):
                sas.append(IkeSa.from_vici(name, ike))
    return sas


# ---------------------------------------------------------------------------
# keys from a --log-keys charon log (ike=4, chd=4)

# "19:03:35 11[IKE] <ih|1>   16: B1 8F 52 26                  ..R&"
_HEX_LINE = re.compile(r"^\S+ \d+\[\w+\] (?:<[^>]*> )?\s*\d+: ((?:[0-9A-F]{2} ){1,16})")
_KEY_HEAD = re.compile(r"\[(?:IKE|CHD)\] (?:<[^>]*> )?(.+?) => (\d+) bytes @ ")
_CHILD_UP = re.compile(r"CHILD_SA (\S+)\{\d+\} established with SPIs ([0-9a-f]{8})_i "
                       r"([0-9a-f]{8})_o")


@dataclass
class PeerKeys:
    """Key material logged by one charon (``log_keys=True``), in log order.

    ``secrets`` maps each logged label (``Sk_ei secret``, ``encryption initiator key``,
    ``SKEYID_e secret`` ...) to the list of values seen, oldest first; ``child_spis`` is
    ``[(name, spi_in, spi_out)]`` of every CHILD_SA established.
    """

    secrets: dict[str, list[bytes]]
    child_spis: list[tuple[str, int, int]]

    def last(self, label: str) -> bytes:
        return self.secrets[label][-1]


def parse_key_log(log: str) -> PeerKeys:
    secrets: dict[str, list[bytes]] = {}
    child_spis: list[tuple[str, int, int]] = []
    pending: tuple[str, int, bytearray] | None = None
    for line in log.splitlines():
        if pending is not None:
            m = _HEX_LINE.match(line)
            if m:
                pending[2].extend(bytes.fromhex(m.group(1)))
                if len(pending[2]) >= pending[1]:
                    secrets.setdefault(pending[0], []).append(bytes(pending[2][:pending[1]]))
                    pending = None
                continue
            pending = None
        m = _KEY_HEAD.search(line)
        if m:
            label, length = m.group(1), int(m.group(2))
            if length == 0:
                secrets.setdefault(label, []).append(b"")
            else:
                pending = (label, length, bytearray())
            continue
        m = _CHILD_UP.search(line)
        if m:
            child_spis.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))
    return PeerKeys(secrets, child_spis)


# ---------------------------------------------------------------------------
# the peer

class StrongSwanPeer:
    """A private charon in ``side``'s namespace of ``topology``.

    ``peer = StrongSwanPeer(topology, "right"); peer.configure(conn); peer.start()`` then
    ``initiate()``, ``wait_established()``, ``list_sas()``, ``logs()``, ``keys()``,
    ``terminate()``, ``stop()``.  The topology's teardown stops it too (by PID).
    """

    _instances: dict[str, int] = {}

    def __init__(self, topology: Topology, side: str, *, log_keys: bool = False,
                 debug: Mapping[str, int] | None = None, dataplane: str = "libipsec",
                 retransmit_tries: int = 3,
                 charon_options: Mapping[str, str] | None = None,
                 extra_plugins: Sequence[str] = ()) -> None:
        self.topology = topology
        self.side = topology.side(side)
        self.ns = self.side.ns
        n = StrongSwanPeer._instances.get(self.ns.name, 0) + 1
        StrongSwanPeer._instances[self.ns.name] = n
        self.dir = topology.run_dir / f"{self.ns.name}-charon{n}"
        self.log_keys = log_keys
        self.debug = dict(debug or {})
        self.dataplane = dataplane
        self.retransmit_tries = retransmit_tries
        self.charon_options = dict(charon_options or {})
        self.extra_plugins = list(extra_plugins)
        self.connection: Connection | None = None
        self.process: NamespaceProcess | None = None
        self.dir.mkdir(parents=True, exist_ok=False)
        for sub in ("run", "swanctl/x509", "swanctl/x509ca", "swanctl/private"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"StrongSwanPeer({self.side.name}, {self.ns.name}, pid={self.pid})"

    # -- paths and environment
    @property
    def name(self) -> str:
        return f"strongswan-{self.side.name}"

    @property
    def conf(self) -> Path:
        return self.dir / "strongswan.conf"

    @property
    def swanctl_dir(self) -> Path:
        return self.dir / "swanctl"

    @property
    def vici(self) -> Path:
        return self.dir / "charon.vici"

    @property
    def log_path(self) -> Path:
        return self.dir / "charon.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["STRONGSWAN_CONF"] = str(self.conf)
        env["SWANCTL_DIR"] = str(self.swanctl_dir)
        return env

    # -- configuration
    def configure(self, conn: Connection, pki: TestPki | None = None) -> None:
        """Write swanctl.conf for ``conn`` (and the certificates for pubkey profiles)."""
        prof = conn.profile
        if prof.mode != "tunnel" and self.dataplane == "libipsec":
            raise StrongSwanError("kernel-libipsec supports tunnel mode only")
        if prof.auth == "pubkey":
            if pki is None or prof.cert_kind is None:
                raise StrongSwanError(f"profile {prof.name} needs the test PKI")
            pki.install_swanctl(self.swanctl_dir, self.side.name, prof.cert_kind)
        (self.swanctl_dir / "swanctl.conf").write_text(
            render_swanctl(conn, self.topology, self.side.name))
        self.connection = conn

    # -- process
    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(self, timeout: float = 15.0) -> None:
        """Start charon in the namespace, wait until vici answers, load the config."""
        if self.alive():
            raise StrongSwanError(f"{self} already running")
        self.conf.write_text(render_strongswan_conf(
            logfile=self.log_path, vici=self.vici, dataplane=self.dataplane,
            log_keys=self.log_keys, debug=self.debug, retransmit_tries=self.retransmit_tries,
            options=self.charon_options, extra_plugins=self.extra_plugins))
        self.vici.unlink(missing_ok=True)
        # ip netns exec, unshare (no --fork), sh's exec and env all exec: the PID we get
        # is charon's own.  /run is private to this charon (its hard-wired pid file).
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                'mount --bind "$1" /run && shift && exec "$@"', "aioipsec-charon",
                str(self.dir / "run"), "env", f"STRONGSWAN_CONF={self.conf}", str(CHARON)]
        self.process = self.ns.popen(argv, log=self.dir / "charon.stdout")
        deadline = time.monotonic() + timeout
        while True:
            if not self.process.alive():
                raise StrongSwanError(f"charon exited (rc {self.process.popen.returncode}): "
                                      f"{self._tail()}")
            if self.vici.exists() and self._swanctl(["--stats"], check=False,
                                                    timeout=5).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise StrongSwanError(f"charon not answering after {timeout}s: {self._tail()}")
            time.sleep(0.05)
        exe = os.readlink(f"/proc/{self.process.pid}/exe")
        if Path(exe) != CHARON:
            raise StrongSwanError(f"pid {self.process.pid} is {exe}, not charon")
        if self.connection is not None:
            self.load()

    def stop(self, grace: float = 5.0) -> None:
        """Stop charon by PID (SIGTERM, then SIGKILL after ``grace`` s)."""
        if self.process is not None:
            self.process.stop(grace)

    def _tail(self, n: int = 30) -> str:
        parts = []
        for path in (self.dir / "charon.stdout", self.log_path):
            if path.exists():
                parts.extend(path.read_text(errors="replace").splitlines()[-n:])
        return "\n".join(parts)

    # -- control (swanctl over this instance's vici socket)
    def _swanctl(self, args: Sequence[str], *, check: bool = True,
                 timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run([str(SWANCTL), *args], capture_output=True, text=True,
                                  env=self.env(), timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise StrongSwanError(f"swanctl {' '.join(args)} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise StrongSwanError(f"swanctl {' '.join(args)} -> rc {proc.returncode}\n"
                                  f"{proc.stdout}{proc.stderr}")
        return proc

    def swanctl(self, *args: str, timeout: float = 15.0) -> str:
        """Any swanctl command against this instance; returns its output."""
        return self._swanctl(args, timeout=timeout).stdout

    def load(self) -> None:
        """(Re)load connections, secrets and credentials from the swanctl directory."""
        self._swanctl(["--load-all", "--file", str(self.swanctl_dir / "swanctl.conf")])

    def initiate(self, child: str = "ih", ike: str = "ih", timeout: float = 15.0) -> str:
        """Bring up ``child`` of ``ike`` and wait for the result (bounded by ``timeout``)."""
        if not self.alive():
            raise StrongSwanError(f"{self} is not running")
        secs = max(1, int(timeout))
        proc = self._swanctl(["--initiate", "--ike", ike, "--child", child,
                              "--timeout", str(secs)], check=False, timeout=timeout + 5)
        if proc.returncode != 0:
            raise StrongSwanError(f"initiate {ike}/{child} failed (rc {proc.returncode}):\n"
                                  f"{proc.stdout[-2000:]}{proc.stderr[-500:]}")
        return proc.stdout

    def terminate(self, ike: str = "ih", timeout: float = 10.0) -> str:
        """Delete IKE_SA ``ike`` (sends DELETE) and wait for it."""
        return self._swanctl(["--terminate", "--ike", ike, "--timeout",
                              str(max(1, int(timeout)))], timeout=timeout + 5).stdout

    def rekey(self, *, child: str | None = None, ike: str | None = None) -> str:
        args = ["--rekey"]
        if child:
            args += ["--child", child]
        if ike:
            args += ["--ike", ike]
        return self._swanctl(args).stdout

    def list_sas(self) -> list[IkeSa]:
        """Current IKE_SAs with their CHILD_SAs (SPIs, algorithms, counters)."""
        return sas_from_pretty(self._swanctl(["--list-sas", "--pretty"]).stdout)

    def installed_children(self, child: str = "ih") -> list[ChildSa]:
        return [c for sa in self.list_sas() if sa.state == "ESTABLISHED"
                for c in sa.children if c.name == child and c.state == "INSTALLED"]

    def wait_established(self, timeout: float = 10.0, child: str = "ih") -> ChildSa:
        """Wait until an IKE_SA is ESTABLISHED with ``child`` INSTALLED; return that child."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise StrongSwanError(f"charon ({self.side.name}) died: {self._tail()}")
            children = self.installed_children(child)
            if children:
                return children[-1]
            if time.monotonic() > deadline:
                raise StrongSwanError(f"no INSTALLED CHILD_SA {child!r} on {self.side.name} "
                                      f"after {timeout}s")
            time.sleep(0.05)

    # -- logs and keys
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the charon log."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.logs())
            if m:
                return m
            if time.monotonic() > deadline:
                raise StrongSwanError(f"{pattern!r} not in {self.side.name}'s log after "
                                      f"{timeout}s")
            time.sleep(0.05)

    def keys(self) -> PeerKeys:
        """IKE and ESP keys and SPIs from the log (needs ``log_keys=True``)."""
        if not self.log_keys:
            raise StrongSwanError("start the peer with log_keys=True to log key material")
        return parse_key_log(self.logs())


def wait_both(*peers: StrongSwanPeer, timeout: float = 10.0,
              child: str = "ih") -> list[ChildSa]:
    """Wait until every peer has the CHILD_SA installed (IKEv1 responders lag behind)."""
    deadline = time.monotonic() + timeout
    return [p.wait_established(max(0.1, deadline - time.monotonic()), child) for p in peers]


__all__ = [
    "CHARON", "ChildSa", "Connection", "IkeSa", "PROFILES", "PeerKeys", "Profile",
    "StrongSwanError", "StrongSwanPeer", "charon_available", "parse_key_log",
    "parse_vici_pretty", "render_swanctl", "short_lifetimes", "wait_both",
]
