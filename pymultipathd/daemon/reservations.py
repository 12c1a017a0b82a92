"""The daemon's part in persistent reservations: keep a map's key registered through all of its paths.

mpathpersist (ours or upstream's) registers a key through the paths usable at that moment and tells the
daemon (`setprstatus`); from then on, the map's prflag set, the daemon registers the key through each path
that joins the map or comes back, but only while the key is still on the logical unit: a host that another
node fenced off (PREEMPT AND ABORT removed its key) must never register itself again by a path returning
(reservation/mapops.py register_path says how the window between reading and registering is closed). At
start-up, after a reconfigure, and for a new map, the keys are read through one usable path to learn
prflag, and when the key is there, it is registered through every usable path.

The SCSI commands run on threads of their own. A path with a command still in the kernel gets no second
one (so one hung path holds one thread, not the pool), and each command is waited for at most its path's
timeout plus a margin from when it starts. The prkeys file (keys of maps with `reservation_key file`) is
read once per configuration and written on `setprkey`/`unsetprkey`, on a thread apart from the SCSI ones
and within FILE_TIMEOUT. A result that arrives after `setprstatus`/`unsetprstatus` changed the map's
prflag (pr_epoch moved) is dropped: the administrator's word is newer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymultipathd.daemon.logsetup import fields
from pymultipathd.policy.state import DaemonState, MapState, PathCheck, PathState
from pymultipathd.reservation import keys, mapops
from pymultipathd.store import StoreError
from pymultipathd.threadname import name_this_thread

log = logging.getLogger("pymultipathd")
MARGIN = 5.0         # seconds past a path's own timeout before a command is given up on
START_WAIT = 60.0    # seconds a command may wait for a free thread (every thread on a hung path)
FILE_TIMEOUT = 30.0  # seconds a read or write of the prkeys file may take
RACE_RETRY = 2.0     # seconds before a registration the registrations kept changing under is tried again
THREADS = 8

Resolve = Callable[[str], object]
T = TypeVar("T")


class Reservations:
    def __init__(self, state: DaemonState, resolve_map: Callable[[MapState], Resolve],
                 timeout_of: Callable[[PathState], float]) -> None:
        self.state = state
        self._resolve_map = resolve_map
        self._timeout_of = timeout_of
        self._thread = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="pr",
                                          initializer=name_this_thread)
        self._file_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prkeys",
                                               initializer=name_this_thread)
        self._busy: set[str] = set()  # paths with a command in the kernel
        self.prkeys: dict[str, keys.Key] = {}
        self.prkeys_file = keys.default_prkeys_file()
        self._tasks: set[asyncio.Task] = set()
        self._retried: set[tuple[str, str]] = set()

    # --- keys ---------------------------------------------------------------------------------------

    async def _file(self, fn: Callable[[], T], what: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._file_thread, fn), FILE_TIMEOUT)
        except TimeoutError:
            raise StoreError(f"{what} {self.prkeys_file}: no answer within {FILE_TIMEOUT:g} s") from None

    async def load(self, prkeys_file: str) -> None:
        """Read the prkeys file (at start and on reconfigure); on trouble the keys known so far stay."""
        self.prkeys_file = prkeys_file
        try:
            self.prkeys = await self._file(functools.partial(keys.read_prkeys, prkeys_file), "reading")
        except StoreError as err:
            log.error("%s", err)

    def map_key(self, m: MapState) -> keys.MapKey:
        return keys.configured(self._resolve_map(m)("reservation_key"), m.wwid, lambda: self.prkeys)

    async def set_file_key(self, m: MapState, key: keys.Key | None) -> None:
        """`setprkey` / `unsetprkey` for a map whose key comes from the prkeys file. Raises StoreError when
        the file cannot be written; the old file and the known key are kept then."""
        await self._file(functools.partial(keys.set_prkey, self.prkeys_file, m.wwid, key), "writing")
        if key is None:
            self.prkeys.pop(m.wwid, None)
        else:
            self.prkeys[m.wwid] = key

    # --- running commands -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str, m: MapState) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (err := t.exception()) is not None:
                log.error("%s: %s failed: %s", m.name, what, err, exc_info=err,
                          extra=fields(map=m.name, wwid=m.wwid))
        task.add_done_callback(done)

    async def _call(self, p: PathState, fn: Callable[..., T], *args: object) -> T | None:
        """fn(devnode, *args, timeout) on a reservation thread; None when the path is still busy with an
        earlier command or this one did not finish in time."""
        if p.dev in self._busy:
            log.warning("%s: an earlier reservation command is still waiting in the kernel; not sending "
                        "another", p.dev, extra=fields(dev=p.dev, map=p.map))
            return None
        loop = asyncio.get_running_loop()
        timeout = self._timeout_of(p)
        started = loop.create_future()

        def begin() -> None:
            if not started.done():
                started.set_result(None)

        def work() -> T:
            loop.call_soon_threadsafe(begin)
            return fn(f"/dev/{p.dev}", *args, timeout)

        self._busy.add(p.dev)
        fut = loop.run_in_executor(self._thread, work)
        fut.add_done_callback(lambda _: self._busy.discard(p.dev))  # when the thread is free again
        try:
            await asyncio.wait_for(asyncio.shield(started), START_WAIT)
            return await asyncio.wait_for(fut, timeout + MARGIN)
        except TimeoutError:
            return None

    # --- registration -------------------------------------------------------------------------------

    def register_soon(self, map_name: str, dev: str) -> None:
        """The policy's RegisterKey: in the background, so the map's other actions do not wait for it."""
        m = self.state.maps.get(map_name)
        if m is not None:
            self._spawn(self._register(m, dev), f"registering the reservation key through {dev}", m)

    async def _register(self, m: MapState, dev: str) -> None:
        mk = self.map_key(m)
        p = self.state.paths.get(dev)
        if p is None or mk.key is None or not m.prflag:
            return
        epoch = m.pr_epoch
        log.info("%s: checking the persistent reservation registration of %s", dev, m.name,
                 extra=fields(map=m.name, dev=dev))
        got = await self._call(p, mapops.register_path, mk.key.value, mk.key.aptpl,
                               bool(self._resolve_map(m)("all_tg_pt")))
        if got is None:
            log.warning("%s: no answer to the reservation commands; the key is not registered through it",
                        dev, extra=fields(map=m.name, dev=dev))
            return
        outcome, text = got
        if outcome in (mapops.Registration.REGISTERED, mapops.Registration.ALREADY):
            log.info("%s: reservation key %s %s for %s", dev, mk.key, outcome.value, m.name,
                     extra=fields(map=m.name, dev=dev))
        elif outcome is mapops.Registration.NOT_OURS:
            if m.pr_epoch == epoch:
                m.prflag = False
            log.warning("%s: %s: the host's key is no longer registered on the logical unit (unregistered, "
                        "or preempted by another host); %s is not registered and prflag is cleared", m.name,
                        text, dev, extra=fields(map=m.name, dev=dev))
        elif outcome is mapops.Registration.RACED and (m.name, dev) not in self._retried:
            self._retried.add((m.name, dev))
            log.warning("%s: %s; trying again in %g s", dev, text, RACE_RETRY,
                        extra=fields(map=m.name, dev=dev))
            asyncio.get_running_loop().call_later(RACE_RETRY, self.register_soon, m.name, dev)
            return
        else:
            log.warning("%s: registering the reservation key for %s failed: %s", dev, m.name, text,
                        extra=fields(map=m.name, dev=dev))
        self._retried.discard((m.name, dev))

    def sync_soon(self, m: MapState) -> None:
        if self.map_key(m).key is not None:
            self._spawn(self._sync(m), "reading the reservation keys", m)

    def _candidates(self, m: MapState) -> list[PathState]:
        """Paths to register through: usable, or not yet checked but active in the kernel's table."""
        from pymultipathd.policy.decide import dm_active

        return [p for p in self.state.paths_of(m)
                if p.usable or (p.chk_state is PathCheck.UNDEF and dm_active(m, p))]

    async def _sync(self, m: MapState) -> None:
        mk = self.map_key(m)
        epoch = m.pr_epoch
        if mk.key is None:
            return
        present = None
        for p in self._candidates(m):  # the first path that answers tells
            present = await self._call(p, mapops.key_present, mk.key.value)
            if present is not None:
                break
        if present is None:
            log.warning("%s: cannot read the registered reservation keys through any path", m.name,
                        extra=fields(map=m.name, wwid=m.wwid))
            return
        if m.pr_epoch != epoch or self.state.maps.get(m.name) is not m:
            return  # setprstatus/unsetprstatus meanwhile, or the map is gone
        m.prflag = bool(present)
        if not present:
            return
        # the paths as they are now: one that joined while the keys were read (prflag still unset, so no
        # RegisterKey for it then) is among them
        paths = self._candidates(m)
        log.info("%s: reservation key %s is registered; registering it through its %d usable paths", m.name,
                 mk.key, len(paths), extra=fields(map=m.name, wwid=m.wwid))
        await asyncio.gather(*(self._register(m, p.dev) for p in paths))

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._thread.shutdown(wait=False, cancel_futures=True)
        self._file_thread.shutdown(wait=False, cancel_futures=True)
