"""Facts about block devices for the classifier, read from sysfs, the udev database and /proc.

Used by `pymultipath -u` on every disk event, by `pymultipath snapshot` and by the daemon, so it stays
stdlib-only and cheap to import. Every location comes from pymultipathd.locations (from the environment the
program's entry read, or its options), which is how the unit tests point it at a fake tree.

Sources:
- sysfs: <sysfs>/block/<disk> (dev, hidden, device/{vendor,model,transport}, holders/, partitions with their
  holders/), <sysfs>/class/block/<name>/uevent for DEVTYPE, <sysfs>/block/dm-*/dm/{uuid,name} + slaves/.
- the udev database: <udev_db>/b<major>:<minor>, lines `E:KEY=VALUE`; a disk is "initialized" if it has one.
- /proc/self/mountinfo and /proc/swaps for "in use".
- <run>/find_multipaths/<major>:<minor>: timer files of smart-mode waits, mtime = deadline.
- <run>/failed_wwids/, the wwids file, the daemon's socket.
"""

from __future__ import annotations

import _socket  # the C module: socket.py imports selectors and builds its IntEnums, milliseconds in the guest
import errno
import os
import time

from pymultipathd import locations, peer, store
from pymultipathd.classify import MapFacts, PathFacts, World
from pymultipathd.errors import PymultipathError
from pymultipathd.sysread import device_dir
from pymultipathd.sysread import read_text as _read

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultipathd.config.model import Config


# The LUN's owner writes the WWID: upstream keeps at most WWID_SIZE - 1 characters of it, and so do we (it is
# matched against blacklist regexes, whose cost grows with the text).
WWID_SIZE = 128

def _storable(wwid: str) -> bool:
    """A WWID the wwids file and the failed markers can hold (a path, a line)."""
    try:
        store.check_wwid(wwid)
    except ValueError:
        return False
    return True


# uid_attribute by device name when the configuration does not say (upstream's built-in choices)
_DEFAULT_UID_ATTRS = (("nvme", "ID_WWN"), ("dasd", "ID_UID"))
_DEFAULT_UID_ATTR = "ID_SERIAL"


class Known:
    """What a running daemon already knows (its maps, its paths as of their last uevent): the helper service
    decides with these instead of re-reading sysfs for every disk and map on every udev event."""

    __slots__ = ("maps", "paths")

    def __init__(self, maps: tuple[MapFacts, ...], paths: tuple[PathFacts, ...]) -> None:
        self.maps, self.paths = maps, paths


class FactsError(PymultipathError):
    """A device that cannot be examined (e.g. it does not exist); the message names it."""


def _proc() -> str:
    return locations.proc()


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def udev_properties(dev_t: str) -> dict[str, str] | None:
    """Properties of the udev database entry of block device `dev_t`; None if udev has not seen it."""
    text = _read(os.path.join(locations.udev_db(), f"b{dev_t}"))
    if text is None:
        return None
    props: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("E:") and "=" in line:
            key, value = line[2:].split("=", 1)
            props[key] = value
    return props


