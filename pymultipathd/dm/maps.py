"""Map lifecycle over the ioctl layer: create (create + load + resume), reload, remove, partition maps.

Identity follows upstream: a multipath map is named after its alias and has uuid ``mpath-<wwid>``; its
partition maps are linear maps named ``<alias><sep><N>`` (sep "-part" by default) with uuid
``part<N>-mpath-<wwid>``. The partition table is read from the map itself (MBR with logical partitions,
GPT), like kpartx does.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pymultipathd.errors import PymultipathError
from pymultipathd.record import record

from .. import locations
from .errors import DMBusy, DMError, DMNoSuchDevice
from .ioctl import (
    DM_SUBSYSTEM_UDEV_FLAG2,
    DM_UDEV_DISABLE_OTHER_RULES_FLAG,
    Control,
    DeviceInfo,
    ListedDevice,
)
from .table import LinearTable, MultipathTable, TargetLine

DEFAULT_PART_SEP = "-part"
CLEANUP_TIMEOUT = 30.0  # seconds to keep retrying the removal of a device whose table failed to load
MPATH_UUID_PREFIX = "mpath-"
# A multipath map announced as not ready (ghost_delay: only standby paths so far): upstream's "no paths" flag
# for multipath's own udev rules, and the one that makes udev's other rules (blkid, by-id links, LVM) and
# systemd (SYSTEMD_READY=0) leave it alone, for hosts without those multipath rules
NOT_READY_UDEV_FLAGS = DM_SUBSYSTEM_UDEV_FLAG2 | DM_UDEV_DISABLE_OTHER_RULES_FLAG

log = logging.getLogger(__name__)


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
#
# Whoever owns the LUN's contents (a VM guest, say) writes the table: every field is hostile input. The
# rules are the kernel's (block/partitions/efi.c, msdos.c, core.c), so a map gets the partitions the kernel
# would give the same disk, and every read is bounded whatever the fields say.

MAX_PARTITIONS = 255  # the kernel's DISK_MAX_PARTS (256) less the whole disk: partitions 1..255
GPT_ENTRY_SIZE = 128  # efi.c accepts no other sizeof_partition_entry
# efi.c refuses an entry array larger than KMALLOC_MAX_SIZE: 4 MiB with 4 KiB pages (32768 entries).
GPT_MAX_ARRAY = 4 << 20
MAX_READ = 1 << 20  # bytes per read; the entry array is read (and its CRC computed) in chunks of this size
MAX_TABLE_READ = 2 * GPT_MAX_ARRAY + MAX_READ  # bytes per table: the primary and the backup GPT, and the rest
MAX_EBRS = 1024  # EBRs followed per table: logical partitions 5..255 need 251, the rest is slack
_EBR_EMPTY_LINKS = 100  # msdos.c stops after this many links in a row without a data partition
_MAX_PROBLEMS = 16  # a crafted table can hold hundreds of bad entries: the log gets the first ones


@record(frozen=True)
class Partition:
    number: int
    start: int  # 512-byte sectors from the start of the map
    size: int  # 512-byte sectors


@record(frozen=True)
class PartitionTable:
    """The partitions to map, and why anything else the table describes is not mapped (or mapped shorter)."""

    partitions: tuple[Partition, ...] = ()
    problems: tuple[str, ...] = ()


class PartitionTableError(PymultipathError, ValueError):
    """The table is unusable as a whole (a GPT without one valid header and entry array, say)."""


_MBR_EXTENDED = (0x05, 0x0F, 0x85)
_MBR_GPT_PROTECTIVE = 0xEE
_MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, chs, type, chs, first lba, sectors
# signature, revision, header size, header crc, (reserved), my lba, alternate lba, first usable lba,
# last usable lba, disk guid, entry array lba, entry count, entry size, entry array crc
_GPT_HEADER = struct.Struct("<8sIII4xQQQQ16sQIII")
_NO_GUID = bytes(16)


class _MbrEntry(NamedTuple):
    status: int
    ptype: int
    start: int  # logical sectors (relative, in an EBR)
    size: int  # logical sectors


class _Reader:
    """The caller's `read`, each request checked before it is made: inside the disk, at most MAX_READ bytes,
    at most MAX_TABLE_READ bytes in all. An answer of another length (the device shrank) is an error."""

    def __init__(self, read: Callable[[int, int], bytes], total_bytes: int) -> None:
        self._read = read
        self._total = total_bytes
        self._spent = 0

    def __call__(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset + length > self._total:
            raise PartitionTableError(f"read of {length} bytes at byte {offset} is outside the disk "
                                      f"({self._total} bytes)")
        if length > MAX_READ:
            raise PartitionTableError(f"read of {length} bytes at byte {offset} is over {MAX_READ} bytes")
        self._spent += length
        if self._spent > MAX_TABLE_READ:
            raise PartitionTableError(f"the table needs more than {MAX_TABLE_READ} bytes read")
        data = self._read(offset, length)
        if len(data) != length:
            raise PartitionTableError(f"read {len(data)} of {length} bytes at byte {offset}")
        return data


def _mbr_entries(sector: bytes) -> list[_MbrEntry] | None:
    """The 4 slots of an MBR or EBR, or None without the 55AA signature."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return None
    out = []
    for i in range(4):
        status, _c1, ptype, _c2, lba, n = _MBR_ENTRY.unpack_from(sector, 446 + 16 * i)
        out.append(_MbrEntry(status, ptype, lba, n))
    return out


