"""The daemon's shell around the policy: it turns uevents, checker results, device-mapper events and the clock
into policy events (pymultipathd.policy), and carries out the actions that come back.

Everything here runs on the asyncio loop and is the only writer of DaemonState. Blocking work goes to three
places: device-mapper ioctls to a single worker thread (they are ordered, and a suspend waiting on I/O must
not stall the loop), checkers to the CheckRunner's bounded pool, and reads through a map (partition tables,
the holders scan) to a few map-io threads with deadlines, so a map that queues I/O never holds the DM thread.

Control commands use the public methods below (pymultipathd.daemon.handlers); nothing else reaches inside.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymultipathd import classify, flush, holders, locations, mapmaker, topology
from pymultipathd.config import Config
from pymultipathd.daemon import iosample
from pymultipathd.daemon.logsetup import fields
from pymultipathd.daemon.persist import Persist
from pymultipathd.daemon.reservations import Reservations
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm import table as dmt
from pymultipathd.dm.errors import DMError, DMNoSuchDevice
from pymultipathd.dm.ioctl import Control
from pymultipathd.errors import PymultipathError
from pymultipathd.mapmaker import is_path_candidate  # daemon/main.py imports it from here
from pymultipathd.paths import checkers, facts, holderscan, sysinfo, vpd
from pymultipathd.policy import actions as act
from pymultipathd.policy import decide, plan
from pymultipathd.policy import events as ev
from pymultipathd.policy.settings import KeptResolve, MapSettings, Resolve
from pymultipathd.policy.state import DaemonState, IoCheck, MapState, MapStats, PathCheck, PathState
from pymultipathd.record import replace
from pymultipathd.threadname import name_this_thread

log = logging.getLogger("pymultipathd")
T = TypeVar("T")

BATCH_QUIET = 0.2     # a uevent batch closes after this much silence ...
BATCH_MAX = 1.0       # ... or this long after its first event, whichever comes first
STOP_WAIT = 10.0      # seconds a stop waits for the map a batch is making (a hung device may hold it)
RESOLVE_MEMO_MAX = 8192  # bound objects resolved per configuration (paths come and go over months)
PARTITION_RETRY = 5.0      # seconds before reading an unreadable partition table again, doubling ...
PARTITION_RETRY_MAX = 60.0  # ... up to this
PARTITION_READ_TIMEOUT = 30.0  # seconds a partition-table read may take before it is tried again later
HOLDERS_SCAN_TIMEOUT = 20.0    # seconds the daemon waits for the holders scan of a map it flushes
TRANSPORT_TIMEOUT = 10.0       # seconds the sysfs writes of a map's transport settings may take
RECHECK_MARGIN = 5.0           # seconds past its command timeout an identity read (recheck_wwid) may take
ANNOUNCE_RETRY = 5.0           # seconds before a refused "ready" reload (ghost_delay's end) is tried again


class CommandError(PymultipathError):
    """A control command the daemon could not carry out; the text is the reason given to the client."""


def configured_alias(config: Config, wwid: str) -> str | None:
    for entry in config.multipaths:
        if entry.get("wwid") == wwid and entry.get("alias"):
            return str(entry["alias"])
    return None


class Core:
    def __init__(self, config: Config, ctl: Control) -> None:
        self.discovered = False  # until discover() has adopted the maps and learned every path
        self.config = config
        self.ctl = ctl
        self.state = DaemonState(started=time.time())
        self.runner = checkers.CheckRunner()
        self._dm_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dm",
                                             initializer=name_this_thread)
        # reads through maps (partition tables, holders scans): a few, so one map hung on queued I/O leaves
        # the others
        self._io_thread = ThreadPoolExecutor(max_workers=4, thread_name_prefix="map-io",
                                             initializer=name_this_thread)
        # sysfs writes of transport settings: apart from the map-io threads, which reads through a queueing
        # map can hold
        self._sysfs_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sysfs",
                                                initializer=name_this_thread)
        self._sysfs_job: asyncio.Future[list[tuple[str, str]]] | None = None
        # change uevents asked of the kernel (retrigger_*): a thread of their own, never waited for
        self._uevent_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uevent",
                                                 initializer=name_this_thread)
        self._uevent_job: asyncio.Future[bool] | None = None
        self._pending: set[str] = set()
        # WWIDs whose map an administrator removed (del map): a change uevent of their paths (late ones from
        # the map's own creation, a rescan, udevadm trigger) does not make the map again, as upstream's
        # daemon does not; a new path (add), `add map` and reconfigure do
        self.held_back: set[str] = set()
        # paths whose device reported another WWID than udev's when they came back (recheck_wwid): udev keeps
        # the old ID_SERIAL on change events, so the fresh one stays until the device is removed
        self.wwid_override: dict[str, str] = {}
        self._rechecking: set[str] = set()  # paths whose identity read is still in the kernel
        # paths whose check is in flight or whose verdict is being carried out (start_checks skips them),
        # and the tasks carrying out verdicts that call for actions
        self._checking: set[str] = set()
        self._carrying: set[asyncio.Task] = set()
        self._sampling: dict[str, asyncio.Task] = {}  # marginal_path_*'s I/O error checks under way, by path
        self._batch_first: float | None = None
        self._batch_handle: asyncio.TimerHandle | None = None
        self._batch_task: asyncio.Task | None = None
        self.stats = {"batches": 0, "creates": 0, "reloads": 0, "uevents": 0}
        self.busy = False  # reconfiguring or applying a batch (shown by `show daemon`)
        self._closing = False  # shutting down: a batch in flight stops after the map it is making
        self._dm_resync_running = self._dm_resync_again = False
        # One assembly at a time (start-up discovery, a uevent batch, `add map`): two reconciles of one WWID
        # both tried to create its map and the loser released the paths of a map that existed; and the
        # three lists below belong to the reconcile that holds this lock.
        self._assembly = asyncio.Lock()
        self._aliases: dict[str, str] = {}      # bound for the creates of the batch being applied
        self._created: list[str] = []           # WWIDs of maps created in that batch, for the wwids file
        self._partition_todo: list[str] = []    # maps created in that batch, for their partition maps
        # maps whose partition table could not be read (no usable path then) -> (next try, backoff seconds)
        self._partition_retry: dict[str, tuple[float, float]] = {}
        self._usage: tuple[float, facts.Usage] | None = None
        self._internal: set[asyncio.Task] = set()  # run_internal's tasks, referenced until they finish
        self.persist = Persist()  # bindings, wwids and failed markers: a failed write never stops assembly
        self._resolved_for: Config | None = None  # the config the memos below were filled from
        self._resolved: dict[tuple, KeptResolve] = {}
        self._named_wwids: frozenset[str] = frozenset()  # the WWIDs the config's multipaths entries name
        self.pr = Reservations(  # persistent-reservation keys through every path (daemon/reservations.py)
            self.state, lambda m: self.resolver(m.wwid, m.vendor, m.product, m.revision),
            lambda p: topology.check_timeout(self.path_resolver(p), p))

    # --- helpers ------------------------------------------------------------------------------------

    async def dm(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._dm_thread, lambda: fn(*args, **kw))

    def resolver(self, wwid: str | None, vendor: str | None, product: str | None,
                 revision: str | None = None, protocol: str | None = None) -> KeptResolve:
        """Attribute lookup bound to one map or path, kept per configuration: the checker and the policy tick
        ask the same few keywords, and the typed settings, of every path and map at every interval."""
        cfg = self.config
        if self._resolved_for is not cfg or len(self._resolved) > RESOLVE_MEMO_MAX:
            self._resolved_for, self._resolved = cfg, {}
            self._named_wwids = frozenset(str(e["wwid"]) for e in cfg.multipaths if e.get("wwid"))
        key = (self._memo_wwid(wwid), vendor, product, revision, protocol)
        kept = self._resolved.get(key)
        if kept is None:
            kept = self._resolved[key] = KeptResolve(functools.partial(
                cfg.resolve, wwid=key[0], vendor=vendor, product=product, revision=revision,
                protocol=protocol))
        return kept

    def _memo_wwid(self, wwid: str | None) -> str | None:
        """The WWID as the resolution sees it: only a multipaths entry reads it, so a WWID none names
        resolves as no WWID, and all the maps of one kind of hardware share one memo (resolving and
        typing a map's settings cost milliseconds under emulation, for every map at start-up)."""
        return wwid if wwid in self._named_wwids else None

    def path_resolver(self, p: PathState) -> Resolve:
        f = p.facts
        return self.resolver(p.wwid, f.vendor, f.product, f.revision)

    def settings_of(self, m: MapState) -> MapSettings:
        """The map's policy settings, typed once per configuration (and kind of hardware, see _memo_wwid)."""
        return self.resolver(m.wwid, m.vendor, m.product, m.revision).settings()

    def known(self) -> facts.Known:
        """The maps and paths as the daemon knows them (for udev's helper, see daemon/udev_service.py)."""
        return facts.Known(
            maps=tuple(m.facts or classify.MapFacts(m.name, m.uuid, tuple(m.paths))
                       for m in self.state.maps.values()),
            paths=tuple(p.facts for p in self.state.paths.values()))

    def world(self) -> classify.World:
        known = self.known()
        wwids, failed, unread = facts.stored()
        for problem in unread:
            self.persist.unreadable(problem)
        return classify.World(
            paths=known.paths,
            maps=known.maps,
            wwids=wwids,
            failed_wwids=failed,
            daemon_running=True,
            now=time.time(),
            timers=facts.timers(),
            unread=unread,
        )

    def _path_from_facts(self, f: classify.PathFacts, old: PathState | None) -> PathState:
        p = topology.path_state(f, self.resolver(f.wwid, f.vendor, f.product, f.revision), old,
                                read_prio=False)
        p.blacklisted = classify.blacklisted(f, self.config)
        return p

    # --- discovery ----------------------------------------------------------------------------------

    async def discover(self) -> None:
        """Adopt existing maps untouched, learn every disk, then assemble what the classifier claims."""
        await self.pr.load(str(self.resolver(None, None, None)("prkeys_file")))
        await self.adopt_maps()
        world = facts.world_all(self.config)
        for f in world.paths:
            if is_path_candidate(f.dev):
                self.state.paths[f.dev] = self._path_from_facts(f, None)
        for m in self.state.maps.values():
            self.state.relink(m)
        await self.reconcile(self._all_wwids())
        await self.reassign(list(self.state.maps.values()))
        self.discovered = True
        self.sync_reservations()

    def sync_reservations(self) -> None:
        """Learn each map's prflag from the device and register its key through its paths (start-up,
        reconfigure): in the background."""
        for m in list(self.state.maps.values()):
            self.pr.sync_soon(m)

    async def adopt_maps(self) -> None:
        found, problems = await self.dm(topology.multipath_maps, self.ctl)
        for name, err in problems:
            log.warning("cannot adopt map %s: %s", name, err, extra=fields(map=name))
        now = asyncio.get_running_loop().time()
        for m, _ in found:
            self.state.maps[m.name] = m
            self.state.relink(m)
            groups = len(m.table.groups) if m.table else 0
            log.info("%s: adopted existing map (%d path groups)", m.name, groups,
                     extra=fields(map=m.name, wwid=m.wwid))
            if (facts.udev_properties(m.dev_t) or {}).get("DM_SUBSYSTEM_UDEV_FLAG2") == "1":
                # left announced not ready (ghost_delay) by a daemon that stopped before it announced it:
                # announced at the first tick, as upstream's start-up reload of every map would
                m.not_ready_until = now

    async def refresh_map(self, m: MapState) -> None:
        """Re-read a map's live table, status and info from the kernel."""
        # one job on the dm thread: each hand-off to it and back costs more than the ioctls under emulation
        read = await self.dm(topology.read_map, self.ctl, m.name)
        topology.apply_read(m, read)
        before = m.paths
        self.state.relink(m)
        for a in decide.members_joined(m, before):
            self.pr.register_soon(a.map, a.dev)

    def _all_wwids(self) -> set[str]:
        wwids = {p.wwid for p in self.state.paths.values() if p.wwid}
        return wwids | {m.wwid for m in self.state.maps.values()}

    # --- uevents ------------------------------------------------------------------------------------

    def _usage_now(self) -> facts.Usage:
        """Mounts and swaps, read at most once a second: a storm of uevents shares one reading."""
        now = time.monotonic()
        if self._usage is None or now - self._usage[0] > 1.0:
            self._usage = (now, facts.Usage())
        return self._usage[1]

    def on_uevent(self, action: str, dev: str, properties: dict[str, str] | None = None) -> None:
        """A block uevent for a whole disk: update the path, and queue its WWID(s) for the next batch.
        `properties` are the event's own (fresher than udev's database, and free to read)."""
        self.stats["uevents"] += 1
        if not is_path_candidate(dev):
            return
        old = self.state.paths.get(dev)
        if action == "remove":
            self.wwid_override.pop(dev, None)
            sampling = self._sampling.pop(dev, None)
            if sampling is not None:
                sampling.cancel()
            if old is not None:
                del self.state.paths[dev]
                self._forget_checks(dev)
                if old.wwid:
                    self._queue(old.wwid)
                log.info("%s: path removed", dev, extra=fields(dev=dev, map=old.map))
            return
        try:
            f = facts.path_facts(dev, self.config, usage=self._usage_now(), properties=properties)
        except facts.FactsError as err:
            log.debug("%s: no facts: %s", dev, err)
            return
        if dev in self.wwid_override:
            f = replace(f, wwid=self.wwid_override[dev])
        if old is not None and old.wwid and old.wwid != f.wwid:
            log.warning("%s: WWID changed from %s to %s", dev, old.wwid, f.wwid, extra=fields(dev=dev))
            self._queue(old.wwid)
        p = self._path_from_facts(f, old)
        self.state.paths[dev] = p
        if f.wwid:
            if action == "add":
                self.held_back.discard(f.wwid)
            self._queue(f.wwid)  # a WWID held back is dropped when the batch closes

    def _forget_checks(self, dev: str) -> None:
        """What the checkers keep of a removed path: a checker's memory, the sg node's name, the device state
        attribute kept open."""
        devnode = os.path.join("/dev", dev)
        checkers.forget_path(devnode)
        self.runner.forget(devnode)

    def _free_checks(self, dev: str) -> None:
        """A path left to the system (outside any map it is not checked): the descriptors kept open for its
        checks are closed, so its sg node is free for whoever takes the disk (an exclusive open)."""
        self.runner.forget(os.path.join("/dev", dev))

    def resync_disks(self) -> int:
        """Uevents were lost (the netlink socket overflowed): every disk is treated as changed and every
        known path that is gone as removed, so the batches that follow bring the maps in line. Returns how
        many disks were looked at."""
        try:
            names = os.listdir(os.path.join(locations.sysfs(), "block"))
            present = {d for d in names if is_path_candidate(d)}
        except OSError as err:
            log.error("cannot list block devices to resync lost uevents: %s", err)
            return 0
        for dev in sorted(set(self.state.paths) - present):
            self.on_uevent("remove", dev)
        for dev in sorted(present):
            self.on_uevent("change", dev)
        return len(present)

    def _queue(self, wwid: str) -> None:
        if self._closing:
            return  # stopping: the next start reads the paths afresh
        loop = asyncio.get_running_loop()
        self._pending.add(wwid)
        now = loop.time()
        if self._batch_first is None:
            self._batch_first = now
        if self._batch_handle is not None:
            self._batch_handle.cancel()
        delay = min(BATCH_QUIET, max(0.0, self._batch_first + BATCH_MAX - now))
        self._batch_handle = loop.call_later(delay, self._close_batch)

    def _close_batch(self) -> None:
        if self._batch_task is not None and not self._batch_task.done():
            # A batch is being applied: re-arm and let events keep accumulating meanwhile.
            self._batch_handle = asyncio.get_running_loop().call_later(BATCH_QUIET, self._close_batch)
            return
        # a map removed by an administrator since its WWID was queued stays removed
        wwids, self._pending = self._pending - self.held_back, set()
        self._batch_first = self._batch_handle = None
        if wwids:
            self.stats["batches"] += 1
            self._batch_task = asyncio.ensure_future(self.reconcile(wwids))
            self._batch_task.add_done_callback(_log_failure)

    async def settle(self) -> None:
        """Wait until queued uevents are applied (tests, reconfigure, `show` after `add path`)."""
        while self._pending or (self._batch_task is not None and not self._batch_task.done()):
            if self._batch_task is not None and not self._batch_task.done():
                # shielded: a waiter that gives up (a control client's deadline) must not cancel the batch,
                # or a map could exist in DM that the daemon never learnt about
                await asyncio.shield(self._batch_task)
            elif self._pending:
                if self._batch_handle is not None:
                    self._batch_handle.cancel()
                self._close_batch()

    # --- assembly -----------------------------------------------------------------------------------

    async def reconcile(self, wwids: Iterable[str]) -> None:
        """Bring the maps of these WWIDs in line with the classifier: create, reload or leave alone. One
        reconcile at a time; a caller that may be cancelled (a control command) runs it as its own task
        (run_internal), so a client's deadline never stops it half way."""
        async with self._assembly:
            await self._reconcile_locked(sorted(wwids))

    async def _reconcile_locked(self, wwids: list[str]) -> None:
        # a map an administrator removed while this batch waited for the lock stays removed
        wwids = [w for w in wwids if w not in self.held_back]
        if not wwids:
            return
        world = classify.restrict(self.world(), set(wwids))  # a storm's batch costs its paths, not all
        claimed, verdicts = classify.assembly_and_verdicts(world, self.config)
        self._bind_aliases([w for w in wwids if claimed.get(w) and not self.state.map_of_wwid(w)], claimed)
        for dev, v in verdicts.items():
            if dev in self.state.paths:
                self.state.paths[dev].verdict = f"{v.decision} ({v.rule})"
        mine = {w: tuple(d for d in claimed.get(w, ()) if d in self.state.paths) for w in wwids}
        # Before maps are made or reloaded (a map's I/O size limit comes from its paths): one job for the
        # whole batch, since a hand-off to a thread per map cost a storm more than the writes themselves.
        await self._set_transport([(w, mine[w]) for w in wwids])
        await self._read_priorities([self.state.paths[d] for w in wwids for d in mine[w]
                                     if self.state.paths[d].prio_due])
        # one keyword per new map, not its whole settings: this runs for every WWID of a start-up's batch
        ghostly = [w for w in wwids if mine[w] and not self.state.map_of_wwid(w)
                   and self._map_resolver(w, mine[w], None)("ghost_delay")]
        await self._first_checks([self.state.paths[d] for w in ghostly for d in mine[w]
                                  if self.state.paths[d].chk_state is PathCheck.UNDEF])
        for i, wwid in enumerate(wwids):
            if self._closing:
                log.info("stopping: %d WWIDs of this batch left to the next start", len(wwids) - i)
                break
            try:
                await self._assemble(wwid, mine[wwid])
            except Exception:  # one bad WWID must not stop the others
                log.exception("%s: assembling the map failed", wwid, extra=fields(wwid=wwid))
        self._aliases = {}
        created, self._created = self._created, []
        if created:
            self.persist.record_wwids(created)  # one locked write for the batch, not one per map
        # Partition maps read each new map's partition table through the map: after the whole batch, so a
        # storm of new LUNs gets its maps first (upstream leaves this to kpartx run by udev).
        todo, self._partition_todo = self._partition_todo, []
        if todo and not self._closing:  # else the next start (or udev's kpartx) makes the partition maps
            await self._partition_maps(todo)

    async def _read_priorities(self, due: list[PathState]) -> None:
        """The priorities of new paths, before their maps are grouped: on the checker threads, all at once,
        each bounded as a check is (a path that does not answer keeps priority 0 and stays due: its first
        check reads it)."""
        await self._check_new(due, checker=False)

    async def _first_checks(self, due: list[PathState]) -> None:
        """ghost_delay decides on the paths' checker states when a map is made: paths not checked yet are,
        first (one without an answer stays unchecked)."""
        await self._check_new(due, checker=True)

    async def _check_new(self, due: list[PathState], *, checker: bool) -> None:
        """New paths asked on the checker threads before their maps are made, all at once, each bounded as
        a check is: their priority, and with `checker` their checker's verdict too (fed to the policy)."""
        async def ask(p: PathState) -> None:
            timeout = topology.check_timeout(self.path_resolver(p), p)
            res = await self.runner.check(os.path.join("/dev", p.dev), p.checker if checker else "none",
                                          timeout, p.prio_name, p.prio_args)
            if self.state.paths.get(p.dev) is not p:
                return  # removed meanwhile
            if res.prio is not None:
                p.prio_due = False
                if not checker:
                    p.prio = res.prio
            if checker:
                now = asyncio.get_running_loop().time()
                checked = ev.PathChecked(p.dev, res.state, now, res.message, res.prio)
                await self.execute(decide.path_checked(self.state, checked, self.settings_of))

        what = "checking the path" if checker else "reading the priority"
        for p, res in zip(due, await asyncio.gather(*(ask(p) for p in due), return_exceptions=True),
                          strict=True):
            if isinstance(res, Exception):
                log.warning("%s: %s failed: %s", p.dev, what, res, extra=fields(dev=p.dev, map=p.map))

    async def _assemble(self, wwid: str, claimed: tuple[str, ...]) -> None:
        m = self.state.map_of_wwid(wwid)
        if m is not None and not claimed and not any(d in self.state.paths for d in m.paths):
            # its last path is gone: the decision (flush_on_last_del unused) rests on whether the map is
            # open now, not at its last read (a mount raises no device-mapper event)
            if not await self._refresh_or_forget(m.name):
                return
        resolve = self._map_resolver(wwid, claimed, m)
        await self.execute(decide.assemble(self.state, ev.PathsSettled(wwid, claimed), resolve))

    def _map_resolver(self, wwid: str, claimed: tuple[str, ...], m: MapState | None,
                      protocol: str | None = None) -> Resolve:
        """The configuration of the map of `wwid`: by the map's vendor and product, or its paths' (and for
        paths of `protocol`, as the overrides section's protocol subsections set it)."""
        return self.resolver(wwid, *mapmaker.map_identity(self.state, claimed, m), protocol)

    async def _set_transport(self, batch: list[tuple[str, tuple[str, ...]]]) -> None:
        """fast_io_fail_tmo, dev_loss_tmo, eh_deadline and max_sectors_kb on the paths of these WWIDs
        (claimed paths, and the paths their maps have). The configured max_sectors_kb goes only to the paths
        of a map about to be made; a live map's paths keep (and its new paths get) the map's own limit. The
        writes run on a thread of their own with a deadline, and while one is stuck (a host in error
        handling) the next are skipped rather than waited for."""
        work = []
        for wwid, claimed in batch:
            item = mapmaker.transport_work(self.state, wwid, claimed, functools.partial(
                self._map_resolver, wwid, claimed, self.state.map_of_wwid(wwid)))
            if item is not None:
                work.append(item)
        if not work:
            return
        if self._sysfs_job is not None and not self._sysfs_job.done():
            log.warning("transport settings of %d maps skipped: an earlier write to sysfs has not returned",
                        len(work))
            return

        self._sysfs_job = asyncio.get_running_loop().run_in_executor(
            self._sysfs_thread, mapmaker.apply_transport, work)
        deadline = TRANSPORT_TIMEOUT + 0.05 * sum(len(w.devs) for w in work)
        try:
            problems = await asyncio.wait_for(asyncio.shield(self._sysfs_job), deadline)
        except TimeoutError:
            problems = [("", f"setting the transport settings did not finish within {deadline:.0f} s")]
        for wwid, problem in problems:
            log.warning("%s", problem, extra=fields(wwid=wwid or None))

    async def _partition_maps(self, names: list[str]) -> None:
        """Partition maps of these maps. A table that cannot be read now (EIO: the kernel failed the map's
        only path, as it may on a path's first I/O after hot-plug) is read again later (policy_tick)."""
        try:
            listed = await self.dm(self.ctl.list_devices)  # once: a listing per map was O(maps²)
        except DMError as err:
            for name in names:
                self._partition_retry_later(name, f"cannot list device-mapper devices: {err}")
            return
        loop = asyncio.get_running_loop()
        for name in names:
            if name not in self.state.maps:
                continue
            try:
                info = await self.dm(self.ctl.info, name)
                # The read is block I/O through the map: on a thread of its own, bounded, so a map queueing
                # with no usable path holds that thread, never the DM thread that sends the reinstate.
                try:
                    table = await asyncio.wait_for(
                        loop.run_in_executor(self._io_thread, dmmaps.read_partitions, info),
                        PARTITION_READ_TIMEOUT)
                except TimeoutError:
                    self._partition_retry_later(name, f"partition table read did not answer within "
                                                      f"{PARTITION_READ_TIMEOUT:g} s")
                    continue
                await self.dm(dmmaps.add_partition_maps, self.ctl, name, devices=listed,
                              parts=table.partitions)
            except DMError as err:  # an unusable table (or a DM refusal): reading it again will not help
                self._partition_retry.pop(name, None)
                log.warning("%s: partition maps: %s", name, err, extra=fields(map=name))
            except OSError as err:
                self._partition_retry_later(name, f"partition table unreadable now ({err.strerror or err})")
            except Exception:  # a table we cannot parse must not stop the others (or the checker loop)
                self._partition_retry.pop(name, None)
                log.exception("%s: partition maps failed", name, extra=fields(map=name))
            else:
                self._partition_retry.pop(name, None)

    def _partition_retry_later(self, name: str, why: str) -> None:
        _, backoff = self._partition_retry.get(name, (0.0, PARTITION_RETRY / 2))
        backoff = min(backoff * 2, PARTITION_RETRY_MAX)
        self._partition_retry[name] = (asyncio.get_running_loop().time() + backoff, backoff)
        log.warning("%s: %s; trying again in %.0f s once a path is usable", name, why, backoff,
                    extra=fields(map=name))

    def _bind_aliases(self, new: list[str], claimed: dict[str, tuple[str, ...]]) -> None:
        """user_friendly_names: bind the aliases of a batch's new maps with one write of the bindings file."""
        by_prefix: dict[str, list[str]] = {}
        for wwid in sorted(new):
            first = self.state.paths.get(claimed[wwid][0])
            f = first.facts if first else None
            prefix = self._friendly_prefix(wwid, self.resolver(wwid, f.vendor if f else None,
                                                               f.product if f else None,
                                                               f.revision if f else None))
            if prefix:
                by_prefix.setdefault(prefix, []).append(wwid)
        taken = {m.name for m in self.state.maps.values()}
        for prefix, wwids in by_prefix.items():
            try:
                self._aliases.update(self.persist.aliases(wwids, prefix, taken))
            except ValueError as err:  # an alias_prefix the bindings file cannot hold
                log.error("cannot bind aliases in the bindings file: %s", err)

    def _friendly_prefix(self, wwid: str, r: Resolve) -> str | None:
        """The alias prefix when the map's name comes from the bindings file, else None (a multipaths
        alias wins; without user_friendly_names the name is the WWID)."""
        if configured_alias(self.config, wwid) or not r("user_friendly_names"):
            return None
        return str(r("alias_prefix") or "mpath")

    def alias_for(self, wwid: str, r: Resolve) -> str:
        configured = configured_alias(self.config, wwid)
        if configured:
            return configured
        if wwid in self._aliases:
            return self._aliases[wwid]
        prefix = self._friendly_prefix(wwid, r)
        if prefix:
            taken = {m.name for m in self.state.maps.values()}
            try:
                return self.persist.aliases([wwid], prefix, taken).get(wwid, wwid)
            except ValueError as err:
                log.error("cannot bind an alias for %s: %s", wwid, err, extra=fields(wwid=wwid))
        return wwid

    async def _create(self, a: act.CreateMap) -> None:
        """Make the map of a WWID; then only the paths udev has not claimed yet get a "change" uevent (as
        upstream): a claimed one would be classified the same again, and under a storm of hundreds of disks
        that second pass through udev doubled its work."""
        wwid, paths = a.wwid, [self.state.paths[d] for d in a.devs if d in self.state.paths]
        if not paths:
            return
        first = paths[0]
        r = self.resolver(wwid, first.facts.vendor, first.facts.product, first.facts.revision)
        name = self.alias_for(wwid, r)
        try:
            flags = dmmaps.NOT_READY_UDEV_FLAGS if a.not_ready_for else 0
            await self.dm(dmmaps.create_multipath, self.ctl, name, wwid, a.table, udev_flags=flags)
        except DMError as err:
            log.error("%s: creating map %s failed: %s; releasing its paths to the system", wwid, name, err,
                      extra=fields(map=name, wwid=wwid))
            self.persist.mark_failed(wwid, True)
            for p in paths:
                self._free_checks(p.dev)
                sysinfo.trigger_uevent(p.dev, "add")  # let LVM, mounts, etc. pick the paths up
            return
        self.persist.mark_failed(wwid, False)
        self._created.append(wwid)
        m = MapState(name=name, wwid=wwid, vendor=first.facts.vendor or "", product=first.facts.product or "",
                     revision=first.facts.revision or "")
        m.reloads = 1
        m.action = "create"
        if a.not_ready_for:
            m.not_ready_until = asyncio.get_running_loop().time() + a.not_ready_for
        m.stats.map_loads += 1
        decide.created(self.state, m, a.devs)
        await self.refresh_map(m)
        await self.reassign([m])
        self.pr.sync_soon(m)
        self.stats["creates"] += 1
        log.info("%s: created map (%s) with %d paths: %s", name, wwid, len(paths),
                 " ".join(p.dev for p in paths), extra=fields(map=name, wwid=wwid))
        if not r("skip_kpartx"):
            self._partition_todo.append(name)
        for dev in mapmaker.unclaimed(paths):  # udev reruns `pymultipath -u`, which now sees the map
            sysinfo.trigger_uevent(dev, "change")

    async def _remove_last(self, a: act.RemoveMap) -> None:
        """The policy's RemoveMap (the map's last path is gone): flush it, say who holds it if it stays."""
        m = self.state.maps.get(a.map)
        if m is None:
            return
        where = fields(map=m.name, wwid=m.wwid)
        try:
            res = await self.flush_map(m.name, deferred=a.deferred)
        except DMError as err:
            log.warning("%s: last path gone; removing the map failed: %s", m.name, err, extra=where)
            return
        if res.removed:
            self.forget_map(m)
            log.info("%s: last path gone, map removed", m.name, extra=where)
        elif res.deferred:
            log.warning("%s: last path gone; in use, so removed deferred:\n%s", m.name, res.report,
                        extra=where)
        else:
            queueing = " (queueing I/O)" if m.queueing else ""
            log.warning("%s: last path gone; map kept%s, it is in use:\n%s", m.name, queueing, res.report,
                        extra=where)

    # --- carrying out the policy's actions ------------------------------------------------------------

    async def execute(self, todo: list[act.Action]) -> None:
        """Carry out actions in order. One that fails is logged with its map and path and the rest go on:
        a refused message on one path must not keep its map from being read again."""
        for a in todo:
            try:
                await self._execute_one(a)
            except Exception:
                m, d = getattr(a, "map", None), getattr(a, "dev", None)
                log.exception("%s failed", type(a).__name__, extra=fields(dev=d, map=m))

    async def _execute_one(self, a: act.Action) -> None:
        if isinstance(a, act.Log):
            log.log(int(a.level), "%s", a.text, extra=fields(dev=a.dev, map=a.map))
        elif isinstance(a, (act.FailPath, act.ReinstatePath)):
            p = self.state.paths.get(a.dev)
            if p is not None:
                word = "fail_path" if isinstance(a, act.FailPath) else "reinstate_path"
                await self._message(a.map, f"{word} {p.dev_t}", a.dev)
        elif isinstance(a, act.SwitchGroup):
            if await self._message(a.map, f"switch_group {a.group}"):
                self.state.maps[a.map].stats.switch_grp += 1
        elif isinstance(a, act.SetQueueing):
            await self._message(a.map, "queue_if_no_path" if a.on else "fail_if_no_path")
        elif isinstance(a, act.Refresh):
            await self._refresh_or_forget(a.map)
        elif isinstance(a, act.Revisit):
            m = self.state.maps.get(a.map)
            if m is not None and await self._refresh_or_forget(a.map):
                now = asyncio.get_running_loop().time()
                await self.execute(decide.step(self.state, ev.MapRevisited(a.map, now, a.came_up),
                                               self.settings_of))
        elif isinstance(a, act.Regroup):
            self._queue(a.wwid)
        elif isinstance(a, act.ReloadMap):
            await self._reload(a.map, a.table)
        elif isinstance(a, act.CreateMap):
            await self._create(a)
        elif isinstance(a, act.RemoveMap):
            await self._remove_last(a)
        elif isinstance(a, act.RegisterKey):
            self.pr.register_soon(a.map, a.dev)
        elif isinstance(a, act.SampleIo):
            self._sample_io(a)
        elif isinstance(a, act.AnnounceReady):
            await self._announce_ready(a.map)
        elif isinstance(a, act.Retrigger):
            self._retrigger(a.dev)
        else:
            raise TypeError(f"no executor for {a!r}")

    async def _refresh_or_forget(self, name: str) -> bool:
        """Re-read a map; one gone from the kernel is forgotten. False if it is gone."""
        m = self.state.maps.get(name)
        if m is None:
            return False
        try:
            await self.refresh_map(m)
        except DMNoSuchDevice:
            self.forget_map(m)
            return False
        return True

    async def _reload(self, name: str, table: dmt.MultipathTable) -> None:
        m = self.state.maps.get(name)
        if m is None:
            return
        flags = dmmaps.NOT_READY_UDEV_FLAGS if m.not_ready_until is not None else 0
        await self.dm(dmmaps.reload_map, self.ctl, name, [table.line()], udev_flags=flags)
        m.reloads += 1
        m.action = "reload"
        m.stats.map_loads += 1
        self.stats["reloads"] += 1

    async def _message(self, name: str, text: str, dev: str | None = None) -> bool:
        if name not in self.state.maps:
            return False
        try:
            await self.dm(self.ctl.message, name, text)
            return True
        except DMError as err:
            log.warning("%s: message %r failed: %s", name, text, err, extra=fields(dev=dev, map=name))
            return False

    # --- checking and failover ----------------------------------------------------------------------

    def start_checks(self, due: Iterable[PathState]) -> None:
        """Check these due paths (the checker loop's round): all are handed to the CheckRunner now, and each
        verdict is applied when it comes back; the threads' results of a round reach the loop in a few
        batches, with no coroutine per path. A path whose last check is still in flight or being carried
        out is skipped. One path's failure is logged with its path and map; the others go on."""
        now = asyncio.get_running_loop().time()
        for p in due:
            if p.dev in self._checking:
                continue
            self._checking.add(p.dev)
            p.check_sent = now
            try:
                timeout = self._check_timeout(p)
                res = self.runner.submit(f"/dev/{p.dev}", p.checker, timeout, self._checked, p, p.prio_name,
                                         p.prio_args, dev_state=True)
            except Exception as err:
                self._check_failed(p, err)
                continue
            if res is not None:  # answered at once (still in flight, unknown checker)
                self._checked(p, res)

    def _checked(self, p: PathState, outcome: checkers.Outcome) -> None:
        """A verdict of start_checks' reaches the loop: applied now, and only a verdict that calls for
        actions (or for an identity read, recheck_wwid) goes on as a task."""
        if isinstance(outcome, BaseException):  # the checker raised (a bug, not a verdict on the path)
            self._check_failed(p, outcome)
            return
        try:
            if not self._note_check(p, outcome):
                self._checking.discard(p.dev)
                return
            if self._identity_due(p, outcome):
                self._carry_on(p, self._after_identity(p, outcome, self._check_timeout(p)))
                return
            todo = self._decide_check(p, outcome)
            if todo:  # a healthy path's check decides nothing
                self._carry_on(p, self.execute(todo))
                return
        except Exception as err:
            self._check_failed(p, err)
            return
        self._checking.discard(p.dev)

    def _carry_on(self, p: PathState, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._carrying.add(task)
        task.add_done_callback(functools.partial(self._carried, p))

    def _carried(self, p: PathState, task: asyncio.Task) -> None:
        self._carrying.discard(task)
        self._checking.discard(p.dev)
        if not task.cancelled() and (err := task.exception()) is not None:
            self._check_failed(p, err)

    def _check_failed(self, p: PathState, err: BaseException) -> None:
        # its next_check is left as it was: the path is checked again at the next tick
        self._checking.discard(p.dev)
        log.error("%s: checking the path (map %s) failed", p.dev, p.map, exc_info=err,
                  extra=fields(dev=p.dev, map=p.map))

    async def check_and_apply(self, p: PathState) -> None:
        """Check one path and act on the verdict (fail or reinstate it; revisit its map): start_checks for
        one path, awaited."""
        timeout = self._check_timeout(p)
        res = await self.runner.check(f"/dev/{p.dev}", p.checker, timeout, p.prio_name, p.prio_args,
                                      dev_state=True)
        if not self._note_check(p, res):
            return
        if self._identity_due(p, res):
            await self._after_identity(p, res, timeout)
            return
        todo = self._decide_check(p, res)
        if todo:
            await self.execute(todo)

    def _check_timeout(self, p: PathState) -> float:
        m = self.state.maps.get(p.map) if p.map else None
        s = self.settings_of(m) if m is not None else MapSettings()
        return s.checker_timeout or p.scsi_timeout

    def _note_check(self, p: PathState, res: checkers.CheckResult) -> bool:
        """Take in what a check read besides its verdict; False if the path was removed while it was checked
        (its name may belong to another device now): the result is stale."""
        if self.state.paths.get(p.dev) is not p:
            return False
        # the checker's thread read the device state; a check with no answer read none, so it is read here
        p.dev_state = res.dev_state if res.dev_state is not None else sysinfo.dev_state(p.dev)
        if res.prio is not None:
            p.prio_due = False
        return True

    def _identity_due(self, p: PathState, res: checkers.CheckResult) -> bool:
        """recheck_wwid: a path that comes back is asked for its identity before it is reinstated."""
        if not (res.state.usable and not p.usable and p.chk_state is not PathCheck.UNDEF):
            return False
        m = self.state.maps.get(p.map) if p.map else None
        return bool(m is not None and self.settings_of(m).recheck_wwid)

    async def _after_identity(self, p: PathState, res: checkers.CheckResult, timeout: float) -> None:
        if p.dev in self._rechecking:  # an earlier read hangs: not reinstated until one answers
            res = checkers.CheckResult(PathCheck.PENDING, "its identity (recheck_wwid) is still read")
        else:
            fresh = await self._recheck_wwid(p, timeout)
            if self.state.paths.get(p.dev) is not p:
                return
            if fresh is not None:
                res = checkers.CheckResult(PathCheck.DOWN, f"the device's WWID is now {fresh}")
        todo = self._decide_check(p, res)
        if todo:
            await self.execute(todo)

    def _decide_check(self, p: PathState, res: checkers.CheckResult) -> list[act.Action]:
        now = asyncio.get_running_loop().time()
        return decide.path_checked(self.state, ev.PathChecked(p.dev, res.state, now, res.message, res.prio,
                                                              p.check_sent), self.settings_of)

    async def _recheck_wwid(self, p: PathState, timeout: float) -> str | None:
        """recheck_wwid: a path that comes back is asked for its identity afresh (VPD page 83h); the new WWID
        if another logical unit is behind it now. Such a path is not reinstated: it leaves its map (its
        facts take the new WWID, and both WWIDs are assembled again) and the kernel rereads the device."""
        loop = asyncio.get_running_loop()
        # one read per path at a time: a device that never answers holds one map-io thread, not all of them
        self._rechecking.add(p.dev)
        read = loop.run_in_executor(self._io_thread, vpd.read_page, f"/dev/{p.dev}", timeout)
        read.add_done_callback(lambda _: self._rechecking.discard(p.dev))
        try:
            page = await asyncio.wait_for(asyncio.shield(read), timeout + RECHECK_MARGIN)
        except TimeoutError:
            page = None
        old = p.wwid
        fresh = vpd.changed(old or "", page) if page else None
        if fresh is None or old is None:
            if page is None:
                log.warning("%s: recheck_wwid: cannot read its identity (VPD page 83h); kept as %s", p.dev,
                            old, extra=fields(dev=p.dev, map=p.map))
            return None
        log.error("%s: WWID changed: was %s, the device now reports %s (another logical unit behind the same "
                  "address); not reinstated in %s, removed from it", p.dev, old, fresh, p.map,
                  extra=fields(dev=p.dev, map=p.map, wwid=old))
        self.wwid_override[p.dev] = fresh
        p.facts = replace(p.facts, wwid=fresh)
        self._queue(old)
        self._queue(fresh)
        loop.run_in_executor(self._sysfs_thread, sysinfo.rescan_device, p.dev)
        return fresh

    def _wwid_from_udev(self, p: PathState) -> bool:
        f = p.facts
        return bool(self.config.uid_attribute_for(p.dev, vendor=f.vendor, product=f.product,
                                                  revision=f.revision))

    def _retrigger(self, dev: str) -> None:
        """A change uevent for `dev`, not waited for: a write to sysfs that hangs (a host in error handling)
        must not hold the clock's tick; while one hangs, the next are not sent."""
        if self._uevent_job is not None and not self._uevent_job.done():
            log.warning("%s: change uevent not sent: an earlier one has not returned", dev,
                        extra=fields(dev=dev))
            return
        self._uevent_job = asyncio.get_running_loop().run_in_executor(
            self._uevent_thread, sysinfo.trigger_uevent, dev, "change")

    async def _announce_ready(self, name: str) -> None:
        """ghost_delay is over: the live table loaded again without the not-ready flags, so the change
        uevent of its resume runs udev's rules in full (as upstream's forced reload)."""
        m = self.state.maps.get(name)
        if m is None or m.table is None:
            return
        try:
            await self._reload(name, m.table)
        except DMError as err:
            m.not_ready_until = asyncio.get_running_loop().time() + ANNOUNCE_RETRY
            log.warning("%s: announcing it ready failed (%s); again in %.0f s", name, err, ANNOUNCE_RETRY,
                        extra=fields(map=name))
            return
        await self._refresh_or_forget(name)

    def _sample_io(self, a: act.SampleIo) -> None:
        """Start a path's I/O error check; its result goes to the policy when it is over."""
        p = self.state.paths.get(a.dev)
        if p is None or a.dev in self._sampling:
            return

        async def run() -> None:
            try:
                reads, errors, trouble = await iosample.sample(f"/dev/{p.dev}", a.seconds)
            finally:
                self._sampling.pop(a.dev, None)
            if self.state.paths.get(a.dev) is not p:
                return  # the device went away (its name may be another's now)
            now = asyncio.get_running_loop().time()
            done = ev.IoSampled(a.dev, reads, errors, now, "" if trouble == iosample.BUSY else trouble,
                                busy=trouble == iosample.BUSY)
            await self.execute(decide.step(self.state, done, self.settings_of))

        task = asyncio.ensure_future(run())
        self._sampling[a.dev] = task
        task.add_done_callback(functools.partial(_log_sample_failure, a.dev, a.map))

    async def policy_tick(self) -> None:
        """The clock's part of the policy (failback N, no_path_retry N); partition tables that could not be
        read, once their map has a usable path again; stored writes that failed, again."""
        now = asyncio.get_running_loop().time()
        self.persist.retry(now)
        due = [name for name, (when, _) in self._partition_retry.items() if now >= when
               and (m := self.state.maps.get(name)) and any(p.usable for p in self.state.paths_of(m))]
        for name in set(self._partition_retry) - set(self.state.maps):
            del self._partition_retry[name]  # removed meanwhile
        if due and not self._closing:
            await self._partition_maps(due)
        if self.discovered:
            r = self.resolver(None, None, None)
            tries, delay = r("retrigger_tries"), r("retrigger_delay")
            todo = decide.uninitialized(self.state, tries if isinstance(tries, int) else 3,
                                        float(delay) if isinstance(delay, int) else 10.0, now,
                                        self._wwid_from_udev)
            if todo:
                await self.execute(todo)
        for m in list(self.state.maps.values()):
            try:  # one map's trouble must not stop the others' clocks
                todo = decide.tick(self.state, m, self.settings_of, now)
                if todo:  # most ticks of most maps decide nothing: no coroutine for them
                    await self.execute(todo)
            except Exception:
                log.exception("%s: the policy's tick failed", m.name, extra=fields(map=m.name))

    async def on_dm_event(self) -> None:
        """Some map changed (the kernel failed a path on I/O error, a table was loaded): resync.

        One list ioctl gives every map's event number; only maps whose number moved are re-read, and events
        arriving during a resync fold into one more pass instead of piling up."""
        if self._dm_resync_running:
            self._dm_resync_again = True
            return
        self._dm_resync_running = True
        try:
            while True:
                self._dm_resync_again = False
                await self._dm_resync()
                if not self._dm_resync_again:
                    return
        finally:
            self._dm_resync_running = False

    async def _dm_resync(self) -> None:
        loop = asyncio.get_running_loop()
        listed = {d.name: d for d in await self.dm(self.ctl.list_devices)}
        for m in list(self.state.maps.values()):
            d = listed.get(m.name)
            if d is None:  # removed behind our back (dmsetup remove): forget it
                self.forget_map(m)
                continue
            if d.event_nr is not None and d.event_nr == m.event_nr:
                continue
            try:
                await self.refresh_map(m)
            except DMNoSuchDevice:
                self.forget_map(m)
                continue
            except dmt.TableError:  # its table was replaced behind our back (pymultipath -f --error-io)
                log.warning("%s: no longer a multipath table; the daemon leaves it alone", m.name,
                            extra=fields(map=m.name, wwid=m.wwid))
                self.forget_map(m)
                continue
            except DMError as err:  # one map the kernel will not describe must not stop the others
                log.warning("%s: cannot read it after a device-mapper event: %s", m.name, err,
                            extra=fields(map=m.name, wwid=m.wwid))
                continue
            await self.execute(decide.step(self.state, ev.MapChanged(m.name, loop.time()), self.settings_of))

    async def fail_fast(self, devs: Iterable[str], why: str) -> None:
        """Network-level trouble on these paths: fail them now and check them at once."""
        event = ev.LinkTrouble(frozenset(devs), why, asyncio.get_running_loop().time())
        await self.execute(decide.step(self.state, event, self.settings_of))

    # --- the interface of control commands ------------------------------------------------------------

    def forget_map(self, m: MapState) -> None:
        """The map is gone: its paths are free again. Their facts are re-read (the map no longer holds them)
        but not queued for assembly: a map an administrator removed is not re-created behind their back."""
        for p in self.state.forget_map(m):
            try:
                self._path_from_facts(facts.path_facts(p.dev, self.config), p)
            except facts.FactsError:
                self.state.paths.pop(p.dev, None)  # the device went away with the map
                self._forget_checks(p.dev)
            else:
                self._free_checks(p.dev)

    async def set_path(self, p: PathState, up: bool) -> None:
        """`fail path` / `reinstate path`: the kernel's state for it now; the checker decides whether a
        reinstated path stays up."""
        if p.map is None or p.map not in self.state.maps:
            raise CommandError(f"{p.dev} is not in a map")
        word = "reinstate_path" if up else "fail_path"
        if not await self._message(p.map, f"{word} {p.dev_t}", p.dev):
            raise CommandError(f"{p.map}: {word} {p.dev_t} refused by the kernel")
        if up:
            p.next_check = asyncio.get_running_loop().time()
        else:
            if p.usable:
                decide.count_fault(self.state, self.state.maps[p.map], p)
            p.chk_state = PathCheck.DOWN
        await self._refresh_or_forget(p.map)

    async def switch_group(self, m: MapState, group: int) -> None:
        if not m.table or not 1 <= group <= len(m.table.groups):
            raise CommandError(f"{m.name} has no path group {group}")
        if not await self._message(m.name, f"switch_group {group}"):
            raise CommandError(f"{m.name}: switch_group refused by the kernel")
        m.stats.switch_grp += 1
        await self._refresh_or_forget(m.name)

    async def suspend(self, m: MapState, on: bool) -> None:
        try:
            await self.dm(self.ctl.suspend if on else self.ctl.resume, m.name)
        except DMError as err:
            raise CommandError(f"{m.name}: {err}") from None
        await self._refresh_or_forget(m.name)

    async def reload(self, m: MapState) -> None:
        """Rebuild the table from the paths as they are now (sizes re-read: also what `resize map` does)."""
        paths = self.state.paths_of(m)
        if not paths:
            raise CommandError(f"{m.name} has no known paths")
        for p in paths:
            self.on_uevent("change", p.dev)
        await self.settle()
        if self.state.maps.get(m.name) is not m:
            raise CommandError(f"{m.name}: removed meanwhile")
        r = self.resolver(m.wwid, m.vendor, m.product, m.revision)
        try:
            table = plan.build_table(self.state.paths_of(m), r,
                                     queueing=decide.queueing_for(m, self.settings_of(m)))
        except ValueError as err:
            raise CommandError(f"{m.name}: {err}") from None
        try:
            await self._reload(m.name, table)
        except DMError as err:
            raise CommandError(f"{m.name}: {err}") from None
        await self._refresh_or_forget(m.name)

    async def set_queueing(self, maps: list[MapState], on: bool) -> None:
        """`restorequeueing` / `disablequeueing` of maps: the setting survives reloads until reversed."""
        for m in maps:
            m.queueing_disabled = not on
            if not on:
                m.retry_ticks = None
            if on and not self.settings_of(m).queue_if_no_path:
                continue  # nothing to restore: the configuration does not queue
            if not await self._message(m.name, "queue_if_no_path" if on else "fail_if_no_path"):
                raise CommandError(f"{m.name}: {'queue' if on else 'fail'}_if_no_path refused by the kernel")
            await self._refresh_or_forget(m.name)

    async def set_marginal(self, m: MapState, paths: list[PathState], on: bool) -> None:
        """setmarginal / unsetmarginal: move paths of `m` into (or out of) its group of marginal paths."""
        if not self.settings_of(m).marginal_pathgroups:
            raise CommandError(f"{m.name}: marginal_pathgroups is not on, so a marginal path would be "
                               "grouped like any other (set `marginal_pathgroups on` in multipath.conf)")
        changed = [p for p in paths if p.marginal != on]
        for p in changed:
            p.marginal = on
            log.info("%s: %s by the administrator", p.dev, "marginal" if on else "no longer marginal",
                     extra=fields(dev=p.dev, map=m.name))
        if changed:
            await self.run_internal(self.reconcile({m.wwid}))

    async def reassign(self, maps: list[MapState]) -> None:
        """reassign_maps: device-mapper devices built on a path of these maps move onto the map (at start-up,
        when a map is made, on reconfigure: as upstream). One device the kernel refuses is logged and the
        others go on."""
        if not self.config.resolve("reassign_maps"):
            return
        for m in maps:
            if not m.dev_t:
                continue
            tried = await self.dm(dmmaps.reassign_holders, self.ctl, m.dev_t, list(m.paths))
            for name, trouble in tried.items():
                if trouble:
                    log.error("%s: reassign_maps: device-mapper device %s is built on a path of the map and "
                              "could not be moved onto it: %s", m.name, name, trouble,
                              extra=fields(map=m.name))
                else:
                    log.warning("%s: reassign_maps: device-mapper device %s was built on a path of the map; "
                                "it now uses the map", m.name, name, extra=fields(map=m.name))

    def drop_marginal_marks(self) -> None:
        """After a reconfigure: marks that the new settings no longer act on go (a path marginal while
        marginal_pathgroups was on, an I/O error check's wait without marginal_path_*), so the plan that
        follows groups and reinstates by the new ones."""
        for m in self.state.maps.values():
            s = self.settings_of(m)
            for p in self.state.paths_of(m):
                if not s.marginal_pathgroups:
                    p.marginal = False
                if s.marginal_path is None and p.io_check is not IoCheck.SAMPLING:
                    p.io_fails, p.io_check = 0, IoCheck.NONE

    def reset_stats(self, maps: list[MapState]) -> None:
        now = asyncio.get_running_loop().time()
        for m in maps:
            m.stats = MapStats()
            if m.queueing_since is not None:
                m.queueing_since = now  # a spell going on counts from the reset

    async def add_map(self, wwid: str) -> MapState | None:
        """`add map`: assemble the map of `wwid` (the caller recorded it in the wwids file)."""
        self.held_back.discard(wwid)
        await self.run_internal(self.reconcile({wwid}))
        return self.state.map_of_wwid(wwid)

    async def remove_map(self, m: MapState) -> flush.FlushResult:
        """`del map`: flush it; one that stays (held) comes back with the report of its holders. Never
        while a batch assembles maps: one that had planned this map before it was removed would make it
        again (the batch skips it once it is held back). A caller that gives up only stops waiting."""
        return await self.run_internal(self._remove_map_locked(m))

    async def _remove_map_locked(self, asked: MapState) -> flush.FlushResult:
        async with self._assembly:
            m = self.state.maps.get(asked.name)  # the map of that name now (the lock may have been awaited)
            if m is None:  # gone meanwhile (its last path went, say)
                return flush.FlushResult(asked.name, removed=True, deferred=False,
                                         report=f"{asked.name}: already removed")
            res = await self.flush_map(m.name)
            if res.removed:
                self.held_back.add(m.wwid)
                self.forget_map(m)
            return res

    async def release_queueing(self) -> None:
        """At exit: no daemon will reinstate paths, so queued I/O would wait forever."""
        for m in list(self.state.maps.values()):
            if m.queueing:
                await self._message(m.name, "fail_if_no_path")

    async def run_internal(self, coro: Awaitable[T]) -> T:
        """Await daemon work for a caller that may be cancelled (a control command past its deadline): the
        work goes on as its own task and finishes; only the waiting stops."""
        task = asyncio.ensure_future(coro)
        self._internal.add(task)
        task.add_done_callback(self._internal.discard)
        return await asyncio.shield(task)

    async def flush_map(self, name: str, *, deferred: bool = False) -> flush.FlushResult:
        """flush.flush with the holders scan off the DM thread: it reads every process's open files and
        mounts, and one hung file system under some process would stall every DM call (reinstates
        included). Device-mapper state and the removal go to the DM thread, the scan to the map-io
        threads with a deadline."""
        target, parts, queueing, usable = await self.dm(holderscan.dm_state, self.ctl, name)
        held = holderscan.held(target, parts)
        snap = await self._holders_scan(target, parts, queueing, usable) if held \
            else holderscan.unscanned(target, parts, queueing, usable)
        res = await self.dm(flush.flush, self.ctl, name, deferred=deferred, snap=snap, rescan=False)
        if not (res.removed or res.deferred) and not held:  # held after all (a passing opener): say by whom
            target, parts, queueing, usable = await self.dm(holderscan.dm_state, self.ctl, name)
            snap = await self._holders_scan(target, parts, queueing, usable)
            res = replace(res, report=holders.explain(snap, holders.find_holders(snap)))
        return res

    async def _holders_scan(self, target: holders.BlockDev, parts: list[holders.BlockDev], queueing: bool,
                            usable: int) -> holders.Snapshot:
        loop = asyncio.get_running_loop()
        scan = functools.partial(holderscan.gather, target, parts, queueing=queueing, usable_paths=usable)
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._io_thread, scan), HOLDERS_SCAN_TIMEOUT)
        except TimeoutError:
            note = (f"the scan of processes and mounts did not finish within {HOLDERS_SCAN_TIMEOUT:g} s "
                    "(a hung file system under some process?); `pymultipath holders` runs it without a "
                    "deadline",)
            return holderscan.unscanned(target, parts, queueing, usable, holders.ScanInfo(checked=note))

    def request_stop(self) -> None:
        """A stop was asked: a discovery or batch in flight ends after the map it is making."""
        self._closing = True

    async def close(self) -> None:
        """Stop applying uevents. A batch in flight finishes the map it is making (its DM work runs in a
        thread that would go on anyway) and records what it made, then stops; the rest is the next start's."""
        self._closing = True
        if self._batch_handle is not None:
            self._batch_handle.cancel()
            self._batch_handle = None
        if self._batch_task is not None and not self._batch_task.done():
            await asyncio.wait({self._batch_task}, timeout=STOP_WAIT)
        for task in list(self._sampling.values()):
            task.cancel()
        self.runner.close()
        self.pr.close()
        self._dm_thread.shutdown(wait=False, cancel_futures=True)
        self._io_thread.shutdown(wait=False, cancel_futures=True)
        self._sysfs_thread.shutdown(wait=False, cancel_futures=True)
        self._uevent_thread.shutdown(wait=False, cancel_futures=True)


def _log_sample_failure(dev: str, name: str, task: asyncio.Task) -> None:
    if not task.cancelled() and (err := task.exception()) is not None:
        log.error("%s: the I/O error check failed: %s", dev, err, exc_info=err,
                  extra=fields(dev=dev, map=name))


def _log_failure(task: asyncio.Task) -> None:
    """A batch's own errors are logged per map; this catches what escapes (a failed DM listing, say), which
    asyncio would otherwise report only as "Task exception was never retrieved" at garbage collection."""
    if not task.cancelled() and (err := task.exception()) is not None:
        log.error("applying a batch of uevents failed: %s", err, exc_info=err)
