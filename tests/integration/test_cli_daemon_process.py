"""``aioipsec daemon`` as a process: two daemons on loopback (127.0.0.1 and
127.0.0.2, free high ports from ``[daemon]``, ``--no-tun``) negotiate; the
CLI drives them over their control sockets; SIGHUP reloads the file; SIGTERM
deletes the SAs (the peer sees the delete) and exits cleanly.  No root needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONF = """
[daemon]
address = "{me}"
port = {port}
port_nat_t = {natt}

[connections.{name}]
local_addrs  = ["{me}"]
remote_addrs = ["{peer}"]
remote_port = {peer_port}
proposals = ["aes128gcm16-prfsha256-x25519"]
retransmit_timeout = "1s"
local  = {{ auth = "psk", id = "{me_id}" }}
remote = {{ auth = "psk", id = "{peer_id}" }}

[connections.{name}.children.lan]
local_ts  = ["{my_net}"]
remote_ts = ["{peer_net}"]
esp_proposals = ["aes128gcm16"]

[secrets.s]
id = ["a.example", "h.example"]
secret = "pre-shared key of the process test"
"""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    def __init__(self, d: Path, name: str, conf: str) -> None:
        self.conf = d / f"{name}.toml"
        self.conf.write_text(conf)
        self.ctl = str(d / f"{name}.ctl")
        self.log = d / f"{name}.log"
        with open(self.log, "w") as logf:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "aioipsec", "daemon", "-c", str(self.conf), "--control", self.ctl,
                 "--no-tun", "-v", "--uvloop", "no"],
                stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT,
            )

    def text(self) -> str:
        return self.log.read_text()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aioipsec", "--control", self.ctl, *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    def status(self) -> dict:
        r = self.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


@pytest.fixture
def daemons() -> Iterator[tuple[Proc, Proc]]:
    d = Path(tempfile.mkdtemp(prefix="aioipsec-proc-"))
    a_ip, h_ip = "127.0.0.1", "127.0.0.2"
    pa, qa, ph, qh = free_port(a_ip), free_port(a_ip), free_port(h_ip), free_port(h_ip)
    h = Proc(d, "h", CONF.format(me=h_ip, port=ph, natt=qh, name="site-a", peer=a_ip, peer_port=pa,
                                 me_id="h.example", peer_id="a.example", my_net="203.0.113.0/24",
                                 peer_net="198.51.100.0/24"))
    a = Proc(d, "a", CONF.format(me=a_ip, port=pa, natt=qa, name="hq", peer=h_ip, peer_port=ph,
                                 me_id="a.example", peer_id="h.example", my_net="198.51.100.0/24",
                                 peer_net="203.0.113.0/24"))
    try:
        for p in (h, a):
            wait_for(lambda p=p: "listening on" in p.text() or p.p.poll() is not None, 20, "the daemon to listen")
            assert p.p.poll() is None, p.text()
        yield a, h
    finally:
        a.stop()
        h.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_daemon_process_cli_sighup_sigterm(daemons: tuple[Proc, Proc]) -> None:
    a, h = daemons
    r = a.cli("up", "hq")
    assert r.returncode == 0, r.stderr + a.text()
    assert r.stdout.startswith("hq: IKE SA established, IKEv2 aes128gcm16-prfsha256-x25519, a.example <-> h.example")
    assert "hq: CHILD_SA lan installed, tunnel esp aes128gcm16" in r.stdout
    [sa_a] = a.status()["ike_sas"]
    [sa_h] = h.status()["ike_sas"]
    assert (sa_a["spi_i"], sa_a["spi_r"]) == (sa_h["spi_i"], sa_h["spi_r"])
    assert sa_a["local_addr"].startswith("127.0.0.1[") and sa_h["name"] == "site-a"
    text = a.cli("status").stdout
    assert text.startswith("hq: ESTABLISHED, IKEv2, ") and "lan: #1, INSTALLED, TUNNEL, ESP:aes128gcm16" in text

    # the log: one line per exchange step, the events, the control commands
    log = a.text()
    for line in ("[IKE] INFO IKE_SA_INIT sent 127.0.0.2[", "[IKE] INFO IKE_AUTH received 127.0.0.2[",
                 "[CTL] INFO control: up hq", "[DMN] INFO hq: ChildSaInstalled(name='lan', protocol='esp', mode='tunnel', spi_in=0x"):
        assert line in log, line

    # SIGHUP: the file is read again; a new connection appears, the SA stays
    a.conf.write_text(a.conf.read_text() + '\n[connections.spare]\nremote_addrs = ["192.0.2.9"]\n'
                      '[secrets.spare]\nid = ["192.0.2.9"]\nsecret = "spare key"\n')
    a.p.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded: 2 connections, added spare" in a.text(), 10, "the reload")
    assert "SIGHUP: reloading" in a.text()
    conns = json.loads(a.cli("list-conns").stdout)
    assert [c["name"] for c in conns] == ["hq", "spare"]
    assert a.status()["ike_sas"][0]["spi_i"] == sa_a["spi_i"]

    # SIGTERM: the IKE SA is deleted (the peer hears it), the process exits 0, the socket goes
    a.p.send_signal(signal.SIGTERM)
    assert a.p.wait(15) == 0, a.text()
    assert "shutting down: deleting 1 IKE SA" in a.text()
    assert not os.path.exists(a.ctl)
    wait_for(lambda: h.status()["ike_sas"] == [], 5, "the peer to see the delete")
    assert "closed: deleted by peer" in h.text()
    r = a.cli("status")
    assert r.returncode == 1 and "no daemon control socket" in r.stderr


def test_daemon_refuses_a_bad_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[connections.hq]\nversion = 3\n')
    r = subprocess.run([sys.executable, "-m", "aioipsec", "daemon", "-c", str(conf), "--no-tun"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {conf}: connections.hq.version: expected 1 (IKEv1) or 2 (IKEv2), got 3"
    r = subprocess.run([sys.executable, "-m", "aioipsec", "daemon", "-c", str(conf), "--debug", "kernel=2"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "bad debug group 'kernel=2'" in r.stderr
