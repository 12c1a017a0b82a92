"""The daemon's part in persistent reservations: keep a map's key registered through all of its paths.

mpathpersist (ours or upstream's) registers a key through the paths usable at that moment and tells the
daemon (`setprstatus`); from then on, the map's prflag set, the daemon registers the key through each path
that joins the map or comes back, but only after READ KEYS through that path shows the key still on the
logical unit: a host that another node fenced off (PREEMPT AND ABORT removed its key) must never register
itself again by a path returning. At start-up, after a reconfigure, and for a new map, the keys are read
through one usable path to learn prflag, and when the key is there, it is registered through every usable
path (registration is idempotent; a target that lost some nexus's registration gets it back).

The SCSI commands run on two threads of their own, each waited for at most its path's timeout plus a
margin, so a hung path delays neither the checkers nor map management. The prkeys file (keys of maps with
`reservation_key file`) is read once per configuration and written on `setprkey`/`unsetprkey` off the loop.
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

log = logging.getLogger("pymultipathd")
MARGIN = 5.0  # seconds past a path's own timeout before a registration is given up on

Resolve = Callable[[str], object]
T = TypeVar("T")


class Reservations:
    def __init__(self, state: DaemonState, resolve_map: Callable[[MapState], Resolve],
                 timeout_of: Callable[[PathState], float]) -> None:
        self.state = state
        self._resolve_map = resolve_map
        self._timeout_of = timeout_of
        self._thread = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pr")
        self.prkeys: dict[str, keys.Key] = {}
        self.prkeys_file = keys.default_prkeys_file()
        self._tasks: set[asyncio.Task] = set()

    # --- keys ---------------------------------------------------------------------------------------

    async def load(self, prkeys_file: str) -> None:
        """Read the prkeys file (at start and on reconfigure)."""
        self.prkeys_file = prkeys_file
        loop = asyncio.get_running_loop()
        self.prkeys = await loop.run_in_executor(self._thread, keys.read_prkeys, prkeys_file)

    def map_key(self, m: MapState) -> keys.MapKey:
        value = self._resolve_map(m)("reservation_key")
        if value == keys.FILE_WORD:
            return keys.MapKey(keys.Source.FILE, self.prkeys.get(m.wwid))
        return keys.configured(value, m.wwid, self.prkeys_file)

    async def set_file_key(self, m: MapState, key: keys.Key | None) -> None:
        """`setprkey` / `unsetprkey` for a map whose key comes from the prkeys file. Raises StoreError
        when the file cannot be written; the old file and the known key are kept then."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, keys.set_prkey, self.prkeys_file, m.wwid, key)
        if key is None:
            self.prkeys.pop(m.wwid, None)
        else:
            self.prkeys[m.wwid] = key

    # --- registration -------------------------------------------------------------------------------

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
        """fn(devnode, *args, timeout) on a reservation thread; None when it did not finish in time."""
        loop = asyncio.get_running_loop()
        timeout = self._timeout_of(p)
        fut = loop.run_in_executor(self._thread, functools.partial(fn, f"/dev/{p.dev}", *args, timeout))
        try:
            return await asyncio.wait_for(fut, timeout + MARGIN)
        except TimeoutError:
            return None

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
        log.info("%s: checking the persistent reservation registration of %s", dev, m.name,
                 extra=fields(map=m.name, dev=dev))
        got = await self._call(p, mapops.register_path, mk.key.value, mk.key.aptpl)
        if got is None:
            log.warning("%s: no answer to the reservation commands; the key is not registered through it",
                        dev, extra=fields(map=m.name, dev=dev))
            return
        outcome, text = got
        if outcome is mapops.Registration.REGISTERED:
            log.info("%s: reservation key %s registered for %s", dev, mk.key, m.name,
                     extra=fields(map=m.name, dev=dev))
        elif outcome is mapops.Registration.NOT_OURS:
            m.prflag = False
            log.warning("%s: %s: the host's key is no longer registered on the logical unit (unregistered, "
                        "or preempted by another host); %s is not registered and prflag is cleared", m.name,
                        text, dev, extra=fields(map=m.name, dev=dev))
        else:
            log.warning("%s: registering the reservation key for %s failed: %s", dev, m.name, text,
                        extra=fields(map=m.name, dev=dev))

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
        paths = self._candidates(m)
        if mk.key is None or not paths:
            return
        present = None
        for p in paths:  # the first path that answers tells
            present = await self._call(p, mapops.key_present, mk.key.value)
            if present is not None:
                break
        if present is None:
            log.warning("%s: cannot read the registered reservation keys through any path", m.name,
                        extra=fields(map=m.name, wwid=m.wwid))
            return
        m.prflag = bool(present)
        if not present:
            return
        log.info("%s: reservation key %s is registered; registering it through its %d usable paths", m.name,
                 mk.key, len(paths), extra=fields(map=m.name, wwid=m.wwid))
        await asyncio.gather(*(self._register(m, p.dev) for p in paths))

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._thread.shutdown(wait=False, cancel_futures=True)
