"""Config loader: good files load into dataclasses; bad files fail at load with
the file, the key path and the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aioipsec.config_file import load_config
from aioipsec.errors import ConfigError

GOOD = """
[connections.hq]
version = 2
local_addrs  = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
dpd_delay = "30s"
rekey_time = "4h"
local  = { auth = "psk", id = "site-a.example" }
remote = { auth = "psk", id = "hq.example" }

[connections.hq.children.lan]
local_ts  = ["198.51.100.0/24"]
remote_ts = ["203.0.113.0/24"]
esp_proposals = ["aes128gcm16-x25519"]
mode = "tunnel"
start_action = "trap"
rekey_time = "1h"
replay_window = 64

[secrets.hq]
id = ["site-a.example", "hq.example"]
secret = "correct horse battery staple"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    hq = cfg.connections["hq"]
    assert hq.version == 2
    assert hq.rekey_time == 4 * 3600
    assert hq.dpd_delay == 30
    assert hq.psk == b"correct horse battery staple"
    assert str(hq.proposals[0]) == "aes128gcm16-prfsha256-x25519"
    lan = hq.children["lan"]
    assert lan.start_action == "trap"
    assert lan.pfs
    assert str(lan.local_ts[0]) == "198.51.100.0/24"
    assert lan.rekey_time == 3600


