"""Map making shared by the daemon and `pymultipath` without a daemon: which disks can be paths, which
configuration a map is made with, the transport settings of its paths, and the blocking device-mapper steps
of creating and reloading a map.

The decision of what to create or reload is the policy's (pymultipathd.policy.decide.assemble, over
plan.build_table); this module carries decisions out. The daemon runs these functions on its own threads
(daemon/core.py); the command line calls them directly and bounds each wait that could hang on a device
(`bounded`).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from pymultipathd import topology
from pymultipathd.config import Config
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm.ioctl import Control, DeviceInfo
from pymultipathd.dm.table import MultipathTable
from pymultipathd.paths import sysinfo
from pymultipathd.paths import transport as path_transport
from pymultipathd.policy.settings import NoPathRetry, Resolve, map_settings
from pymultipathd.policy.state import DaemonState, MapState, PathState
from pymultipathd.policy.transport import Transport, transport
from pymultipathd.record import record, replace

T = TypeVar("T")

PATH_PREFIXES = ("sd", "dasd", "nvme", "vd")


def is_path_candidate(dev: str) -> bool:
    # Only whole disks can be paths; the classifier decides the rest (blacklist included).
    return dev.startswith(PATH_PREFIXES) and not dev.startswith("dm-")


def udev_claimed(properties: Mapping[str, str]) -> bool:
    """What the udev rules left on a path they claimed for multipath (a smart-mode wait has no
    mpath_member, so it does not count)."""
    claimed = properties.get("DM_MULTIPATH_DEVICE_PATH") == "1"
    return claimed and properties.get("ID_FS_TYPE") == "mpath_member"


def unclaimed(paths: Sequence[PathState]) -> list[str]:
    """The paths of a new map that need a "change" uevent: udev reruns `pymultipath -u`, which now sees
    the map and claims them. A path udev claimed already would be classified the same again (upstream
    sends none either), and under a storm of hundreds of disks that second pass doubled udev's work."""
    return [p.dev for p in paths if not udev_claimed(p.facts.properties)]


def map_identity(state: DaemonState, claimed: Sequence[str],
                 m: MapState | None) -> tuple[str | None, str | None, str | None]:
    """The vendor, product and revision the configuration of a WWID's map is resolved by: the map's own,
    else those of its paths (its members, or the first claimed path of a map to be made)."""
    first = state.paths[claimed[0]] if claimed else None
    if m is not None and m.vendor:
        return m.vendor, m.product or None, m.revision or None
    members = (state.paths_of(m) if m is not None else []) or ([first] if first else [])
    f = members[0].facts if members else None
    return (f.vendor or None, f.product or None, f.revision or None) if f else (None, None, None)


# --- transport settings of the paths ------------------------------------------------------------------

@record(frozen=True)
class TransportWork:
    """The sysfs values for the paths of one WWID (see pymultipathd.policy.transport)."""

    wwid: str
    devs: tuple[str, ...]
    # the values per group of its paths: paths of another transport protocol may take others (overrides
    # protocol subsections)
    groups: tuple[tuple[tuple[str, ...], Transport], ...]
    no_path_retry: NoPathRetry
    polling_interval: float
    joining: tuple[str, ...]   # paths joining a live map: they get the map's own max_sectors_kb
    dm_dev: str                # the live map's dm-N ("" for a map to be made)


def transport_work(state: DaemonState, wwid: str, claimed: Sequence[str],
                   resolve_of: Callable[[str | None], Resolve]) -> TransportWork | None:
    """The writes for the claimed paths of `wwid` and the paths its map has (None: no path). The
    configured max_sectors_kb goes only to the paths of a map about to be made; a live map's paths keep (and
    its new paths get) the map's own limit. `resolve_of(protocol)` is the map's configuration as it applies
    to paths of that transport protocol, asked only when there is work."""
    m = state.map_of_wwid(wwid)
    devs = sorted(set(claimed) | {d for d in (m.paths if m else ()) if d in state.paths})
    if not devs:
        return None
    by_protocol: dict[str | None, list[str]] = {}
    for d in devs:
        by_protocol.setdefault(state.paths[d].facts.protocol, []).append(d)
    groups = []
    for protocol, members in by_protocol.items():
        t = transport(resolve_of(protocol))
        groups.append((tuple(members), replace(t, max_sectors_kb=None) if m is not None else t))
    s = map_settings(resolve_of(None))
    joining = [d for d in devs if d not in m.paths] if m is not None else []
    return TransportWork(wwid, tuple(devs), tuple(groups), s.no_path_retry, s.polling_interval,
                         tuple(joining), m.dm_dev if m is not None else "")


def apply_transport(work: Sequence[TransportWork]) -> list[tuple[str, str]]:
    """Blocking (sysfs writes, which a SCSI host in error handling can hold): (wwid, problem) for each value
    a path refused."""
    problems = []
    for w in work:
        found = [problem for devs, t in w.groups
                 for problem in path_transport.apply_all(list(devs), t, w.no_path_retry, w.polling_interval)]
        if w.joining and w.dm_dev:
            found += path_transport.match_map(list(w.joining), w.dm_dev)
        problems += [(w.wwid, p) for p in found]
    return problems