def _event_properties(dev: str, env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The udev event's own properties when udev ran the helper for `dev` (env: the helper's environment, as
    its entry read it; None: no event): fresher than the database, which does not exist yet on the first
    "add"."""
    if env is None or env.get("SUBSYSTEM") != "block" or os.path.basename(env.get("DEVPATH", "")) != dev:
        return None
    return dict(env)


def _block_dir(dev: str) -> str:
    return os.path.join(locations.sysfs(), "class", "block", dev)


def _disk_dir(dev: str) -> str:
    return os.path.join(locations.sysfs(), "block", dev)


def _devtype(dev: str) -> str | None:
    for line in (_read(os.path.join(_block_dir(dev), "uevent")) or "").splitlines():
        if line.startswith("DEVTYPE="):
            return line.split("=", 1)[1]
    if os.path.isdir(_disk_dir(dev)):
        return "disk"
    if os.path.exists(os.path.join(_block_dir(dev), "partition")):
        return "partition"
    return None


def _partitions(disk: str) -> list[str]:
    base = _disk_dir(disk)
    # a partition's directory is named after its disk (sdb1, nvme0n1p1): test only those, not every
    # attribute of the disk (a stat each, costly under emulation)
    return [n for n in _listdir(base)
            if n.startswith(disk) and os.path.exists(os.path.join(base, n, "partition"))]


def _protocol(disk: str) -> str:
    """Upstream's protocol names: scsi:<transport>, nvme:<transport>, ccw; derived from the sysfs topology."""
    if disk.startswith("nvme"):
        transport = _read(os.path.join(_disk_dir(disk), "device", "transport"))
        return f"nvme:{transport or 'unspec'}"
    if disk.startswith("dasd"):
        return "ccw"
    device = device_dir(_disk_dir(disk))
    for marker, proto in (("/session", "iscsi"), ("/rport-", "fcp"), ("/end_device-", "sas"),
                          ("/usb", "usb"), ("/ata", "ata")):
        if marker in device:
            return f"scsi:{proto}"
    return "scsi:unspec"


def _uid_attribute(config: Config | None, dev: str, vendor: str | None, product: str | None,
                   revision: str | None) -> str | None:
    """The udev property holding the WWID; None means "read it from sysfs" (uid_attribute set empty)."""
    if config is not None:
        return config.uid_attribute_for(dev, vendor=vendor, product=product, revision=revision) or None
    for prefix, attr in _DEFAULT_UID_ATTRS:
        if dev.startswith(prefix):
            return attr
    return _DEFAULT_UID_ATTR


# designator type of the kernel's device/wwid attribute -> upstream's leading WWID digit (SCSI name types)
_SYSFS_WWID_TYPES = {"t10.": "1", "eui.": "2", "naa.": "3", "name": "8"}


def _sysfs_wwid(disk: str) -> str | None:
    base = _disk_dir(disk)
    text = _read(os.path.join(base, "device", "wwid")) or _read(os.path.join(base, "wwid"))
    if not text:
        return None
    for prefix, digit in _SYSFS_WWID_TYPES.items():
        if text.startswith(prefix):
            return digit + text[len(prefix):].strip()
    return text


def _mounted_dev_ts() -> set[str]:
    """maj:min of every mounted block device (field 3 of mountinfo)."""
    found: set[str] = set()
    for line in (_read(os.path.join(_proc(), "self", "mountinfo")) or "").splitlines():
        fields = line.split()
        if len(fields) > 2:
            found.add(fields[2])
    return found


def _swap_names() -> set[str]:
    names: set[str] = set()
    for line in (_read(os.path.join(_proc(), "swaps")) or "").splitlines()[1:]:
        fields = line.split()
        if fields and fields[0].startswith("/dev/"):
            names.add(os.path.basename(os.path.realpath(fields[0])))
    return names


class Usage:
    """mounts and swaps, read once per gathering"""

    def __init__(self) -> None:
        self.mounted = _mounted_dev_ts()
        self.swaps = _swap_names()


