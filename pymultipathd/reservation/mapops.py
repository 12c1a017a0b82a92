"""Persistent reservations on a multipath map: which of its paths each service action goes through.

A key is registered per I_T nexus, so REGISTER goes through every usable path (side by side, each bounded);
with all_tg_pt one path per initiator port (SCSI host) is enough, the flag registering every target port at
once. RESERVE, PREEMPT and CLEAR act on the logical unit and go through one path (the next one only when the
first could not be reached: a SCSI answer such as a conflict is the device's verdict). RELEASE goes through
every usable path, since only the holding nexus's release counts, and when the reservation is still ours
after that, the holder is a path we cannot reach: the reservation is preempted onto a reachable path with
our own key and released there, and our key is registered again on the other usable paths (the unreachable
ones lose theirs; the daemon registers them again when they come back).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence

from pymultipathd.record import record
from pymultipathd.reservation import codec
from pymultipathd.reservation.device import PrStatus, Reply, prin, prout

# A path could not be reached (no command result): another path may do.
UNREACHED = frozenset({PrStatus.FILE_ERROR, PrStatus.THREAD_ERROR, PrStatus.OTHER, PrStatus.NOT_READY})


@record(frozen=True)
class Path:
    dev: str           # "sdb"
    devnode: str       # "/dev/sdb"
    usable: bool       # active in the map and its device running
    host: int | None   # SCSI host number (the initiator port), for all_tg_pt
    timeout: float     # seconds one command may take


@record(frozen=True)
class Outcome:
    """The result of one operation on a map: overall status, and each path's reply where more than one
    path was used (for the report when they disagree)."""

    status: PrStatus
    data: bytes = b""
    via: str = ""                                  # the path whose reply `data` is
    per_path: tuple[tuple[str, Reply], ...] = ()
    notes: tuple[str, ...] = ()                    # what was done besides (rollback, release workaround)

    @property
    def ok(self) -> bool:
        return self.status is PrStatus.SUCCESS

    @property
    def disagree(self) -> bool:
        return len({r.status for _, r in self.per_path}) > 1


Parallel = Callable[[Mapping[str, tuple[Callable[[], Reply], float]]], dict[str, Reply | Exception]]


def _usable(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if p.usable]


def _no_path() -> Outcome:
    return Outcome(PrStatus.DMMP_ERROR, notes=("the map has no usable path",))


def read(paths: Sequence[Path], action: codec.PrIn, alloc_len: int = codec.DEFAULT_ALLOC_LEN) -> Outcome:
    """PR IN through the first usable path that answers."""
    last: Outcome | None = None
    for p in _usable(paths):
        r = prin(p.devnode, action, p.timeout, alloc_len)
        last = Outcome(r.status, r.data, p.dev, ((p.dev, r),))
        if r.status not in UNREACHED:
            return last
    return last or _no_path()


def _run_all(chosen: Sequence[Path], fn: Callable[[Path], Reply],
             parallel: Parallel) -> list[tuple[str, Reply]]:
    calls = {p.dev: ((lambda p=p: fn(p)), p.timeout + 2.0) for p in chosen}
    got = parallel(calls)
    out = []
    for p in chosen:
        r = got.get(p.dev)
        if r is None:
            r = Reply(PrStatus.THREAD_ERROR, detail=f"no answer within {p.timeout:g} s")
        elif isinstance(r, Exception):
            r = Reply(PrStatus.OTHER, detail=str(r))
        out.append((p.dev, r))
    return out


def _overall(replies: Sequence[tuple[str, Reply]]) -> PrStatus:
    """A conflict anywhere wins (the key is not ours to change there), else the first failure."""
    statuses = [r.status for _, r in replies]
    if PrStatus.RESERVATION_CONFLICT in statuses:
        return PrStatus.RESERVATION_CONFLICT
    return next((s for s in statuses if s is not PrStatus.SUCCESS), PrStatus.SUCCESS)


def one_per_host(paths: Sequence[Path]) -> list[Path]:
    seen: set[int | None] = set()
    out = []
    for p in paths:
        if p.host is None or p.host not in seen:
            out.append(p)
            seen.add(p.host)
    return out


def register(paths: Sequence[Path], action: codec.PrOut, key: int, sa_key: int, *, aptpl: bool,
             all_tg_pt: bool, parallel: Parallel) -> Outcome:
    """REGISTER or REGISTER AND IGNORE EXISTING KEY through every usable path. When some paths registered
    and another met a conflict, REGISTER is undone on the ones that took it, as upstream does, so the
    map does not end up registered through only some of its paths."""
    chosen = _usable(paths)
    if all_tg_pt:
        chosen = one_per_host(chosen)
    if not chosen:
        return _no_path()
    params = codec.prout_params(key, sa_key, aptpl=aptpl, all_tg_pt=all_tg_pt)
    replies = _run_all(chosen, lambda p: prout(p.devnode, action, codec.PrType.NONE, params, p.timeout),
                       parallel)
    status = _overall(replies)
    notes: list[str] = []
    done = [p for p, (_, r) in zip(chosen, replies, strict=True) if r.ok]
    if status is PrStatus.RESERVATION_CONFLICT and done and action is codec.PrOut.REGISTER and sa_key:
        back = codec.prout_params(sa_key, key, aptpl=aptpl, all_tg_pt=all_tg_pt)
        undone = _run_all(done, lambda p: prout(p.devnode, codec.PrOut.REGISTER, codec.PrType.NONE, back,
                                                p.timeout), parallel)
        notes.append("rolled back on " + ", ".join(f"{d} ({r})" for d, r in undone))
    return Outcome(status, per_path=tuple(replies), notes=tuple(notes))


def through_one(paths: Sequence[Path], action: codec.PrOut, prtype: codec.PrType, key: int, sa_key: int,
                *, aptpl: bool = False) -> Outcome:
    """RESERVE, PREEMPT, PREEMPT AND ABORT, CLEAR: through the first usable path that can be reached."""
    params = codec.prout_params(key, sa_key, aptpl=aptpl)
    last: Outcome | None = None
    for p in _usable(paths):
        r = prout(p.devnode, action, prtype, params, p.timeout)
        last = Outcome(r.status, via=p.dev, per_path=((p.dev, r),))
        if r.status not in UNREACHED:
            return last
    return last or _no_path()


def release(paths: Sequence[Path], prtype: codec.PrType, key: int, *, parallel: Parallel) -> Outcome:
    chosen = _usable(paths)
    if not chosen:
        return _no_path()
    params = codec.prout_params(key)
    replies = _run_all(chosen, lambda p: prout(p.devnode, codec.PrOut.RELEASE, prtype, params, p.timeout),
                       parallel)
    held = read(chosen, codec.PrIn.READ_RESERVATION, 24)
    if not held.ok:
        return Outcome(held.status, per_path=tuple(replies), notes=("could not read the reservation back",))
    res = codec.parse_reservation(held.data)
    if res.key is None or res.key != key:
        # released, or the reservation is another host's (nothing of ours to release): a success if any
        # path took the command (a path not registered answers with a conflict), as upstream
        took = any(r.ok for _, r in replies)
        return Outcome(PrStatus.SUCCESS if took else _overall(replies), per_path=tuple(replies))
    # ours still: its holder is a nexus we cannot reach
    notes = ["the path holding the reservation is not usable: preempting it with our own key through "
             "a usable path, releasing it there, and registering our key again on the other usable paths"]
    taken = through_one(chosen, codec.PrOut.PREEMPT, prtype, key, key)
    if not taken.ok:
        return Outcome(taken.status, per_path=tuple(replies) + taken.per_path, notes=tuple(notes))
    holder = next(p for p in chosen if p.dev == taken.via)
    freed = prout(holder.devnode, codec.PrOut.RELEASE, prtype, params, holder.timeout)
    others = [p for p in chosen if p is not holder]
    again = register(others, codec.PrOut.REGISTER_AND_IGNORE, 0, key, aptpl=False, all_tg_pt=False,
                     parallel=parallel) if others else Outcome(PrStatus.SUCCESS)
    notes.append(f"released through {holder.dev}: {freed}")
    status = freed.status if not freed.ok else again.status
    return Outcome(status, per_path=((holder.dev, freed),) + again.per_path, notes=tuple(notes))


class Registration(enum.Enum):
    """What the daemon's registration of one path found."""

    REGISTERED = "registered"
    NOT_OURS = "key not registered"   # the key is not among the device's: unregistered or fenced off
    FAILED = "failed"


