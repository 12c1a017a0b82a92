"""pymultipathd.record behaves like the dataclasses it replaces on the `-u` path."""

from __future__ import annotations

import dataclasses

import pytest

from pymultipathd.record import FrozenInstanceError, field, record, replace


@record(frozen=True)
class Frozen:
    name: str
    size: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    parts: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FrozenDC:
    name: str
    size: int = 0
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    parts: tuple[str, ...] = ()


@record
class Mutable:
    name: str
    items: list[int] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.items)


@record(frozen=True)
class Pair:
    a: int
    b: str = "x"


@dataclasses.dataclass(frozen=True)
class PairDC:
    a: int
    b: str = "x"


CALLS = [((), {}), (("n",), {}), (("n", 3), {}), ((), {"name": "n", "parts": ("p",)}),
         (("n",), {"tags": {"k": "v"}, "size": 2}), (("n", 1, {}, (), 5), {}), (("n",), {"name": "m"}),
         ((), {"nope": 1}), ((), {"size": 1})]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_init_accepts_and_refuses_what_a_dataclass_does(args, kwargs):
    try:
        expected = repr(FrozenDC(*args, **kwargs)).replace("FrozenDC", "Frozen")
    except TypeError:
        with pytest.raises(TypeError):
            Frozen(*args, **kwargs)
        return
    assert repr(Frozen(*args, **kwargs)) == expected


def test_default_factory_is_per_instance_and_not_a_class_attribute():
    a, b = Frozen("a"), Frozen("b")
    assert a.tags == {} and a.tags is not b.tags
    assert "tags" not in Frozen.__dict__ and Frozen.size == 0
    m = Mutable("m")
    m.items.append(2)
    assert Mutable("m").items == [] and m.total() == 2


def test_equality_and_hash_follow_dataclasses():
    assert Pair(1) == Pair(1, "x") and Pair(1) != Pair(2) and Pair(1) != PairDC(1) and Pair(1) != (1, "x")
    assert hash(Pair(1, "y")) == hash(PairDC(1, "y")) == hash((1, "y"))
    assert len({Pair(1), Pair(1), Pair(2)}) == 2
    with pytest.raises(TypeError):
        hash(Frozen("a"))  # a dict field: unhashable, as with dataclasses
    with pytest.raises(TypeError):
        hash(Mutable("m"))
    assert Mutable("m", [1]) == Mutable("m", [1]) and Mutable("m") != Mutable("m", [1])


def test_frozen_refuses_assignment_mutable_allows_it():
    p = Pair(1)
    with pytest.raises(FrozenInstanceError):
        p.a = 2
    with pytest.raises(AttributeError):
        del p.b
    m = Mutable("m")
    m.name = "n"
    assert m == Mutable("n")


def test_replace():
    p = Frozen("a", 1, {"k": "v"})
    q = replace(p, size=2)
    assert q == Frozen("a", 2, {"k": "v"}) and p.size == 1 and q.tags is p.tags
    with pytest.raises(TypeError):
        replace(p, nope=1)


def test_match_args_and_recursive_repr():
    match Pair(1, "y"):
        case Pair(a, b):
            assert (a, b) == (1, "y")
    m = Mutable("m")
    m.items.append(m)  # type: ignore[arg-type]
    assert repr(m) == "Mutable(name='m', items=[...])"


def test_field_order_errors_like_dataclasses():
    with pytest.raises(TypeError):

        @record
        class Bad:
            a: int = 0
            b: str

    with pytest.raises(ValueError):

        @record
        class Shared:
            a: list = []


# Files that still declare dataclasses: paths/checkers.py belongs to the daemon's rewrite, which converts it
# (then this set is emptied).
NOT_YET_RECORDS: set[str] = set()


def test_records_are_the_one_way_to_declare_them():
    import ast
    import os

    package = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "pymultipathd")
    using = set()
    for root, _dirs, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                tree = ast.parse(open(path, encoding="utf-8").read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and node.module == "dataclasses" or \
                            isinstance(node, ast.Import) and any(a.name == "dataclasses" for a in node.names):
                        using.add(os.path.relpath(path, package))
    assert using <= NOT_YET_RECORDS, sorted(using - NOT_YET_RECORDS)
