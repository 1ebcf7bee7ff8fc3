"""IKEv1 Quick Mode rekey seen from the responder: its ChildSaInstalled
names the IPsec SA it replaces (``rekeyed_from``, the data plane's
make-before-break), found like strongSwan and Cisco do: an installed SA of
the same child with this peer and exactly the same selectors.  An initial
Quick Mode replaces nothing, and SAs of children with other selectors are
never taken for the one being rekeyed."""

from __future__ import annotations

from ikev1_pair import Pair, psk_configs

from aioipsec.config import child
from aioipsec.events import ChildSaDeleted, ChildSaInstalled
from aioipsec.ike.v1.session import REKEY_DELETE_DELAY


def _two_children(responder_children: dict | None = None) -> Pair:
    ci, cr = psk_configs(dpd_delay=0)
    ci.children = {
        "a": child("a", local_ts=["10.1.0.0/16"], remote_ts=["10.2.0.0/16"]),
        "b": child("b", local_ts=["10.3.0.0/16"], remote_ts=["10.4.0.0/16"]),
    }
    cr.children = responder_children or {
        "a": child("a", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"]),
        "b": child("b", local_ts=["10.4.0.0/16"], remote_ts=["10.3.0.0/16"]),
    }
    return Pair(ci, cr)


def _by_name(p: Pair, who: str, name: str):  # type: ignore[no-untyped-def]
    (c,) = [c for c in p.session(who).children.values() if c.name == name and not c.rekeyed]
    return c


def test_initial_quick_modes_replace_nothing() -> None:
    p = _two_children()
    p.start("a")
    p.i.create_child_sa("b", p.now)
    p.pump()
    for who in ("i", "r"):
        evs = p.of(who, ChildSaInstalled)
        assert [e.name for e in evs] == ["a", "b"]
        assert [e.rekeyed_from for e in evs] == [None, None]


def test_rekey_names_the_old_sa_on_both_sides_either_way_round() -> None:
    p = Pair(*psk_configs(dpd_delay=0))
    p.start()
    (old_i,) = p.i.children.values()
    (old_r,) = p.r.children.values()
    p.clear_events()
    p.i.rekey_child_sa(old_i.spi_in, p.now)
    p.pump()
    (new_i,) = p.of("i", ChildSaInstalled)
    (new_r,) = p.of("r", ChildSaInstalled)
    assert not new_r.initiator
    assert new_i.rekeyed_from == old_i.spi_in and new_r.rekeyed_from == old_r.spi_in
    p.advance(p.now + REKEY_DELETE_DELAY + 1)
    assert [(e.spi_in, e.reason) for e in p.of("r", ChildSaDeleted)] == [(old_r.spi_in, "rekeyed")]

    # now the original responder rekeys: the original initiator is the Quick Mode responder
    p.clear_events()
    mid_i, mid_r = p.i.children[new_i.spi_in], p.r.children[new_r.spi_in]
    p.r.rekey_child_sa(mid_r.spi_in, p.now)
    p.pump()
    (third_i,) = p.of("i", ChildSaInstalled)
    (third_r,) = p.of("r", ChildSaInstalled)
    assert not third_i.initiator and third_r.initiator
    assert third_i.rekeyed_from == mid_i.spi_in and third_r.rekeyed_from == mid_r.spi_in
    p.advance(p.now + REKEY_DELETE_DELAY + 1)
    assert [(e.spi_in, e.reason) for e in p.of("i", ChildSaDeleted)] == [(mid_i.spi_in, "rekeyed")]
    assert sorted(p.i.children) == [third_i.spi_in] and sorted(p.r.children) == [third_r.spi_in]


def test_two_children_with_different_selectors_are_not_confused() -> None:
    p = _two_children()
    p.start("a")
    p.i.create_child_sa("b", p.now)
    p.pump()
    a_i, a_r, b_i, b_r = _by_name(p, "i", "a"), _by_name(p, "r", "a"), _by_name(p, "i", "b"), _by_name(p, "r", "b")
    p.clear_events()
    p.i.rekey_child_sa(b_i.spi_in, p.now)  # the second child, by the initiator
    p.pump()
    (ni,) = p.of("i", ChildSaInstalled)
    (nr,) = p.of("r", ChildSaInstalled)
    assert (ni.name, ni.rekeyed_from) == ("b", b_i.spi_in)
    assert (nr.name, nr.rekeyed_from) == ("b", b_r.spi_in)
    assert not a_i.rekeyed and not a_r.rekeyed
    p.advance(p.now + REKEY_DELETE_DELAY + 1)
    for who, old in (("i", b_i), ("r", b_r)):
        assert [(e.name, e.spi_in, e.reason) for e in p.of(who, ChildSaDeleted)] == [("b", old.spi_in, "rekeyed")]
    p.clear_events()
    p.r.rekey_child_sa(a_r.spi_in, p.now)  # the first child, by the responder
    p.pump()
    (ni,) = p.of("i", ChildSaInstalled)
    (nr,) = p.of("r", ChildSaInstalled)
    assert (ni.name, ni.rekeyed_from) == ("a", a_i.spi_in)
    assert (nr.name, nr.rekeyed_from) == ("a", a_r.spi_in)
    p.advance(p.now + REKEY_DELETE_DELAY + 1)
    for who, old in (("i", a_i), ("r", a_r)):
        assert [(e.name, e.spi_in, e.reason) for e in p.of(who, ChildSaDeleted)] == [("a", old.spi_in, "rekeyed")]
        assert sorted(c.name for c in p.session(who).children.values()) == ["a", "b"]


def test_rekey_of_an_sa_we_initiated_for_a_narrower_child() -> None:
    """The responder's first child ("wide") contains the selectors of its
    second ("b").  An SA of "b" it initiated itself, rekeyed by the peer,
    is recognized as "b"'s: the Quick Mode is not given to "wide" (which
    would not match the SA's child and leave rekeyed_from None, the old SA
    then deleted as if by the peer)."""
    ci, cr = psk_configs(dpd_delay=0)
    ci.children = {"b": child("b", local_ts=["10.1.1.0/24"], remote_ts=["10.2.1.0/24"])}
    cr.children = {
        "wide": child("wide", local_ts=["10.2.0.0/16"], remote_ts=["10.1.0.0/16"]),
        "b": child("b", local_ts=["10.2.1.0/24"], remote_ts=["10.1.1.0/24"]),
    }
    p = Pair(ci, cr)
    p.start(None)
    p.r.create_child_sa("b", p.now)
    p.pump()
    (old_i,) = p.i.children.values()
    (old_r,) = p.r.children.values()
    assert old_r.name == "b" and old_r.initiator
    p.clear_events()
    p.i.rekey_child_sa(old_i.spi_in, p.now)
    p.pump()
    (nr,) = p.of("r", ChildSaInstalled)
    assert (nr.name, nr.rekeyed_from) == ("b", old_r.spi_in)
    p.advance(p.now + REKEY_DELETE_DELAY + 1)
    assert [(e.spi_in, e.reason) for e in p.of("r", ChildSaDeleted)] == [(old_r.spi_in, "rekeyed")]
    # a fresh Quick Mode for the same selectors from the initiator's config still works
    (cur_r,) = p.r.children.values()
    assert cur_r.name == "b" and cur_r.spi_in == nr.spi_in
