"""What the daemon knows of every path and map: plain records, changed only by the daemon's event loop.

The policy reads and updates the fields that are its decisions' memory (checker state, intervals, retry
counts, failback deadlines, counters); the daemon's shell fills in what it read from the kernel and sysfs.
"""

from __future__ import annotations

import enum

from pymultipathd.classify import MapFacts, PathFacts
from pymultipathd.dm.table import MultipathStatus, MultipathTable
from pymultipathd.record import field, record

TYPE_CHECKING = False  # typing costs milliseconds to import; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping


class PathCheck(enum.StrEnum):
    """A checker's verdict on a path (the values are upstream's words in logs and JSON)."""

    UP = "up"
    DOWN = "down"
    GHOST = "ghost"        # a standby port: usable for failover, not preferred
    PENDING = "pending"    # no answer yet (or the check has not started): changes nothing
    TIMEOUT = "timeout"    # the check ran and the device did not answer within checker_timeout
    SHAKY = "shaky"
    UNDEF = "undef"        # never checked
    WILD = "wild"          # the checker does not apply to this device (upstream's PATH_WILD): changes nothing
    DELAYED = "delayed"    # up, but held out of its map after too many failures (san_path_err_*)

    @property
    def usable(self) -> bool:
        return self in USABLE


USABLE = frozenset({PathCheck.UP, PathCheck.GHOST})


class IoCheck(enum.Enum):
    """Where a path stands in marginal_path_*'s I/O error check (upstream's io_err_stat)."""

    NONE = "none"          # not suspect
    WAITING = "waiting"    # failed too often: not reinstated, sampled once it is up and its wait is over
    SAMPLING = "sampling"  # direct reads through it are being counted


@record
class PathState:
    dev: str
    dev_t: str
    facts: PathFacts
    hcil: str = "#:#:#:#"
    size: int = 0                 # sectors
    node_name: str = ""
    # the initiator side of a path, as show paths %N %R %r %a print them ("[undef]" where the transport
    # has no such name: only Fibre Channel has WWNs, the adapter is a PCI device or an iSCSI host's address)
    host_wwnn: str = "[undef]"
    host_wwpn: str = "[undef]"
    tgt_wwpn: str = "[undef]"
    adapter: str = "[undef]"
    dh_state: str = ""            # the device handler the kernel attached ("alua"), "" if none
    serial: str = ""
    checker: str = "tur"
    prio_name: str = "const"
    prio_args: str = ""           # the prioritizer's arguments (prio_args), "" when none
    prio_due: bool = False        # priority not read yet (the daemon reads it off the loop)
    scsi_timeout: float = 30.0    # the device's SCSI command timeout: checks take it without checker_timeout
    prio: int = 0
    chk_state: PathCheck = PathCheck.UNDEF
    chk_msg: str = ""
    dev_state: str = "running"    # SCSI device state from sysfs
    interval: float = 5.0         # current checker interval (backs off while healthy)
    next_check: float = 0.0       # loop time of the next check
    check_sent: float = 0.0       # loop time the check in flight (or the last one) was handed out
    link_lost: float = -1.0       # loop time its network last went away (LinkTrouble; -1: never)
    map: str | None = None        # name of the map holding it
    verdict: str = ""             # classifier decision and rule, for show paths / logs
    failures: int = 0             # times a check found it unusable after it was usable (`%0`)
    # san_path_err_*: failures counted when the path comes back, checks left until one is forgotten, and
    # the loop time since which its reinstatement is held back (None: it is not)
    err_failures: int = 0
    err_forget_left: int = 0
    held_since: float | None = None
    # marginal_path_*: failures by the kernel in the current double_failed_time window and when it began,
    # the I/O error check's stage, and the loop time before which a waiting path is not sampled again
    io_fails: int = 0
    io_fails_since: float = 0.0
    io_check: IoCheck = IoCheck.NONE
    io_check_after: float = 0.0
    marginal: bool = False        # in a path group of marginal paths (marginal_pathgroups on, setmarginal)
    # retrigger_*: change uevents sent while udev has not given its WWID, and when the next one is due
    retriggers: int = 0
    retrigger_next: float = 0.0
    blacklisted: bool = False     # known for `show devices`, but not a path (`show paths` leaves it out)

    @property
    def wwid(self) -> str | None:
        return self.facts.wwid

    @property
    def usable(self) -> bool:
        return self.chk_state in USABLE


