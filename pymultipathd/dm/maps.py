"""Map lifecycle over the ioctl layer: create (create + load + resume), reload, remove, partition maps.

Identity follows upstream: a multipath map is named after its alias and has uuid ``mpath-<wwid>``; its
partition maps are linear maps named ``<alias><sep><N>`` (sep "-part" by default) with uuid
``part<N>-mpath-<wwid>``. The partition table is read from the map itself (MBR with logical partitions,
GPT), like kpartx does.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import locations
from .errors import DMBusy, DMError, DMNoSuchDevice
from .ioctl import Control, DeviceInfo, ListedDevice
from .table import LinearTable, MultipathTable, TargetLine

DEFAULT_PART_SEP = "-part"
CLEANUP_TIMEOUT = 30.0  # seconds to keep retrying the removal of a device whose table failed to load
MPATH_UUID_PREFIX = "mpath-"


def map_uuid(wwid: str) -> str:
    return MPATH_UUID_PREFIX + wwid


def part_uuid(number: int, parent_uuid: str) -> str:
    return f"part{number}-{parent_uuid}"


def part_name(alias: str, number: int, sep: str = DEFAULT_PART_SEP) -> str:
    return f"{alias}{sep}{number}"


def _parent_of(uuid: str | None) -> tuple[int, str] | None:
    """(N, parent uuid) for a "part<N>-<parent>" uuid, else None."""
    if not uuid or not uuid.startswith("part"):
        return None
    num, _, rest = uuid[4:].partition("-")
    if not num.isdigit() or not rest:
        return None
    return int(num), rest


# --- partition tables (pure: `read(offset, length) -> bytes`) ----------------------------------------


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # 512-byte sectors from the start of the map
    size: int  # 512-byte sectors


class PartitionTableError(ValueError):
    pass


_MBR_EXTENDED = (0x05, 0x0F, 0x85)
_MBR_GPT_PROTECTIVE = 0xEE
_MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, chs, type, chs, first lba, sectors


def _mbr_entries(sector0: bytes) -> list[tuple[int, int, int]] | None:
    """(type, first lba, sectors) of the 4 slots, or None without the 55AA signature."""
    if len(sector0) < 512 or sector0[510:512] != b"\x55\xaa":
        return None
    out = []
    for i in range(4):
        _st, _c1, ptype, _c2, lba, n = _MBR_ENTRY.unpack_from(sector0, 446 + 16 * i)
        out.append((ptype, lba, n))
    return out


def _gpt_header(read: Callable[[int, int], bytes], lba: int, ssz: int) -> tuple[int, int, int, int] | None:
    hdr = read(lba * ssz, ssz)
    if len(hdr) < 92 or hdr[:8] != b"EFI PART":
        return None
    hsize, hcrc = struct.unpack_from("<II", hdr, 12)
    if not 92 <= hsize <= ssz:
        return None
    if zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) != hcrc:
        return None
    entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", hdr, 72)
    if esize < 128 or count > 4096:
        return None
    return entries_lba, count, esize, ecrc


def _parse_gpt(read: Callable[[int, int], bytes], ssz: int, total_bytes: int) -> list[Partition]:
    hdr = _gpt_header(read, 1, ssz)
    if hdr is None and total_bytes >= 2 * ssz:  # primary damaged: the backup header is in the last LBA
        hdr = _gpt_header(read, total_bytes // ssz - 1, ssz)
    if hdr is None:
        raise PartitionTableError("protective MBR but no valid GPT header")
    entries_lba, count, esize, ecrc = hdr
    table = read(entries_lba * ssz, count * esize)
    if zlib.crc32(table) != ecrc:
        raise PartitionTableError("GPT partition entries fail their CRC")
    scale = ssz // 512
    out = []
    for i in range(count):
        e = table[i * esize : (i + 1) * esize]
        if e[:16] == b"\0" * 16:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if last >= first:
            out.append(Partition(i + 1, first * scale, (last - first + 1) * scale))
    return out


def parse_partition_table(
    read: Callable[[int, int], bytes], total_bytes: int, sector_size: int = 512
) -> list[Partition]:
    """Partitions of a device (MBR primaries 1-4, logicals from 5, or GPT); [] when there is no table.

    The extended container itself is not mapped (only its logical partitions are).
    """
    ssz = sector_size
    entries = _mbr_entries(read(0, 512))
    if entries is None:
        return []
    if any(t == _MBR_GPT_PROTECTIVE for t, _, _ in entries):
        return _parse_gpt(read, ssz, total_bytes)
    scale = ssz // 512
    out = []
    for i, (ptype, lba, n) in enumerate(entries, 1):
        if ptype == 0 or n == 0:
            continue
        if ptype in _MBR_EXTENDED:
            out += _parse_logicals(read, lba, ssz)
        else:
            out.append(Partition(i, lba * scale, n * scale))
    return sorted(out, key=lambda p: p.number)


def _parse_logicals(read: Callable[[int, int], bytes], ext_start: int, ssz: int) -> list[Partition]:
    out = []
    scale = ssz // 512
    ebr = ext_start
    seen = set()
    number = 5
    while ebr not in seen and len(seen) < 256:  # guard against EBR loops
        seen.add(ebr)
        entries = _mbr_entries(read(ebr * ssz, 512))
        if entries is None:
            break
        (t0, l0, n0), (t1, l1, _n1) = entries[0], entries[1]
        if t0 and n0:
            out.append(Partition(number, (ebr + l0) * scale, n0 * scale))
            number += 1
        if t1 not in _MBR_EXTENDED or not l1:
            break
        ebr = ext_start + l1  # next EBR: relative to the start of the extended partition
    return out


# --- map lifecycle ----------------------------------------------------------------------------------


def create_map(
    ctl: Control,
    name: str,
    uuid: str,
    lines: Sequence[TargetLine | str],
    *,
    readonly: bool = False,
    udev_flags: int = 0,
) -> DeviceInfo:
    """Create + load + resume. A failed load or resume removes the empty device again, then re-raises."""
    ctl.create(name, uuid)
    try:
        ctl.load(name, lines, readonly=readonly)
        return ctl.resume(name, udev_flags=udev_flags)
    except BaseException as e:
        # udevd opens a new device briefly while it handles its "add" event: retry the removal a while.
        deadline = time.monotonic() + CLEANUP_TIMEOUT
        while True:
            try:
                ctl.remove(name)
                break
            except DMNoSuchDevice:
                break
            except DMError as cleanup:
                if not isinstance(cleanup, DMBusy) or time.monotonic() > deadline:
                    e.add_note(f"and removing the empty device {name} failed: {cleanup}")
                    break
                time.sleep(0.05)
        raise


def create_multipath(
    ctl: Control, alias: str, wwid: str, table: MultipathTable, *, udev_flags: int = 0
) -> DeviceInfo:
    return create_map(ctl, alias, map_uuid(wwid), [table.line()], udev_flags=udev_flags)


def reload_map(
    ctl: Control, name: str, lines: Sequence[TargetLine | str], *, noflush: bool = True, udev_flags: int = 0
) -> DeviceInfo:
    """Load a new table and resume into it; a failed load leaves the live table untouched."""
    ctl.load(name, lines)
    return ctl.resume(name, noflush=noflush, udev_flags=udev_flags)


def partition_maps(ctl: Control, name: str, devices: list[ListedDevice] | None = None) -> list[ListedDevice]:
    """Partition maps of map `name`: uuid part<N>-<its uuid> and built on it."""
    info = ctl.info(name)
    if not info.uuid:
        return []
    out = []
    for d in devices if devices is not None else ctl.list_devices():
        try:
            uuid = d.uuid if d.uuid is not None else ctl.info(d.name).uuid
        except DMNoSuchDevice:  # gone since the listing (a caller's listing may be a batch old)
            continue
        parent = _parent_of(uuid)
        if parent and parent[1] == info.uuid:
            try:
                if (info.major, info.minor) in ctl.deps(d.name) or not ctl.info(d.name).live_table:
                    out.append(d)
            except DMNoSuchDevice:
                continue
    return out


def _device_node(info: DeviceInfo) -> str:
    """A node for reading the map that does not depend on udev: devtmpfs makes dm-<minor> synchronously."""
    for path in (f"/dev/dm-{info.minor}", f"/dev/block/{info.major}:{info.minor}"):
        if os.path.exists(path):
            return path
    raise DMError("read partitions", info.name, 2, f"no /dev/dm-{info.minor} node (is devtmpfs mounted?)")


def _sector_size(info: DeviceInfo) -> int:
    try:
        with open(os.path.join(locations.sysfs(), f"block/dm-{info.minor}/queue/logical_block_size")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 512


def read_partitions(info: DeviceInfo) -> list[Partition]:
    """The partition table found on a live map. Reads block I/O: a map queueing with no path blocks here."""
    path = _device_node(info)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        total = os.lseek(fd, 0, os.SEEK_END)

        def read(offset: int, length: int) -> bytes:
            return os.pread(fd, length, offset)

        try:
            return parse_partition_table(read, total, _sector_size(info))
        except PartitionTableError as e:
            raise DMError("read partitions", info.name, 22, f"{path}: {e}") from None
    finally:
        os.close(fd)


def add_partition_maps(
    ctl: Control, name: str, *, sep: str = DEFAULT_PART_SEP, udev_flags: int = 0,
    devices: list[ListedDevice] | None = None,
) -> list[str]:
    """Create or update the partition maps of map `name` from its partition table; drop stale unopened ones.

    `devices`: the device list to look for its existing partition maps in (one listing for a batch of maps
    instead of one per map). Returns the names of the partition maps that exist afterwards.
    """
    info = ctl.info(name)
    if not info.uuid:
        raise DMError("add partitions", name, 22, "map has no uuid to derive partition uuids from")
    parts = read_partitions(info)
    existing = {d.name: d for d in partition_maps(ctl, name, devices)}
    wanted = []
    for p in parts:
        pname = part_name(name, p.number, sep)
        line = LinearTable(p.size, info.devno, p.start).line()
        if pname in existing:
            live = ctl.table(pname)
            if [t.line() for t in live] != [line]:
                reload_map(ctl, pname, [line], udev_flags=udev_flags)
        else:
            create_map(ctl, pname, part_uuid(p.number, info.uuid), [line], udev_flags=udev_flags)
        wanted.append(pname)
    for stale in set(existing) - set(wanted):
        if ctl.info(stale).open_count == 0:
            ctl.remove(stale, udev_flags=udev_flags)
    return wanted


def remove_map(
    ctl: Control,
    name: str,
    *,
    deferred: bool = False,
    udev_flags: int = 0,
    retries: int = 0,
    retry_delay: float = 0.2,
) -> None:
    """Remove a map and, first, its partition maps.

    Refuses (DMBusy) before changing anything when the map is open by more than its partition maps, or a
    partition map is open. `retries` repeats the whole attempt on DMBusy, for short-lived openers such as
    udev's blkid right after a change event (upstream retries for the same reason).
    """
    for attempt in range(retries + 1):
        try:
            _remove_once(ctl, name, deferred, udev_flags)
            return
        except DMBusy:
            if attempt == retries:
                raise
            time.sleep(retry_delay)


def _remove_once(ctl: Control, name: str, deferred: bool, udev_flags: int) -> None:
    info = ctl.info(name)
    parts = partition_maps(ctl, name)
    if not deferred:
        holding = 0
        for p in parts:
            pinfo = ctl.info(p.name)
            if pinfo.open_count:
                raise DMBusy("remove", name, info.open_count,
                             f"partition map {p.name} is open (open count {pinfo.open_count})")
            holding += pinfo.live_table
        if info.open_count > holding:
            raise DMBusy("remove", name, info.open_count)
    for p in parts:
        ctl.remove(p.name, deferred=deferred, udev_flags=udev_flags)
    ctl.remove(name, deferred=deferred, udev_flags=udev_flags)


def wait_for_node(name: str, timeout: float = 10.0, mapper_dir: str = "/dev/mapper") -> bool:
    """Wait until udev (or we) made /dev/mapper/<name>; False on timeout."""
    path = os.path.join(mapper_dir, name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
