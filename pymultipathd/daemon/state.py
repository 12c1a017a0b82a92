"""The daemon's state: every path and map it knows, in one place.

Only the event loop mutates it (no locks): uevent handling, the checker loop and control commands all run
on the loop, and blocking work (ioctls, SCSI commands) runs on threads that return results for the loop to
apply. Control commands therefore see a consistent snapshot without waiting on anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymultipathd.classify import MapFacts, PathFacts
from pymultipathd.dm.table import MultipathStatus, MultipathTable


@dataclass
class PathState:
    dev: str
    dev_t: str
    facts: PathFacts
    hcil: str = "#:#:#:#"
    size: int = 0                 # sectors
    node_name: str = ""
    serial: str = ""
    checker: str = "tur"
    prio_name: str = "const"
    prio: int = 0
    chk_state: str = "undef"      # checker verdict: up, down, ghost, pending, timeout, undef
    chk_msg: str = ""
    dev_state: str = "running"    # SCSI device state from sysfs
    interval: float = 5.0         # current checker interval (backs off while healthy)
    next_check: float = 0.0       # loop.time() of the next check
    map: str | None = None        # name of the map holding it
    verdict: str = ""             # classifier decision and rule, for show paths / logs
    marked_failed_at: float | None = None

    @property
    def wwid(self) -> str | None:
        return self.facts.wwid

    @property
    def usable(self) -> bool:
        return self.chk_state in ("up", "ghost")


@dataclass
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
    paths: list[str] = field(default_factory=list)  # dev names, in table order
    queueing_disabled: bool = False   # `disablequeueing`: stays off until restorequeueing
    retry_ticks: int | None = None    # no_path_retry N: checker intervals left while all paths are down
    failback_due: float | None = None  # failback N: loop time at which to return to the best group
    reloads: int = 0                  # table loads since the daemon started (adopted maps: 0)
    suspended: bool = False
    facts: MapFacts | None = None     # the classifier's view, rebuilt with `paths` (DaemonState.set_paths)

    @property
    def uuid(self) -> str:
        return "mpath-" + self.wwid


@dataclass
class DaemonState:
    paths: dict[str, PathState] = field(default_factory=dict)     # by dev name
    maps: dict[str, MapState] = field(default_factory=dict)       # by map name
    started: float = 0.0
    queue_forced_off: bool = False                                # `forcequeueing daemon` reversed
    _by_dev_t: dict[str, str] = field(default_factory=dict, repr=False)  # path_by_dev_t's index

    def map_of_wwid(self, wwid: str) -> MapState | None:
        for m in self.maps.values():
            if m.wwid == wwid:
                return m
        return None

    def path_by_dev_t(self, dev_t: str) -> PathState | None:
        # An index checked on use, rebuilt on a miss: `paths` is changed in many places, and a scan per
        # lookup made every map refresh cost O(paths) (hundreds of maps, hundreds of paths).
        p = self.paths.get(self._by_dev_t.get(dev_t, ""))
        if p is not None and p.dev_t == dev_t:
            return p
        self._by_dev_t = {p.dev_t: p.dev for p in self.paths.values()}
        return self.paths.get(self._by_dev_t.get(dev_t, ""))

    def set_paths(self, m: MapState, devs: list[str]) -> None:
        """The only way a map's member list changes, so its classifier view stays in step."""
        m.paths = devs
        m.facts = MapFacts(m.name, m.uuid, tuple(devs))

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

    def paths_of(self, m: MapState) -> list[PathState]:
        return [self.paths[d] for d in m.paths if d in self.paths]
