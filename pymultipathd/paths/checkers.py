"""Path checkers: is this path usable now?

Each checker is a blocking function (devnode, timeout) -> CheckResult, run on a worker thread by
CheckRunner. A check against a hung device can block its thread in the kernel until the SCSI timeout, so the
runner never starts a second check on a path whose first is still in flight (it reports "pending"), bounds
the threads in use, and bounds every wait from the event loop's side. The daemon checks hundreds of paths
per interval, so the runner's own cost per check is kept small: no coroutine, future or timer per check, and
one wake-up of the loop per batch of results.

Descriptors: the runner keeps each path's sg node open between checks for the checkers that only send
commands through it (ON_DESCRIPTOR: tur, readsector0; sgio.KeptNodes says what that costs and what it
holds); the other checkers open the path for each check and close it when it ends. The runner also keeps
descriptors of each path's sysfs attributes open (sysinfo.KeptAttribute: its device state, and the ALUA
access state and preferred-path flag the sysfs prioritizer reads). All are closed when the path is
forgotten, and dropped once the open-file limit is reached (kept again after a reconfigure). Running out of
descriptors (EMFILE, ENFILE) says nothing about the path: such a check is answered "pending", never "down",
and a priority that cannot be read stays as last read (both warn once).
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import math
import mmap
import os
import queue
import resource
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pymultipathd.paths import sgio, vendor_checkers
from pymultipathd.policy.state import USABLE, PathCheck
from pymultipathd.record import record
from pymultipathd.threadname import name_this_thread

if TYPE_CHECKING:
    from pymultipathd.paths import sysinfo

log = logging.getLogger("pymultipathd")
UP, DOWN, GHOST = PathCheck.UP, PathCheck.DOWN, PathCheck.GHOST
PENDING, TIMEOUT = PathCheck.PENDING, PathCheck.TIMEOUT
QUEUE_GRACE = 5.0  # seconds a check waits for a pool thread before it takes a thread of its own
# The pool starts this many threads as soon as checks queue. A healthy check takes milliseconds of CPU, so a
# few threads keep up with a round of hundreds; every thread more costs the loop a start and the round
# context switches between threads that take turns on the GIL anyway.
EAGER_THREADS = 4
# Beyond those, the pool grows each time a backlog has lasted this long, by as many threads as it has (up to
# the checks waiting): checks slower than the pool can take (hung devices holding threads, a slow array, a
# busy loop holding the GIL) make it grow within a second, a burst of quick ones does not.
GROW_AFTER = 0.25
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
    dev_state: str | None = None  # the SCSI device state read after the check (if asked for)


TUR_OK = CheckResult(UP, "tur ok")  # a healthy path's verdict, made once: most checks end here


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
        return TUR_OK
    if res.host_status == sgio.DID_TIME_OUT:
        return CheckResult(TIMEOUT, f"tur timed out: {sgio.describe(res)}")
    if res.sense_key == NOT_READY and res.asc_ascq == ALUA_STANDBY:
        return CheckResult(GHOST, "tur: target port in ALUA standby state")
    # the other ALUA states (unavailable, transitioning, offline) fail the path, as upstream's tur does
    return CheckResult(DOWN, f"tur failed: {sgio.describe(res)}")


def tur_fd(fd: int, timeout: float) -> CheckResult:
    """TEST UNIT READY through an open descriptor of the path."""
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


def tur(devnode: str, timeout: float) -> CheckResult:
    fd = sgio.open_path(devnode)
    try:
        return tur_fd(fd, timeout)
    finally:
        os.close(fd)


def readsector0(devnode: str, timeout: float) -> CheckResult:
    fd = sgio.open_path(devnode)
    try:
        return readsector0_fd(fd, timeout)
    finally:
        os.close(fd)


def readsector0_fd(fd: int, timeout: float) -> CheckResult:
    res = vendor_checkers.read_sector0(fd, timeout)
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


# The checkers above that need no more than a descriptor of the path's sg node: the runner keeps one per
# path for them (sgio.KeptNodes) and calls these instead of opening the node for each check.
ON_DESCRIPTOR: dict[str, Callable[[int, float], CheckResult]] = {
    "tur": tur_fd,
    "readsector0": readsector0_fd,
}


def forget_path(devnode: str) -> None:
    """What the checkers remember of a removed path goes with it: emc_clariion's array WWN, the sg node's
    name."""
    vendor_checkers.forget_path(devnode)
    sgio.forget_node(devnode)


def check_now(devnode: str, checker: str, timeout: float) -> CheckResult:
    """One check on this thread (`pymultipath -ll` without a daemon)."""
    func = CHECKERS.get(checker)
    if func is None:
        return CheckResult(DOWN, f"unknown checker {checker!r}")
    return _guarded(func, devnode, timeout)


Outcome = CheckResult | BaseException  # how a check ends: its result, or what its checker raised
Deliver = Callable[[Any, Outcome], None]
STILL_RUNNING = CheckResult(PENDING, "previous check still running")
NO_THREAD = CheckResult(PENDING, "waiting for a checker thread (checks of hung paths hold them)")
NO_NEW_THREAD = CheckResult(PENDING, "no thread to run the check (the system would not start one)")
STOPPED = CheckResult(PENDING, "checks stopped (the daemon is stopping)")
DRAIN_BATCH = 64  # finished checks the loop takes in per callback
TIMER_SLACK = 0.005  # seconds: deadlines this close are due now (the loop's timers may fire a little early)


class _Job:
    """One check of one path, from its submission to its end. The event loop makes it and answers its
    caller; the thread that runs it stores `started`, `verdict` and last `outcome`, each a single attribute
    store the loop only reads. `taken` is claimed under the runner's lock: a queued job runs on one thread."""

    __slots__ = ("devnode", "checker", "func", "timeout", "prio_name", "prio_args", "want_state", "deliver",
                 "token", "loop", "taken", "started", "escaped", "verdict", "verdict_at", "outcome",
                 "answered", "stuck")

    def __init__(self, devnode: str, checker: str, func: Callable[[str, float], CheckResult], timeout: float,
                 prio_name: str | None, prio_args: str, want_state: bool, deliver: Deliver, token: Any,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.devnode, self.checker, self.func, self.timeout = devnode, checker, func, timeout
        self.prio_name, self.prio_args, self.want_state = prio_name, prio_args, want_state
        self.deliver, self.token, self.loop = deliver, token, loop
        self.taken = False       # a thread has it (claimed by a pool thread, or by the loop for its own)
        self.started = 0.0       # monotonic time its check began on a thread (0: not yet)
        self.escaped = 0.0       # monotonic time the loop gave it a thread of its own (0: it did not)
        self.verdict: CheckResult | None = None  # the checker's, before the priority is read
        self.verdict_at = 0.0
        self.outcome: Outcome | None = None  # its end, stored last by its thread
        self.answered = False    # its caller has its answer (the outcome, or "timeout"/"pending" said for it)
        self.stuck = False       # counted among the runner's stuck checks


class CheckRunner:
    """Runs checkers off the event loop: bounded threads, one check in flight per path.

    A check is a job on a queue the runner's threads take from; the pool grows past its first
    EAGER_THREADS only while a backlog lasts (see GROW_AFTER). Finished jobs go to one list that the loop
    drains in one callback: a round of checks wakes the loop once per batch of results, not several times
    per check. The loop watches the deadlines of jobs in one heap under one timer: a job queued past its
    grace runs on a thread of its own; one that started and outlives its timeout is answered "timeout" and
    counted stuck; a usable verdict whose prioritizer does not come back is answered without the priority.
    The clock starts when a thread takes the check: a check waiting for a thread is never timed out."""

    def __init__(self, max_threads: int = 32) -> None:
        # the prioritizers need sysfs helpers the checkers do not
        from pymultipathd.paths import prio, sysinfo

        self._prio = prio
        self._nodes = sgio.KeptNodes()  # each path's sg node, for the ON_DESCRIPTOR checkers (see top)
        self._states = sysinfo.KeptStates()  # the device state attribute of each path, kept open (see top)
        # what the sysfs prioritizer (detect_prio's choice on ALUA paths) reads at every check, kept open too
        self._alua = {a: sysinfo.KeptAttribute(a) for a in prio.SYSFS_ATTRIBUTES}
        self._max_threads = max_threads
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = 0  # pool threads started (they live as long as the runner)
        self._lock = threading.Lock()  # claims of queued jobs, _busy, _finished and _draining
        self._busy = 0  # pool threads running a check
        self._finished: list[_Job] = []  # ended on their threads, not yet seen by the loop
        self._draining = False  # a drain of _finished is scheduled on the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[str, _Job] = {}
        # devnodes whose check outlived its timeout and still holds a thread in the kernel
        self._stuck: set[str] = set()
        self._deadlines: list[tuple[float, int, _Job]] = []  # (when, order, job): the loop's next look at it
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._grow_timer: asyncio.TimerHandle | None = None  # a backlog's look, GROW_AFTER after it was seen
        self._forgotten: set[str] = set()  # removed paths whose check was in flight: closed after it
        self._warned_fds = False  # the open-file limit was reached (warned once)
        self._warned_threads = False  # a thread could not be started (warned until one starts again)
        self._closed = False

    async def check(self, devnode: str, checker: str, timeout: float, prio_name: str | None = None,
                    prio_args: str = "", *, dev_state: bool = False) -> CheckResult:
        """Run `checker` on devnode; with prio_name, a usable path's priority is read in the same thread
        (an RTPG to the array can hang as a TUR can, so it never runs on the event loop). The checker's
        verdict stands on its own, as upstream's: a prioritizer that is slow or does not come back leaves the
        priority unknown (prio None, the last one kept) and never turns a good check into a timeout."""
        fut: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()
        now = self.submit(devnode, checker, timeout, _settle, fut, prio_name, prio_args, dev_state=dev_state)
        return now if now is not None else await fut

    def submit(self, devnode: str, checker: str, timeout: float, deliver: Deliver, token: Any,
               prio_name: str | None = None, prio_args: str = "", *, dev_state: bool = False
               ) -> CheckResult | None:
        """check() without a coroutine, for a round of many paths: `deliver(token, outcome)` hears the end on
        the event loop, once. A check that needs no thread (unknown checker, the path's previous check still
        in flight) is answered at once: its result is returned and `deliver` is not called. With dev_state,
        the thread reads the SCSI device state after the check too (CheckResult.dev_state): sysfs I/O."""
        func = CHECKERS.get(checker)
        if func is None:
            return CheckResult(DOWN, f"unknown checker {checker!r}")
        if self._closed:
            return STOPPED
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        now = time.monotonic()
        running = self._inflight.get(devnode)
        if running is not None:
            # Started long ago and not back: stuck in the kernel, whether or not anyone still waits for it
            # (its caller may have given up while it was queued).
            if running.started and now - running.started > timeout:
                self._mark_stuck(running)
            return STILL_RUNNING
        job = _Job(devnode, checker, func, timeout, prio_name, prio_args, dev_state, deliver, token, loop)
        self._inflight[devnode] = job
        if len(self._stuck) * 2 < self._max_threads:
            self._queue.put(job)
            self._grow()
            # One that waits too long for the pool (hung checks hold it) leaves the queue then.
            self._watch_until(now + min(timeout + 1.0, QUEUE_GRACE), job)
        else:
            # Hung checks hold half the pool or more (a dead fabric): every other path's check gets a
            # thread of its own, so healthy paths are still checked. One check in flight per path bounds
            # these threads by the number of paths.
            job.taken = True
            if not self._own_thread(job, now):
                job.answered = True
                self._abandon(job)
                return NO_NEW_THREAD
        return None

    def forget(self, devnode: str) -> None:
        """The path is gone: close the descriptor kept for it, once its check in flight (if any) has ended,
        as that check's thread may be using it."""
        if devnode in self._inflight:
            self._forgotten.add(devnode)
        else:
            self._release(devnode)

    def close(self) -> None:
        """Stop: checks still queued never run (closed from their event loop, they are answered "pending"
        now, so nobody waits for them), threads in the kernel are left to end on their own, kept descriptors
        are closed."""
        self._closed = True
        self._cancel_timers()
        if self._loop is not None and _running_loop() is self._loop:
            for job in list(self._inflight.values()):
                if not job.answered and self._claim(job):
                    self._answer(job, STOPPED)
        for _ in range(self._threads):
            self._queue.put(None)
        for kept in self._kept():
            kept.drop_all()  # descriptors in use are closed as their checks end

    def _cancel_timers(self) -> None:
        for timer in (self._timer, self._grow_timer):
            if timer is not None:
                timer.cancel()

    def _kept(self) -> tuple[sgio.KeptNodes | sysinfo.KeptAttribute, ...]:
        """Every table of descriptors kept open per path, each keyed by the path's device name."""
        return (self._nodes, self._states, *self._alua.values())

    def _kept_attribute(self, dev: str, attribute: str) -> str:
        return self._alua[attribute].read(dev) or ""

    # --- the event loop's side ---------------------------------------------------------------------------

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Another event loop than the last one (a new asyncio.run): whoever waited on the old one is gone;
        jobs still in flight from it end unanswered, and are no longer watched."""
        self._cancel_timers()
        self._timer, self._timer_at, self._grow_timer = None, math.inf, None
        self._deadlines.clear()
        with self._lock:
            self._loop = loop
            self._draining = bool(self._finished)
        if self._draining:
            loop.call_soon(self._drain)

    def _backlog(self) -> bool:
        """More checks queued than pool threads free to take them, and room for another thread."""
        return self._threads < self._max_threads and self._queue.qsize() > self._threads - self._busy

    def _grow(self) -> None:
        """A check was queued: a thread more at once while the pool is below EAGER_THREADS, else a look
        GROW_AFTER from now at whether the backlog is still there."""
        if not self._backlog():
            return
        if self._threads < EAGER_THREADS:
            self._add_thread()
        elif self._grow_timer is None:
            assert self._loop is not None
            self._grow_timer = self._loop.call_later(GROW_AFTER, self._grow_later)

    def _grow_later(self) -> None:
        """The backlog outlasted GROW_AFTER: up to twice the threads, and another look while it lasts."""
        self._grow_timer = None
        for _ in range(self._threads or 1):
            if self._closed or not self._backlog():
                return
            self._add_thread()
        if self._backlog():
            assert self._loop is not None
            self._grow_timer = self._loop.call_later(GROW_AFTER, self._grow_later)

    def _add_thread(self) -> None:
        # counted once started: a pool that could not grow leaves its queued checks to their grace, after
        # which each tries a thread of its own
        thread = threading.Thread(target=self._serve, name=f"checker_{self._threads}", daemon=True)
        if self._start(thread):
            self._threads += 1

    def _own_thread(self, job: _Job, now: float) -> bool:
        """Run the claimed job on a thread of its own; False if no thread could be started (the job is
        untouched: its caller answers it and lets it go)."""
        if not self._start(threading.Thread(target=self._run_own, args=(job,), name="checker-own",
                                            daemon=True)):
            return False
        job.escaped = now  # read on the loop only (this thread), never by the check's
        self._watch_until(now + job.timeout + 1.0, job)
        return True

    def _start(self, thread: threading.Thread) -> bool:
        try:
            thread.start()
        except Exception as err:  # RuntimeError "can't start new thread": out of memory or of tasks
            if not self._warned_threads:
                self._warned_threads = True
                log.warning("cannot start a checker thread: %s; checks that need one are answered "
                            "\"pending\" until threads can be started", err)
            return False
        self._warned_threads = False
        return True

    def _watch_until(self, when: float, job: _Job) -> None:
        heapq.heappush(self._deadlines, (when, next(self._order), job))
        if when < self._timer_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_later(max(0.0, when - time.monotonic()), self._on_deadlines)

    def _on_deadlines(self) -> None:
        self._timer = None
        self._timer_at = -math.inf  # jobs watched again meanwhile arm nothing: the timer is set at the end
        now = time.monotonic() + TIMER_SLACK
        heap = self._deadlines
        try:
            while heap and heap[0][0] <= now:
                job = heapq.heappop(heap)[2]
                if not job.answered and job.outcome is None:  # else it is answered, or its drain is coming
                    self._deadline(job, now)
        finally:
            self._timer_at = math.inf
            if heap:
                self._arm(heap[0][0])

    def _deadline(self, job: _Job, now: float) -> None:
        """A deadline of a job not answered yet: what its stage calls for now."""
        timeout = job.timeout
        if not job.started:
            if not job.escaped:
                if self._claim(job):  # still queued after its grace: hung checks hold the pool
                    if not self._own_thread(job, now):
                        # claimed, so no pool thread runs it: its caller hears "pending" and may ask again
                        self._abandon(job)
                        self._answer(job, NO_NEW_THREAD)
                else:  # a pool thread took it this instant
                    self._watch_until(now + timeout + 1.0, job)
            elif now >= job.escaped + timeout + 1.0:
                self._answer(job, NO_THREAD)
            else:
                self._watch_until(job.escaped + timeout + 1.0, job)
            return
        verdict = job.verdict
        if verdict is None:
            end = job.started + timeout + 1.0
            if now < end:
                self._watch_until(end, job)
                return
            # The thread keeps running: its caller stops waiting, and the check stays in flight.
            self._mark_stuck(job)
            self._answer(job, CheckResult(TIMEOUT, f"{job.checker} did not answer within {timeout:g} s"))
            return
        end = job.verdict_at + PRIO_TIMEOUTS * timeout + 1.0
        if now < end:  # the verdict is in; the prioritizer is still talking to the device
            self._watch_until(end, job)
            return
        self._answer(job, CheckResult(verdict.state, f"{verdict.message} (priority not read within "
                                      f"{PRIO_TIMEOUTS * timeout:g} s)".lstrip()))

    def _claim(self, job: _Job) -> bool:
        with self._lock:
            if job.taken:
                return False
            job.taken = True
            return True

    def _mark_stuck(self, job: _Job) -> None:
        if not job.stuck:
            job.stuck = True
            self._stuck.add(job.devnode)

    def _drain(self) -> None:
        # A bounded batch per callback: the loop serves the control socket and uevents in between, as a
        # round of a thousand results applied in one go would hold them for as long as it takes.
        with self._lock:
            jobs = self._finished[:DRAIN_BATCH]
            del self._finished[:DRAIN_BATCH]
            self._draining = more = bool(self._finished)  # the rest: this drain comes again (no wake-up)
        for job in jobs:
            self._retire(job)
        if more and self._loop is not None:
            self._loop.call_soon(self._drain)

    def _retire(self, job: _Job) -> None:
        self._abandon(job)
        if job.stuck:
            self._stuck.discard(job.devnode)
        if not job.answered:
            assert job.outcome is not None
            self._answer(job, job.outcome)

    def _abandon(self, job: _Job) -> None:
        """The job holds the path no more: it ended, or never ran and never will."""
        devnode = job.devnode
        if self._inflight.get(devnode) is job:
            del self._inflight[devnode]
            if devnode in self._forgotten:
                self._forgotten.discard(devnode)
                self._release(devnode)

    def _answer(self, job: _Job, outcome: Outcome) -> None:
        job.answered = True
        if job.loop is not self._loop:
            return  # its loop has ended, and whoever waited on it
        try:
            job.deliver(job.token, outcome)
        except Exception:  # one caller's fault must not cost the others their results
            log.exception("%s: handing over the result of its check failed", job.devnode)

    def _release(self, devnode: str) -> None:
        """Close what is kept open for the path (no check of it is in flight)."""
        sgio.forget_node(devnode)
        for kept in self._kept():
            kept.close(devnode.rpartition("/")[2])

    # --- the threads' side -------------------------------------------------------------------------------

    def _serve(self) -> None:
        name_this_thread()
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                return
            with self._lock:
                if job.taken:  # it left the queue for a thread of its own meanwhile
                    continue
                job.taken = True
                job.started = time.monotonic()
                self._busy += 1
            self._run(job, pooled=True)

    def _run_own(self, job: _Job) -> None:
        name_this_thread()
        job.started = time.monotonic()
        self._run(job, pooled=False)

    def _run(self, job: _Job, *, pooled: bool) -> None:
        try:
            outcome: Outcome = self._check(job)
        except BaseException as err:  # handed to the caller, as a pool's future would
            outcome = err
        job.outcome = outcome
        with self._lock:
            if pooled:
                self._busy -= 1
            self._finished.append(job)
            wake, self._draining = not self._draining, True
            loop = self._loop
        if wake and loop is not None:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed meanwhile (the daemon is stopping, a test's loop ended)
                with self._lock:
                    if self._loop is loop:
                        self._draining = False

    def _check(self, job: _Job) -> CheckResult:
        """The check, then (usable paths, with prio_name) the priority and (want_state) the device state."""
        devnode, timeout = job.devnode, job.timeout
        name = devnode.rpartition("/")[2]
        on_fd = ON_DESCRIPTOR.get(job.checker)
        try:
            if on_fd is not None:
                res = self._nodes.use(devnode, on_fd, timeout)
            else:
                self._nodes.close(name)  # kept for the path's previous checker (a reconfigure changed it)
                res = job.func(devnode, timeout)
        except OSError as err:
            res = self._out_of_fds(job, err) if err.errno in sgio.OUT_OF_FDS else \
                CheckResult(DOWN, f"cannot check {devnode}: {err.strerror or err}")
        job.verdict_at = time.monotonic()
        job.verdict = res
        prio = None
        if job.prio_name and res.state in USABLE:
            try:
                prio = self._prio.priority(job.prio_name, name, job.prio_args, timeout,
                                           read=self._kept_attribute)
            except OSError as err:  # the last known priority is kept
                if err.errno in sgio.OUT_OF_FDS:
                    self._drop_kept()
                    self._warn_out_of_fds(err)
        state = self._states.read(name) if job.want_state else None
        if prio is None and state is None:
            return res
        return CheckResult(res.state, res.message, prio, state)

    def _out_of_fds(self, job: _Job, err: OSError) -> CheckResult:
        """The check could not open the path: the daemon (EMFILE) or the host (ENFILE) is out of descriptors,
        which says nothing of the path. The descriptors kept for paths' states go first and the check is
        tried once more; if it still cannot open, the path's state stands ("pending")."""
        if self._drop_kept():
            try:
                return job.func(job.devnode, job.timeout)  # the open failed: no command was sent yet
            except OSError as again:
                if again.errno not in sgio.OUT_OF_FDS:
                    return CheckResult(DOWN, f"cannot check {job.devnode}: {again.strerror or again}")
                err = again
        limit = self._warn_out_of_fds(err)
        return CheckResult(PENDING, f"cannot open {job.devnode} to check it: {err.strerror or err} "
                                    f"(open-file limit {limit}, max_fds)")

    def _drop_kept(self) -> bool:
        """Out of descriptors: close every kept one and keep none until keep_again. False if none were
        kept already (nothing freed)."""
        if not any(kept.keeping for kept in self._kept()):
            return False
        for kept in self._kept():
            kept.drop_all()
        return True

    def _warn_out_of_fds(self, err: OSError) -> int:
        """Warn once (until keep_again) that the daemon ran out of descriptors; the open-file limit."""
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if not self._warned_fds:
            self._warned_fds = True
            log.warning("out of file descriptors (%s; open-file limit %d): paths and priorities that cannot "
                        "be opened are not checked or read, their last states and priorities stand; raise "
                        "max_fds", err.strerror or err, limit)
        return limit

    def keep_again(self) -> None:
        """The configuration was reloaded (max_fds may have risen): keep descriptors per path again after
        they ran out, and warn again if they run out again."""
        if self._closed:
            return
        for kept in self._kept():
            kept.resume()
        self._warned_fds = False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _settle(fut: asyncio.Future[CheckResult], outcome: Outcome) -> None:
    if fut.done():  # its caller gave up (cancelled)
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


def _guarded(func: Callable[[str, float], CheckResult], devnode: str, timeout: float) -> CheckResult:
    try:
        return func(devnode, timeout)
    except OSError as err:
        return CheckResult(DOWN, f"cannot check {devnode}: {err.strerror or err}")
