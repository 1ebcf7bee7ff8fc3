"""MOBIKE responder (RFC 4555): negotiation in IKE_AUTH, UPDATE_SA_ADDRESSES
moving the IKE SA and its Child SAs, NAT detection redone (and UDP
encapsulation switched) for the new path, COOKIE2 echoed, path probes
answered where they came from without moving, forged or replayed updates
ignored, and the unchanged behaviour towards a peer without MOBIKE.

The roaming initiator is an aioipsec session with test tasks
(:mod:`mobike_helpers`); the responder is the code under test.  Addresses
are documentation ranges."""

from __future__ import annotations

from typing import Any

import pytest
from ikev2_pair import Pair, psk_pair_configs
from mobike_helpers import announce, send_informational

from aioipsec.events import LocalAddressChanged, PeerAddressChanged
from aioipsec.ike.constants import NotifyType
from aioipsec.ike.natd import natd_hash
from aioipsec.ike.v2.message import decode_message

OLD = ("192.0.2.1", 500)  # the initiator before roaming (ikev2_pair.I_ADDR)
NEW = ("192.0.2.77", 4500)  # its new address (new Wi-Fi), floated to 4500
NAT = ("198.51.100.99", 41234)  # a NAT's public mapping of NEW
COOKIE2 = bytes(range(16))


def _pair(*, i_announces: bool = True, r_mobike: bool = True, r_kw: dict | None = None) -> tuple[Pair, Any]:
    # the initiator's own MOBIKE is off: the test tasks of mobike_helpers play it
    i_cfg, r_cfg = psk_pair_configs(i_kw={"mobike": False}, r_kw={"mobike": r_mobike, **(r_kw or {})})
    p = Pair(i_cfg, r_cfg)
    p.initiate()
    task = announce(p.i) if i_announces else None
    p.settle()
    assert p.i.is_established and p.r is not None and p.r.is_established
    p.clear_events()
    return p, task


def _moves(p: Pair) -> list[PeerAddressChanged]:
    return [e for e in p.events("r", PeerAddressChanged) if isinstance(e, PeerAddressChanged)]


def _notify(msg: Any, ntype: int) -> bytes | None:
    n = msg.get_notify(ntype)
    return None if n is None else n.data