@record
class MapStats:
    """Upstream's per-map counters (`show maps stats`), zeroed by `reset map(s) stats`."""

    path_faults: int = 0          # paths failed in the map (by a check or the link watch)
    switch_grp: int = 0           # path group switches the daemon made
    map_loads: int = 0            # tables loaded (create and reloads)
    map_failures: int = 0         # times the map lost its last usable path
    queueing_timeouts: int = 0    # times no_path_retry ran out and queued I/O was failed
    total_q_time: float = 0.0     # seconds spent queueing I/O with no usable path (finished spells)


@record
class MapState:
    name: str
    wwid: str
    dm_dev: str = ""              # "dm-3"
    dev_t: str = ""               # "253:3"
    table: MultipathTable | None = None
    status: MultipathStatus | None = None
    event_nr: int = 0
    open_count: int = 0
    vendor: str = ""
    product: str = ""
    revision: str = ""            # of its first path: devices entries with a revision regex match on it
    paths: list[str] = field(default_factory=list)  # dev names, in table order
    queueing_disabled: bool = False   # `disablequeueing` or flush_on_last_del: off until restorequeueing
    retry_ticks: int | None = None    # no_path_retry N: checker intervals left while all paths are down
    retry_next: float = 0.0           # loop time at which retry_ticks counts down next
    failback_due: float | None = None  # failback N: loop time at which to return to the best group
    reloads: int = 0                  # table loads since the daemon started (adopted maps: 0)
    action: str = ""                  # the last table load, "create" or "reload" (show maps %A, as upstream)
    suspended: bool = False
    read_only: bool = False
    queueing_since: float | None = None  # loop time since which it queues with no usable path
    facts: MapFacts | None = None     # the classifier's view, rebuilt with `paths` (DaemonState.set_paths)
    # upstream's prflag: the map's reservation key is registered on the LUN, so a path that joins the map or
    # comes back gets it too (set by mpathpersist's setprstatus and by reading the keys at start-up)
    prflag: bool = False
    pr_epoch: int = 0  # bumped by set/unsetprstatus: a background result older than that loses to it
    not_ready_until: float | None = None  # ghost_delay: announced not ready until then or an active path
    stats: MapStats = field(default_factory=MapStats)

    @property
    def uuid(self) -> str:
        return "mpath-" + self.wwid

    def queueing_time(self, now: float) -> float:
        """Seconds spent queueing with no usable path since the counters were reset (the spell going on
        included)."""
        since = self.queueing_since
        return self.stats.total_q_time + (max(0.0, now - since) if since is not None else 0.0)

    @property
    def queueing(self) -> bool:
        """The kernel queues I/O while no path is usable (as last read from its table)."""
        return bool(self.table and self.table.features.queue_if_no_path)


class MapTable(dict[str, MapState]):
    """Maps by name, with an index by WWID that every change of the table keeps in step. A WWID's map is
    looked up several times per WWID of a batch; a scan of every map for each was O(maps²) per start-up.
    A map's WWID never changes once it is made, so the index only follows insertions and removals. It holds
    every name per WWID, in insertion order: the kernel may hold two maps of one WWID (made by hand), and a
    lookup finds the first while either is left, as the scan did."""

    __slots__ = ("by_wwid",)

    def __init__(self, items: Mapping[str, MapState] | None = None) -> None:
        super().__init__(items or {})
        self.by_wwid: dict[str, list[str]] = {}
        for name, m in self.items():
            self.by_wwid.setdefault(m.wwid, []).append(name)

    def __setitem__(self, name: str, m: MapState) -> None:
        old = self.get(name)
        super().__setitem__(name, m)
        if old is not None and old.wwid == m.wwid:
            return  # the name keeps its place in the index
        if old is not None:
            self._unindex(name, old)
        self.by_wwid.setdefault(m.wwid, []).append(name)

    def __delitem__(self, name: str) -> None:
        m = self[name]
        super().__delitem__(name)
        self._unindex(name, m)

    def pop(self, name: str, *default: MapState | None) -> MapState | None:  # type: ignore[override]
        if name not in self:
            return super().pop(name, *default)
        m = super().pop(name)
        self._unindex(name, m)
        return m

    def clear(self) -> None:
        super().clear()
        self.by_wwid.clear()

    def _unindex(self, name: str, m: MapState) -> None:
        names = self.by_wwid.get(m.wwid)
        if names is not None and name in names:
            names.remove(name)
            if not names:
                del self.by_wwid[m.wwid]

    def _refused(self, *_: object, **__: object) -> None:
        raise TypeError("MapTable changes one map at a time (table[name] = map, del, pop, clear)")

    update = setdefault = popitem = __ior__ = _refused  # type: ignore[assignment]

    def of_wwid(self, wwid: str) -> MapState | None:
        names = self.by_wwid.get(wwid)
        return self.get(names[0]) if names else None


