"""Path checkers: is this path usable now?

Each checker is a blocking function (devnode, timeout) -> CheckResult, run on a worker thread by
CheckRunner. A check against a hung device can block its thread in the kernel until the SCSI timeout, so the
runner never starts a second check on a path whose first is still in flight (it reports "pending"), bounds
the threads in use, and bounds every wait from the event loop's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mmap
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pymultipathd.paths import sgio, vendor_checkers
from pymultipathd.policy.state import USABLE, PathCheck
from pymultipathd.record import record

UP, DOWN, GHOST = PathCheck.UP, PathCheck.DOWN, PathCheck.GHOST
PENDING, TIMEOUT = PathCheck.PENDING, PathCheck.TIMEOUT
QUEUE_GRACE = 5.0  # seconds a check waits for a pool thread before it takes a thread of its own
# A prioritizer may send several commands, each bounded by the check's timeout (alua up to 3, hp_sw up to
# 4, path_latency io_num): after the checker's verdict, the priority gets this many timeouts of its own.
PRIO_TIMEOUTS = 4

# TEST UNIT READY as upstream's tur reads it
NOT_READY, UNIT_ATTENTION = sgio.NOT_READY, sgio.UNIT_ATTENTION
ALUA_STANDBY = (0x04, 0x0B)  # NOT READY: logical unit not accessible, target port in standby state
TUR_TRIES = 5  # sends of TEST UNIT READY at most, while the check's time lasts
# host_status values that are the transport's last word on a TUR; after any other host error it is sent again
TUR_FINAL_HOST = frozenset({sgio.DID_OK, sgio.DID_NO_CONNECT, sgio.DID_BAD_TARGET, sgio.DID_ABORT,
                            sgio.DID_TRANSPORT_FAILFAST})


@record(frozen=True)
class CheckResult:
    state: PathCheck
    message: str = ""
    prio: int | None = None  # the path's priority, read after a check found it usable (if asked for)


def _reservation_conflict(res: sgio.SgResult) -> bool:
    return (res.status & 0x7E) == sgio.RESERVATION_CONFLICT


def tur_retry(res: sgio.SgResult) -> bool:
    """Is a TUR reply worth sending the command again for: a unit attention (they queue up after a reset or
    a change on the array) or a passing host error. A transport timeout is not: the check's time is gone."""
    if res.ok or _reservation_conflict(res) or res.host_status == sgio.DID_TIME_OUT:
        return False
    return res.host_status not in TUR_FINAL_HOST or res.sense_key == UNIT_ATTENTION


def tur_verdict(res: sgio.SgResult) -> CheckResult:
    """The path state a TEST UNIT READY reply shows (the last one, when it was sent more than once)."""
    if _reservation_conflict(res):  # an array with a SCSI-3 reservation held by another initiator
        return CheckResult(UP, "tur: reservation conflict (another initiator holds the LUN reserved), "
                               "path up")
    if res.ok:
        return CheckResult(UP, "tur ok")
    if res.host_status == sgio.DID_TIME_OUT:
        return CheckResult(TIMEOUT, f"tur timed out: {sgio.describe(res)}")
    if res.sense_key == NOT_READY and res.asc_ascq == ALUA_STANDBY:
        return CheckResult(GHOST, "tur: target port in ALUA standby state")
    # the other ALUA states (unavailable, transitioning, offline) fail the path, as upstream's tur does
    return CheckResult(DOWN, f"tur failed: {sgio.describe(res)}")


def tur(devnode: str, timeout: float) -> CheckResult:
    fd = sgio.open_path(devnode)
    try:
        deadline = time.monotonic() + timeout
        for attempt in range(1, TUR_TRIES + 1):
            try:
                res = sgio.sg_io(fd, sgio.TEST_UNIT_READY, timeout_ms=int(timeout * 1000))
            except OSError as err:
                if err.errno == errno.ENOTTY:
                    return CheckResult(PathCheck.WILD,
                                       "tur: checker not supported by this device (no SG_IO on it)")
                raise
            if attempt == TUR_TRIES or time.monotonic() >= deadline or not tur_retry(res):
                return tur_verdict(res)
        raise AssertionError("unreachable: the last try returns")
    finally:
        os.close(fd)


