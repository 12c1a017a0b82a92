"""Flushing maps: remove a multipath map only when nothing holds it, and otherwise say who does.

Shared by `pymultipath -f/-F` and the daemon's `del map`. Partition maps nobody has open go first (they only
exist because of the map); queueing is turned off for the attempt so a removal is not stuck behind queued
I/O, and turned back on if the map stays.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Callable

from pymultipathd import holders
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm.errors import DMBusy, DMError
from pymultipathd.dm.ioctl import Control
from pymultipathd.paths import holderscan
from pymultipathd.record import record

RETRIES = 3          # udev's rules open a map briefly after every change event
RETRY_DELAY = 0.5
HELD_RETRY_DELAY = 1.0  # remove_retries: seconds between looks at a held map, as upstream sleeps


@record(frozen=True)
class FlushResult:
    name: str
    removed: bool
    deferred: bool
    report: str      # what happened, or who holds the map and how to release each


def blocking(hs: list[holders.Holder]) -> list[holders.Holder]:
    # Queued I/O alone does not stop a flush: the flush turns queueing off first, failing that I/O.
    return [h for h in hs if h.kind != "queued-io"]


def snapshot_if_held(ctl: Control, name: str) -> holders.Snapshot:
    """The holders snapshot, scanning every process and mount only when DM's open counts say something
    holds the map; else just DM's facts."""
    target, parts, queueing, usable = holderscan.dm_state(ctl, name)
    if holderscan.held(target, parts):
        return holderscan.gather(target, parts, queueing=queueing, usable_paths=usable)
    return holderscan.unscanned(target, parts, queueing, usable)


def flush(ctl: Control, name: str, *, deferred: bool = False, snap: holders.Snapshot | None = None,
          rescan: bool = True, retries: int = 0,
          on_retry: Callable[[int, int, list[holders.Holder]], None] | None = None) -> FlushResult:
    """`snap`: the holders snapshot, taken already (the daemon scans on another thread than the one that
    makes device-mapper calls); `rescan`: after a removal that failed, scan again here for the report.
    `retries` (remove_retries): a held map is looked at again that many times, a second apart, before it
    is reported held (a backup job or a udev rule closing it); `on_retry(n, retries, holders)` hears each
    wait. Blocking: for the command line, never the daemon's threads."""
    if snap is None:
        snap = snapshot_if_held(ctl, name)
    found = holders.find_holders(snap)
    for attempt in range(1, retries + 1):
        if not blocking(found) or deferred:
            break
        if on_retry is not None:
            on_retry(attempt, retries, blocking(found))
        time.sleep(HELD_RETRY_DELAY)
        snap = snapshot_if_held(ctl, name)
        found = holders.find_holders(snap)
    if blocking(found) and not deferred:
        return FlushResult(name, False, False, holders.explain(snap, found))
    # Queued I/O would make the remove's suspend hang; a deferred remove of a map still in use suspends
    # nothing, and its holders' queued I/O must not fail because of it.
    stop_queueing = snap.queueing and not (deferred and blocking(found))
    if stop_queueing:
        ctl.message(name, "fail_if_no_path")
    for attempt in range(RETRIES):
        try:
            dmmaps.remove_map(ctl, name, deferred=deferred)
        except DMBusy:
            if attempt + 1 < RETRIES:
                time.sleep(RETRY_DELAY)
                continue
        except DMError:
            break
        else:
            if deferred and blocking(found):
                return FlushResult(name, False, True, f"{name}: in use; it will be removed when its last "
                                   "holder closes it (deferred remove)\n" + holders.explain(snap, found))
            return FlushResult(name, True, False, f"{name}: flushed\n")
    if stop_queueing:
        try:
            ctl.message(name, "queue_if_no_path")
        except DMError:
            pass  # the map may have gone after all
    if rescan:
        snap = holderscan.snapshot(ctl, name)
    return FlushResult(name, False, False, holders.explain(snap, holders.find_holders(snap)))


def loss_summary(snap: holders.Snapshot, found: list[holders.Holder]) -> str:
    """What --error-io gives up, for the administrator to confirm: queued I/O and every open holder."""
    name = snap.target.dm_name or snap.target.name
    lines = [f"{name}: from now on every I/O to it fails (error target), including I/O queued in it, and "
             "it is removed as soon as its holders let go."]
    if snap.queueing:
        lines.append("  - I/O queued in the map (queue_if_no_path) fails: those writes are LOST")
    held = blocking(found)
    for h in held:
        lines.append(f"  - [{h.kind}] {holders.printable(h.what)}: its unwritten data is LOST, its next I/O "
                     "fails")
    if not snap.queueing and not held:
        lines.append("  - nothing holds it and nothing is queued: a plain `pymultipath -f` would do")
    lines.append("Nothing else is touched. Use this only for a LUN that is gone for good.")
    return "\n".join(lines) + "\n"


def error_out(ctl: Control, name: str) -> FlushResult:
    """The last resort for a LUN gone for good, whose holders hang on queued I/O: every queued and future
    I/O of the map fails, and the map (with its partition maps) is removed once nothing holds it.

    Queueing is turned off first: the table swap suspends the map, and a suspend waits for queued I/O that
    no path will ever carry. The file systems on it are not frozen for the swap (nolockfs): a freeze would
    write to the dead LUN. Partition maps keep their tables: their I/O reaches the map and fails there."""
    info, table = ctl.table_and_info(name)
    if not info.uuid.startswith(dmmaps.MPATH_UUID_PREFIX):
        raise DMError("error-io", name, errno.EINVAL, "not a multipath map: nothing but multipath maps is "
                      "ever made to fail")
    sectors = sum(t.length for t in table)
    if sectors:  # a map without a live table has no I/O to fail
        if any(t.target == "multipath" for t in table) and not info.suspended:
            ctl.message(name, "fail_if_no_path")  # a suspended map refuses messages (EBUSY)
        ctl.load(name, [f"0 {sectors} error"], readonly=info.readonly)
        try:
            # waits for I/O already sent to a path device (until the transport gives up on it); queued
            # I/O has failed above
            ctl.resume(name, nolockfs=True)
        except DMError:
            with contextlib.suppress(DMError):
                ctl.clear(name)  # no error table left behind for a later resume to swap in
            raise
    dmmaps.remove_map(ctl, name, deferred=True)
    if ctl.exists(name):
        return FlushResult(name, False, True, f"{name}: all its I/O fails now; it will be removed when its "
                           "last holder closes it (deferred remove)\n")
    return FlushResult(name, True, False, f"{name}: all its I/O failed; removed\n")