# --- device mapper ----------------------------------------------------------------------------------

def create(ctl: Control, name: str, wwid: str, table: MultipathTable) -> DeviceInfo:
    """Create the map of `wwid` as `name` (uuid mpath-<wwid>); a failed load removes the empty device."""
    return dmmaps.create_multipath(ctl, name, wwid, table)


def reload(ctl: Control, name: str, table: MultipathTable) -> DeviceInfo:
    """Load a new table into a live map and resume it without flushing queued I/O."""
    return dmmaps.reload_map(ctl, name, [table.line()])


def set_queueing(ctl: Control, name: str, on: bool) -> None:
    ctl.message(name, "queue_if_no_path" if on else "fail_if_no_path")


def read_back(ctl: Control, m: MapState) -> MapState:
    """`m` filled from the kernel's view of it (dm-N, table, status)."""
    topology.apply_read(m, topology.read_map(ctl, m.name))
    return m


def partition_maps(ctl: Control, name: str, timeout: float) -> list[str]:
    """Create or update the partition maps of map `name` from its partition table. TimeoutError if the table
    could not be read within `timeout` seconds (a map with no usable path queues the read)."""
    info = ctl.info(name)
    table = bounded(lambda: dmmaps.read_partitions(info), timeout, f"read-partitions-{name}")
    return dmmaps.add_partition_maps(ctl, name, parts=table.partitions)


def announce(devs: Sequence[str], action: str) -> list[str]:
    """Write `action` ("change" or "add") to each path's uevent; the devices that are gone."""
    return [d for d in devs if not sysinfo.trigger_uevent(d, action)]


def bounded(fn: Callable[[], T], timeout: float, name: str) -> T:
    """fn() on a thread of its own, waited for at most `timeout` seconds: TimeoutError then (the call goes on
    in the background and is abandoned at exit); its own exceptions are raised here. For a program without
    an event loop whose work may block on a device (I/O through a queueing map, a sysfs write a SCSI host
    holds)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the waiting thread, which raises it
            box["error"] = err

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"{name}: no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


K = TypeVar("K")


def side_by_side(calls: Mapping[K, tuple[Callable[[], T], float]], name: str) -> dict[K, T | Exception]:
    """Each call on a thread of its own, all started at once; each waited for at most its own budget
    (seconds from the start). The result or the exception of each call that finished; a call still running
    is left out (it goes on in the background and is abandoned at exit). For commands to many paths, any of
    which may hang: N hung paths cost one budget, not N."""
    done: dict[K, T | Exception] = {}

    def run(key: K, fn: Callable[[], T]) -> None:
        try:
            done[key] = fn()
        except Exception as err:  # one call's failure is its own result; the others go on
            done[key] = err

    start = time.monotonic()
    workers = []
    for key, (fn, budget) in calls.items():
        worker = threading.Thread(target=run, args=(key, fn), name=f"{name}-{key}", daemon=True)
        worker.start()
        workers.append((worker, budget))
    for worker, budget in workers:
        worker.join(max(0.0, start + budget - time.monotonic()))
    return dict(done)


def read_priorities(due: Mapping[str, PathState], config: Config) -> list[str]:
    """The command line's read of the paths' priorities (map making, -l/-ll without a daemon): side by
    side, each within PRIO_TIMEOUTS of its check timeout (a prioritizer's command to a blocked session
    waits without its timer running). A path not read keeps its priority and stays due; what went wrong is
    returned, a line per path."""
    from pymultipathd.paths import checkers, prio

    calls = {}
    for dev, p in due.items():
        resolve = topology.resolver(config, p.wwid, p.facts.vendor, p.facts.product, p.facts.revision)
        timeout = topology.check_timeout(resolve, p)
        calls[dev] = (functools.partial(prio.priority, p.prio_name, p.dev, p.prio_args, timeout),
                      checkers.PRIO_TIMEOUTS * timeout + 1.0)
    got = side_by_side(calls, "prio")
    problems = []
    for dev, p in due.items():
        res = got.get(dev)
        if isinstance(res, int):
            p.prio, p.prio_due = res, False
        elif isinstance(res, Exception):
            problems.append(f"{dev}: priority ({p.prio_name}) not read: {str(res) or type(res).__name__}")
        else:
            problems.append(f"{dev}: priority ({p.prio_name}) not read within {calls[dev][1] - 1.0:g} s; "
                            f"kept at {p.prio}")
    return problems


def identify(arg: str) -> str:
    """The kernel name behind a /dev path (/dev/sdb, /dev/mapper/NAME, /dev/disk/by-id/...); other
    arguments as they are."""
    if not arg.startswith("/"):
        return arg
    return os.path.basename(os.path.realpath(arg))