def readsector0(devnode: str, timeout: float) -> CheckResult:
    fd = sgio.open_path(devnode)
    try:
        res = vendor_checkers.read_sector0(fd, timeout)
    finally:
        os.close(fd)
    if res is None:  # as upstream: the host, not the path, lacked memory for the transfer
        return CheckResult(UP, "readsector0: no memory on this host for the read, path taken as up")
    if res.ok:
        return CheckResult(UP, "readsector0 ok")
    return CheckResult(DOWN, f"readsector0 failed: {sgio.describe(res)}")


def _direct_read_size(fd: int) -> int:
    """One block of the device (its soft block size, at most a page); a page for what is no block device."""
    size = sgio.block_size(fd)
    return min(size, 4096) if size is not None else 4096


def directio(devnode: str, timeout: float) -> CheckResult:
    # O_DIRECT reads bypass the page cache, so they reach the device; mmap gives the aligned buffer it needs.
    fd = os.open(devnode, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    try:
        size = _direct_read_size(fd)
        buf = mmap.mmap(-1, size)
        try:
            got = os.readv(fd, [buf])
        finally:
            buf.close()
        if got != size:  # an empty or shrunken LUN reads short: no block 0 to read is no usable path
            return CheckResult(DOWN, f"directio read short: {got} of {size} bytes")
        return CheckResult(UP, "directio ok")
    except OSError as err:
        return CheckResult(DOWN, f"directio read failed: {err.strerror}")
    finally:
        os.close(fd)


def none(devnode: str, timeout: float) -> CheckResult:
    return CheckResult(UP, "no checker")


CHECKERS: dict[str, Callable[[str, float], CheckResult]] = {
    "tur": tur,
    "readsector0": readsector0,
    "directio": directio,
    "none": none,
    **vendor_checkers.CHECKERS,  # emc_clariion, hp_sw, rdac, cciss_tur
}
# What a checker remembers of a path (emc_clariion keeps each path's array WWN) goes with the path.
forget_path = vendor_checkers.forget_path


def check_now(devnode: str, checker: str, timeout: float) -> CheckResult:
    """One check on this thread (`pymultipath -ll` without a daemon)."""
    func = CHECKERS.get(checker)
    if func is None:
        return CheckResult(DOWN, f"unknown checker {checker!r}")
    return _guarded(func, devnode, timeout)


class CheckRunner:
    """Runs checkers off the event loop: bounded threads, one check in flight per path."""

    def __init__(self, max_threads: int = 32) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="checker")
        self._max_threads = max_threads
        self._inflight: dict[str, asyncio.Future[CheckResult]] = {}
        # devnodes whose check outlived its timeout and still holds a thread in the kernel
        self._stuck: set[str] = set()
        self._started_at: dict[str, float] = {}  # loop time a thread took each in-flight check

    async def check(self, devnode: str, checker: str, timeout: float,
                    prio_name: str | None = None, prio_args: str = "") -> CheckResult:
        """Run `checker` on devnode; with prio_name, a usable path's priority is read in the same thread
        (an RTPG to the array can hang as a TUR can, so it never runs on the event loop). The checker's
        verdict stands on its own, as upstream's: a prioritizer that is slow or does not come back leaves the
        priority unknown (prio None, the last one kept) and never turns a good check into a timeout."""
        func = CHECKERS.get(checker)
        if func is None:
            return CheckResult(DOWN, f"unknown checker {checker!r}")
        loop = asyncio.get_running_loop()
        running = self._inflight.get(devnode)
        if running is not None and not running.done():
            # Started long ago and not back: stuck in the kernel, whether or not anyone still waits for it
            # (its caller may have given up while it was queued).
            since = self._started_at.get(devnode)
            if since is not None and loop.time() - since > timeout:
                self._mark_stuck(devnode, running)
            return CheckResult(PENDING, "previous check still running")
        started: asyncio.Future[Any] = loop.create_future()
        started.add_done_callback(lambda _f: self._started_at.__setitem__(devnode, loop.time()))
        checked: asyncio.Future[CheckResult] = loop.create_future()  # the checker's verdict, before the prio

        def verdict(res: CheckResult) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (the daemon is stopping)
                loop.call_soon_threadsafe(_set, checked, res)

        def job() -> CheckResult:
            loop.call_soon_threadsafe(_set, started)
            return _guarded(func, devnode, timeout, prio_name, prio_args, verdict)

        queued: Future[Any] | None = None
        if len(self._stuck) * 2 < self._max_threads:
            queued = self._pool.submit(job)
            fut: asyncio.Future[Any] = asyncio.wrap_future(queued, loop=loop)
        else:
            # Hung checks hold half the pool or more (a dead fabric): every other path's check gets a
            # thread of its own, so healthy paths are still checked. One check in flight per path bounds
            # these threads by the number of paths.
            fut = _on_own_thread(loop, job)
        self._inflight[devnode] = fut
        try:
            # The clock starts when a thread takes the check: a check waiting for a thread is never timed
            # out (the daemon would fail a path that works). One that waits too long for the pool (hung
            # checks hold it) leaves the queue and runs on a thread of its own.
            grace = min(timeout + 1.0, QUEUE_GRACE)
            done, _ = await asyncio.wait({started, fut}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            if not done and queued is not None and queued.cancel():
                fut = _on_own_thread(loop, job)
                self._inflight[devnode] = fut
                done, _ = await asyncio.wait({started, fut}, timeout=timeout + 1.0,
                                             return_when=asyncio.FIRST_COMPLETED)
            if not done:
                return CheckResult(PENDING, "waiting for a checker thread (checks of hung paths hold them)")
            # On timeout the thread keeps running: we stop waiting but remember it is in flight.
            done, _ = await asyncio.wait({checked, fut}, timeout=timeout + 1.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                self._mark_stuck(devnode, fut)
                return CheckResult(TIMEOUT, f"{checker} did not answer within {timeout:g} s")
            if not fut.done():  # the verdict is in; the prioritizer is still talking to the device
                await asyncio.wait({fut}, timeout=PRIO_TIMEOUTS * timeout + 1.0)
            if fut.done():
                return fut.result()
            res = checked.result()
            return CheckResult(res.state, f"{res.message} (priority not read within "
                               f"{PRIO_TIMEOUTS * timeout:g} s)".lstrip())
        finally:
            if fut.done():
                self._inflight.pop(devnode, None)
                self._started_at.pop(devnode, None)

    def _mark_stuck(self, devnode: str, fut: asyncio.Future[Any]) -> None:
        if devnode not in self._stuck:
            self._stuck.add(devnode)
            fut.add_done_callback(lambda _f: self._stuck.discard(devnode))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.shutdown(wait=False, cancel_futures=True)


def _on_own_thread(loop: asyncio.AbstractEventLoop,
                   job: Callable[[], CheckResult]) -> asyncio.Future[CheckResult]:
    fut: asyncio.Future[CheckResult] = loop.create_future()

    def deliver(res: CheckResult | None, err: BaseException | None) -> None:
        if fut.done():
            return
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(res)  # type: ignore[arg-type]

    def run() -> None:
        try:
            res: CheckResult | None = job()
            err: BaseException | None = None
        except BaseException as e:  # handed to the waiting coroutine, as the pool would
            res, err = None, e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (the daemon is stopping)
            loop.call_soon_threadsafe(deliver, res, err)

    threading.Thread(target=run, name="checker-own", daemon=True).start()
    return fut


def _set(fut: asyncio.Future[Any], value: object = None) -> None:
    if not fut.done():
        fut.set_result(value)


def _guarded(func: Callable[[str, float], CheckResult], devnode: str, timeout: float,
             prio_name: str | None = None, prio_args: str = "",
             verdict: Callable[[CheckResult], None] | None = None) -> CheckResult:
    """The check, then (usable paths, with prio_name) the priority; `verdict` hears the check's result
    before the priority is read."""
    try:
        res = func(devnode, timeout)
    except OSError as err:
        res = CheckResult(DOWN, f"cannot check {devnode}: {err.strerror or err}")
    if verdict is not None:
        verdict(res)
    if prio_name and res.state in USABLE:
        from pymultipathd.paths import prio  # the prioritizers need sysfs helpers the checkers do not

        try:
            return CheckResult(res.state, res.message, prio.priority(prio_name, os.path.basename(devnode),
                                                                       prio_args, timeout))
        except OSError:
            pass  # keep the last known priority
    return res
