"""A faster ``__init__`` for frozen, slotted dataclasses.

``@dataclass(frozen=True, slots=True)`` generates an ``__init__`` that sets
each field with ``object.__setattr__`` (looked up as a global and an
attribute per field, then the generic attribute machinery), because the
class's own ``__setattr__`` raises.  An IKEv2 handshake creates ~120 such
objects (payloads, transforms, selectors, events), and that ``__init__``
costs ~450 ns for four fields here against ~125 ns for an unfrozen one.

:func:`fast_init` replaces it with one that calls each slot's member
descriptor (``Cls.field.__set__``, bound once) directly: same signature and
defaults, same result, still frozen (``__setattr__`` still raises), ~40 %
cheaper.  Classes it cannot handle (no slots, ``__post_init__``,
keyword-only or ``init=False`` fields, ``InitVar``)
keep the generated ``__init__``.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import TypeVar

T = TypeVar("T", bound=type)

_FACTORY = getattr(dataclasses, "_HAS_DEFAULT_FACTORY", None)
"""The default that marks a ``default_factory`` field in a generated
``__init__`` (private to dataclasses: without it such classes are skipped)."""

FAST_INIT_CLASSES: list[type] = []
"""The classes whose ``__init__`` was replaced (the tests check each against
the dataclass-generated one, kept as ``__init__.__wrapped__``)."""


def fast_init(cls: T) -> T:
    """Class decorator, applied on top of ``@dataclass(frozen=True, slots=True)``."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__post_init__" in dir(cls):
        return cls
    fields = dataclasses.fields(cls)
    if list(inspect.signature(cls.__init__).parameters)[1:] != [f.name for f in fields]:
        return cls  # InitVar pseudo-fields, init=False
    ns: dict[str, object] = {}
    args: list[str] = []
    body: list[str] = []
    for f in fields:
        slot = getattr(cls, f.name, None)
        if f.kw_only or not isinstance(slot, types.MemberDescriptorType):  # init=False: caught above
            return cls
        ns[f"_s_{f.name}"] = slot.__set__
        if f.default_factory is not dataclasses.MISSING:
            if _FACTORY is None:
                return cls
            # the generated __init__'s default, so that the signature is the same
            ns["_FACTORY"] = _FACTORY
            ns[f"_f_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_FACTORY")
            body.append(f"    if {f.name} is _FACTORY:\n        {f.name} = _f_{f.name}()")
        elif f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            ns[f"_d_{f.name}"] = f.default
            args.append(f"{f.name}=_d_{f.name}")
        body.append(f"    _s_{f.name}(self, {f.name})")
    src = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(src, ns)  # noqa: S102 - the way dataclasses itself builds __init__
    init = ns["__init__"]
    assert isinstance(init, types.FunctionType)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__wrapped__ = cls.__init__  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    FAST_INIT_CLASSES.append(cls)
    return cls
