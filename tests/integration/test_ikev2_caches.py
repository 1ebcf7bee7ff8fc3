"""The IKEv2 caches (``aioipsec._cache``: parsed and encoded transforms,
proposal matches and answers, shared decoded payloads, passed message
shapes) change nothing but speed: handshakes between varied proposal
configurations, one after another in one process so that the caches carry
entries from earlier ones, give the same IKE_SA_INIT messages (SPIs, nonces
and NAT-D from scripted randomness) and the same events as the same handshake with every cache
emptied first (what the keys decide left out: X25519 and ECP keys come
from ``cryptography``, not the scripted randomness), and the outcome the
configurations call for."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from ikev2_pair import Pair, psk_pair_configs

from aioipsec._cache import ALL_CACHES, clear_all
from aioipsec.crypto.transforms import parse_proposal
from aioipsec.events import ChildSaInstalled, IkeSaEstablished, NegotiationFailed
from aioipsec.ike.v2.message import decode_message
from aioipsec.ike.v2.payloads import KePayload

IKE = [
    "aes128gcm16-prfsha256-x25519",
    "aes256gcm16-prfsha384-ecp384",
    "chacha20poly1305-prfsha256-x25519",
    "aes256-sha384-prfsha384-x25519",
    "aes128-sha256-prfsha256-ecp256",
    "aes128gcm16-prfsha256-ecp256-x25519",
]
ESP = ["aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128-sha256", "aes256-sha512-esn"]


def _event(side: str, e: object) -> tuple:
    """An event without what the X25519/ECP keys decide (not scripted: the
    keys come from ``cryptography``): its fields but the keys; an
    ExchangeStep with its details (SPIs, message ID, payload list)."""
    fields = {k: v for k, v in vars_of(e).items() if "key" not in k}
    if "details" in fields:
        fields["details"] = dict(fields["details"])
    return (side, type(e).__name__, sorted(fields.items(), key=lambda kv: kv[0]))


def vars_of(e: object) -> dict:
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}  # type: ignore[arg-type]


def _init_payloads(data: bytes) -> list:
    """An IKE_SA_INIT message's payloads, the KE payload's data left out."""
    return [("KE", p.group) if isinstance(p, KePayload) else p for p in decode_message(data).payloads]


def _run(i_ike: list[str], r_ike: list[str], i_esp: list[str], r_esp: list[str], seed: int) -> tuple[list, list]:
    """The IKE_SA_INIT messages (without KE data) and both sides' events of one handshake."""
    i, r = psk_pair_configs(i_proposals=i_ike, r_proposals=r_ike, i_esp=i_esp, r_esp=r_esp)
    p = Pair(i, r, seed=seed)
    wire: list[tuple[str, list]] = []
    original_to_r, original_to_i = p.to_r, p.to_i

    def to_r(dgs: list[bytes]) -> None:
        wire.extend(("i>r", _init_payloads(d)) for d in dgs if d[18] == 34)  # IKE_SA_INIT
        original_to_r(dgs)

    def to_i(dgs: list[bytes]) -> None:
        wire.extend(("r>i", _init_payloads(d)) for d in dgs if d[18] == 34)
        original_to_i(dgs)

    p.to_r, p.to_i = to_r, to_i  # type: ignore[method-assign]
    p.initiate()
    p.settle()
    return wire, [_event(side, e) for side in ("i", "r") for e in p.events(side)]


_lists = lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)


@settings(max_examples=40, deadline=None)
@given(_lists(IKE), _lists(IKE), _lists(ESP), _lists(ESP), st.integers(1, 10_000))
def test_handshakes_are_the_same_with_and_without_the_caches(i_ike, r_ike, i_esp, r_esp, seed) -> None:  # type: ignore[no-untyped-def]
    warm_wire, warm_events = _run(i_ike, r_ike, i_esp, r_esp, seed)
    clear_all()
    assert not any(ALL_CACHES)
    cold_wire, cold_events = _run(i_ike, r_ike, i_esp, r_esp, seed)
    assert warm_wire == cold_wire
    assert warm_events == cold_events
    assert warm_wire and warm_events
    kinds = {(side, kind) for side, kind, _ in warm_events}
    if not _agree(i_ike, r_ike, "ike"):
        assert ("i", NegotiationFailed.__name__) in kinds and ("i", IkeSaEstablished.__name__) not in kinds
    elif _agree(i_esp, r_esp, "esp"):
        assert {("i", "IkeSaEstablished"), ("r", "IkeSaEstablished"),
                ("i", "ChildSaInstalled"), ("r", "ChildSaInstalled")} <= kinds
    else:  # the IKE SA comes up, its first Child SA is refused
        assert ("i", IkeSaEstablished.__name__) in kinds and ("i", ChildSaInstalled.__name__) not in kinds


def _agree(ours: list[str], theirs: list[str], protocol: str) -> bool:
    """Some proposal of each side shares an algorithm of every transform
    type (integrity: both none, or one in common), as selection demands."""
    def shares(a: tuple, b: tuple) -> bool:
        return (not a and not b) or bool(set(a) & set(b))

    def fields(p: object) -> list[tuple]:
        f = ["encr", "integ", "esn"] + (["prf", "ke"] if protocol == "ike" else [])
        return [getattr(p, n) for n in f]

    return any(
        all(shares(x, y) for x, y in zip(fields(parse_proposal(a, protocol)), fields(parse_proposal(b, protocol))))
        for a in ours for b in theirs
    )
