"""The I/O error check of marginal_path_* (policy/marginal.py decides; this counts): direct reads of the
first 4 KiB of a path device, one after another, each counted as failed when the kernel returns an error or
when it has not come back after IO_TIMEOUT seconds.

Reads are sent during the first `seconds - IO_TIMEOUT` of the sample, so the last ones have their full
timeout before the count is taken, as upstream does. Each sample reads in a thread of its own: a path that
hangs holds that thread in the kernel (reads cannot be cancelled), never the event loop or the other
samples. The number of such threads is bounded; beyond it a sample is refused as busy and the policy tries
it again a little later, the path still out of its map.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import threading
import time

from pymultipathd.record import field, record
from pymultipathd.threadname import name_this_thread

IO_TIMEOUT = 60.0     # seconds after which a read that has not returned counts as failed (upstream's figure)
READ_SIZE = 4096      # a multiple of every logical block size up to 4 KiB, so O_DIRECT takes it
READ_PAUSE = 0.01     # seconds between reads: ~100 a second is plenty for a rate per thousand
MAX_SAMPLERS = 16     # threads reading at once (some may be stuck in a hung device)


@record
class Counts:
    """Shared by one reading thread (writer) and the event loop (reader at the end)."""

    reads: int = 0
    errors: int = 0
    in_flight_since: float | None = None  # monotonic time the read under way was sent
    trouble: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def result(self, now: float) -> tuple[int, int]:
        """(reads, errors) with a read still under way for longer than IO_TIMEOUT counted as failed."""
        since = self.in_flight_since
        late = since is not None and now - since > IO_TIMEOUT
        return self.reads + late, self.errors + late


_live = 0  # reading threads alive (the event loop's thread starts them, each one's last act lowers it)
_live_lock = threading.Lock()


def _read_loop(node: str, counts: Counts, until: float) -> None:
    global _live
    name_this_thread()
    try:
        _reads(node, counts, until)
    except Exception as err:  # a sample that broke must not pass for a healthy one (no reads, no errors)
        counts.trouble = f"the reading thread failed: {err!r}"
    finally:
        with _live_lock:
            _live -= 1


def _reads(node: str, counts: Counts, until: float) -> None:
    # the open counts as a read under way: a device in error handling can hold it as long as a read
    counts.in_flight_since = time.monotonic()
    try:
        fd = os.open(node, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as err:
        counts.in_flight_since = None
        counts.trouble = f"cannot open {node}: {err.strerror}"
        return
    counts.in_flight_since = None
    try:
        buf = mmap.mmap(-1, READ_SIZE)  # page aligned, as O_DIRECT needs
        try:
            while not counts.stop.is_set() and time.monotonic() < until:
                counts.in_flight_since = sent = time.monotonic()
                try:
                    ok = os.preadv(fd, [buf], 0) == READ_SIZE
                except OSError:
                    ok = False
                late = time.monotonic() - sent > IO_TIMEOUT
                counts.in_flight_since = None
                counts.reads += 1
                counts.errors += (not ok) or late
                counts.stop.wait(READ_PAUSE)
        finally:
            buf.close()
    finally:
        os.close(fd)


BUSY = "busy"  # the trouble word of a sample refused for want of a free thread


async def sample(node: str, seconds: float) -> tuple[int, int, str]:
    """Sample `node` for `seconds`: (reads, errors, trouble); trouble BUSY: no thread was free (MAX_SAMPLERS
    samples under way, some perhaps stuck in hung devices). Cancelling it stops the reads (the thread ends
    when its read under way returns)."""
    global _live
    with _live_lock:
        if _live >= MAX_SAMPLERS:
            return 0, 0, BUSY
        _live += 1
    counts = Counts()
    until = time.monotonic() + max(0.0, seconds - IO_TIMEOUT)
    try:
        threading.Thread(target=_read_loop, args=(node, counts, until), name="io-sample", daemon=True).start()
    except RuntimeError as err:
        with _live_lock:
            _live -= 1
        return 0, 0, f"cannot start a thread: {err}"
    try:
        await asyncio.sleep(seconds)
    finally:
        counts.stop.set()
    reads, errors = counts.result(time.monotonic())
    return reads, errors, counts.trouble