def _fit(number: int, start: int, size: int, capacity: int, problems: list[str]) -> Partition | None:
    """core.c's blk_add_partition: a partition starting past the end is skipped, one extending past it is
    truncated to the end (512-byte sectors)."""
    if start >= capacity:
        problems.append(f"partition {number} starts at sector {start}, past the end of the disk "
                        f"({capacity} sectors): skipped")
        return None
    if start + size > capacity:
        problems.append(f"partition {number} ({size} sectors at {start}) extends past the end of the disk: "
                        f"truncated to {capacity - start} sectors, as the kernel does")
        size = capacity - start
    return Partition(number, start, size)


@record(frozen=True)
class _GptHeader:
    entries_lba: int
    count: int
    entries_crc: int


def _gpt_header(read: _Reader, lba: int, ssz: int, total_bytes: int) -> _GptHeader:
    """The header at `lba`, checked as efi.c's is_gpt_valid does; PartitionTableError says what is wrong."""
    last_lba = total_bytes // ssz - 1
    hdr = read(lba * ssz, ssz)
    (sig, _rev, hsize, hcrc, my_lba, _alt, first_usable, last_usable, _guid, entries_lba, count, esize,
     ecrc) = _GPT_HEADER.unpack_from(hdr)
    if sig != b"EFI PART":
        raise PartitionTableError("no GPT signature")
    if not _GPT_HEADER.size <= hsize <= ssz:
        raise PartitionTableError(f"header size {hsize} is not within {_GPT_HEADER.size}..{ssz}")
    if zlib.crc32(hdr[:16] + b"\0\0\0\0" + hdr[20:hsize]) != hcrc:
        raise PartitionTableError("header fails its CRC")
    if my_lba != lba:
        raise PartitionTableError(f"header says it is at LBA {my_lba}")
    if first_usable > last_lba or last_usable > last_lba:
        raise PartitionTableError(f"usable LBAs {first_usable}..{last_usable} go past the last LBA "
                                  f"{last_lba}")
    if last_usable < first_usable:
        raise PartitionTableError(f"usable LBAs {first_usable}..{last_usable} are reversed")
    if esize != GPT_ENTRY_SIZE:
        raise PartitionTableError(f"partition entry size {esize} is not {GPT_ENTRY_SIZE}")
    if count == 0:
        raise PartitionTableError("no partition entries")
    if count * esize > GPT_MAX_ARRAY:
        raise PartitionTableError(f"{count} partition entries ({count * esize} bytes) are over the kernel's "
                                  f"limit of {GPT_MAX_ARRAY} bytes")
    if entries_lba * ssz + count * esize > total_bytes:
        raise PartitionTableError(f"the partition entries at LBA {entries_lba} ({count * esize} bytes) go "
                                  "past the end of the disk")
    return _GptHeader(entries_lba, count, ecrc)