@record
class DaemonState:
    paths: dict[str, PathState] = field(default_factory=dict)     # by dev name
    maps: dict[str, MapState] = field(default_factory=MapTable)   # by map name
    started: float = 0.0
    by_dev_t: dict[str, str] = field(default_factory=dict)        # path_by_dev_t's index

    def map_of_wwid(self, wwid: str) -> MapState | None:
        maps = self.maps
        if isinstance(maps, MapTable):
            return maps.of_wwid(wwid)
        return next((m for m in maps.values() if m.wwid == wwid), None)  # a plain dict given to the record

    def path_by_dev_t(self, dev_t: str) -> PathState | None:
        # An index checked on use, rebuilt on a miss: `paths` is changed in many places, and a scan per
        # lookup made every map refresh cost O(paths) (hundreds of maps, hundreds of paths).
        p = self.paths.get(self.by_dev_t.get(dev_t, ""))
        if p is not None and p.dev_t == dev_t:
            return p
        self.by_dev_t = {p.dev_t: p.dev for p in self.paths.values()}
        return self.paths.get(self.by_dev_t.get(dev_t, ""))

    def set_paths(self, m: MapState, devs: list[str]) -> None:
        """The only way a map's member list changes, so its classifier view stays in step."""
        m.paths = devs
        m.facts = MapFacts(m.name, m.uuid, tuple(devs))

    def relink(self, m: MapState) -> None:
        """Tie the map to the known paths its live table names (paths not seen yet join when they appear)."""
        devs = []
        for d in (s.dev for g in (m.table.groups if m.table else ()) for s in g.paths):
            p = self.path_by_dev_t(d)
            if p is not None:
                p.map = m.name
                devs.append(p.dev)
                if not m.vendor:
                    m.vendor, m.product = p.facts.vendor or "", p.facts.product or ""
                    m.revision = p.facts.revision or ""
        self.set_paths(m, devs)

    def forget_map(self, m: MapState) -> list[PathState]:
        """Drop a map that is gone; returns the paths it held (free again)."""
        self.maps.pop(m.name, None)
        freed = [p for p in self.paths.values() if p.map == m.name]
        for p in freed:
            p.map = None
        return freed

    def find_path(self, ident: str) -> PathState | None:
        """A path by name ("sdb", "/dev/sdb") or by major:minor."""
        name = ident.removeprefix("/dev/")
        return self.paths.get(name) or self.path_by_dev_t(ident)

    def find_map(self, ident: str) -> MapState | None:
        """A map by name, WWID, uuid, dm-N or major:minor, as upstream accepts."""
        ident = ident.removeprefix("/dev/mapper/").removeprefix("/dev/")
        if ident in self.maps:
            return self.maps[ident]
        for m in self.maps.values():
            if ident in (m.wwid, m.uuid, m.dm_dev, m.dev_t):
                return m
        return None

    def listed_paths(self) -> list[PathState]:
        """The paths as upstream's daemon lists them: every disk but the blacklisted ones."""
        return [p for p in self.paths.values() if not p.blacklisted]

    def paths_of(self, m: MapState) -> list[PathState]:
        return [self.paths[d] for d in m.paths if d in self.paths]
