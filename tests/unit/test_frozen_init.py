"""aioipsec._frozen.fast_init: the replacement __init__ of frozen slotted
dataclasses must behave exactly like the one dataclasses generated."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import pytest

import aioipsec.ike.v1.session  # noqa: F401 - imports every module that uses fast_init
import aioipsec.ike.v2.session  # noqa: F401
from aioipsec._frozen import FAST_INIT_CLASSES, fast_init


def test_hot_classes_are_converted() -> None:
    names = {c.__name__ for c in FAST_INIT_CLASSES}
    # the payloads, selectors and events an IKEv2 handshake creates most
    assert {"NotifyPayload", "SaProposal", "Transform", "TrafficSelector", "ExchangeStep"} <= names
    assert len(FAST_INIT_CLASSES) >= 40


@pytest.mark.parametrize("cls", FAST_INIT_CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_same_signature_fields_and_frozenness(cls: type) -> None:
    orig = cls.__init__.__wrapped__  # type: ignore[attr-defined]
    fast = cls.__init__
    assert fast is not orig
    # same parameters, order and defaults as the generated __init__
    p_orig = inspect.signature(orig, follow_wrapped=False).parameters
    p_fast = inspect.signature(fast, follow_wrapped=False).parameters
    assert [(n, p.default, p.kind) for n, p in p_orig.items()] == [(n, p.default, p.kind) for n, p in p_fast.items()]
    # distinct sentinel objects per field: each lands in its own field
    fields = dataclasses.fields(cls)
    values = {f.name: object() for f in fields}
    a = object.__new__(cls)
    b = object.__new__(cls)
    orig(a, **values)
    fast(b, **values)
    for f in fields:
        assert getattr(b, f.name) is values[f.name] is getattr(a, f.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(b, fields[0].name, 1) if fields else setattr(b, "x", 1)


@pytest.mark.parametrize("cls", FAST_INIT_CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_defaults_apply(cls: type) -> None:
    fields = dataclasses.fields(cls)
    required = {f.name: object() for f in fields if f.default is dataclasses.MISSING}
    obj = cls(**required)
    for f in fields:
        want = required[f.name] if f.name in required else f.default
        assert getattr(obj, f.name) is want


def test_equal_and_hash_as_before() -> None:
    @fast_init
    @dataclass(frozen=True, slots=True)
    class P:
        a: int
        b: bytes = b"x"

    assert P.__init__ is not P.__init__.__wrapped__  # type: ignore[attr-defined]
    assert P(1) == P(1, b"x") and hash(P(1)) == hash(P(1, b"x"))
    assert P(1) != P(2) and repr(P(1, b"y")).endswith("P(a=1, b=b'y')")
    with pytest.raises(TypeError):
        P()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        P(1, b"", 3)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        P(1).a = 2  # type: ignore[misc]


def test_default_factory_builds_a_fresh_value_per_object() -> None:
    @fast_init
    @dataclass(frozen=True, slots=True)
    class F:
        a: int
        b: list[int] = field(default_factory=list)

    assert F in FAST_INIT_CLASSES
    x, y = F(1), F(2)
    assert x.b == [] and x.b is not y.b
    given = [5]
    assert F(3, given).b is given


def test_unsupported_classes_keep_the_generated_init() -> None:
    @dataclass(frozen=True, slots=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            object.__setattr__(self, "a", self.a + 1)

    @dataclass(frozen=True, slots=True)
    class KwOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    for cls in (Post, KwOnly, NoSlots, NotFrozen):
        before = cls.__init__
        assert fast_init(cls) is cls and cls.__init__ is before
    assert Post(1).a == 2
