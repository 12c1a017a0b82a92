"""Multipath and linear device-mapper tables: build and parse (pure, no I/O).

A table line is ``<start> <length> <target> <params>``. For the multipath target the params are::

    <nr_features> <feature>... <nr_hwh_args> [<hwhandler> <arg>...] <nr_groups> <initial_group>
    { <selector> <nr_sel_args> <sel_arg>... <nr_paths> <nr_path_args> { <dev> <path_arg>... }... }...

The status line (``dmsetup status``) of a multipath map has the same skeleton, with the kernel's runtime
state instead of the configuration::

    <nr_features> <queue_io> <pg_init_count> <nr_hwh_args> [<hwh_arg>...] <nr_groups> <next_group>
    { <A|E|D> <nr_sel_status> <sel_status>... <nr_paths> <nr_info_args>
      { <dev> <A|F> <fail_count> <info_arg>... }... }...

Counts are what make both formats parseable without knowing the selectors, so every parser here trusts the
counts and never a selector name.
"""

from __future__ import annotations

from collections.abc import Iterator

from pymultipathd.errors import PymultipathError
from pymultipathd.record import field, record

QUEUE_MODES = ("bio", "rq", "mq")
# Feature keywords the kernel's multipath target knows, with the number of values each takes.
_FEATURE_ARITY = {
    "queue_if_no_path": 0,
    "retain_attached_hw_handler": 0,
    "pg_init_retries": 1,
    "pg_init_delay_msecs": 1,
    "queue_mode": 1,
}


class TableError(PymultipathError, ValueError):
    """A table or status line that cannot be built or parsed; the message quotes the offending text."""


# --- tokens ------------------------------------------------------------------------------------------


class _Words:
    """Cursor over the words of a line, with errors that quote the line and say what was expected."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.words = text.split()
        self.pos = 0

    def fail(self, expected: str) -> TableError:
        got = self.words[self.pos] if self.pos < len(self.words) else "end of line"
        where = f"word {self.pos + 1} ({got!r})"
        return TableError(f"{self.what}: expected {expected} at {where} in {self.text!r}")

    def word(self, expected: str) -> str:
        if self.pos >= len(self.words):
            raise self.fail(expected)
        w = self.words[self.pos]
        self.pos += 1
        return w

    def count(self, expected: str) -> int:
        w = self.word(expected)
        if not w.isdigit():
            self.pos -= 1
            raise self.fail(expected)
        return int(w)

    def words_n(self, n: int, expected: str) -> tuple[str, ...]:
        return tuple(self.word(expected) for _ in range(n))

    def end(self) -> None:
        if self.pos != len(self.words):
            raise self.fail("end of line")


def _check_token(tok: str, what: str) -> str:
    if not tok or any(c.isspace() for c in tok):
        raise TableError(f"{what}: {tok!r} is not a single non-empty word")
    return tok


def _counted(items: tuple[str, ...]) -> list[str]:
    return [str(len(items)), *items]


# --- generic table lines -----------------------------------------------------------------------------


@record(frozen=True)
class TargetLine:
    """One line of any device-mapper table."""

    start: int
    length: int
    target: str
    params: str

    def line(self) -> str:
        return f"{self.start} {self.length} {self.target} {self.params}".rstrip()


def parse_target_line(line: str) -> TargetLine:
    parts = line.strip().split(None, 3)
    if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise TableError(f"table line: expected '<start> <length> <target> <params>' in {line!r}")
    return TargetLine(int(parts[0]), int(parts[1]), parts[2], parts[3] if len(parts) > 3 else "")


# --- multipath table ---------------------------------------------------------------------------------


@record(frozen=True)
class PathSpec:
    """A path in a group: its device ("maj:min") and the selector's per-path args (first: repeat count)."""

    dev: str
    args: tuple[str, ...] = ("1",)


@record(frozen=True)
class PathGroup:
    paths: tuple[PathSpec, ...]
    selector: str = "service-time"
    selector_args: tuple[str, ...] = ()


@record(frozen=True)
class Features:
    queue_if_no_path: bool = False
    queue_mode: str | None = None  # "bio" | "rq" | "mq"; None = kernel default
    retain_attached_hw_handler: bool = False
    pg_init_retries: int | None = None
    pg_init_delay_msecs: int | None = None
    other: tuple[str, ...] = ()  # words this module does not model, passed through in order

    def words(self) -> list[str]:
        """Feature words in the order the kernel prints them back, so a built table reads back the same."""
        out: list[str] = []
        if self.queue_if_no_path:
            out.append("queue_if_no_path")
        if self.pg_init_retries is not None:
            out += ["pg_init_retries", str(self.pg_init_retries)]
        if self.pg_init_delay_msecs is not None:
            out += ["pg_init_delay_msecs", str(self.pg_init_delay_msecs)]
        if self.retain_attached_hw_handler:
            out.append("retain_attached_hw_handler")
        if self.queue_mode is not None:
            if self.queue_mode not in QUEUE_MODES:
                raise TableError(f"features: queue_mode {self.queue_mode!r} is not one of {QUEUE_MODES}")
            out += ["queue_mode", self.queue_mode]
        for w in self.other:
            _check_token(w, "features")
        return out + list(self.other)


