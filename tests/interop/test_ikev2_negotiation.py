"""aioipsec against strongSwan (charon, kernel-libipsec), IKEv2: the error and
negotiation paths.

INVALID_KE_PAYLOAD retry, COOKIE (charon demanding one, and aioipsec demanding one),
NO_PROPOSAL_CHOSEN (IKE and ESP), traffic selector narrowing and TS_UNACCEPTABLE, PFS
(a KE in the ESP proposal) with Child SA rekeys under traffic, and DPD (a dead charon
detected by aioipsec; aioipsec answering charon's liveness checks).  aioipsec runs on
the left, charon on the right; where both can start the exchange, both do.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import replace

import pytest

from .aioipsec_peer import AioipsecPeer
from .netns import Topology
from .peer import PeerError
from .strongswan import ChildSa, Connection, StrongSwanError, StrongSwanPeer, short_lifetimes
from .test_ikev2_strongswan import (
    INITIATORS,
    _background_ping,
    _ping_result,
    assert_clean_log,
    establish,
    ping_both_ways,
)
from .test_harness_smoke import ping

pytestmark = pytest.mark.interop

BASE = Connection.named("ikev2-psk-gcm")


def with_proposals(conn: Connection, ike: str | None = None, esp: str | None = None,
                   **kwargs: object) -> Connection:
    """``conn`` with other IKE and/or ESP proposals (strongSwan syntax)."""
    prof = conn.profile
    prof = replace(prof, proposals=ike or prof.proposals, esp_proposals=esp or prof.esp_proposals)
    return replace(conn, profile=prof, **kwargs)


def start(aioipsec, strongswan, topo: Topology, *, aio_conn: Connection = BASE,
          ss_conn: Connection = BASE, extra: dict | None = None, **ss_kwargs
          ) -> tuple[AioipsecPeer, StrongSwanPeer]:
    """charon on the right (``ss_kwargs``: StrongSwanPeer options), then aioipsec on the
    left (``extra``: aioipsec-only TOML keys, see render_aioipsec_config)."""
    ss = strongswan(topo, "right", ss_conn, **ss_kwargs)
    aio = aioipsec(topo, "left", aio_conn, extra=extra)
    return aio, ss


def aio_sent(aio: AioipsecPeer, exchange: str) -> list[str]:
    """aioipsec's ``<exchange> sent`` log lines: one per message first sent (its
    retransmits are logged as ``<exchange> retransmit``)."""
    return re.findall(rf"{exchange} sent .*", aio.logs())


# ---------------------------------------------------------------------------
# 1. INVALID_KE_PAYLOAD: the responder wants another group than the initiator's first

@pytest.mark.parametrize("initiator", INITIATORS)
def test_invalid_ke_retry(aioipsec, strongswan, direct_topology: Topology,
                          initiator: str) -> None:
    """The initiator proposes x25519 first, ecp256 second, and sends its KE for x25519;
    the responder accepts only ecp256, answers INVALID_KE_PAYLOAD(ecp256), and the
    initiator's second IKE_SA_INIT (with an ecp256 KE) establishes the SA."""
    topo = direct_topology
    both = with_proposals(BASE, ike="aes128gcm16-prfsha256-x25519-ecp256")
    ecp = with_proposals(BASE, ike="aes128gcm16-prfsha256-ecp256")
    aio, ss = start(aioipsec, strongswan, topo,
                    aio_conn=both if initiator == "aioipsec" else ecp,
                    ss_conn=both if initiator == "strongswan" else ecp)
    aio_child, ss_child = establish(aio, ss, initiator)
    (ss_ike,) = ss.list_sas()
    assert ss_ike.raw["dh-group"] == "ECP_256"
    (aio_ike,) = aio.list_sas()
    assert aio_ike.raw["proposal"] == "aes128gcm16-prfsha256-ecp256"
    log = ss.logs()
    if initiator == "aioipsec":
        # charon, the responder, asked for its group ...
        assert re.search(r"DH group CURVE_25519 unacceptable, requesting ECP_256", log), log
        assert re.search(r"generating IKE_SA_INIT response 0 \[ N\(INVAL_KE\) \]", log)
        assert log.count("N(INVAL_KE)") == 1             # the retry's KE was accepted
        # ... and aioipsec sent IKE_SA_INIT twice: x25519 KE, then ecp256 KE
        inits = aio_sent(aio, "IKE_SA_INIT")
        assert len(inits) == 2, inits
        assert re.search(r"IKE_SA_INIT received .* payloads=N\(INVALID_KE_PAYLOAD\)",
                         aio.logs()), aio.logs()
    else:
        # aioipsec, the responder, asked for ecp256; charon retried with it
        assert re.search(r"parsed IKE_SA_INIT response 0 \[ N\(INVAL_KE\) \]", log), log
        assert re.search(r"peer didn't accept DH group CURVE_25519, it requested ECP_256",
                         log), log
        assert len(re.findall(r"IKE_SA_INIT received .*kind=request", aio.logs())) == 2
        assert re.search(r"IKE_SA_INIT sent .* payloads=N\(INVALID_KE_PAYLOAD\)", aio.logs())
    assert (aio_child.spi_in, aio_child.spi_out) == (ss_child.spi_out, ss_child.spi_in)
    ping_both_ways(topo, "left")


