"""The daemon's writes to the bindings file, the wwids file and the failed-WWID markers, none of which may
stop map assembly.

/etc is read-only early in boot (Debian mounts the root file system "ro" until its remount) and a disk can
fill up; /run can too. Upstream logs and carries on, and so do we: a map whose alias cannot be bound gets
its existing binding or, failing that, its WWID as its name; WWIDs that cannot be recorded are kept and
written again later (retry()); a marker that cannot be written is logged. Each kind of failure is logged
once, with the store's message (file and errno), until a write of that kind succeeds again.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable

from pymultipathd import store

log = logging.getLogger("pymultipathd")

RETRY = 30.0  # seconds between attempts to record WWIDs the wwids file would not take


class Persist:
    def __init__(self, bindings_read_only: bool = False) -> None:
        self.bindings_read_only = bindings_read_only  # `pymultipathd -B`: use bindings, never add one
        self.failing: dict[str, str] = {}  # kind of write -> the error it last met (for `show status`)
        self.unrecorded: set[str] = set()  # WWIDs of maps made while the wwids file could not be written
        self._next_retry = 0.0

    def _failed(self, kind: str, err: Exception, consequence: str) -> None:
        if kind not in self.failing:
            log.error("%s; %s (logged once until it works again)", err, consequence)
        self.failing[kind] = str(err)

    def _worked(self, kind: str) -> None:
        if self.failing.pop(kind, None) is not None:
            log.info("%s: written again", kind)

    def unreadable(self, problem: str) -> None:
        """A store file the classifier could not read (it decides as if it were empty)."""
        self._failed(f"read: {problem}", store.StoreError(problem), "deciding as if it were empty")

    def aliases(self, wwids: Iterable[str], prefix: str, reserved: Container[str]) -> dict[str, str]:
        """Friendly names of these WWIDs, bound in the bindings file where it can be written; a WWID left
        out of the result is named after itself."""
        wwids = list(wwids)
        if self.bindings_read_only:
            return self._bound(wwids)
        try:
            found = store.aliases_for(wwids, prefix, reserved=reserved)
        except store.StoreError as err:
            self._failed("bindings", err, "maps without a binding are named after their WWID")
            return self._bound(wwids)
        self._worked("bindings")
        return found

    @staticmethod
    def _bound(wwids: list[str]) -> dict[str, str]:
        """The aliases the bindings file already gives, if it can be read at all."""
        try:
            bindings = store.read_bindings()
        except store.StoreError:
            return {}
        wanted = set(wwids)
        return {w: a for a, w in bindings.items() if w in wanted}

    def record_wwids(self, wwids: Iterable[str]) -> None:
        """Add WWIDs of new maps to the wwids file (one locked write); kept for retry() if it fails."""
        self.unrecorded.update(wwids)
        self._write_wwids()

    def retry(self, now: float) -> None:
        """Called periodically: write again what could not be written (cheap when nothing waits)."""
        if self.unrecorded and now >= self._next_retry:
            self._next_retry = now + RETRY
            self._write_wwids()

    def _write_wwids(self) -> None:
        for wwid in sorted(self.unrecorded):  # one WWID the file cannot hold must not block the others
            try:
                store.check_wwid(wwid)
            except ValueError as err:
                log.error("not recording %s in the wwids file: %s", wwid, err)
                self.unrecorded.discard(wwid)
        if not self.unrecorded:
            return
        try:
            store.add_wwids(sorted(self.unrecorded))
        except store.StoreError as err:
            self._failed("wwids", err, f"{len(self.unrecorded)} WWIDs of maps made are kept in memory and "
                                       f"written when the file takes them")
            return
        self.unrecorded.clear()
        self._worked("wwids")

    def mark_failed(self, wwid: str, failed: bool) -> None:
        """Set or clear the failed-WWID marker of `wwid` (udev's helper then releases its paths)."""
        try:
            (store.mark_failed if failed else store.unmark_failed)(wwid)
        except ValueError as err:  # a WWID no file may be named after
            log.error("no failed marker for %s: %s", wwid, err)
            return
        except store.StoreError as err:
            self._failed("failed_wwids", err, "udev's helper may classify these paths as if the map were "
                                              "still possible")
            return
        self._worked("failed_wwids")