def parse_features(words: tuple[str, ...], text: str = "") -> Features:
    """Features from their words (without the leading count)."""
    kw: dict[str, object] = {}
    other: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        arity = _FEATURE_ARITY.get(w)
        if arity is None:
            other.append(w)
            i += 1
            continue
        if arity and i + arity >= len(words):
            raise TableError(f"features: {w} needs a value in {text or ' '.join(words)!r}")
        if w in ("queue_if_no_path", "retain_attached_hw_handler"):
            kw[w] = True
        elif w == "queue_mode":
            kw[w] = words[i + 1]
        else:
            val = words[i + 1]
            if not val.isdigit():
                raise TableError(f"features: {w} needs a number, got {val!r} in {text or ' '.join(words)!r}")
            kw[w] = int(val)
        i += 1 + arity
    return Features(other=tuple(other), **kw)  # type: ignore[arg-type]


@record(frozen=True)
class MultipathTable:
    """What a multipath map should look like: the kernel's table minus nothing."""

    size: int  # sectors of 512 bytes
    groups: tuple[PathGroup, ...]
    features: Features = field(default_factory=Features)
    hwhandler: str | None = None  # e.g. "alua"; None = no handler ("0")
    hwhandler_args: tuple[str, ...] = ()
    initial_group: int = 1  # 1-based group to use first; 0 only when there are no groups

    def params(self) -> str:
        """The target params (what follows ``0 <size> multipath``)."""
        if self.size < 0:
            raise TableError(f"multipath table: negative size {self.size}")
        out = _counted(tuple(self.features.words()))
        if self.hwhandler is None:
            if self.hwhandler_args:
                raise TableError("multipath table: hardware handler args without a handler")
            out.append("0")
        else:
            out += _counted((_check_token(self.hwhandler, "hwhandler"), *self.hwhandler_args))
        if not 0 <= self.initial_group <= len(self.groups) or (self.groups and self.initial_group == 0):
            n = len(self.groups)
            raise TableError(f"multipath table: initial group {self.initial_group} not in 1..{n}")
        out += [str(len(self.groups)), str(self.initial_group)]
        for gi, g in enumerate(self.groups, 1):
            if not g.paths:
                raise TableError(f"multipath table: group {gi} has no paths")
            nargs = len(g.paths[0].args)
            if any(len(p.args) != nargs for p in g.paths):
                raise TableError(f"multipath table: paths of group {gi} disagree on the number of path args")
            out.append(_check_token(g.selector, "selector"))
            out += _counted(g.selector_args)
            out += [str(len(g.paths)), str(nargs)]
            for p in g.paths:
                out.append(_check_token(p.dev, "path"))
                out += p.args
        for w in out:
            _check_token(w, "multipath table")
        return " ".join(out)

    def line(self, start: int = 0) -> str:
        return f"{start} {self.size} multipath {self.params()}"

    def devices(self) -> Iterator[str]:
        for g in self.groups:
            for p in g.paths:
                yield p.dev


def parse_multipath_params(params: str, size: int = 0) -> MultipathTable:
    """A multipath table from its target params (as `dmsetup table` prints them after the target name)."""
    w = _Words(params, "multipath table")
    features = parse_features(w.words_n(w.count("feature count"), "feature"), params)
    nh = w.count("hardware handler arg count")
    hwh = w.words_n(nh, "hardware handler arg")
    ngroups = w.count("group count")
    initial = w.count("initial group")
    groups = []
    for _ in range(ngroups):
        selector = w.word("path selector")
        sel_args = w.words_n(w.count("selector arg count"), "selector arg")
        npaths = w.count("path count")
        npargs = w.count("path arg count")
        paths = tuple(PathSpec(w.word("path device"), w.words_n(npargs, "path arg")) for _ in range(npaths))
        groups.append(PathGroup(paths, selector, sel_args))
    w.end()
    return MultipathTable(size, tuple(groups), features, hwh[0] if hwh else None, hwh[1:], initial)


def parse_multipath_line(line: str) -> MultipathTable:
    """A multipath table from a whole ``0 <size> multipath ...`` line."""
    t = parse_target_line(line)
    if t.target != "multipath":
        raise TableError(f"table line: target is {t.target!r}, not multipath, in {line!r}")
    return parse_multipath_params(t.params, t.length)


# --- multipath status --------------------------------------------------------------------------------


@record(frozen=True)
class PathStatus:
    dev: str
    active: bool  # A (usable) or F (failed)
    fail_count: int
    selector_info: tuple[str, ...] = ()  # selector per-path state (e.g. in-flight, throughput)


@record(frozen=True)
class GroupStatus:
    state: str  # "A" active (current), "E" enabled, "D" disabled (bypassed)
    paths: tuple[PathStatus, ...]
    selector_status: tuple[str, ...] = ()