# ---------------------------------------------------------------------------
# 2. COOKIE (RFC 7296 2.6)

def leave_half_open(topo: Topology, side: str = "left") -> bytes:
    """Start an IKE SA with the other side's charon and abandon it after IKE_SA_INIT:
    a valid IKE_SA_INIT (built by aioipsec's own sans-I/O initiator) from an ephemeral
    port of ``side``; returns charon's answer.  charon then holds one half-open
    responder IKE SA (for its half_open_timeout, 30 s)."""
    from aioipsec.config import connection

    me, peer = topo.side(side), topo.other(side)
    with me.ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((me.outer4, 0))
        sock.settimeout(5)
        from aioipsec.ike.v2.session import IkeSessionV2

        cfg = connection("stray", proposals=["aes128gcm16-prfsha256-x25519"], psk=b"x" * 32,
                         local_id=me.fqdn, remote_id=peer.fqdn,
                         remote_addrs=[peer.outer4])
        session = IkeSessionV2(configuration=cfg, is_initiator=True,
                               local_addr=sock.getsockname(), remote_addr=(peer.outer4, 500))
        session.initiate(now=0.0)
        ((data, _addr),) = session.datagrams_to_send(0.0)
        sock.sendto(data, (peer.outer4, 500))
        answer, _ = sock.recvfrom(4096)
        return answer
    finally:
        sock.close()


def test_cookie_charon_demands(aioipsec, strongswan, direct_topology: Topology) -> None:
    """charon requires a COOKIE once it holds a half-open IKE SA (cookie_threshold 1;
    0 would disable the mechanism): aioipsec's IKE_SA_INIT is answered with N(COOKIE)
    and its retry, carrying the cookie first, establishes the SA."""
    topo = direct_topology
    ss = strongswan(topo, "right", BASE, charon_options={"cookie_threshold": "1"},
                    debug={"net": 2})
    aio = aioipsec(topo, "left", BASE)
    first = leave_half_open(topo)
    assert len(first) > 28 and first[16] == 33        # SA first: no COOKIE yet
    half_open = [sa for sa in ss.list_sas() if sa.state == "CONNECTING"]
    assert len(half_open) == 1, ss.list_sas()
    aio_child, ss_child = establish(aio, ss, "aioipsec")
    ss.wait_log(r"sending COOKIE notify to 192\.0\.2\.1", timeout=1)
    inits = aio_sent(aio, "IKE_SA_INIT")
    assert len(inits) == 2, inits
    assert "payloads=SA KE" in inits[0] and "payloads=N(COOKIE) SA KE" in inits[1], inits
    assert re.search(r"IKE_SA_INIT received .* payloads=N\(COOKIE\)", aio.logs())
    established = [sa for sa in ss.list_sas() if sa.state == "ESTABLISHED"]
    assert len(established) == 1 and established[0].children
    ping_both_ways(topo, "left")