def path_facts(dev: str, config: Config | None = None, *, usage: Usage | None = None,
               properties: dict[str, str] | None = None, env: Mapping[str, str] | None = None,
               disk_dev_t: str | None = None) -> PathFacts:
    """Facts about block device `dev` (kernel name). FactsError if there is no such block device.
    Properties: `properties` if given, else those of the udev event in `env` (the environment udev ran the
    helper with, passed down from its entry; None: there is no event) if it is about `dev`, else udev's
    database entry. `disk_dev_t`: the device's number as a caller that found it in /sys/block (where the
    kernel lists whole disks only) read it there; saves reading it and the device's type again."""
    dev_t = (disk_dev_t or _read(os.path.join(_block_dir(dev), "dev"))
             or _read(os.path.join(_disk_dir(dev), "dev")))
    if not dev_t:
        raise FactsError(f"{dev}: no such block device in {locations.sysfs()}/class/block")
    devtype = "disk" if disk_dev_t else _devtype(dev)
    if properties is None:
        properties = _event_properties(dev, env) or udev_properties(dev_t) or {}
    if devtype != "disk":
        return PathFacts(dev=dev, devtype=devtype, dev_t=dev_t, properties=properties,
                         released=properties.get("DM_MULTIPATH_DEVICE_PATH") == "0")
    base = _disk_dir(dev)
    if dev.startswith("nvme"):
        vendor: str | None = "NVME"
        product = _read(os.path.join(base, "device", "model"))
        revision = _read(os.path.join(base, "device", "firmware_rev"))
    else:
        vendor = _read(os.path.join(base, "device", "vendor"))
        product = _read(os.path.join(base, "device", "model"))
        revision = _read(os.path.join(base, "device", "rev"))
    uid_attr = _uid_attribute(config, dev, vendor, product, revision)
    wwid = (properties.get(uid_attr) or None) if uid_attr else _sysfs_wwid(dev)
    if wwid is not None and len(wwid) >= WWID_SIZE:
        wwid = wwid[:WWID_SIZE - 1]  # as upstream's fixed buffer cuts it ("wwid overflow")
    if wwid is not None and not _storable(wwid):
        wwid = None  # it names files and lines in /etc/multipath and /run: such a path gets no map
    parts = _partitions(dev)
    holders = list(_listdir(os.path.join(base, "holders")))
    part_dev_ts = set()
    for part in parts:
        holders += _listdir(os.path.join(base, part, "holders"))
        part_dev_ts.add(_read(os.path.join(base, part, "dev")) or "")
    usage = usage or Usage()
    in_use = bool(holders) or bool(({dev_t} | part_dev_ts) & usage.mounted) \
        or bool(({dev} | set(parts)) & usage.swaps)
    return PathFacts(
        dev=dev, devtype=devtype, dev_t=dev_t, wwid=wwid, vendor=vendor, product=product, revision=revision,
        protocol=_protocol(dev), properties=properties, holders=tuple(sorted(set(holders))), in_use=in_use,
        hidden=_read(os.path.join(base, "hidden")) == "1",
        released=properties.get("DM_MULTIPATH_DEVICE_PATH") == "0",
    )


def _mpath_map(dm: str) -> MapFacts | None:
    """The multipath map dm-N (uuid "mpath-..."), with its paths (slaves); None for any other device."""
    base = os.path.join(locations.sysfs(), "block", dm)
    uuid = _read(os.path.join(base, "dm", "uuid")) or ""
    if not uuid.startswith("mpath-"):
        return None
    alias = _read(os.path.join(base, "dm", "name")) or dm
    return MapFacts(alias, uuid, tuple(_listdir(os.path.join(base, "slaves"))))


def multipath_maps() -> tuple[MapFacts, ...]:
    """Existing device-mapper maps whose uuid starts with "mpath-", with their paths (slaves). Three sysfs
    reads per map: seconds under TCG with hundreds of maps, so -u avoids it when it can (world_for)."""
    found = (_mpath_map(n) for n in _listdir(os.path.join(locations.sysfs(), "block")) if n.startswith("dm-"))
    return tuple(m for m in found if m is not None)


def holding_maps(dev: str) -> tuple[MapFacts, ...]:
    """The multipath maps holding `dev` or one of its partitions (from holders/), and no others. The compiled
    udev front reads the same entries the same way when no daemon runs (udev/pymultipath-udev.c,
    member_of_map), as it does for timers() and daemon_reachable(): keep them in step."""
    dirs = [os.path.join(_block_dir(dev), "holders")]
    dirs += [os.path.join(_disk_dir(dev), part, "holders") for part in _partitions(dev)]
    found = {_mpath_map(h) for d in dirs for h in _listdir(d) if h.startswith("dm-")}
    return tuple(sorted((m for m in found if m is not None), key=lambda m: m.name))


def timers() -> dict[str, float]:
    """dev_t -> deadline of every smart-mode wait (timer file mtime)."""
    directory = locations.find_multipaths_dir()
    found = {}
    for name in _listdir(directory):
        try:
            found[name] = os.stat(os.path.join(directory, name)).st_mtime
        except OSError:
            continue
    return found


