"""The daemon's behaviour: discovery, uevent batches, map assembly, checking and failover.

Everything here runs on the asyncio loop and is the only writer of DaemonState. Blocking work goes to two
places: device-mapper ioctls to a single worker thread (they are ordered, and a suspend waiting on I/O must
not stall the loop), checkers to the CheckRunner's bounded pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymultipathd import classify, flush, holders, locations
from pymultipathd.config import Config
from pymultipathd.daemon import plan
from pymultipathd.daemon.logsetup import fields
from pymultipathd.daemon.persist import Persist
from pymultipathd.daemon.state import DaemonState, MapState, PathState
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm import table as dmt
from pymultipathd.dm.errors import DMError, DMNoSuchDevice
from pymultipathd.dm.ioctl import Control
from pymultipathd.paths import checkers, facts, holderscan, prio, sysinfo

log = logging.getLogger("pymultipathd")
T = TypeVar("T")

BATCH_QUIET = 0.2     # a uevent batch closes after this much silence ...
BATCH_MAX = 1.0       # ... or this long after its first event, whichever comes first
PATH_PREFIXES = ("sd", "dasd", "nvme", "vd")
STOP_WAIT = 10.0      # seconds a stop waits for the map a batch is making (a hung device may hold it)
RESOLVE_MEMO_MAX = 8192  # bound objects resolved per configuration (paths come and go over months)
PARTITION_RETRY = 5.0      # seconds before reading an unreadable partition table again, doubling ...
PARTITION_RETRY_MAX = 60.0  # ... up to this
PARTITION_READ_TIMEOUT = 30.0  # seconds a partition-table read may take before it is tried again later
HOLDERS_SCAN_TIMEOUT = 20.0    # seconds the daemon waits for the holders scan of a map it flushes


def is_path_candidate(dev: str) -> bool:
    # Only whole disks can be paths; the classifier decides the rest (blacklist included).
    return dev.startswith(PATH_PREFIXES) and not dev.startswith("dm-")


def udev_claimed(properties: dict[str, str]) -> bool:
    """What the udev rules left on a path they claimed for multipath (a smart-mode wait has no
    mpath_member, so it does not count)."""
    claimed = properties.get("DM_MULTIPATH_DEVICE_PATH") == "1"
    return claimed and properties.get("ID_FS_TYPE") == "mpath_member"


class Core:
    def __init__(self, config: Config, ctl: Control) -> None:
        self.discovered = False  # until discover() has adopted the maps and learned every path
        self.config = config
        self.ctl = ctl
        self.state = DaemonState(started=time.time())
        self.runner = checkers.CheckRunner()
        self._dm_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dm")
        # reads through maps (partition tables): a few, so one map hung on queued I/O leaves the others
        self._io_thread = ThreadPoolExecutor(max_workers=4, thread_name_prefix="map-io")
        self._pending: set[str] = set()
        self._batch_first: float | None = None
        self._batch_handle: asyncio.TimerHandle | None = None
        self._batch_task: asyncio.Task | None = None
        self.stats = {"batches": 0, "creates": 0, "reloads": 0, "uevents": 0}
        self.busy = False  # reconfiguring or applying a batch (shown by `show daemon`)
        self._closing = False  # shutting down: a batch in flight stops after the map it is making
        self._retry_due: dict[str, float] = {}
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
        self._resolved_for: Config | None = None  # the config the memo below was filled from
        self._resolved: dict[tuple, dict[str, object]] = {}

    # --- helpers ------------------------------------------------------------------------------------

    async def dm(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._dm_thread, lambda: fn(*args, **kw))

    def resolver(self, wwid: str | None, vendor: str | None, product: str | None) -> plan.Resolve:
        """Attribute lookup bound to one map or path, memoized per configuration: the checker and the
        policy tick ask the same few keywords of every path and map at every interval."""
        cfg = self.config
        if self._resolved_for is not cfg or len(self._resolved) > RESOLVE_MEMO_MAX:
            self._resolved_for, self._resolved = cfg, {}
        memo = self._resolved.setdefault((wwid, vendor, product), {})

        def resolve(kw: str) -> object:
            if kw not in memo:
                memo[kw] = cfg.resolve(kw, wwid=wwid, vendor=vendor, product=product)
            return memo[kw]
        return resolve

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
        r = self.resolver(f.wwid, f.vendor, f.product)
        same_device = old is not None and old.dev_t == f.dev_t
        p = old or PathState(dev=f.dev, dev_t=f.dev_t, facts=f)
        p.facts, p.dev_t = f, f.dev_t
        if not same_device:  # fixed for a device's life: not re-read on each of its change events
            p.hcil = sysinfo.hcil(f.dev)
            p.node_name = sysinfo.target_node_name(f.dev)
        p.size = sysinfo.size_sectors(f.dev)
        p.serial = f.properties.get("ID_SCSI_SERIAL") or sysinfo.vpd_serial(f.dev)
        p.dev_state = sysinfo.dev_state(f.dev)
        checker = str(r("path_checker") or "tur")
        if r("detect_checker") and sysinfo.access_state(f.dev):
            checker = "tur"
        p.checker = checker
        name = prio.choose(str(r("prio") or "const"), bool(r("detect_prio")), f.dev)
        if old is None or name != p.prio_name:  # otherwise the checker keeps it current, off the loop
            p.prio_name, p.prio = name, prio.priority(name, f.dev)
        if old is None:
            p.interval = float(r("polling_interval") or 5)
        return p

    # --- discovery ----------------------------------------------------------------------------------

    async def discover(self) -> None:
        """Adopt existing maps untouched, learn every disk, then assemble what the classifier claims."""
        await self.adopt_maps()
        world = facts.world_all(self.config)
        for f in world.paths:
            if is_path_candidate(f.dev):
                self.state.paths[f.dev] = self._path_from_facts(f, None)
        for m in self.state.maps.values():
            self._relink(m)
        await self.reconcile(self._all_wwids())
        self.discovered = True

    async def adopt_maps(self) -> None:
        for d in await self.dm(self.ctl.list_devices):
            uuid = d.uuid if d.uuid is not None else (await self.dm(self.ctl.info, d.name)).uuid
            if not uuid.startswith(dmmaps.MPATH_UUID_PREFIX):
                continue
            m = MapState(name=d.name, wwid=uuid[len(dmmaps.MPATH_UUID_PREFIX):])
            try:
                await self.refresh_map(m)
            except (DMError, dmt.TableError) as err:
                log.warning("cannot adopt map %s: %s", d.name, err, **fields(map=d.name))
                continue
            self.state.maps[m.name] = m
            log.info("%s: adopted existing map (%d paths)", m.name, len(m.table.groups) if m.table else 0,
                     **fields(map=m.name, wwid=m.wwid))

    async def refresh_map(self, m: MapState) -> None:
        """Re-read a map's live table, status and info from the kernel."""
        # one job on the dm thread: each hand-off to it and back costs more than the ioctls under emulation
        info, lines, status = await self.dm(self._read_map, m.name)
        mp = [t for t in lines if t.target == "multipath"]
        if not mp:
            raise dmt.TableError(f"{m.name}: not a multipath table")
        m.table = dmt.parse_multipath_params(mp[0].params, mp[0].length)
        st = [t for t in status if t.target == "multipath"]
        m.status = dmt.parse_multipath_status(st[0].params) if st else None
        m.dm_dev, m.dev_t = f"dm-{info.minor}", info.devno
        m.event_nr, m.open_count, m.suspended = info.event_nr, info.open_count, info.suspended
        self._relink(m)

    def _read_map(self, name: str) -> tuple:
        info, lines = self.ctl.table_and_info(name)
        return info, lines, self.ctl.status(name, noflush=True)

    def _relink(self, m: MapState) -> None:
        """Tie the map to the known paths its live table names (paths not seen yet join when they appear)."""
        devs = []
        for d in (s.dev for g in (m.table.groups if m.table else ()) for s in g.paths):
            p = self.state.path_by_dev_t(d)
            if p is not None:
                p.map = m.name
                devs.append(p.dev)
                if not m.vendor:
                    m.vendor, m.product = p.facts.vendor or "", p.facts.product or ""
        self.state.set_paths(m, devs)

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
            if old is not None:
                del self.state.paths[dev]
                if old.wwid:
                    self._queue(old.wwid)
                log.info("%s: path removed", dev, **fields(dev=dev, map=old.map))
            return
        try:
            f = facts.path_facts(dev, self.config, usage=self._usage_now(), properties=properties)
        except facts.FactsError as err:
            log.debug("%s: no facts: %s", dev, err)
            return
        if old is not None and old.wwid and old.wwid != f.wwid:
            log.warning("%s: WWID changed from %s to %s", dev, old.wwid, f.wwid, **fields(dev=dev))
            self._queue(old.wwid)
        p = self._path_from_facts(f, old)
        self.state.paths[dev] = p
        if f.wwid:
            self._queue(f.wwid)

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
        wwids, self._pending = self._pending, set()
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
        world = classify.restrict(self.world(), set(wwids))  # a storm's batch costs its paths, not all
        claimed, verdicts = classify.assembly_and_verdicts(world, self.config)
        self._bind_aliases([w for w in wwids if claimed.get(w) and not self.state.map_of_wwid(w)], claimed)
        for dev, v in verdicts.items():
            if dev in self.state.paths:
                self.state.paths[dev].verdict = f"{v.decision} ({v.rule})"
        for i, wwid in enumerate(wwids):
            if self._closing:
                log.info("stopping: %d WWIDs of this batch left to the next start", len(wwids) - i)
                break
            try:
                await self._reconcile_one(wwid, [self.state.paths[d] for d in claimed.get(wwid, ())
                                                 if d in self.state.paths])
            except Exception:  # one bad WWID must not stop the others
                log.exception("%s: assembling the map failed", wwid, **fields(wwid=wwid))
        self._aliases = {}
        created, self._created = self._created, []
        if created:
            self.persist.record_wwids(created)  # one locked write for the batch, not one per map
        # Partition maps read each new map's partition table through the map: after the whole batch, so a
        # storm of new LUNs gets its maps first (upstream leaves this to kpartx run by udev).
        todo, self._partition_todo = self._partition_todo, []
        if todo and not self._closing:  # else the next start (or udev's kpartx) makes the partition maps
            await self._partition_maps(todo)

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
                log.warning("%s: partition maps: %s", name, err, **fields(map=name))
            except OSError as err:
                self._partition_retry_later(name, f"partition table unreadable now ({err.strerror or err})")
            except Exception:  # a table we cannot parse must not stop the others (or the checker loop)
                self._partition_retry.pop(name, None)
                log.exception("%s: partition maps failed", name, **fields(map=name))
            else:
                self._partition_retry.pop(name, None)

    def _partition_retry_later(self, name: str, why: str) -> None:
        _, backoff = self._partition_retry.get(name, (0.0, PARTITION_RETRY / 2))
        backoff = min(backoff * 2, PARTITION_RETRY_MAX)
        self._partition_retry[name] = (asyncio.get_running_loop().time() + backoff, backoff)
        log.warning("%s: %s; trying again in %.0f s once a path is usable", name, why, backoff,
                    **fields(map=name))

    def _bind_aliases(self, new: list[str], claimed: dict[str, tuple[str, ...]]) -> None:
        """user_friendly_names: bind the aliases of a batch's new maps with one write of the bindings file."""
        by_prefix: dict[str, list[str]] = {}
        for wwid in sorted(new):
            first = self.state.paths.get(claimed[wwid][0])
            f = first.facts if first else None
            prefix = self._friendly_prefix(wwid, self.resolver(wwid, f.vendor if f else None,
                                                               f.product if f else None))
            if prefix:
                by_prefix.setdefault(prefix, []).append(wwid)
        taken = {m.name for m in self.state.maps.values()}
        for prefix, wwids in by_prefix.items():
            try:
                self._aliases.update(self.persist.aliases(wwids, prefix, taken))
            except ValueError as err:  # an alias_prefix the bindings file cannot hold
                log.error("cannot bind aliases in the bindings file: %s", err)

    async def _reconcile_one(self, wwid: str, paths: list[PathState]) -> None:
        m = self.state.map_of_wwid(wwid)
        if m is None and not paths:
            return
        if m is None:
            await self._create(wwid, paths)
            return
        live = [self.state.paths[d] for d in m.paths if d in self.state.paths]
        keep = {p.dev for p in paths} | {p.dev for p in live}
        members = [self.state.paths[d] for d in sorted(keep) if d in self.state.paths]
        if not members:
            await self._last_path_gone(m)
            return
        r = self.resolver(wwid, members[0].facts.vendor, members[0].facts.product)
        wanted = plan.build_table(members, r, queueing=self._queueing_for(m, r))
        if m.table is not None and not plan.needs_reload(m.table, wanted) \
                and m.table.features.queue_if_no_path != wanted.features.queue_if_no_path:
            # only queueing differs (e.g. a restart after the old daemon stopped queueing): no reload needed
            word = "queue_if_no_path" if wanted.features.queue_if_no_path else "fail_if_no_path"
            await self._message(m, word)
        elif plan.needs_reload(m.table, wanted):
            await self.dm(dmmaps.reload_map, self.ctl, m.name, [wanted.line()])
            m.reloads += 1
            self.stats["reloads"] += 1
            log.info("%s: reloaded with %d paths", m.name, len(members), **fields(map=m.name, wwid=wwid))
        for p in members:
            p.map = m.name
        await self.refresh_map(m)

    def _queueing_for(self, m: MapState | None, r: plan.Resolve) -> bool:
        if m is not None and m.queueing_disabled:
            return False
        return plan.queue_if_no_path(r)

    def _configured_alias(self, wwid: str) -> str | None:
        for entry in self.config.multipaths:
            if entry.get("wwid") == wwid and entry.get("alias"):
                return str(entry["alias"])
        return None

    def _friendly_prefix(self, wwid: str, r: plan.Resolve) -> str | None:
        """The alias prefix when the map's name comes from the bindings file, else None (a multipaths
        alias wins; without user_friendly_names the name is the WWID)."""
        if self._configured_alias(wwid) or not r("user_friendly_names"):
            return None
        return str(r("alias_prefix") or "mpath")

    def alias_for(self, wwid: str, r: plan.Resolve) -> str:
        configured = self._configured_alias(wwid)
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
                log.error("cannot bind an alias for %s: %s", wwid, err, **fields(wwid=wwid))
        return wwid

    async def _create(self, wwid: str, paths: list[PathState]) -> None:
        """Make the map of `wwid` over `paths`; then only the paths udev has not claimed yet get a "change"
        uevent (as upstream): a claimed one would be classified the same again, and under a storm of hundreds
        of disks that second pass through udev doubled its work."""
        first = paths[0]
        r = self.resolver(wwid, first.facts.vendor, first.facts.product)
        try:
            table = plan.build_table(paths, r, queueing=self._queueing_for(None, r))
        except ValueError as err:
            log.error("%s: cannot build a map: %s", wwid, err, **fields(wwid=wwid))
            return
        name = self.alias_for(wwid, r)
        try:
            await self.dm(dmmaps.create_multipath, self.ctl, name, wwid, table)
        except DMError as err:
            log.error("%s: creating map %s failed: %s; releasing its paths to the system", wwid, name, err,
                      **fields(map=name, wwid=wwid))
            self.persist.mark_failed(wwid, True)
            for p in paths:
                sysinfo.trigger_uevent(p.dev, "add")  # let LVM, mounts, etc. pick the paths up
            return
        self.persist.mark_failed(wwid, False)
        self._created.append(wwid)
        m = MapState(name=name, wwid=wwid, vendor=first.facts.vendor or "", product=first.facts.product or "")
        m.reloads = 1
        self.state.maps[name] = m
        for p in paths:
            p.map = name
        await self.refresh_map(m)
        self.stats["creates"] += 1
        log.info("%s: created map (%s) with %d paths: %s", name, wwid, len(paths),
                 " ".join(p.dev for p in paths), **fields(map=name, wwid=wwid))
        if not r("skip_kpartx"):
            self._partition_todo.append(name)
        for p in paths:  # udev reruns `pymultipath -u`, which now sees the map and claims the path
            if not udev_claimed(p.facts.properties):
                sysinfo.trigger_uevent(p.dev, "change")

    async def _last_path_gone(self, m: MapState) -> None:
        """Upstream's order: flush_on_last_del first stops queueing, then the map is removed if nothing holds
        it; one still in use is removed deferred (when its last holder closes it) with deferred_remove, and
        kept otherwise, with the report of what holds it."""
        r = self.resolver(m.wwid, m.vendor, m.product)
        where = fields(map=m.name, wwid=m.wwid)
        if str(r("flush_on_last_del")) in ("yes", "always") and m.table and m.table.features.queue_if_no_path:
            log.warning("%s: last path gone, queueing disabled (flush_on_last_del)", m.name, **where)
            m.queueing_disabled = True
            await self._message(m, "fail_if_no_path")
        deferred = bool(r("deferred_remove"))
        try:
            res = await self.flush_map(m.name, deferred=deferred)
        except DMError as err:
            log.warning("%s: last path gone; removing the map failed: %s", m.name, err, **where)
            return
        if res.removed:
            self._forget_map(m)
            log.info("%s: last path gone, map removed", m.name, **where)
        elif res.deferred:
            log.warning("%s: last path gone; in use, so removed deferred:\n%s", m.name, res.report, **where)
        else:
            queueing = " (queueing I/O)" if m.table and m.table.features.queue_if_no_path else ""
            log.warning("%s: last path gone; map kept%s, it is in use:\n%s", m.name, queueing, res.report,
                        **where)

    # --- checking and failover ----------------------------------------------------------------------

    async def check_and_apply(self, p: PathState) -> None:
        """Check one due path; if its state flipped, revisit its map (status, queueing, failback)."""
        changed = await self._check_one(p)
        m = self.state.maps.get(p.map or "")
        if m is None:
            return
        if changed:
            await self._apply_map_policy(m, came_up=p if p.usable else None)
        else:  # failback immediate also undoes a switch an administrator made while nothing changed
            await self._failback(m, steady=True)

    async def policy_tick(self) -> None:
        """no_path_retry N: count checker intervals while a queueing map has no usable path; failback N;
        partition tables that could not be read, once their map has a usable path again."""
        now = asyncio.get_running_loop().time()
        self.persist.retry(now)
        due = [name for name, (when, _) in self._partition_retry.items() if now >= when
               and (m := self.state.maps.get(name)) and any(p.usable for p in self.state.paths_of(m))]
        for name in set(self._partition_retry) - set(self.state.maps):
            del self._partition_retry[name]  # removed meanwhile
        if due and not self._closing:
            await self._partition_maps(due)
        for m in list(self.state.maps.values()):
            if m.failback_due is not None and now >= m.failback_due:
                m.failback_due = None
                await self._failback(m, deferred_due=True)
            queueing = bool(m.table and m.table.features.queue_if_no_path)
            r = self.resolver(m.wwid, m.vendor, m.product)
            if not queueing or any(p.usable for p in self.state.paths_of(m)) \
                    or not isinstance(npr := r("no_path_retry"), int):
                m.retry_ticks = None
                self._retry_due.pop(m.name, None)
                continue
            if now < self._retry_due.get(m.name, 0.0):
                continue
            self._retry_due[m.name] = now + float(r("polling_interval") or 5)
            m.retry_ticks = npr if m.retry_ticks is None else m.retry_ticks - 1
            if m.retry_ticks <= 0:
                log.warning("%s: no usable path for %d checker intervals; failing queued I/O", m.name, npr,
                            **fields(map=m.name, wwid=m.wwid))
                await self._message(m, "fail_if_no_path")
                m.retry_ticks = None
                with contextlib.suppress(DMError):
                    await self.refresh_map(m)

    async def _check_one(self, p: PathState) -> bool:
        """Run p's checker; send fail/reinstate when its state flips. True if the map should be revisited."""
        loop = asyncio.get_running_loop()
        r = self.resolver(p.wwid, p.facts.vendor, p.facts.product)
        timeout = float(r("checker_timeout") or 30)
        res = await self.runner.check(os.path.join("/dev", p.dev), p.checker, timeout, p.prio_name)
        p.dev_state = sysinfo.dev_state(p.dev)
        short, longest = float(r("polling_interval") or 5), float(r("max_polling_interval") or 20)
        if res.state in (checkers.PENDING,):
            p.next_check = loop.time() + 1.0
            return False
        was_usable, first = p.usable, p.chk_state == "undef"
        p.chk_state, p.chk_msg = res.state, res.message
        now_usable = p.usable
        m = self.state.maps.get(p.map or "")
        dm_active = self._dm_active(m, p) if m else None
        changed = False
        if now_usable and dm_active is False:
            await self._message(m, f"reinstate_path {p.dev_t}", p)
            log.info("%s: path up, reinstated in %s", p.dev, p.map, **fields(dev=p.dev, map=p.map))
            changed = True
        elif not now_usable and dm_active:
            await self._message(m, f"fail_path {p.dev_t}", p)
            log.warning("%s: path down (%s), failed in %s", p.dev, res.message, p.map,
                        **fields(dev=p.dev, map=p.map))
            changed = True
        if now_usable != was_usable and not first:
            changed = True
        if res.prio is not None and res.prio != p.prio:
            # the array moved its ALUA states (or the path came back with another): failback decides anew
            log.info("%s: priority %d -> %d", p.dev, p.prio, res.prio, **fields(dev=p.dev, map=p.map))
            p.prio = res.prio
            changed = True
            if str(r("path_grouping_policy")) == "group_by_prio" and p.wwid:
                self._queue(p.wwid)  # regroup: the reconcile plans with the new priority, reloads if needed
        # healthy paths back off towards max_polling_interval; anything else is watched closely
        p.interval = min(p.interval * 2, longest) if (now_usable and was_usable) else short
        p.next_check = loop.time() + p.interval
        return changed

    def _dm_active(self, m: MapState, p: PathState) -> bool | None:
        if m.status is None:
            return None
        for g in m.status.groups:
            for s in g.paths:
                if s.dev == p.dev_t:
                    return s.active
        return None

    async def _message(self, m: MapState | None, text: str, p: PathState | None = None) -> bool:
        if m is None:
            return False
        try:
            await self.dm(self.ctl.message, m.name, text)
            return True
        except DMError as err:
            log.warning("%s: message %r failed: %s", m.name, text, err,
                        **fields(dev=p.dev if p else None, map=m.name))
            return False

    async def _apply_map_policy(self, m: MapState, came_up: PathState | None = None) -> None:
        """After a path changed state: refresh status, queue again once a path is back, failback."""
        try:
            await self.refresh_map(m)
        except DMNoSuchDevice:
            self.state.maps.pop(m.name, None)
            return
        paths = self.state.paths_of(m)
        r = self.resolver(m.wwid, m.vendor, m.product)
        if any(p.usable for p in paths) and not m.queueing_disabled and plan.queue_if_no_path(r) \
                and m.table and not m.table.features.queue_if_no_path:
            await self._message(m, "queue_if_no_path")  # no_path_retry had stopped queueing: resume it
            await self.refresh_map(m)
        await self._failback(m, came_up)

    async def _failback(self, m: MapState, came_up: PathState | None = None,
                        deferred_due: bool = False, steady: bool = False) -> None:
        """Return to the best path group per the map's failback policy (upstream's meanings): immediate
        whenever another group is in use; N seconds after a path came up; followover only when a path came
        up as the first usable one of its group (so a failover another host asked for is not undone);
        manual never. `steady`: a check that changed nothing, which only `immediate` acts on."""
        if not (m.table and m.status):
            return
        policy = self.resolver(m.wwid, m.vendor, m.product)("failback")
        if steady and policy != "immediate":
            return
        paths = self.state.paths_of(m)
        target, current = plan.failback_target(paths, m.table), plan.current_group(m.status)
        if not target or not current or target == current:
            m.failback_due = None
            return
        if isinstance(policy, int) and not deferred_due:
            if came_up is not None and m.failback_due is None:
                m.failback_due = asyncio.get_running_loop().time() + policy
                log.info("%s: failback to group %d in %d s", m.name, target, policy, **fields(map=m.name))
            return
        if policy == "immediate" or deferred_due or (
                policy == "followover" and came_up is not None
                and plan.first_up_in_group(came_up, paths, m.table)):
            log.info("%s: failback from group %d to group %d (failback %s)", m.name, current, target, policy,
                     **fields(map=m.name))
            await self._message(m, f"switch_group {target}")
            await self.refresh_map(m)

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
                self._forget_map(m)
                continue
            if d.event_nr is not None and d.event_nr == m.event_nr:
                continue
            try:
                await self.refresh_map(m)
            except DMNoSuchDevice:
                self._forget_map(m)
                continue
            except dmt.TableError:  # its table was replaced behind our back (pymultipath -f --error-io)
                log.warning("%s: no longer a multipath table; the daemon leaves it alone", m.name,
                            **fields(map=m.name, wwid=m.wwid))
                self._forget_map(m)
                continue
            except DMError as err:  # one map the kernel will not describe must not stop the others
                log.warning("%s: cannot read it after a device-mapper event: %s", m.name, err,
                            **fields(map=m.name, wwid=m.wwid))
                continue
            for p in self.state.paths_of(m):
                if self._dm_active(m, p) is False and p.usable:
                    p.next_check = loop.time()  # kernel saw an I/O error: check now, not at the interval
                    log.info("%s: failed by the kernel in %s", p.dev, m.name, **fields(dev=p.dev, map=m.name))

    def _forget_map(self, m: MapState) -> None:
        """The map is gone: its paths are free again. Their facts are re-read (the map no longer holds them)
        but not queued for assembly: a map an administrator removed is not re-created behind their back."""
        self.state.maps.pop(m.name, None)
        for p in list(self.state.paths.values()):
            if p.map == m.name:
                p.map = None
                try:
                    self._path_from_facts(facts.path_facts(p.dev, self.config), p)
                except facts.FactsError:
                    self.state.paths.pop(p.dev, None)  # the device went away with the map

    async def fail_fast(self, devs: Iterable[str], why: str) -> None:
        """Network-level trouble on these paths: fail them now and check them at once."""
        loop = asyncio.get_running_loop()
        for dev in devs:
            p = self.state.paths.get(dev)
            if p is None or p.map is None:
                continue
            m = self.state.maps.get(p.map)
            if m is not None and self._dm_active(m, p):
                await self._message(m, f"fail_path {p.dev_t}", p)
                log.warning("%s: %s; failed in %s", dev, why, p.map, **fields(dev=dev, map=p.map))
            p.chk_state = checkers.DOWN
            p.next_check = loop.time()
        for name in {self.state.paths[d].map for d in devs if d in self.state.paths} - {None}:
            m = self.state.maps.get(name or "")
            if m is not None:
                with contextlib.suppress(DMError):
                    await self.refresh_map(m)

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
            res = dataclasses.replace(res, report=holders.explain(snap, holders.find_holders(snap)))
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
        self.runner.close()
        self._dm_thread.shutdown(wait=False, cancel_futures=True)
        self._io_thread.shutdown(wait=False, cancel_futures=True)


def _log_failure(task: asyncio.Task) -> None:
    """A batch's own errors are logged per map; this catches what escapes (a failed DM listing, say), which
    asyncio would otherwise report only as "Task exception was never retrieved" at garbage collection."""
    if not task.cancelled() and (err := task.exception()) is not None:
        log.error("applying a batch of uevents failed: %s", err, exc_info=err)