def test_cookie_aioipsec_demands(aioipsec, strongswan, direct_topology: Topology) -> None:
    """aioipsec's endpoint requires a COOKIE for every IKE_SA_INIT (``[global]
    cookie_threshold = 0``): charon retries with it and the SA comes up."""
    topo = direct_topology
    ss = strongswan(topo, "right", BASE)
    aio = aioipsec(topo, "left", BASE, extra={"global": {"cookie_threshold": 0}})
    establish(aio, ss, "strongswan")
    assert re.search(r"parsed IKE_SA_INIT response 0 \[ N\(COOKIE\) \]", ss.logs()), ss.logs()
    assert re.search(r"generating IKE_SA_INIT request 0 \[ N\(COOKIE\) SA KE No", ss.logs())
    # the endpoint answered the first request statelessly: one session, one SA
    (aio_ike,) = aio.list_sas()
    assert aio_ike.state == "ESTABLISHED"
    assert aio.status()["endpoint"]["cookies_sent"] == 1
    ping_both_ways(topo, "left")


# ---------------------------------------------------------------------------
# 3. NO_PROPOSAL_CHOSEN

def aio_warnings(aio: AioipsecPeer) -> list[str]:
    return [line for line in aio.logs().splitlines() if " WARNING " in line]


def wait_no_sas(*peers: AioipsecPeer | StrongSwanPeer, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    for peer in peers:
        while peer.list_sas():
            assert time.monotonic() < deadline, f"{peer.name} still lists {peer.list_sas()}"
            time.sleep(0.05)


@pytest.mark.parametrize("initiator", INITIATORS)
def test_no_proposal_ike(aioipsec, strongswan, direct_topology: Topology,
                         initiator: str) -> None:
    """Disjoint IKE proposals: the responder answers IKE_SA_INIT with
    N(NO_PROPOSAL_CHOSEN) and nothing is left behind on either end."""
    topo = direct_topology
    aio, ss = start(aioipsec, strongswan, topo,
                    aio_conn=with_proposals(BASE, ike="aes256-sha256-modp2048"))
    if initiator == "aioipsec":
        with pytest.raises(PeerError, match="NegotiationFailed.*NO_PROPOSAL_CHOSEN"):
            aio.initiate(timeout=8)
        assert "received proposals: IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/" \
            "MODP_2048" in ss.logs()
        assert re.search(r"generating IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]", ss.logs())
        expected = (r"WARNING ih: NegotiationFailed\(peer='192\.0\.2\.2\[500\]', "
                    r"exchange='IKE_SA_INIT', notify='NO_PROPOSAL_CHOSEN', "
                    r"reason='IKE_SA_INIT refused by peer'\)")
    else:
        with pytest.raises(StrongSwanError, match="initiate ih/ih failed"):
            ss.initiate(timeout=8)
        assert "received NO_PROPOSAL_CHOSEN notify error" in ss.logs()
        expected = (r"WARNING ih: NegotiationFailed\(peer='192\.0\.2\.2\[500\]', "
                    r"exchange='IKE_SA_INIT', notify='NO_PROPOSAL_CHOSEN', "
                    r"reason='no acceptable IKE proposal: received aes128gcm16-prfsha256-x25519; "
                    r"configured aes256-sha256-modp2048'\)")
    warnings = aio_warnings(aio)
    assert len(warnings) == 1 and re.search(expected, warnings[0]), warnings
    # one exchange, no retransmits, nothing half-open on either end
    assert len(aio_sent(aio, "IKE_SA_INIT")) == 1
    wait_no_sas(aio, ss)
    endpoint = aio.status()["endpoint"]
    assert (endpoint["ike_in"], endpoint["ike_out"]) == (1, 1), endpoint
    assert ping(topo, "left", count=1)[1] == 0
    aio.stop()
    assert_clean_log(aio)


@pytest.mark.parametrize("initiator", INITIATORS)
def test_no_proposal_esp(aioipsec, strongswan, direct_topology: Topology,
                         initiator: str) -> None:
    """IKE proposals match, ESP proposals do not: IKE_AUTH authenticates both ends and
    its response carries N(NO_PROPOSAL_CHOSEN) instead of the Child SA.  Both ends
    keep the same childless IKE SA (RFC 7296 2.21.2; charon: "keeping IKE_SA"), no
    Child SA anywhere, and that IKE SA can still be deleted cleanly."""
    topo = direct_topology
    aio, ss = start(aioipsec, strongswan, topo,
                    aio_conn=with_proposals(BASE, esp="chacha20poly1305"))
    if initiator == "aioipsec":
        with pytest.raises(PeerError, match="NegotiationFailed.*NO_PROPOSAL_CHOSEN"):
            aio.initiate(timeout=8)
        ss.wait_log(r"generating IKE_AUTH response 1 \[ IDr AUTH N\(NO_PROP\) \]", timeout=2)
        assert "received proposals: ESP:CHACHA20_POLY1305/NO_EXT_SEQ" in ss.logs()
        reason = r"reason='ih: refused by peer'"
    else:
        # swanctl --initiate fails: the IKE SA came up, the Child SA did not
        with pytest.raises(StrongSwanError, match="initiate ih/ih failed"):
            ss.initiate(timeout=8)
        assert "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built" in ss.logs()
        reason = (r"reason='no acceptable ESP/AH proposal for ih: received aes128gcm16; "
                  r"configured chacha20poly1305'\)")
    assert "failed to establish CHILD_SA, keeping IKE_SA" in ss.logs()
    warnings = aio_warnings(aio)
    assert len(warnings) == 1, warnings
    assert re.search(r"WARNING ih: NegotiationFailed\(peer='192\.0\.2\.2\[4500\]', "
                     r"exchange='IKE_AUTH', notify='NO_PROPOSAL_CHOSEN', " + reason,
                     warnings[0]), warnings
    (aio_ike,) = aio.list_sas()
    (ss_ike,) = ss.list_sas()
    assert aio_ike.state == ss_ike.state == "ESTABLISHED"
    assert (aio_ike.spi_i, aio_ike.spi_r) == (ss_ike.spi_i, ss_ike.spi_r)
    assert aio_ike.children == () and ss_ike.children == ()
    assert aio.installed_children() == [] and ss.installed_children() == []
    assert ping(topo, "left", count=1)[1] == 0
    # the childless IKE SA is a working one: deleted from aioipsec, gone on both ends
    aio.terminate()
    ss.wait_log(r"received DELETE for IKE_SA ih\[\d+\]", timeout=5)
    wait_no_sas(aio, ss)
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# 4. traffic selectors: narrowing and TS_UNACCEPTABLE

@pytest.mark.parametrize("initiator", INITIATORS)
def test_ts_narrowing(aioipsec, strongswan, direct_topology: Topology, initiator: str) -> None:
    """aioipsec's remote selector (203.0.113.128/25) is wider than what charon allows on
    its side (203.0.113.128/26): the responder narrows it (charon when aioipsec
    initiates; aioipsec when charon proposes its /26), and both ends install the Child SA
    with 203.0.113.0/25 === 203.0.113.128/26; traffic inside the /26 flows."""
    topo = direct_topology
    narrow = "203.0.113.128/26"
    aio, ss = start(aioipsec, strongswan, topo, ss_conn=replace(BASE, local_ts=narrow))
    aio_child, ss_child = establish(aio, ss, initiator)
    assert aio_child.raw["local_ts"] == [topo.left.inner_net4]
    assert aio_child.raw["remote_ts"] == [narrow]
    assert ss_child.raw["local-ts"] == [narrow]
    assert ss_child.raw["remote-ts"] == [topo.left.inner_net4]
    if initiator == "aioipsec":
        # charon got the /25 from aioipsec and answered with its /26
        assert re.search(r"CHILD_SA ih\{\d+\} established with SPIs \w+_i \w+_o and TS "
                         rf"{re.escape(narrow)} === 203\.0\.113\.0/25", ss.logs())
        assert re.search(r"IKE_AUTH sent .* payloads=.*TSi TSr", aio.logs())
    assert re.search(r"CHILD_SA ih\{\d+\} established with SPIs \w+_i \w+_o and TS "
                     rf"203\.0\.113\.0/25 === {re.escape(narrow)}", aio.logs()), aio.logs()
    ping_both_ways(topo, "left")


@pytest.mark.parametrize("initiator", INITIATORS)
def test_ts_unacceptable(aioipsec, strongswan, direct_topology: Topology,
                         initiator: str) -> None:
    """Disjoint selectors (aioipsec wants 203.0.113.192/26 behind charon, charon offers
    203.0.113.128/26): the responder answers N(TS_UNACCEPTABLE); the IKE SA stays,
    childless, on both ends."""
    topo = direct_topology
    aio, ss = start(aioipsec, strongswan, topo,
                    aio_conn=replace(BASE, remote_ts="203.0.113.192/26"),
                    ss_conn=replace(BASE, local_ts="203.0.113.128/26"))
    if initiator == "aioipsec":
        with pytest.raises(PeerError, match="NegotiationFailed.*TS_UNACCEPTABLE"):
            aio.initiate(timeout=8)
        ss.wait_log(r"generating IKE_AUTH response 1 \[ IDr AUTH N\(TS_UNACCEPT\) \]", timeout=2)
    else:
        with pytest.raises(StrongSwanError, match="initiate ih/ih failed"):
            ss.initiate(timeout=8)
        assert "received TS_UNACCEPTABLE notify, no CHILD_SA built" in ss.logs()
        assert re.search(r"IKE_AUTH sent .* payloads=IDr AUTH N\(TS_UNACCEPTABLE\)",
                         aio.logs()), aio.logs()
    warnings = aio_warnings(aio)
    assert len(warnings) == 1 and "notify='TS_UNACCEPTABLE'" in warnings[0], warnings
    if initiator == "strongswan":
        # what charon proposed, from aioipsec's side (local === remote)
        assert ("reason='no child configuration matches the traffic selectors "
                "203.0.113.0/25 === 203.0.113.128/26'" in warnings[0]), warnings
    (aio_ike,) = aio.list_sas()
    (ss_ike,) = ss.list_sas()
    assert aio_ike.state == ss_ike.state == "ESTABLISHED"
    assert aio_ike.children == () and ss_ike.children == ()
    assert ping(topo, "left", count=1)[1] == 0
    aio.stop()
    assert_clean_log(aio)


# ---------------------------------------------------------------------------
# 5. PFS: a key exchange in the ESP proposal, Child SA rekeys under traffic

PFS_CASES = [("aes128gcm16-x25519", "CURVE_25519", "aioipsec", "aioipsec"),
             ("aes128gcm16-x25519", "CURVE_25519", "strongswan", "strongswan"),
             ("aes256-sha256-modp2048", "MODP_2048", "aioipsec", "strongswan"),
             ("aes256-sha256-modp2048", "MODP_2048", "strongswan", "aioipsec")]


@pytest.mark.parametrize(("esp", "group", "rekeyer", "initiator"), PFS_CASES)
def test_pfs_child_rekey(aioipsec, strongswan, direct_topology: Topology, esp: str, group: str,
                         rekeyer: str, initiator: str) -> None:
    """ESP proposal with a KE group: the first Child SA (IKE_AUTH) has no KE of its own;
    each rekey (CREATE_CHILD_SA, every 2 s on ``rekeyer``'s side) carries a KE payload
    in both directions and charon reports the group; pings keep flowing."""
    topo = direct_topology
    _ike, child_opts = short_lifetimes(child_rekey=2)
    plain = with_proposals(BASE, esp=esp)
    short = replace(plain, child_options=child_opts)
    aio, ss = start(aioipsec, strongswan, topo,
                    aio_conn=short if rekeyer == "aioipsec" else plain,
                    ss_conn=short if rekeyer == "strongswan" else plain)
    first, _ = establish(aio, ss, initiator)
    count, interval = 30, 0.2                           # 6 s of traffic
    pinger = _background_ping(topo, "left", count, interval)
    spis = {first.spi_in}
    deadline = time.monotonic() + count * interval + 5
    while pinger.poll() is None and time.monotonic() < deadline:
        spis.update(c.spi_in for c in aio.installed_children())
        time.sleep(0.1)
    sent, received = _ping_result(pinger, timeout=5)
    print(f"\nPFS {esp} (rekeyer {rekeyer}): {received}/{sent} pings, {len(spis) - 1} rekeys")
    assert len(spis) >= 3, f"{len(spis) - 1} Child SA rekeys in 6 s (rekey_time 2 s)"
    assert sent == count and received >= count - 2, f"{received}/{sent} pings through rekeys"
    # every CREATE_CHILD_SA (both directions) carried a KE; the first Child SA had none
    direction = ("sent", "received") if rekeyer == "aioipsec" else ("received", "sent")
    requests = re.findall(rf"CREATE_CHILD_SA {direction[0]} .*kind=request .*", aio.logs())
    answers = re.findall(rf"CREATE_CHILD_SA {direction[1]} .*kind=response .*", aio.logs())
    assert len(requests) >= 2 and len(answers) >= 2, (requests, answers)
    for line in requests + answers:
        assert re.search(r"payloads=.*\bKE\b", line), line
    assert not re.search(r"IKE_AUTH \w+ .*payloads=.*\bKE\b", aio.logs())
    aio_now, ss_now = current_pair(aio, ss)
    assert ss_now.spi_in != first.spi_out
    assert ss_now.raw.get("dh-group") == group, ss_now.raw
    assert aio_now.raw["proposal"] == esp, aio_now.raw
    # both directions while the rekeys go on every 2 s: make-before-break on both
    # ends (a rekey responder keeps sending on the old SA until the initiator
    # deletes it or uses the new one), so nothing is lost
    for src in ("left", "right"):
        sent, received = ping(topo, src, count=3)
        assert (sent, received) == (3, 3), f"ping from {src}: {received}/{sent}"


def current_pair(aio: AioipsecPeer, ss: StrongSwanPeer, timeout: float = 3
                 ) -> tuple[ChildSa, ChildSa]:
    """The newest Child SA of each end, once both ends agree on it (rekeys keep going
    while we look: a snapshot may fall between the two ends installing one)."""
    deadline = time.monotonic() + timeout
    while True:
        aio_now, ss_now = aio.wait_established(), ss.wait_established()
        if (aio_now.spi_in, aio_now.spi_out) == (ss_now.spi_out, ss_now.spi_in):
            return aio_now, ss_now
        assert time.monotonic() < deadline, f"the ends disagree: {aio_now} / {ss_now}"
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# 6. DPD (liveness checks: empty INFORMATIONAL exchanges)

# aioipsec gives up on a request after 0.5 + 0.7 + 1.0 s (three sends)
FAST_RETRANSMIT = {"retransmit_timeout": "0.5s", "retransmit_base": 1.4, "retransmit_tries": 2}


def test_dpd_dead_charon(aioipsec, strongswan, direct_topology: Topology) -> None:
    """charon is killed (SIGKILL: no DELETE); aioipsec's next liveness check (dpd_delay
    1 s) goes unanswered through its retransmits, it declares the peer dead and removes
    the IKE SA, the Child SA and their data-plane state."""
    topo = direct_topology
    dpd = replace(BASE, dpd_delay="1s")
    aio, ss = start(aioipsec, strongswan, topo, aio_conn=dpd, ss_conn=dpd,
                    extra={"ike": FAST_RETRANSMIT})
    child, _ = establish(aio, ss, "aioipsec")
    ping_both_ways(topo, "left", count=1)
    assert ss.process is not None
    ss.process.popen.kill()                             # by the PID we started
    ss.process.popen.wait(timeout=5)
    killed = time.monotonic()
    aio.wait_gone(timeout=10)
    detected = time.monotonic() - killed
    print(f"\ndead peer detected {detected:.1f} s after SIGKILL")
    log = aio.logs()
    # one liveness check (an empty INFORMATIONAL request), retransmitted twice
    (dpd_request,) = re.findall(r"INFORMATIONAL sent .*kind=request mid=(\d+) payloads=$", log,
                                re.M)
    for attempt in (1, 2):
        assert re.search(rf"INFORMATIONAL retransmit .* mid={dpd_request} attempt={attempt}",
                         log), log[-3000:]
    assert "giving up on INFORMATIONAL with 192.0.2.2[4500] after 2 retransmits" in log
    assert re.search(r"WARNING ih: DpdTimeout\(peer='192\.0\.2\.2\[4500\]'\)", log)
    assert re.search(rf"CHILD_SA ih\{{\d+\}} {child.spi_in:08x}_i {child.spi_out:08x}_o deleted",
                     log), log[-3000:]
    assert re.search(r"IKE_SA ih \w+_i \w+_r closed: dead peer", log)
    # 1 s idle + 2.2 s of retransmits, well under the bound
    assert detected < 8
    # nothing left in the data plane: a packet for the tunnel finds no policy
    no_policy = aio.status()["endpoint"]["no_policy"]
    assert ping(topo, "left", count=1)[1] == 0
    assert aio.status()["endpoint"]["no_policy"] > no_policy
    aio.stop()
    assert_clean_log(aio)


def test_dpd_answered(aioipsec, strongswan, direct_topology: Topology) -> None:
    """charon checks liveness every second of silence (dpd_delay 1 s); aioipsec answers
    each empty INFORMATIONAL request, and the same SAs stay up and carry traffic."""
    topo = direct_topology
    aio, ss = start(aioipsec, strongswan, topo, ss_conn=replace(BASE, dpd_delay="1s"))
    aio_child, ss_child = establish(aio, ss, "strongswan")
    (ike0,) = ss.list_sas()
    deadline = time.monotonic() + 10
    while len(re.findall(r"sending DPD request", ss.logs())) < 3:
        assert time.monotonic() < deadline, "charon sent fewer than 3 DPD requests in 10 s"
        time.sleep(0.2)
    time.sleep(0.5)                                     # the last answer
    answers = re.findall(r"INFORMATIONAL sent .*kind=response .*payloads=\s*$", aio.logs(), re.M)
    assert len(answers) >= 3, answers
    assert "retransmit" not in ss.logs()
    (ike1,) = ss.list_sas()
    assert ike1.state == "ESTABLISHED" and (ike1.spi_i, ike1.spi_r) == (ike0.spi_i, ike0.spi_r)
    assert only_same_child(aio, aio_child.spi_in) and only_same_child(ss, ss_child.spi_in)
    ping_both_ways(topo, "left")


def only_same_child(peer: AioipsecPeer | StrongSwanPeer, spi_in: int) -> bool:
    return [c.spi_in for c in peer.installed_children()] == [spi_in]
