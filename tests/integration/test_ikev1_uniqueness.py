"""The IKEv1 uniqueness policy, sans-I/O (:meth:`IkeSessionV1.replaces`, what
the endpoint asks when a Phase 1 is established): two sessions of one
responder configuration, as a peer that came back from another address makes.
``unique = "replace"`` replaces the older session of the same
identities, ``"no"`` (default, as swanctl) only when the new Phase 1 carried INITIAL-CONTACT,
``"never"`` never; other identities, another connection, a session not yet
established or an older one replace nothing.  On an XAUTH gateway the peer is
its XAUTH user: road warriors sharing a group PSK identity do not replace
each other.  The loader takes swanctl's ``unique``."""

from __future__ import annotations

import textwrap

import pytest
from ikev1_pair import Pair, psk_configs
from test_ikev1_xauth import configs as xauth_configs
from test_ikev1_xauth import make_pair

from aioipsec.config_file import loads_config
from aioipsec.errors import ConfigError
from aioipsec.events import ChildSaDeleted, IkeSaDeleted

SECOND = ("192.0.2.77", 500)  # where the peer comes back from


def two(unique: str = "replace", *, ids: tuple[str, str] = ("site.example", "gw.example"),
        ids2: tuple[str, str] | None = None, initial_contact: bool = True) -> tuple[Pair, Pair]:
    ci, cr = psk_configs(ids=ids, unique=unique, initial_contact=initial_contact)
    if ids2 is not None:  # a responder for any peer identity
        _, cr = psk_configs(ids=(None, ids[1]), unique=unique, initial_contact=initial_contact)  # type: ignore[arg-type]
    first = Pair(ci, cr)
    first.start()
    ci2, _ = psk_configs(ids=ids2 or ids, unique=unique, initial_contact=initial_contact)
    second = Pair(ci2, cr, seed=7, addr_i=SECOND)
    second.now = first.now + 5
    second.start()
    assert first.r.is_established and second.r.is_established
    return first, second


def test_the_newer_session_of_the_same_identities_replaces_the_older() -> None:
    first, second = two()
    assert first.r.unique_id() == second.r.unique_id() == ("ikev1", "gw.example", "site.example")
    assert second.r.replaces(first.r)
    assert not first.r.replaces(second.r)  # the older never replaces the newer
    assert not second.r.replaces(second.r)
    first.clear_events()
    first.r.replaced_by(second.r, second.now)
    assert first.r.is_closed and first.r.children == {}
    evs = []
    while (ev := first.r.next_event()) is not None:
        evs.append(ev)
    reasons = {type(e).__name__: e.reason for e in evs if isinstance(e, (ChildSaDeleted, IkeSaDeleted))}
    want = "replaced by a new ISAKMP SA with 192.0.2.77[site.example] (unique = replace)"
    assert reasons == {"ChildSaDeleted": want, "IkeSaDeleted": want}, evs
    # the deletes went to the old address (protected Informationals)
    assert {dst for _d, dst in first.r.datagrams_to_send(second.now)} == {first.r.remote_addr}
    assert not second.r.replaces(first.r)  # closed


def test_unique_never_and_no() -> None:
    first, second = two("never")
    assert not second.r.replaces(first.r)
    # "no": only a Phase 1 with INITIAL-CONTACT replaces (a new client sends it)
    first, second = two("no")
    assert second.r.sa is not None and second.r.sa.initial_contact
    assert second.r.replaces(first.r)
    first, second = two("no", initial_contact=False)
    assert not second.r.replaces(first.r)
    first, second = two("replace", initial_contact=False)
    assert second.r.replaces(first.r)


def test_unique_keep() -> None:
    # without INITIAL-CONTACT the newer one goes, the older stays
    first, second = two("keep", initial_contact=False)
    assert not second.r.replaces(first.r)
    assert second.r.kept_out_by(first.r)
    assert not first.r.kept_out_by(second.r)  # the older one is never the one kept out
    # with INITIAL-CONTACT the peer lost the old one: it is replaced (as charon)
    first, second = two("keep")
    assert second.r.replaces(first.r) and not second.r.kept_out_by(first.r)
    # other policies never keep out
    first, second = two("replace", initial_contact=False)
    assert not second.r.kept_out_by(first.r)
    first, second = two("keep", ids2=("other.example", "gw.example"), initial_contact=False)
    assert not second.r.kept_out_by(first.r)


def test_other_identities_do_not_replace() -> None:
    first, second = two(ids2=("other.example", "gw.example"))
    assert first.r.unique_id() == ("ikev1", "gw.example", "site.example")
    assert second.r.unique_id() == ("ikev1", "gw.example", "other.example")
    assert not second.r.replaces(first.r)


def test_xauth_users_behind_one_group_identity_are_told_apart() -> None:
    alice, _pools = make_pair()
    alice.start()
    assert alice.r.unique_id() == ("gw", "gw.example", "xauth:alice")
    again, _ = make_pair()
    again.now = alice.now + 5
    again.start()
    assert again.r.replaces(alice.r)  # alice came back
    bob_client, gw = xauth_configs("bob-pw")
    bob_client.local2.xauth_id = "bob"  # type: ignore[union-attr]
    bob_client.xauth_secrets = {"bob": b"bob-pw"}
    bob = Pair(bob_client, gw, seed=9, addr_i=SECOND)
    bob.r.pools = _pools
    bob.now = alice.now + 5
    bob.start()
    assert bob.r.unique_id() == ("gw", "gw.example", "xauth:bob")
    assert not bob.r.replaces(alice.r)  # the same group identity, another user


CONF = """
[connections.gw]
version = {version}
{unique}
local = {{ auth = "psk", id = "gw.example" }}
remote = {{ auth = "psk" }}

[secrets.any]
secret = "x"
"""


@pytest.mark.parametrize(("version", "line", "want"), [
    (1, "", "no"), (1, 'unique = "never"', "never"), (1, 'unique = "no"', "no"), (1, 'unique = "replace"', "replace"),
    (1, 'unique = "keep"', "keep"), (2, "", "no"), (2, 'unique = "replace"', "replace"), (2, 'unique = "never"', "never"),
    (2, 'unique = "keep"', "keep")])
def test_loader_takes_unique(version: int, line: str, want: str) -> None:
    cfg = loads_config(textwrap.dedent(CONF.format(version=version, unique=line)), file="u.toml")
    assert cfg.connections["gw"].unique == want


@pytest.mark.parametrize(("version", "line", "message"), [
    (1, 'unique = "yes"', 'u.toml: connections.gw.unique: expected "no", "never", "replace", "keep", got "yes"'),
    (2, 'unique = "sometimes"',
     'u.toml: connections.gw.unique: expected "no", "never", "replace", "keep", got "sometimes"'),
])
def test_loader_refuses_bad_unique(version: int, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(textwrap.dedent(CONF.format(version=version, unique=line)), file="u.toml")
    assert str(info.value).startswith(message), str(info.value)