BAD = [
    (
        GOOD.replace('mode = "tunnel"', 'mode = "tunel"'),
        'connections.hq.children.lan.mode: expected "tunnel" or "transport", got "tunel"',
    ),
    (GOOD.replace("remote_ts =", "remote_tss ="), 'connections.hq.children.lan.remote_tss: unknown key; did you mean "remote_ts"?'),
    (GOOD.replace("version = 2", "version = 3"), "connections.hq.version: expected 1 (IKEv1) or 2 (IKEv2), got 3"),
    (GOOD.replace('dpd_delay = "30s"', 'dpd_delay = "soon"'), 'connections.hq.dpd_delay: expected a duration like "30s", "4h", got "soon"'),
    (
        GOOD.replace('"aes128gcm16-prfsha256-x25519"', '"3des-md5-modp1024"'),
        "connections.hq.proposals[0]: in proposal '3des-md5-modp1024': algorithm '3des' refused: 3DES has a 64-bit block (RFC 8221/8247: SHOULD NOT); set legacy = true to allow it",
    ),
    (
        GOOD.replace('"aes128gcm16-x25519"', '"aes128gcm16-blowfish"'),
        "connections.hq.children.lan.esp_proposals[0]: in proposal 'aes128gcm16-blowfish': unknown algorithm 'blowfish'",
    ),
    (GOOD.replace('"198.51.100.0/24"', '"198.51.100.0/33"'), 'connections.hq.children.lan.local_ts[0]: invalid traffic selector "198.51.100.0/33"'),
    (GOOD.replace('remote_addrs = ["192.0.2.2"]', 'remote_addrs = ["hq"]'), 'connections.hq.remote_addrs[0]: expected an IP address, got "hq"'),
    (GOOD.replace("replay_window = 64", "replay_window = -1"), "connections.hq.children.lan.replay_window: expected an integer in 0..1048576, got -1"),
    (GOOD.replace('id = ["site-a.example", "hq.example"]', 'id = ["nobody"]'), 'connections.hq: uses auth = "psk" but no [secrets.*] entry matches its IDs or addresses'),
    (GOOD.replace('remote = { auth = "psk"', 'remote = { auth = "pubkey"'), "connections.hq.remote: auth = \"pubkey\" needs \"cacerts\""),
    (GOOD + "\n[bogus]\nx = 1\n", 'bogus: unknown key'),
    ("[connections.hq\n", "invalid TOML"),
    (GOOD.replace("aggressive", "x").replace("version = 2", "version = 2\naggressive = true"), "connections.hq.aggressive: Aggressive Mode exists only in IKEv1 (version = 1)"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_file_names_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value).startswith(f"{p}: ")
    assert message in str(info.value)


def test_legacy_opt_in_allows_weak_algorithms(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = GOOD.replace('"aes128gcm16-prfsha256-x25519"', '"3des-sha1-modp1024"').replace(
        "version = 2", "version = 1\nlegacy = true"
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.connections["hq"].proposals[0].encr[0].name == "3des"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/aioipsec.toml")


# ------------------------------------------------------------------ exact messages

EXACT = [
    ("[connections.hq]\nversion = 2\nlocal = { auth = \"psk\" }\n[secrets.x]\nsecret = \"0xzz\"\n",
     "secrets.x.secret: a secret starting with 0x must be hex digits"),
    ("[connections.hq]\nlocal = { auth = \"psk\", id = \" \" }\n[secrets.x]\nsecret = \"s\"\n",
     "connections.hq.local.id: must not be empty (leave it out to use the address)"),
    ("[connections.hq.children.c]\nesp_proposals = [\"aes128gcm16\"]\nah_proposals = [\"sha256\"]\n"
     "[secrets.x]\nsecret = \"s\"\n",
     'connections.hq.children.c.ah_proposals: give either "esp_proposals" or "ah_proposals", not both'),
    ("[daemon]\nport = 4500\n", "daemon.port_nat_t: must differ from daemon.port (4500)"),
    ("[daemon]\nport = 70000\n", "daemon.port: expected an integer in 1..65535, got 70000"),
    ("[daemon]\nadress = \"192.0.2.1\"\n", 'daemon.adress: unknown key; did you mean "address"?'),
    ("[daemon]\naddress = \"gw.example\"\n", 'daemon.address[0]: expected an IP address, got "gw.example"'),
    ("[tun]\nmtu = 100\n", "tun.mtu: expected an integer in 576..65535, got 100"),
    ("[global]\ncookie_treshold = 5\n", 'global.cookie_treshold: unknown key; did you mean "cookie_threshold"?'),
    ("[connections.hq]\nrekey_time = -5\n", "connections.hq.rekey_time: duration must not be negative, got -5"),
    ("[connections.hq]\nencap = \"yes\"\n", 'connections.hq.encap: expected true or false, got "yes"'),
    ("[connections.hq]\nlocal_addrs = 5\n", "connections.hq.local_addrs: expected a list of strings, got 5"),
    ("[connections.hq]\nproposals = []\n", "connections.hq.proposals: at least one proposal is needed"),
    ("[connections.hq]\nsend_cert = \"sometimes\"\n",
     'connections.hq.send_cert: expected "always", "ifasked", "never", got "sometimes"'),
    ("[connections.hq]\nretransmit_jitter = 2\n", "connections.hq.retransmit_jitter: expected a number in 0..1, got 2"),
    ("[connections.hq]\nlocal = { auth = \"eap-tls\" }\n",
     'connections.hq.local.auth: expected "psk", "pubkey", "eap", "eap-md5", "eap-gtc", got "eap-tls"'),
    ("[connections.hq]\nlocal = { auth = \"pubkey\" }\nremote = { auth = \"pubkey\", cacerts = [] }\n",
     'connections.hq.local: auth = "pubkey" needs "certs" and "key"'),
    ("[connections.hq]\nlocal = { auth = \"pubkey\", certs = [\"missing.pem\"] }\n",
     "connections.hq.local.certs[0]: file not found: {dir}/missing.pem"),
    ("[connections.hq.children.c]\nlife_time = \"30m\"\nrekey_time = \"1h\"\n[secrets.x]\nsecret = \"s\"\n",
     "connections.hq.children.c.life_time: must not be shorter than rekey_time (3600s)"),
    ("[connections.hq.children.c]\nlocal_ts = [\"10.0.0.0/8[tcp/http]\"]\n[secrets.x]\nsecret = \"s\"\n",
     'connections.hq.children.c.local_ts[0]: invalid traffic selector "10.0.0.0/8[tcp/http]"'),
    ("[secrets.x]\nsecret = \"a\"\nsecret_file = \"b\"\n", 'secrets.x: give either "secret" or "secret_file", not both'),
    ("[secrets.x]\nid = \"a\"\n", 'secrets.x: missing "secret" or "secret_file"'),
    ("[secrets.x]\nsecret = \"\"\n", "secrets.x.secret: must not be empty"),
    ("connections = 3\n", "connections: expected a table, got 3"),
]


@pytest.mark.parametrize("text,reason", EXACT, ids=[r.split(":")[0] + ":" + r.split(":")[1][:30] for _, r in EXACT])
def test_exact_messages(tmp_path: Path, text: str, reason: str) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    message = str(info.value)
    if message.startswith(f'{p}: connections.hq.children.c.local_ts[0]: invalid traffic selector'):
        message = message.split(" (")[0]  # the parser's own detail follows in parentheses
    assert message == f"{p}: " + reason.format(dir=tmp_path)


def _cert_and_key(tmp_path: Path, name: str) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cp, kp = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp


def test_certificates_and_keys_by_path(tmp_path: Path) -> None:
    cert_a, key_a = _cert_and_key(tmp_path, "a")
    cert_b, key_b = _cert_and_key(tmp_path, "b")
    text = f"""
[connections.hq]
local  = {{ auth = "pubkey", certs = ["a.pem"], key = "a.key" }}
remote = {{ auth = "pubkey", cacerts = ["{cert_b}"] }}
"""
    cfg = load_config(write(tmp_path, text))
    hq = cfg.connections["hq"]
    assert hq.local.cert.subject.rfc4514_string() == "CN=a"
    assert hq.remote.cacerts[0].subject.rfc4514_string() == "CN=b"
    assert hq.psk is None
    p = write(tmp_path, text.replace('key = "a.key"', 'key = "b.key"'))
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: connections.hq.local.key: does not match the public key of the certificate"
    p = write(tmp_path, text.replace('key = "a.key"', 'key = "a.pem"'))
    with pytest.raises(ConfigError, match=r"connections.hq.local.key: not an unencrypted private key"):
        load_config(p)


def test_secret_file_and_hex_secret(tmp_path: Path) -> None:
    (tmp_path / "psk.txt").write_text("from a file\n")
    text = GOOD.replace('secret = "correct horse battery staple"', 'secret_file = "psk.txt"')
    assert load_config(write(tmp_path, text)).connections["hq"].psk == b"from a file"
    text = GOOD.replace('"correct horse battery staple"', '"0x00ff10"')
    assert load_config(write(tmp_path, text)).connections["hq"].psk == b"\x00\xff\x10"


def test_loads_config_and_daemon_table() -> None:
    from aioipsec.config_file import loads_config

    cfg = loads_config(GOOD + '\n[daemon]\naddress = "192.0.2.1"\nport = 10500\nport_nat_t = 14500\n', file="inline")
    assert (cfg.daemon.address, cfg.daemon.port, cfg.daemon.port_nat_t) == ("192.0.2.1", 10500, 14500)
    assert cfg.connections["hq"].children["lan"].replay_window == 64
    with pytest.raises(ConfigError) as info:
        loads_config("[connections.hq\n", file="inline")
    assert str(info.value).startswith("inline: invalid TOML: ")


@pytest.mark.parametrize("name", ["site-a.toml", "hq.toml"])
def test_example_configs_load(name: str) -> None:
    """The site-to-site files in examples/ (and the README) are valid."""
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "examples" / name)
    assert cfg.connections
    for conn in cfg.connections.values():
        assert conn.psk, f"{conn.name} found its secret"
        assert conn.children


def test_the_psk_is_not_in_a_connection_repr() -> None:
    """A logged or printed configuration must not show key material: the PSK,
    like the PPKs and the EAP/XAUTH passwords, stays out of the repr."""
    from aioipsec.config_file import loads_config

    cfg = loads_config(textwrap.dedent("""
        [connections.hq]
        remote_addrs = ["192.0.2.2"]
        local = { auth = "psk", id = "a.example" }
        remote = { auth = "psk", id = "hq.example" }
        [secrets.ike-hq]
        id = ["a.example", "hq.example"]
        secret = "0x73757065722d7365637265742d70736b"
    """))
    c = cfg.connections["hq"]
    assert c.psk == b"super-secret-psk"
    text = repr(c) + repr(cfg)
    assert "super-secret-psk" not in text and "73757065722d" not in text and "psk=" not in text