def register_path(devnode: str, key: int, aptpl: bool, timeout: float) -> tuple[Registration, str]:
    """The daemon's part: a path joined a map or came back. READ KEYS through it; only when the map's key
    is registered on the logical unit (through another path) is it registered through this one too. A host
    another node fenced off has lost its key, and must not get it back by a path returning."""
    r = prin(devnode, codec.PrIn.READ_KEYS, timeout)
    if not r.ok:
        return Registration.FAILED, f"READ KEYS: {r}"
    try:
        keys = codec.parse_keys(r.data)
    except codec.CodecError as err:
        return Registration.FAILED, f"READ KEYS: {err}"
    if key not in keys.keys:
        return Registration.NOT_OURS, f"0x{key:x} is not among the {len(keys.keys)} registered key(s)"
    params = codec.prout_params(0, key, aptpl=aptpl)
    r = prout(devnode, codec.PrOut.REGISTER_AND_IGNORE, codec.PrType.NONE, params, timeout)
    if not r.ok:
        return Registration.FAILED, f"REGISTER AND IGNORE EXISTING KEY: {r}"
    return Registration.REGISTERED, f"0x{key:x} registered"


def key_present(devnode: str, key: int, timeout: float) -> bool | None:
    """Whether `key` is registered on the logical unit (None: could not be read)."""
    r = prin(devnode, codec.PrIn.READ_KEYS, timeout)
    if not r.ok:
        return None
    try:
        return key in codec.parse_keys(r.data).keys
    except codec.CodecError:
        return None