GROUP_STATES = ("A", "E", "D")


@record(frozen=True)
class MultipathStatus:
    groups: tuple[GroupStatus, ...]
    next_group: int = 1  # group the next I/O goes to (1-based; 0 without groups)
    queue_io: bool = False  # kernel holds all I/O (a pg_init is pending or running)
    pg_init_count: int = 0  # pg_init attempts of the current cycle
    hwhandler: tuple[str, ...] = ()  # kernels print "0" here, but older ones printed the handler
    extra_features: tuple[str, ...] = ()  # feature words past the two known ones

    @property
    def pg_init_in_progress(self) -> bool:
        return self.queue_io

    def active_paths(self) -> int:
        return sum(p.active for g in self.groups for p in g.paths)

    def path(self, dev: str) -> PathStatus:
        for g in self.groups:
            for p in g.paths:
                if p.dev == dev:
                    return p
        raise KeyError(dev)

    def active_group(self) -> int | None:
        """1-based number of the group in state A, or None when no group is current."""
        for i, g in enumerate(self.groups, 1):
            if g.state == "A":
                return i
        return None

    def params(self) -> str:
        """The status params the kernel would print for this state (fakes and tests use this)."""
        feats = [str(int(self.queue_io)), str(self.pg_init_count), *self.extra_features]
        out = [*_counted(tuple(feats)), *_counted(self.hwhandler)]
        out += [str(len(self.groups)), str(self.next_group)]
        for g in self.groups:
            if g.state not in GROUP_STATES:
                raise TableError(f"multipath status: group state {g.state!r} is not one of {GROUP_STATES}")
            ninfo = len(g.paths[0].selector_info) if g.paths else 0
            if any(len(p.selector_info) != ninfo for p in g.paths):
                raise TableError("multipath status: paths of a group disagree on the number of info args")
            out += [g.state, *_counted(g.selector_status), str(len(g.paths)), str(ninfo)]
            for p in g.paths:
                out += [p.dev, "A" if p.active else "F", str(p.fail_count), *p.selector_info]
        return " ".join(out)


def is_queueing(table: MultipathTable, status: MultipathStatus) -> bool:
    """True when I/O to the map is being held: queue_if_no_path with no usable path, or a pg_init."""
    return status.queue_io or (table.features.queue_if_no_path and status.active_paths() == 0)


def parse_multipath_status(params: str) -> MultipathStatus:
    """Status params (what `dmsetup status` prints after ``multipath``)."""
    w = _Words(params, "multipath status")
    feats = w.words_n(w.count("feature count"), "feature")
    # Kernels since 2.6.x print "2 <queue_io> <pg_init_count>"; very old ones "1 <queue_io>".
    queue_io = feats[0] == "1" if feats else False
    pg_init = int(feats[1]) if len(feats) > 1 and feats[1].isdigit() else 0
    hwh = w.words_n(w.count("hardware handler arg count"), "hardware handler arg")
    ngroups = w.count("group count")
    next_group = w.count("next group")
    groups = []
    for _ in range(ngroups):
        state = w.word("group state A/E/D")
        if state not in GROUP_STATES:
            w.pos -= 1
            raise w.fail("group state A/E/D")
        sel = w.words_n(w.count("selector status count"), "selector status")
        npaths = w.count("path count")
        ninfo = w.count("path info arg count")
        paths = []
        for _ in range(npaths):
            dev = w.word("path device")
            st = w.word("path state A/F")
            if st not in ("A", "F"):
                w.pos -= 1
                raise w.fail("path state A/F")
            fails = w.count("fail count")
            paths.append(PathStatus(dev, st == "A", fails, w.words_n(ninfo, "path info arg")))
        groups.append(GroupStatus(state, tuple(paths), sel))
    w.end()
    return MultipathStatus(tuple(groups), next_group, queue_io, pg_init, hwh, tuple(feats[2:]))


def parse_multipath_status_line(line: str) -> MultipathStatus:
    t = parse_target_line(line)
    if t.target != "multipath":
        raise TableError(f"status line: target is {t.target!r}, not multipath, in {line!r}")
    return parse_multipath_status(t.params)


# --- linear (partition maps) -------------------------------------------------------------------------


@record(frozen=True)
class LinearTable:
    size: int  # sectors
    device: str  # "maj:min" of the underlying device
    offset: int  # start sector on that device

    def params(self) -> str:
        if self.size <= 0 or self.offset < 0:
            raise TableError(f"linear table: bad size {self.size} or offset {self.offset}")
        return f"{_check_token(self.device, 'linear device')} {self.offset}"

    def line(self, start: int = 0) -> str:
        return f"{start} {self.size} linear {self.params()}"


def parse_linear_line(line: str) -> LinearTable:
    t = parse_target_line(line)
    w = _Words(t.params, "linear table")
    if t.target != "linear":
        raise TableError(f"table line: target is {t.target!r}, not linear, in {line!r}")
    dev = w.word("device")
    off = w.count("offset")
    w.end()
    return LinearTable(t.length, dev, off)
