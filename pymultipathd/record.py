"""Plain record classes without the dataclasses module: the project's one way to declare a record.

Made for the modules `pymultipath -u` imports, and used everywhere so there is one way, not two. dataclasses
builds every __init__, __eq__ and __repr__ by exec() of generated source (about 1 ms per class in
the TCG test guest) and imports inspect, ast, dis and tokenize; udev runs `-u` for every disk event, so that
import cost matters. Here the methods are closures over the field list: nothing is compiled when a class is
made, and instances cost about what dataclass instances cost to build and read.

Behaviour follows dataclasses for what pymultipathd uses: fields are the class annotations in order, a class
attribute is the default, `field(default_factory=...)` a per-instance default; keyword or positional
__init__; __eq__ compares the field values of instances of the same class; frozen classes raise
FrozenInstanceError (an AttributeError) on assignment and hash by their values, mutable ones are unhashable;
__repr__ is `Name(a=1, b='x')`; `replace()` copies with changes.
"""

from __future__ import annotations

# the C modules: operator.py and reprlib cost more to import than this whole module, on every disk event
from _operator import attrgetter
from _thread import get_ident

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs more than this whole module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_: object) -> Callable[[T], T]:  # typing's tells type checkers about record
        return lambda f: f


_MISSING = object()
_setattr = object.__setattr__


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A default made afresh for every instance (for mutable defaults such as dict or list)."""
    return _Factory(default_factory)  # type: ignore[return-value]


@dataclass_transform(field_specifiers=(field,))
def record(cls: type | None = None, /, *, frozen: bool = False) -> Any:
    """Class decorator: `@record` or `@record(frozen=True)`."""

    def wrap(c: type) -> type:
        return _build(c, frozen)

    return wrap if cls is None else wrap(cls)


def _build(cls: type, frozen: bool) -> type:
    qual = cls.__qualname__
    names = list(getattr(cls, "__record_fields__", ()))  # a record base class's fields come first
    defaults: dict[str, object] = dict(getattr(cls, "__record_defaults__", {}))
    factories: dict[str, Callable[[], object]] = dict(getattr(cls, "__record_factories__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        if name not in names:
            names.append(name)
        value = cls.__dict__.get(name, _MISSING)
        defaults.pop(name, None)
        factories.pop(name, None)
        if isinstance(value, _Factory):
            factories[name] = value.make
            delattr(cls, name)
        elif value is not _MISSING:
            if type(value).__hash__ is None:
                raise ValueError(f"{qual}.{name}: mutable default {type(value).__name__}; use field()")
            defaults[name] = value
    seen_default = False
    for name in names:
        if name in defaults or name in factories:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{qual}: field {name!r} without a default follows one with a default")

    fields = tuple(names)
    count = len(fields)
    known = frozenset(fields)
    fill = tuple((n, defaults.get(n, _MISSING), factories.get(n)) for n in fields)
    head = tuple(fields[:i] for i in range(count + 1))  # the fields that i positional arguments set
    rest = tuple(fill[i:] for i in range(count))  # and the ones after them
    if count == 0:
        values: Callable[[object], tuple[object, ...]] = lambda obj: ()  # noqa: E731
    elif count == 1:
        single = attrgetter(fields[0])
        values = lambda obj: (single(obj),)  # noqa: E731
    else:
        values = attrgetter(*fields)

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        given = len(args)
        if given > count:
            raise TypeError(f"{qual}() takes {count} positional arguments but {given} were given")
        if kwargs and (not known.issuperset(kwargs) or (given and not kwargs.keys().isdisjoint(head[given]))):
            _bad_keywords(qual, head[given], known, kwargs)
        # object.__setattr__ in field order, as dataclasses do: it passes a frozen __setattr__, and keeps the
        # instance's attributes in CPython's compact per-class layout (touching self.__dict__ would not).
        # Plain loops, no zip() or helpers: this runs for every Step the classifier records.
        i = 0
        for value in args:
            _setattr(self, fields[i], value)
            i += 1
        if i == count:
            return
        missing = []
        for name, default, make in rest[i]:
            if make is None:
                value = kwargs.get(name, default)
                if value is _MISSING:
                    missing.append(name)
                    continue
            else:
                value = kwargs[name] if name in kwargs else make()
            _setattr(self, name, value)
        if missing:
            raise TypeError(f"{qual}() missing required arguments: {', '.join(map(repr, missing))}")

    showing: set[tuple[int, int]] = set()  # (instance, thread) whose repr is being made: "..." inside it

    def __repr__(self: object) -> str:
        key = (id(self), get_ident())
        if key in showing:
            return "..."
        showing.add(key)
        try:
            pairs = zip(fields, values(self), strict=True)
            return f"{type(self).__qualname__}({', '.join([f'{n}={v!r}' for n, v in pairs])})"
        finally:
            showing.discard(key)

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    methods: dict[str, object] = {"__init__": __init__, "__repr__": __repr__, "__eq__": __eq__}
    if frozen:

        def __setattr__(self: object, name: str, value: object) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self: object, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        def __hash__(self: object) -> int:
            return hash(values(self))

        methods.update(__setattr__=__setattr__, __delattr__=__delattr__, __hash__=__hash__)
    else:
        methods["__hash__"] = None  # mutable and compared by value, as a dataclass(eq=True)
    for name, method in methods.items():
        if name not in cls.__dict__ or (name == "__hash__" and cls.__dict__[name] is None):
            if callable(method):
                method.__qualname__ = f"{qual}.{name}"  # type: ignore[attr-defined]
            setattr(cls, name, method)
    cls.__record_fields__ = fields  # type: ignore[attr-defined]
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    cls.__record_factories__ = factories  # type: ignore[attr-defined]
    cls.__match_args__ = fields  # type: ignore[attr-defined,misc]
    return cls


def _bad_keywords(qual: str, positional: tuple[str, ...], known: frozenset[str],
                  kwargs: dict[str, object]) -> None:
    for k in kwargs:
        if k not in known:
            raise TypeError(f"{qual}() got an unexpected keyword argument {k!r}")
        if k in positional:
            raise TypeError(f"{qual}() got multiple values for argument {k!r}")


def replace(obj: T, /, **changes: object) -> T:
    """A copy of record `obj` with some fields changed (dataclasses.replace); TypeError for unknown names."""
    for name in obj.__record_fields__:  # type: ignore[attr-defined]
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)
