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
    refused = [r for _, r in replies if r.status not in UNREACHED
               and r.status not in (PrStatus.SUCCESS, PrStatus.RESERVATION_CONFLICT)]
    if refused:  # a definite answer, such as ILLEGAL REQUEST for a type that is not the reservation's
        return Outcome(refused[0].status, per_path=tuple(replies))
    held = read(chosen, codec.PrIn.READ_RESERVATION, 24)
    if not held.ok:
        return Outcome(held.status, per_path=tuple(replies), notes=("could not read the reservation back",))
    try:
        res = codec.parse_reservation(held.data)
    except codec.CodecError as err:
        return Outcome(PrStatus.MALFORMED, per_path=tuple(replies),
                       notes=(f"the reservation read back through {held.via} is malformed: {err}",))
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
    ALREADY = "already registered"     # this path's I_T nexus had the key
    NOT_OURS = "key not registered"    # the key is not among the device's: unregistered or fenced off
    RACED = "registrations kept changing"  # undone each time; to be tried again later
    FAILED = "failed"


ROUNDS = 3  # times the registration of one path is decided afresh after the registrations changed meanwhile


def _read_keys(devnode: str, timeout: float) -> tuple[codec.Keys | None, str]:
    r = prin(devnode, codec.PrIn.READ_KEYS, timeout)
    if not r.ok:
        return None, f"READ KEYS: {r}"
    try:
        return codec.parse_keys(r.data), ""
    except codec.CodecError as err:
        return None, f"READ KEYS: {err}"


def _key_on_lun(devnode: str, key: int, timeout: float,
                ) -> tuple[codec.Keys | None, tuple[Registration, str] | None]:
    """READ KEYS through the path: the keys, or why registering stops here (no answer, key not there)."""
    keys, why = _read_keys(devnode, timeout)
    if keys is None:
        return None, (Registration.FAILED, why)
    if key not in keys.keys:
        return keys, (Registration.NOT_OURS, f"0x{key:x} is not among the {len(keys.keys)} registered key(s)")
    return keys, None


def register_path(devnode: str, key: int, aptpl: bool, all_tg_pt: bool, timeout: float,
                  ) -> tuple[Registration, str]:
    """The daemon's part: a path joined a map or came back. Its nexus gets the map's key only while the key
    is registered on the logical unit (through other paths): a host another node fenced off has lost its
    key, and must not get it back by a path returning.

    Read keys, then register, leaves a window in which a fence can land. Closed thus: REGISTER with the key
    as both keys is a no-op for a nexus that has it and a RESERVATION CONFLICT for one that has none (so a
    nexus already registered, which may hold the reservation, is never touched again); an unregistered
    nexus is registered with plain REGISTER right after a READ KEYS, and PRgeneration read back must have
    moved by exactly that one registration. Otherwise someone changed the registrations in between: the
    new registration is undone (the nexus had none before, so it holds no reservation) and everything is
    decided again. A UNIT ATTENTION on the way (the target reporting such a change) also starts over."""
    rounds = 0
    while rounds < ROUNDS:
        rounds += 1
        _, stop = _key_on_lun(devnode, key, timeout)
        if stop:
            return stop
        probe = prout(devnode, codec.PrOut.REGISTER, codec.PrType.NONE,
                      codec.prout_params(key, key, aptpl=aptpl, all_tg_pt=all_tg_pt), timeout)
        if probe.ok:
            return Registration.ALREADY, f"0x{key:x} was registered through it"
        if probe.status is PrStatus.UNIT_ATTENTION:
            continue
        if probe.status is not PrStatus.RESERVATION_CONFLICT:
            return Registration.FAILED, f"REGISTER: {probe}"
        before, stop = _key_on_lun(devnode, key, timeout)
        if stop or before is None:
            return stop or (Registration.FAILED, "READ KEYS")
        r = prout(devnode, codec.PrOut.REGISTER, codec.PrType.NONE,
                  codec.prout_params(0, key, aptpl=aptpl, all_tg_pt=all_tg_pt), timeout)
        if r.status is PrStatus.UNIT_ATTENTION:
            continue
        if not r.ok:
            return Registration.FAILED, f"REGISTER: {r}"
        after, _ = _read_keys(devnode, timeout)
        if after is not None and after.generation == (before.generation + 1) & 0xFFFFFFFF \
                and key in after.keys:
            return Registration.REGISTERED, f"0x{key:x} registered"
        undo = prout(devnode, codec.PrOut.REGISTER, codec.PrType.NONE, codec.prout_params(key, 0), timeout)
        if not undo.ok and undo.status is not PrStatus.RESERVATION_CONFLICT:  # conflict: nothing left to undo
            return Registration.FAILED, (f"the registrations changed while registering, and undoing it "
                                         f"failed: {undo}; the path may hold the key")
    return Registration.RACED, f"the registrations changed during each of {ROUNDS} attempts; undone"


def key_present(devnode: str, key: int, timeout: float) -> bool | None:
    """Whether `key` is registered on the logical unit (None: could not be read)."""
    keys, _ = _read_keys(devnode, timeout)
    return None if keys is None else key in keys.keys