@pytest.mark.parametrize(
    ("i_announces", "r_mobike"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_mobike_negotiated_only_when_both_want_it(i_announces: bool, r_mobike: bool) -> None:
    p, task = _pair(i_announces=i_announces, r_mobike=r_mobike)
    assert p.r is not None
    both = i_announces and r_mobike
    assert p.r.sa.mobike is both
    if task is not None:  # the IKE_AUTH response carries MOBIKE_SUPPORTED exactly then
        assert task.answered is both


def test_update_sa_addresses_moves_the_responder() -> None:
    p, _ = _pair()
    r = p.r
    assert r is not None and r.remote_addr == OLD and not r.nat_t
    [child] = r.child_sas
    assert child.encap is False
    t, req = send_informational(p.i, p.now, natd_source=NEW, cookie2=COOKIE2)
    r.receive_datagram(req, NEW, p.now)
    # the IKE SA follows the request's source, the answer goes there
    assert r.remote_addr == NEW
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == NEW
    [ev] = _moves(p)
    assert (ev.old_addr, ev.new_addr, ev.encap) == (OLD, NEW, False)  # no NAT on the new path: plain ESP
    assert r.nat_t and r.local_addr == ("192.0.2.2", 4500)  # MOBIKE runs on 4500
    # the answer: our NAT-D for this path (RFC 4555 §3.5) and the COOKIE2 echoed (§3.7)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert t.response is not None
    spi_i, spi_r = p.i.sa.spi_i, p.i.sa.spi_r
    assert _notify(t.response, NotifyType.COOKIE2) == COOKIE2
    assert _notify(t.response, NotifyType.NAT_DETECTION_SOURCE_IP) == natd_hash(spi_i, spi_r, r.local_addr)
    assert _notify(t.response, NotifyType.NAT_DETECTION_DESTINATION_IP) == natd_hash(spi_i, spi_r, NEW)
    # the same IKE SA and Child SA go on: a later request of ours goes to the new address
    assert r.child_sas == [child] and r.sa.spi_i == spi_i
    r.dpd(p.now)
    [(_, dst)] = r.datagrams_to_send(p.now)
    assert dst == NEW


def test_update_from_behind_a_nat_turns_udp_encapsulation_on_then_off() -> None:
    p, _ = _pair()
    r = p.r
    assert r is not None
    [child] = r.child_sas
    # the client's new network NATs it: its NAT-D hashes NEW, the datagram comes from NAT
    _, req = send_informational(p.i, p.now, natd_source=NEW)
    r.receive_datagram(req, NAT, p.now)
    [ev] = _moves(p)
    assert (ev.new_addr, ev.encap) == (NAT, True)
    assert r.remote_addr == NAT and r.sa.nat_remote and child.encap is True
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == NAT
    p.i.receive_datagram(resp, r.local_addr, p.now)
    p.clear_events()
    # and back onto a network without NAT: encapsulation off again
    _, req = send_informational(p.i, p.now, natd_source=NEW)
    r.receive_datagram(req, NEW, p.now)
    [ev] = _moves(p)
    assert (ev.old_addr, ev.new_addr, ev.encap) == (NAT, NEW, False)
    assert not r.sa.nat_remote and child.encap is False


def test_update_is_followed_even_when_we_are_behind_a_nat() -> None:
    """Without MOBIKE a host behind a NAT ignores a peer's new address (RFC
    7296 §2.23); with MOBIKE the peer asked explicitly, so it moves."""
    p, _ = _pair(r_kw={"encap": True})  # encap=yes: the responder counts as behind a NAT
    r = p.r
    assert r is not None and r.sa.nat_local
    _, req = send_informational(p.i, p.now, natd_source=NEW)
    r.receive_datagram(req, NEW, p.now)
    [ev] = _moves(p)
    assert ev.new_addr == NEW and ev.encap is True  # still "behind a NAT": encapsulation stays on
    assert r.remote_addr == NEW and r.stats.peer_moves_ignored == 0


def test_probe_without_update_is_answered_at_its_source_without_moving() -> None:
    """strongSwan probes the new path with an INFORMATIONAL (NAT-D, no
    UPDATE_SA_ADDRESSES) and sends the update only once an answer arrives
    there; with MOBIKE there are no implicit address updates."""
    p, _ = _pair()
    r = p.r
    assert r is not None
    t, req = send_informational(p.i, p.now, update=False, natd_source=NEW)
    r.receive_datagram(req, NEW, p.now)
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == NEW and r.remote_addr == OLD and not _moves(p)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert t.response is not None
    assert _notify(t.response, NotifyType.NAT_DETECTION_DESTINATION_IP) == natd_hash(p.i.sa.spi_i, p.i.sa.spi_r, NEW)
    assert _notify(t.response, NotifyType.COOKIE2) is None
    # a plain liveness check from elsewhere does not move it either
    p.i.dpd(p.now)
    [(req, _)] = p.i.datagrams_to_send(p.now)
    r.receive_datagram(req, NAT, p.now)
    [(_, dst)] = r.datagrams_to_send(p.now)
    assert dst == NAT and r.remote_addr == OLD and not _moves(p)


SECOND = "192.0.2.4"  # the responder's second address (ikev2_pair.R_ADDR is its first)


def _local_moves(p: Pair) -> list[LocalAddressChanged]:
    return [e for e in p.events("r", LocalAddressChanged) if isinstance(e, LocalAddressChanged)]


def test_update_sent_to_our_second_address_moves_both_sides() -> None:
    """RFC 4555 §3.5: "the responder updates the IP addresses of the IKE SA
    with the values from the IP header" -- both of them.  A multi-homed
    gateway the client reached at its second address (the first path broke)
    moves its own side there too, so ESP leaves from it (as charon)."""
    p, _ = _pair()
    r = p.r
    assert r is not None and r.local_addr == ("192.0.2.2", 500)
    [child] = r.child_sas
    t, req = send_informational(p.i, p.now, natd_source=NEW, natd_dest=(SECOND, 4500), cookie2=COOKIE2)
    r.receive_datagram(req, NEW, p.now, dst=SECOND)
    assert r.local_addr == (SECOND, 4500) and r.remote_addr == NEW
    # our side first, then the peer's: both events, no NAT on the new path
    moves = [e for e in p.events("r", (LocalAddressChanged, PeerAddressChanged))]
    assert [type(e) for e in moves] == [LocalAddressChanged, PeerAddressChanged]
    local, peer = moves
    assert (local.old_addr, local.new_addr, local.encap) == (("192.0.2.2", 500), (SECOND, 4500), False)
    assert (peer.old_addr, peer.new_addr, peer.encap) == (OLD, NEW, False)
    assert not r.sa.nat_local and not r.sa.nat_remote and child.encap is False
    # the answer's NAT-D hashes the new local address
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == NEW
    p.i.receive_datagram(resp, (SECOND, 4500), p.now)
    assert t.response is not None
    spi_i, spi_r = p.i.sa.spi_i, p.i.sa.spi_r
    assert _notify(t.response, NotifyType.NAT_DETECTION_SOURCE_IP) == natd_hash(spi_i, spi_r, (SECOND, 4500))
    assert _notify(t.response, NotifyType.NAT_DETECTION_DESTINATION_IP) == natd_hash(spi_i, spi_r, NEW)
    assert _notify(t.response, NotifyType.COOKIE2) == COOKIE2
    assert r.child_sas == [child] and not r.is_closed


def test_update_to_our_second_address_from_the_same_peer_address() -> None:
    """The client stays where it is and only switches to our second address:
    only our side moves (LocalAddressChanged alone).  Without a destination,
    or with the one we are at, nothing local changes."""
    p, _ = _pair()
    r = p.r
    assert r is not None
    here = (OLD[0], 4500)
    # without dst (the caller does not know it): the peer's port floats, we stay
    _, req = send_informational(p.i, p.now, natd_source=here)
    r.receive_datagram(req, here, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert r.local_addr == ("192.0.2.2", 4500) and r.remote_addr == here and not _local_moves(p)
    p.clear_events()
    # dst is where we are: nothing changes
    _, req = send_informational(p.i, p.now, natd_source=here)
    r.receive_datagram(req, here, p.now, dst="192.0.2.2")
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert r.local_addr == ("192.0.2.2", 4500) and not p.events("r", (LocalAddressChanged, PeerAddressChanged))
    # sent to our second address: only our side moves
    _, req = send_informational(p.i, p.now, natd_source=here, natd_dest=(SECOND, 4500))
    r.receive_datagram(req, here, p.now, dst=SECOND)
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert r.local_addr == (SECOND, 4500) and r.remote_addr == here
    [ev] = p.events("r", (LocalAddressChanged, PeerAddressChanged))
    assert isinstance(ev, LocalAddressChanged)
    assert (ev.old_addr, ev.new_addr, ev.encap) == (("192.0.2.2", 4500), (SECOND, 4500), False)


def test_probe_to_our_second_address_moves_nothing() -> None:
    """A path probe (no UPDATE_SA_ADDRESSES) sent to our second address is
    answered with NAT-D for that path, but only an update moves us."""
    p, _ = _pair()
    r = p.r
    assert r is not None
    t, req = send_informational(p.i, p.now, update=False, natd_source=NEW, natd_dest=(SECOND, 500))
    r.receive_datagram(req, NEW, p.now, dst=SECOND)
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == NEW and r.local_addr == ("192.0.2.2", 500) and r.remote_addr == OLD
    assert not p.events("r", (LocalAddressChanged, PeerAddressChanged))
    p.i.receive_datagram(resp, (SECOND, 500), p.now)
    assert t.response is not None
    assert _notify(t.response, NotifyType.NAT_DETECTION_SOURCE_IP) == natd_hash(p.i.sa.spi_i, p.i.sa.spi_r, (SECOND, 500))


def test_forged_or_replayed_update_changes_nothing() -> None:
    p, _ = _pair()
    r = p.r
    assert r is not None
    _, req = send_informational(p.i, p.now, natd_source=NEW, cookie2=COOKIE2)
    forged = bytearray(req)
    forged[-1] ^= 0x01  # the ICV no longer verifies
    r.receive_datagram(bytes(forged), NAT, p.now)
    assert r.remote_addr == OLD and not _moves(p) and not r.datagrams_to_send(p.now)
    assert r.stats.integrity_failed == 1
    # the genuine one moves it; a copy replayed later from the old address does not
    r.receive_datagram(req, NEW, p.now)
    assert r.remote_addr == NEW and len(_moves(p)) == 1
    [(resp, _)] = r.datagrams_to_send(p.now)
    p.i.receive_datagram(resp, r.local_addr, p.now)
    r.receive_datagram(req, OLD, p.now)
    assert r.remote_addr == NEW and len(_moves(p)) == 1
    assert r.stats.responses_resent == 1


def test_address_list_notifies_are_kept_and_move_nothing() -> None:
    p, _ = _pair()
    r = p.r
    assert r is not None
    extra = [(NotifyType.ADDITIONAL_IP4_ADDRESS, bytes([192, 0, 2, 78])), (NotifyType.NO_ADDITIONAL_ADDRESSES, b"")]
    t, req = send_informational(p.i, p.now, update=False, extra=extra)
    r.receive_datagram(req, OLD, p.now)
    [(resp, dst)] = r.datagrams_to_send(p.now)
    assert dst == OLD and r.remote_addr == OLD and not _moves(p)
    assert r.sa.peer_addrs == ["192.0.2.78"]  # kept (status, path probing); more in test_ikev2_mobike_addresses.py
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert t.response is not None and t.response.error_notify() is None


def test_cookie2_of_a_bad_length_is_refused() -> None:
    p, _ = _pair()
    r = p.r
    assert r is not None
    t, req = send_informational(p.i, p.now, natd_source=NEW, cookie2=b"short")
    r.receive_datagram(req, NEW, p.now)
    [(resp, _)] = r.datagrams_to_send(p.now)
    assert r.remote_addr == OLD and not _moves(p) and r.stats.errors_answered == 1
    p.i.receive_datagram(resp, r.local_addr, p.now)
    assert t.response is not None and t.response.has_notify(NotifyType.INVALID_SYNTAX)


@pytest.mark.parametrize("behind_nat", [False, True])
def test_without_mobike_an_update_is_only_a_status_notify(behind_nat: bool) -> None:
    """RFC 4555 §3.3: UPDATE_SA_ADDRESSES belongs to an IKE SA on which both
    sent MOBIKE_SUPPORTED; to any other it is an unknown status notify, which
    RFC 7296 §3.10.1 says to ignore.  The request is answered (without NAT-D
    or COOKIE2), and the address follows RFC 7296 §2.23 as before: a host not
    behind a NAT follows the authenticated message, one behind a NAT does not."""
    p, _ = _pair(r_mobike=False, r_kw={"encap": behind_nat})
    r = p.r
    assert r is not None and not r.sa.mobike
    before = r.remote_addr  # (OLD's IP, 4500) with encap=yes
    t, req = send_informational(p.i, p.now, natd_source=NEW, cookie2=COOKIE2)
    r.receive_datagram(req, NEW, p.now)
    [(resp, dst)] = r.datagrams_to_send(p.now)
    moves = _moves(p)
    if behind_nat:
        assert r.remote_addr == before and dst == before and not moves and r.stats.peer_moves_ignored == 1
    else:
        assert r.remote_addr == NEW and dst == NEW
        [ev] = moves
        assert ev.encap is None  # a NAT mapping change: encapsulation untouched
    reply = decode_message(resp, p.i.sa.sk)
    assert _notify(reply, NotifyType.COOKIE2) is None
    assert _notify(reply, NotifyType.NAT_DETECTION_SOURCE_IP) is None


def test_mobike_survives_an_ike_rekey() -> None:
    p, _ = _pair()
    r = p.r
    assert r is not None
    old_spi = r.sa.spi_r
    p.i.rekey_ike_sa(p.now)
    p.settle()
    assert r.sa.spi_r != old_spi and r.sa.mobike
    p.clear_events()
    _, req = send_informational(p.i, p.now, natd_source=NEW)
    r.receive_datagram(req, NEW, p.now)
    assert r.remote_addr == NEW and len(_moves(p)) == 1