def daemon_reachable() -> bool:
    """connect() to the daemon's sockets, non-blocking, so udev workers never block on it. Anyone may bind
    or flood the abstract name, so only a root listener counts there; the pathname socket lives where only
    root can create it, so a full backlog there (a daemon busy starting) counts too, as upstream counts
    EAGAIN. Rule 2 hangs on this: a squatter must not make it say "running"."""
    return any(_answers(name) for name in (locations.socket_name(), locations.socket_path()))


def _answers(name: str) -> bool:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)  # close-on-exec, as socket.socket's
    try:
        s.setblocking(False)
        s.connect(locations.unix_address(name))
        return peer.trusted(peer.credentials(s)[1])
    except OSError as e:
        return e.errno in (errno.EAGAIN, errno.EINPROGRESS) and not name.startswith("@")
    finally:
        s.close()


def stored() -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    """(WWIDs of the wwids file, failed WWIDs, what could not be read). An unreadable file counts as empty,
    as upstream treats it: a classification must not fail for it."""
    unread = []
    try:
        wwids = frozenset(store.read_wwids())
    except store.StoreError as e:
        wwids = frozenset()
        unread.append(str(e))
    try:
        failed = store.failed_wwids()
    except store.StoreError as e:
        failed = frozenset()
        unread.append(str(e))
    return wwids, failed, tuple(unread)


def _world(paths: list[PathFacts], now: float | None, daemon_running: bool | None = None,
           maps: tuple[MapFacts, ...] | None = None) -> World:
    wwids, failed, unread = stored()
    return World(
        paths=tuple(paths), maps=multipath_maps() if maps is None else maps,
        wwids=wwids, failed_wwids=failed,
        daemon_running=daemon_reachable() if daemon_running is None else daemon_running,
        now=time.time() if now is None else now, timers=timers(), unread=unread,
    )


def _initialized_disks(config: Config | None, usage: Usage, skip: str | None = None) -> list[PathFacts]:
    found = []
    for name in _listdir(os.path.join(locations.sysfs(), "block")):
        if name == skip:
            continue
        dev_t = _read(os.path.join(_disk_dir(name), "dev"))
        props = udev_properties(dev_t) if dev_t else None
        if props is None:  # udev has not finished with it: not a sibling yet (as upstream)
            continue
        try:
            found.append(path_facts(name, config, usage=usage, properties=props, disk_dev_t=dev_t))
        except FactsError:  # removed since the listing: not a sibling any more
            continue
    return found


def world_for(dev: str, config: Config | None, *, siblings: bool = True, now: float | None = None,
              env: Mapping[str, str] | None = None, daemon_running: bool | None = None,
              known: Known | None = None) -> tuple[PathFacts, World]:
    """The path `dev` and its world as `pymultipath -u` sees it. siblings=False leaves the other disks out
    (cheaper); the caller re-gathers with siblings only when the verdict depends on them. env: the helper's
    environment (udev's event properties); daemon_running: known already (None: try the socket).

    Only `dev` itself is always read afresh. The maps: from `known` (the daemon's own view, when it answers
    for the helper), else only those holding `dev` when no daemon runs (the rules then look no further than
    member_of_map), else all of them. The other disks: from `known`, else every initialized disk."""
    usage = Usage()
    target = path_facts(dev, config, usage=usage, env=env)
    running = daemon_reachable() if daemon_running is None else daemon_running
    if known is not None:
        maps: tuple[MapFacts, ...] | None = known.maps
    else:
        maps = None if running else holding_maps(dev)
    others: list[PathFacts] = []
    if siblings:
        others = [p for p in known.paths if p.dev != dev] if known is not None \
            else _initialized_disks(config, usage, skip=dev)
    return target, _world([target, *others], now, running, maps)


def world_all(config: Config | None, *, now: float | None = None) -> World:
    """Every initialized disk of the system and its surroundings (snapshot, daemon)."""
    return _world(_initialized_disks(config, Usage()), now)