def _gpt_entries(read: _Reader, hdr: _GptHeader, ssz: int) -> tuple[bytes, int]:
    """The entries that can be partitions (the first MAX_PARTITIONS), and how many non-empty ones follow them.

    The array is read in chunks: its CRC covers all of it, but only its head is kept.
    """
    size = hdr.count * GPT_ENTRY_SIZE
    keep = MAX_PARTITIONS * GPT_ENTRY_SIZE
    head = bytearray()
    crc = 0
    beyond = 0
    for off in range(0, size, MAX_READ):  # MAX_READ is a multiple of the entry size: no entry is split
        chunk = read(hdr.entries_lba * ssz + off, min(MAX_READ, size - off))
        crc = zlib.crc32(chunk, crc)
        if len(head) < keep:
            head += chunk[: keep - len(head)]
        first_beyond = max(0, keep - off)
        beyond += sum(1 for e in range(first_beyond, len(chunk), GPT_ENTRY_SIZE)
                      if chunk[e : e + 16] != _NO_GUID)
    if crc != hdr.entries_crc:
        raise PartitionTableError("partition entries fail their CRC")
    return bytes(head), beyond


def _parse_gpt(read: _Reader, ssz: int, total_bytes: int, problems: list[str]) -> list[Partition]:
    last_lba = total_bytes // ssz - 1
    if last_lba < 2:
        raise PartitionTableError(f"protective MBR on a disk of {total_bytes} bytes: no room for a GPT")

    def load(lba: int) -> tuple[bytes, int]:
        return _gpt_entries(read, _gpt_header(read, lba, ssz, total_bytes), ssz)

    try:
        entries, beyond = load(1)
    except PartitionTableError as primary:
        # The kernel would give up here unless booted with "gpt"; kpartx, whose maps these are, reads the
        # backup header in the last LBA.
        try:
            entries, beyond = load(last_lba)
        except PartitionTableError as backup:
            raise PartitionTableError(f"no valid GPT header: primary (LBA 1): {primary}; "
                                      f"backup (LBA {last_lba}): {backup}") from None
        problems.append(f"primary GPT (LBA 1) unusable ({primary}): using the backup (LBA {last_lba})")
    scale = ssz // 512
    out = []
    for i in range(len(entries) // GPT_ENTRY_SIZE):
        e = entries[i * GPT_ENTRY_SIZE : (i + 1) * GPT_ENTRY_SIZE]
        if e[:16] == _NO_GUID:  # no type GUID: an unused entry
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        n = i + 1
        # efi.c's is_pte_valid: both ends inside the disk. It does not hold partitions to the usable LBAs.
        if first > last:
            problems.append(f"GPT partition {n}: first LBA {first} is after its last LBA {last}: skipped")
        elif first > last_lba:
            problems.append(f"GPT partition {n} starts at LBA {first}, past the last LBA {last_lba}: skipped")
        elif last > last_lba:
            problems.append(f"GPT partition {n} ends at LBA {last}, past the last LBA {last_lba}: skipped, "
                            "as the kernel does")
        else:
            out.append(Partition(n, first * scale, (last - first + 1) * scale))
    if beyond:
        problems.append(f"{beyond} GPT partition(s) after entry {MAX_PARTITIONS} not mapped (the kernel's "
                        f"limit is {MAX_PARTITIONS} partitions)")
    return out


class _Mbr:
    """Primaries 1-4, then the logical partitions of each extended partition, numbered from 5 on."""

    def __init__(self, read: _Reader, ssz: int, total_bytes: int, problems: list[str]) -> None:
        self.read = read
        self.scale = ssz // 512  # MBR fields count logical sectors; the kernel and dm count 512-byte ones
        self.capacity = total_bytes // 512
        self.problems = problems
        self.out: list[Partition] = []
        self.number = 5
        self.seen: set[int] = set()  # EBRs read, over all extended partitions

    def parse(self, entries: list[_MbrEntry]) -> list[Partition]:
        for slot, e in enumerate(entries, 1):
            if not e.size:
                continue
            if e.ptype in _MBR_EXTENDED:  # the container itself is not mapped, only its logical partitions
                self.logicals(e.start * self.scale, e.size * self.scale)
            else:
                self.add(slot, e.start * self.scale, e.size * self.scale)
        return self.out

    def add(self, number: int, start: int, size: int) -> None:
        p = _fit(number, start, size, self.capacity, self.problems)
        if p is not None:
            self.out.append(p)

    def logicals(self, ext_start: int, ext_size: int) -> None:
        """Follow the EBR chain as msdos.c's parse_extended does (sectors of 512 bytes throughout)."""
        this_sector, this_size = ext_start, ext_size
        empty_links = 0
        while True:
            empty_links += 1
            if empty_links > _EBR_EMPTY_LINKS:
                self.problems.append(f"{_EBR_EMPTY_LINKS} EBRs in a row without a logical partition: the "
                                     f"rest of the chain from sector {this_sector} is ignored, as the kernel "
                                     "does")
                return
            if this_sector in self.seen:
                self.problems.append(f"the EBR chain loops back to sector {this_sector}: stopped there")
                return
            if len(self.seen) >= MAX_EBRS:
                self.problems.append(f"more than {MAX_EBRS} EBRs: the rest of the chain from sector "
                                     f"{this_sector} is ignored")
                return
            if this_sector >= self.capacity:
                self.problems.append(f"an EBR at sector {this_sector} is past the end of the disk "
                                     f"({self.capacity} sectors): the chain stops there")
                return
            self.seen.add(this_sector)
            entries = _mbr_entries(self.read(this_sector * 512, 512))
            if entries is None:
                return
            for i, e in enumerate(entries):
                if not e.size or e.ptype in _MBR_EXTENDED:
                    continue
                offs, size = e.start * self.scale, e.size * self.scale
                start = this_sector + offs
                # msdos.c checks only slots 3 and 4 against the extended partition ("sometimes contain
                # random garbage"); slots 1 and 2 are held to the disk only, by _fit.
                if i >= 2 and (offs + size > this_size or start < ext_start
                               or start + size > ext_start + ext_size):
                    self.problems.append(f"the EBR at sector {this_sector} describes {size} sectors at "
                                         f"{start} in slot {i + 1}, outside its extended partition: skipped, "
                                         "as the kernel does")
                    continue
                if self.number > MAX_PARTITIONS:
                    self.problems.append(f"logical partitions after number {MAX_PARTITIONS} are not mapped "
                                         f"(the kernel's limit)")
                    return
                self.add(self.number, start, size)
                self.number += 1
                empty_links = 0
            link = next((e for e in entries if e.size and e.ptype in _MBR_EXTENDED), None)
            if link is None:
                return
            # Links are relative to the start of the extended partition, data partitions to their own EBR.
            this_sector, this_size = ext_start + link.start * self.scale, link.size * self.scale


def parse_partition_table(
    read: Callable[[int, int], bytes], total_bytes: int, sector_size: int = 512
) -> PartitionTable:
    """Partitions of a device (MBR primaries 1-4, logicals from 5, or GPT) and why others were dropped.

    No table (or a sector 0 that the kernel does not take for one) is an empty PartitionTable. Partitions
    the kernel would drop or truncate are dropped or truncated, with a problem saying so. PartitionTableError
    when the table is unusable as a whole. `read(offset, length)` is called with at most MAX_READ bytes each
    time, MAX_TABLE_READ in all, never outside `total_bytes`.
    """
    ssz = sector_size
    if not 512 <= ssz <= 65536 or ssz & (ssz - 1):
        raise PartitionTableError(f"logical block size {ssz} is not a power of two in 512..65536")
    if total_bytes < 512:
        return PartitionTable()
    bounded = _Reader(read, total_bytes)
    entries = _mbr_entries(bounded(0, 512))
    if entries is None:
        return PartitionTable()
    problems: list[str] = []
    if any(e.ptype == _MBR_GPT_PROTECTIVE for e in entries):
        # efi.c wants a 0xEE entry starting at LBA 1; with none, msdos.c still leaves a 0xEE disk alone.
        if not any(e.ptype == _MBR_GPT_PROTECTIVE and e.start == 1 for e in entries):
            return PartitionTable((), ("the protective MBR entry does not start at LBA 1: not a GPT the "
                                       "kernel would read",))
        parts = _parse_gpt(bounded, ssz, total_bytes, problems)
    elif any(e.status not in (0, 0x80) for e in entries):
        return PartitionTable()  # msdos.c: a boot indicator other than 0 or 0x80 means a FAT boot sector
    else:
        parts = _Mbr(bounded, ssz, total_bytes, problems).parse(entries)
    if len(problems) > _MAX_PROBLEMS:
        problems[_MAX_PROBLEMS - 1 :] = [f"and {len(problems) - _MAX_PROBLEMS + 1} more problems"]
    return PartitionTable(tuple(sorted(parts, key=lambda p: p.number)), tuple(problems))


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


def retarget(lines: Sequence[TargetLine], moves: dict[str, str]) -> list[TargetLine]:
    """The table with every device number of `moves` ("8:16" -> "253:3") replaced where a target's
    parameters name it as a whole word (the kernel always prints devices as major:minor)."""
    return [TargetLine(t.start, t.length, t.target,
                       " ".join(moves.get(w, w) for w in t.params.split(" "))) for t in lines]


def reassign_holders(ctl: Control, map_devno: str, paths: Sequence[str]) -> dict[str, str]:
    """reassign_maps: device-mapper devices (other than multipath maps) built directly on a path of this
    multipath map, such as an LVM volume activated on /dev/sdb before the map existed, are loaded again
    on the map itself, so their I/O fails over with it. Whole-disk holders of each path, as upstream.
    Returns each device it tried: "" if it was moved, else why not (one refusal leaves the others)."""
    done: dict[str, str] = {}
    for dev in paths:
        try:
            with open(os.path.join(locations.sysfs(), "block", dev, "dev")) as f:
                path_devno = f.read().strip()
            holders = os.listdir(os.path.join(locations.sysfs(), "block", dev, "holders"))
        except OSError:
            continue  # the path went away meanwhile
        for holder in sorted(holders):
            try:
                with open(os.path.join(locations.sysfs(), "block", holder, "dm", "name")) as f:
                    name = f.read().strip()
            except OSError:
                continue  # not a device-mapper device (md, bcache): not ours to move
            try:
                lines = ctl.table(name)
                if not lines or any(t.target == "multipath" for t in lines):
                    continue  # the map itself, or another multipath map
                moved = retarget(lines, {path_devno: map_devno})
                if moved != lines:
                    ctl.load(name, moved)
                    ctl.resume(name, noflush=True)
                    done.setdefault(name, "")
            except DMError as err:
                done[name] = str(err)
    return done


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


def read_partitions(info: DeviceInfo) -> PartitionTable:
    """The partition table found on a live map; each of its problems is logged here, once.

    Reads block I/O: a map queueing with no path blocks here. DMError when the table is unusable as a whole.
    """
    path = _device_node(info)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        total = os.lseek(fd, 0, os.SEEK_END)

        def read(offset: int, length: int) -> bytes:
            # The parser bounds its reads itself; this check stands if it ever does not.
            if offset < 0 or not 0 < length <= MAX_READ or offset + length > total:
                raise PartitionTableError(f"refused to read {length} bytes at byte {offset}")
            return os.pread(fd, length, offset)

        try:
            table = parse_partition_table(read, total, _sector_size(info))
        except PartitionTableError as e:
            raise DMError("read partitions", info.name, 22, f"{path}: {e}") from None
    finally:
        os.close(fd)
    for problem in table.problems:
        log.warning("%s: partition table on %s: %s", info.name, path, problem, extra={"MAP": info.name})
    return table


def add_partition_maps(
    ctl: Control, name: str, *, sep: str = DEFAULT_PART_SEP, udev_flags: int = 0,
    devices: list[ListedDevice] | None = None, parts: Sequence[Partition] | None = None,
) -> list[str]:
    """Create or update the partition maps of map `name` from its partition table; drop stale unopened ones.

    `devices`: the device list to look for its existing partition maps in (one listing for a batch of maps
    instead of one per map). `parts`: the table, read already (the daemon reads it on another thread: a
    read of a map queueing with no path blocks, and must not block the device-mapper calls that would
    bring a path back). Returns the names of the partition maps that exist afterwards.
    """
    info = ctl.info(name)
    if not info.uuid:
        raise DMError("add partitions", name, 22, "map has no uuid to derive partition uuids from")
    if parts is None:
        parts = read_partitions(info).partitions
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
