"""Reading the multipath topology from the kernel and sysfs into the records of pymultipathd.policy.state.

Shared by the daemon (which runs these blocking reads on its device-mapper thread) and by `pymultipath -l/-ll`
without a daemon, so the two cannot disagree on what a map or a path is.
"""

from __future__ import annotations

import os

from pymultipathd import classify, locations
from pymultipathd.config import Config
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm import table as dmt
from pymultipathd.dm.errors import DMError
from pymultipathd.dm.ioctl import Control, DeviceInfo
from pymultipathd.dm.table import TargetLine
from pymultipathd.paths import facts, prio, sysinfo
from pymultipathd.policy.settings import Resolve
from pymultipathd.policy.state import DaemonState, MapState, PathState
from pymultipathd.record import record


@record(frozen=True)
class MapRead:
    """One map as the kernel describes it: info, table lines and status lines (read in one go)."""

    info: DeviceInfo
    table: list[TargetLine]
    status: list[TargetLine]


def read_map(ctl: Control, name: str) -> MapRead:
    """Blocking: the map's info, table and status (status without flushing queued I/O)."""
    info, lines = ctl.table_and_info(name)
    return MapRead(info, lines, ctl.status(name, noflush=True))


def apply_read(m: MapState, read: MapRead) -> None:
    """Fill `m` from what the kernel said. Raises TableError if it is not (or no longer) a multipath map."""
    mp = [t for t in read.table if t.target == "multipath"]
    if not mp:
        raise dmt.TableError(f"{m.name}: not a multipath table")
    m.table = dmt.parse_multipath_params(mp[0].params, mp[0].length)
    st = [t for t in read.status if t.target == "multipath"]
    m.status = dmt.parse_multipath_status(st[0].params) if st else None
    info = read.info
    m.dm_dev, m.dev_t = f"dm-{info.minor}", info.devno
    m.event_nr, m.open_count, m.suspended = info.event_nr, info.open_count, info.suspended
    m.read_only = info.readonly


def multipath_maps(ctl: Control) -> tuple[list[tuple[MapState, MapRead]], list[tuple[str, Exception]]]:
    """Blocking: every multipath map (uuid "mpath-...") with its reading, and the maps that could not be
    read with why."""
    found: list[tuple[MapState, MapRead]] = []
    problems: list[tuple[str, Exception]] = []
    for d in ctl.list_devices():
        try:
            uuid = d.uuid if d.uuid is not None else ctl.info(d.name).uuid
            if not uuid.startswith(dmmaps.MPATH_UUID_PREFIX):
                continue
            m = MapState(name=d.name, wwid=uuid[len(dmmaps.MPATH_UUID_PREFIX):])
            read = read_map(ctl, d.name)
            apply_read(m, read)
        except (DMError, dmt.TableError) as err:
            problems.append((d.name, err))
            continue
        found.append((m, read))
    return found, problems


def path_state(f: classify.PathFacts, resolve: Resolve, old: PathState | None, *,
               read_prio: bool = True) -> PathState:
    """A path's record from its facts: sysfs attributes, checker and prioritizer choice (and the priority
    when the prioritizer is new). `old`: the record the daemon already has, kept and updated. Without
    read_prio a new priority is only marked due: a prioritizer may send commands to the array, which the
    daemon's event loop must not wait for."""
    same_device = old is not None and old.dev_t == f.dev_t
    p = old or PathState(dev=f.dev, dev_t=f.dev_t, facts=f)
    p.facts, p.dev_t = f, f.dev_t
    if not same_device:  # fixed for a device's life: not re-read on each of its change events
        devpath = sysinfo.device_path(f.dev)  # once for the four readers that start from it
        p.hcil = sysinfo.hcil(f.dev, devpath=devpath)
        p.node_name = sysinfo.target_node_name(f.dev, devpath=devpath)
        p.host_wwnn, p.host_wwpn, p.tgt_wwpn = sysinfo.fc_names_shown(f.dev, devpath=devpath)
        p.adapter = sysinfo.host_adapter(f.dev, devpath=devpath) or "[undef]"
        p.scsi_timeout = sysinfo.command_timeout(f.dev)
    p.size = sysinfo.size_sectors(f.dev)
    p.serial = f.properties.get("ID_SCSI_SERIAL") or sysinfo.unit_serial(f.dev)
    p.dev_state = sysinfo.dev_state(f.dev)
    p.dh_state = sysinfo.dh_state(f.dev)  # the kernel may attach one after the device appeared
    detect_checker, detect_prio = bool(resolve("detect_checker")), bool(resolve("detect_prio"))
    alua = sysinfo.access_state(f.dev) if detect_checker or detect_prio else ""
    p.checker = "tur" if detect_checker and alua else str(resolve("path_checker") or "tur")
    name = prio.choose(str(resolve("prio") or "const"), detect_prio, alua)
    args = str(resolve("prio_args") or "") if name == resolve("prio") else ""
    if old is None or (name, args) != (p.prio_name, p.prio_args):  # otherwise the checker keeps it current
        p.prio_name, p.prio_args = name, args
        if read_prio or name == "const":
            p.prio, p.prio_due = prio.priority(name, f.dev, args, check_timeout(resolve, p)), False
        else:
            p.prio_due = True
    if old is None:
        p.interval = float(resolve("polling_interval") or 5)  # type: ignore[arg-type]
    return p


def check_timeout(resolve: Resolve, p: PathState) -> float:
    """Seconds a check or a prioritizer's command on this path may take: checker_timeout, else the device's
    own SCSI command timeout (as upstream)."""
    configured = resolve("checker_timeout")
    return float(configured) if isinstance(configured, int) and configured > 0 else p.scsi_timeout


def resolver(config: Config, wwid: str | None, vendor: str | None, product: str | None,
             revision: str | None = None, protocol: str | None = None) -> Resolve:
    """Keyword lookup bound to one map or path (`protocol`: a path's transport, for the overrides
    section's protocol subsections)."""
    def resolve(kw: str) -> object:
        return config.resolve(kw, wwid=wwid, vendor=vendor, product=product, revision=revision,
                              protocol=protocol)
    return resolve


def dev_of(dev_t: str) -> str | None:
    """The block device name of major:minor, from sysfs (None if it is gone)."""
    link = os.path.join(locations.sysfs(), "dev", "block", dev_t)
    return os.path.basename(os.path.realpath(link)) if os.path.exists(link) else None


def read_all(ctl: Control, config: Config) -> tuple[DaemonState, list[tuple[str, Exception]]]:
    """Blocking: every multipath map and the paths its table names, as the CLI shows them without a daemon.
    Nothing here sends I/O to a path: checker states stay "undef", priorities are due (the caller reads
    them side by side, mapmaker.read_priorities)."""
    state = DaemonState()
    maps, problems = multipath_maps(ctl)
    for m, _ in maps:
        state.maps[m.name] = m
        for dev_t in (s.dev for g in (m.table.groups if m.table else ()) for s in g.paths):
            dev = dev_of(dev_t)
            if dev is None or dev in state.paths:
                continue
            try:
                f = facts.path_facts(dev, config)
            except facts.FactsError:
                continue
            state.paths[dev] = path_state(f, resolver(config, f.wwid, f.vendor, f.product, f.revision), None,
                                          read_prio=False)
        state.relink(m)
    return state, problems
