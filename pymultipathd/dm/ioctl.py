"""Device-mapper ioctls over /dev/mapper/control, with struct and fcntl only (no libdevmapper).

Layouts follow /usr/include/linux/dm-ioctl.h (interface 4.x); tests/unit/test_dm_ioctl_struct.py pins them.

udev: the kernel copies the ``event_nr`` field of resume, remove and rename requests into the uevent as
DM_COOKIE. libdevmapper puts a SysV semaphore id in the low 16 bits and control flags in the high 16 bits,
then blocks until 95-dm-notify.rules runs ``dmsetup udevcomplete``. We send a cookie with flags only
(low bits zero): 55-dm.rules/10-dm.rules still decode the flags (DM_UDEV_PRIMARY_SOURCE_FLAG makes them create
/dev/mapper/<name> and the by-id links), ``dmsetup udevcomplete`` returns success at once for such a cookie,
and no semaphore exists that could leak or make anything wait. Callers that need the links wait for udev
(`udevadm settle`, or `maps.wait_for_node`). Without a running udev we make the /dev/mapper node ourselves.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Iterable, Sequence

from pymultipathd.record import record

from .errors import (
    DMBusy,
    DMError,
    DMExists,
    DMNameTooLong,
    DMNoSuchDevice,
    DMTableRejected,
    DMUnavailable,
    from_errno,
)
from .table import TargetLine, parse_target_line

# --- constants from linux/dm-ioctl.h -----------------------------------------------------------------
DM_NAME_LEN = 128
DM_UUID_LEN = 129
DM_MAX_TYPE_NAME = 16
DM_VERSION_MAJOR = 4

# struct dm_ioctl: version[3], data_size, data_start, target_count, open_count (s32), flags, event_nr,
# padding, dev (u64), name[128], uuid[129], data[7]  -> 312 bytes
DM_IOCTL = struct.Struct("=3IIIIiIIIQ128s129s7s")
# struct dm_target_spec: sector_start, length (u64), status (s32), next (u32), target_type[16] -> 40 bytes
DM_TARGET_SPEC = struct.Struct("=QQiI16s")
DM_TARGET_DEPS = struct.Struct("=II")  # count, padding; then u64 dev[count]
DM_NAME_LIST = struct.Struct("=QI")  # dev, next; then name (offset 12)
DM_TARGET_VERSIONS = struct.Struct("=I3I")  # next, version[3]; then name (offset 16)
DM_TARGET_MSG = struct.Struct("=Q")  # sector; then message

# Command numbers (enum in the header, in order).
DM_VERSION_CMD = 0
DM_REMOVE_ALL_CMD = 1
DM_LIST_DEVICES_CMD = 2
DM_DEV_CREATE_CMD = 3
DM_DEV_REMOVE_CMD = 4
DM_DEV_RENAME_CMD = 5
DM_DEV_SUSPEND_CMD = 6
DM_DEV_STATUS_CMD = 7
DM_DEV_WAIT_CMD = 8
DM_TABLE_LOAD_CMD = 9
DM_TABLE_CLEAR_CMD = 10
DM_TABLE_DEPS_CMD = 11
DM_TABLE_STATUS_CMD = 12
DM_LIST_VERSIONS_CMD = 13
DM_TARGET_MSG_CMD = 14
DM_DEV_SET_GEOMETRY_CMD = 15
DM_DEV_ARM_POLL_CMD = 16
DM_GET_TARGET_VERSION_CMD = 17

DM_IOCTL_TYPE = 0xFD

# Flags.
DM_READONLY_FLAG = 1 << 0
DM_SUSPEND_FLAG = 1 << 1
DM_PERSISTENT_DEV_FLAG = 1 << 3
DM_STATUS_TABLE_FLAG = 1 << 4
DM_ACTIVE_PRESENT_FLAG = 1 << 5
DM_INACTIVE_PRESENT_FLAG = 1 << 6
DM_BUFFER_FULL_FLAG = 1 << 8
DM_SKIP_BDGET_FLAG = 1 << 9
DM_SKIP_LOCKFS_FLAG = 1 << 10
DM_NOFLUSH_FLAG = 1 << 11
DM_QUERY_INACTIVE_TABLE_FLAG = 1 << 12
DM_UEVENT_GENERATED_FLAG = 1 << 13
DM_UUID_FLAG = 1 << 14
DM_SECURE_DATA_FLAG = 1 << 15
DM_DATA_OUT_FLAG = 1 << 16
DM_DEFERRED_REMOVE = 1 << 17
DM_INTERNAL_SUSPEND_FLAG = 1 << 18

DM_NAME_LIST_FLAG_HAS_UUID = 1
DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID = 2

# udev control flags (libdevmapper.h), sent in the high 16 bits of the cookie.
DM_UDEV_FLAGS_SHIFT = 16
DM_UDEV_DISABLE_DM_RULES_FLAG = 0x0001
DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG = 0x0002
DM_UDEV_DISABLE_DISK_RULES_FLAG = 0x0004
DM_UDEV_DISABLE_OTHER_RULES_FLAG = 0x0008
DM_UDEV_LOW_PRIORITY_FLAG = 0x0010
DM_UDEV_DISABLE_LIBRARY_FALLBACK = 0x0020
DM_UDEV_PRIMARY_SOURCE_FLAG = 0x0040
DM_SUBSYSTEM_UDEV_FLAG0 = 0x0100  # multipath: MPATH_UDEV_RELOAD_FLAG
DM_SUBSYSTEM_UDEV_FLAG1 = 0x0200  # multipath: MPATH_UDEV_NO_KPARTX_FLAG
DM_SUBSYSTEM_UDEV_FLAG2 = 0x0400  # multipath: MPATH_UDEV_NO_PATHS_FLAG

CONTROL_PATH = "/dev/mapper/control"
MAPPER_DIR = "/dev/mapper"
UDEV_CONTROL = "/run/udev/control"  # exists while systemd-udevd runs (what libudev checks)

_INITIAL_BUFFER = 16 * 1024
_MAX_BUFFER = 64 * 1024 * 1024
_CANCEL_DEFERRED = "@cancel_deferred_remove"


def ioctl_number(cmd: int) -> int:
    """_IOWR(DM_IOCTL, cmd, struct dm_ioctl)."""
    return (3 << 30) | (DM_IOCTL.size << 16) | (DM_IOCTL_TYPE << 8) | cmd


def encode_dev(major: int, minor: int) -> int:
    """The kernel's huge_encode_dev() for the 64-bit dev fields."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def decode_dev(dev: int) -> tuple[int, int]:
    return (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def udev_cookie(flags: int) -> int:
    """A flags-only cookie (no semaphore): see the module docstring."""
    return (flags & 0xFFFF) << DM_UDEV_FLAGS_SHIFT


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _align8(n: int) -> int:
    return (n + 7) & ~7


@record(frozen=True)
class Header:
    """struct dm_ioctl, unpacked."""

    version: tuple[int, int, int] = (DM_VERSION_MAJOR, 0, 0)
    data_size: int = DM_IOCTL.size
    data_start: int = DM_IOCTL.size
    target_count: int = 0
    open_count: int = 0
    flags: int = 0
    event_nr: int = 0
    dev: int = 0
    name: str = ""
    uuid: str = ""

    def pack(self) -> bytes:
        return DM_IOCTL.pack(
            *self.version,
            self.data_size,
            self.data_start,
            self.target_count,
            self.open_count,
            self.flags,
            self.event_nr,
            0,
            self.dev,
            self.name.encode("utf-8", "surrogateescape"),
            self.uuid.encode("utf-8", "surrogateescape"),
            b"",
        )

    @classmethod
    def unpack(cls, buf: bytes | bytearray) -> Header:
        v = DM_IOCTL.unpack_from(buf)
        return cls((v[0], v[1], v[2]), v[3], v[4], v[5], v[6], v[7], v[8], v[10], _cstr(v[11]), _cstr(v[12]))


@record(frozen=True)
class DeviceInfo:
    """What DM_DEV_STATUS (and most other replies) say about a map."""

    name: str
    uuid: str
    major: int
    minor: int
    open_count: int
    event_nr: int
    target_count: int
    flags: int

    @property
    def devno(self) -> str:
        return f"{self.major}:{self.minor}"

    @property
    def suspended(self) -> bool:
        return bool(self.flags & DM_SUSPEND_FLAG)

    @property
    def readonly(self) -> bool:
        return bool(self.flags & DM_READONLY_FLAG)

    @property
    def live_table(self) -> bool:
        return bool(self.flags & DM_ACTIVE_PRESENT_FLAG)

    @property
    def inactive_table(self) -> bool:
        return bool(self.flags & DM_INACTIVE_PRESENT_FLAG)

    @property
    def deferred_remove(self) -> bool:
        return bool(self.flags & DM_DEFERRED_REMOVE)

    @classmethod
    def from_header(cls, h: Header) -> DeviceInfo:
        major, minor = decode_dev(h.dev)
        return cls(h.name, h.uuid, major, minor, h.open_count, h.event_nr, h.target_count, h.flags)


@record(frozen=True)
class ListedDevice:
    name: str
    major: int
    minor: int
    event_nr: int | None = None  # None on kernels that do not report it
    uuid: str | None = None  # None when the kernel did not say; "" when the map has none


# --- pure packing / unpacking (unit-tested on the host) ----------------------------------------------


def pack_targets(targets: Sequence[TargetLine]) -> bytes:
    """dm_target_spec records for DM_TABLE_LOAD; `next` is relative to the current spec."""
    out = bytearray()
    for t in targets:
        ttype = t.target.encode()
        if len(ttype) >= DM_MAX_TYPE_NAME:
            raise ValueError(f"target type {t.target!r} is longer than {DM_MAX_TYPE_NAME - 1} bytes")
        params = t.params.encode("utf-8", "surrogateescape") + b"\0"
        rec_len = _align8(DM_TARGET_SPEC.size + len(params))
        rec = DM_TARGET_SPEC.pack(t.start, t.length, 0, rec_len, ttype) + params
        out += rec + b"\0" * (rec_len - len(rec))
    return bytes(out)


def unpack_targets(data: bytes | bytearray, count: int) -> list[TargetLine]:
    """dm_target_spec records of a DM_TABLE_STATUS reply; `next` is relative to the first spec."""
    out = []
    off = 0
    for _ in range(count):
        start, length, _status, nxt, ttype = DM_TARGET_SPEC.unpack_from(data, off)
        pstart = off + DM_TARGET_SPEC.size
        end = data.index(b"\0", pstart) if b"\0" in data[pstart:] else len(data)
        out.append(TargetLine(start, length, _cstr(ttype), _cstr(bytes(data[pstart:end]))))
        off = nxt
    return out


def unpack_name_list(data: bytes | bytearray, with_extras: bool) -> list[ListedDevice]:
    """dm_name_list records of a DM_LIST_DEVICES reply (dev 0 in the first record = no devices)."""
    out: list[ListedDevice] = []
    if len(data) < DM_NAME_LIST.size:  # no devices: the kernel may return no record at all
        return out
    off = 0
    while True:
        dev, nxt = DM_NAME_LIST.unpack_from(data, off)
        if dev == 0 and not out:
            return out
        name_off = off + 12
        name_end = data.index(b"\0", name_off)
        major, minor = decode_dev(dev)
        event_nr: int | None = None
        uuid: str | None = None
        if with_extras:
            ev_off = _align8(name_end + 1)
            event_nr, lflags = struct.unpack_from("=II", data, ev_off)
            if lflags & DM_NAME_LIST_FLAG_HAS_UUID:
                u_off = _align8(ev_off + 8)
                uuid = _cstr(bytes(data[u_off : data.index(b"\0", u_off) + 1]))
            elif lflags & DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID:
                uuid = ""
        out.append(ListedDevice(_cstr(bytes(data[name_off:name_end])), major, minor, event_nr, uuid))
        if not nxt:
            return out
        off += nxt


def unpack_versions(data: bytes | bytearray) -> dict[str, tuple[int, int, int]]:
    """dm_target_versions records; `next` is relative to the current record, 0 ends the list."""
    out = {}
    off = 0
    while True:
        nxt, a, b, c = DM_TARGET_VERSIONS.unpack_from(data, off)
        name_off = off + DM_TARGET_VERSIONS.size
        out[_cstr(bytes(data[name_off : data.index(b"\0", name_off) + 1]))] = (a, b, c)
        if not nxt:
            return out
        off += nxt


def unpack_deps(data: bytes | bytearray) -> list[tuple[int, int]]:
    count, _pad = DM_TARGET_DEPS.unpack_from(data)
    devs = struct.unpack_from(f"={count}Q", data, DM_TARGET_DEPS.size)
    return [decode_dev(d) for d in devs]


def check_name(op: str, name: str) -> None:
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) >= DM_NAME_LEN:
        raise DMNameTooLong(op, name, DM_NAME_LEN - 1)
    if not raw or "/" in name or name in (".", ".."):
        raise DMError(op, name, errno.EINVAL, "invalid map name (empty, '/', '.' or '..')")


def check_uuid(op: str, name: str, uuid: str) -> None:
    if len(uuid.encode("utf-8", "surrogateescape")) >= DM_UUID_LEN:
        raise DMNameTooLong(op, name, DM_UUID_LEN - 1, "uuid")


# --- the control device ------------------------------------------------------------------------------


class Control:
    """An open /dev/mapper/control. Address a map by name, or by uuid= / devno= keywords.

    `udev`: True if udev creates the /dev/mapper nodes, False if we must, None = detect (UDEV_CONTROL).
    """

    def __init__(self, path: str = CONTROL_PATH, *, udev: bool | None = None, mapper_dir: str = MAPPER_DIR):
        self.path = path
        self.mapper_dir = mapper_dir
        self.udev = os.path.exists(UDEV_CONTROL) if udev is None else udev
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            self.fd = self._make_control_node()
        except OSError as e:
            raise DMUnavailable("open", None, e.errno or 0, f"{path}: {e.strerror}") from e
        self._driver: tuple[int, int, int] | None = None

    def _make_control_node(self) -> int:
        """Create the control node from /proc/misc (as libdevmapper does) when it is missing."""
        try:
            with open("/proc/misc") as f:
                minor = next(int(line.split()[0]) for line in f if line.split()[1:] == ["device-mapper"])
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            os.mknod(self.path, 0o600 | stat.S_IFCHR, os.makedev(10, minor))
            return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except (OSError, StopIteration) as e:
            raise DMUnavailable("open", None, errno.ENODEV, f"{self.path} missing and no device-mapper "
                                "in /proc/misc (is dm_mod loaded?)") from e

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self.fd

    # -- the one ioctl path --------------------------------------------------------------------------

    def _call(
        self,
        op: str,
        cmd: int,
        name: str | None = None,
        *,
        uuid: str | None = None,
        devno: tuple[int, int] | None = None,
        flags: int = 0,
        event_nr: int = 0,
        data: bytes = b"",
        target_count: int = 0,
        out: bool = False,
    ) -> tuple[Header, bytes]:
        """Run one ioctl; with out=True grow the buffer while the kernel sets DM_BUFFER_FULL_FLAG."""
        label = name or uuid or (f"{devno[0]}:{devno[1]}" if devno else None)
        if name:
            check_name(op, name)
        if uuid:
            check_uuid(op, label or uuid, uuid)
        size = DM_IOCTL.size + len(data) + 1
        if out:
            size = max(size, _INITIAL_BUFFER)
        while True:
            hdr = Header(
                data_size=size,
                target_count=target_count,
                flags=flags,
                event_nr=event_nr,
                dev=encode_dev(*devno) if devno else 0,
                name=name or "",
                uuid=uuid or "",
            )
            buf = bytearray(size)
            buf[: DM_IOCTL.size] = hdr.pack()
            buf[DM_IOCTL.size : DM_IOCTL.size + len(data)] = data
            try:
                fcntl.ioctl(self.fd, ioctl_number(cmd), buf, True)
            except OSError as e:
                raise from_errno(op, label, e.errno or 0) from None
            reply = Header.unpack(buf)
            if out and reply.flags & DM_BUFFER_FULL_FLAG and size < _MAX_BUFFER:
                size = max(size * 2, reply.data_size)
                continue
            return reply, bytes(buf[reply.data_start : max(reply.data_start, min(reply.data_size, size))])

    # -- global ------------------------------------------------------------------------------------

    def version(self) -> tuple[int, int, int]:
        """The kernel's ioctl interface version."""
        if self._driver is None:
            h, _ = self._call("version", DM_VERSION_CMD)
            self._driver = h.version
        return self._driver

    def list_devices(self) -> list[ListedDevice]:
        h, data = self._call("list", DM_LIST_DEVICES_CMD, flags=DM_UUID_FLAG, out=True)
        return unpack_name_list(data, with_extras=self.version() >= (4, 46, 0))

    def target_versions(self) -> dict[str, tuple[int, int, int]]:
        _, data = self._call("list targets", DM_LIST_VERSIONS_CMD, out=True)
        return unpack_versions(data)

    def target_version(self, target: str) -> tuple[int, int, int]:
        """Version of one target type, loading its module if needed (DM_GET_TARGET_VERSION, 4.41+)."""
        if len(target.encode()) >= DM_NAME_LEN:
            raise DMNameTooLong("target version", target, DM_NAME_LEN - 1)
        _, data = self._call("target version", DM_GET_TARGET_VERSION_CMD, target, out=True)
        return unpack_versions(data)[target]

    def arm_poll(self) -> None:
        """After this, poll(fileno()) reports POLLIN on the next event of any map."""
        self._call("arm poll", DM_DEV_ARM_POLL_CMD)

    # -- per device --------------------------------------------------------------------------------

    def create(self, name: str, uuid: str = "", *, devno: tuple[int, int] | None = None) -> DeviceInfo:
        """An empty device (no table). `devno` asks for a fixed major:minor."""
        flags = DM_PERSISTENT_DEV_FLAG if devno else 0
        check_name("create", name)
        check_uuid("create", name, uuid)
        try:
            h, _ = self._call("create", DM_DEV_CREATE_CMD, name, uuid=uuid or None, devno=devno, flags=flags)
        except DMBusy:  # the kernel says EBUSY when the name or uuid is taken
            raise DMExists("create", name, errno.EEXIST, "name or uuid already in use") from None
        info = DeviceInfo.from_header(h)
        if not self.udev:
            self._make_node(info.name, info.major, info.minor)
        return info

    def remove(
        self,
        name: str | None = None,
        *,
        uuid: str | None = None,
        deferred: bool = False,
        udev_flags: int = 0,
    ) -> DeviceInfo:
        """Remove a map. EBUSY becomes DMBusy with the open count; `deferred` removes on last close."""
        flags = DM_DEFERRED_REMOVE if deferred else 0
        try:
            h, _ = self._call("remove", DM_DEV_REMOVE_CMD, name, uuid=uuid, flags=flags,
                              event_nr=self._cookie(udev_flags))
        except DMBusy as e:
            try:
                oc: int | None = self.info(name, uuid=uuid).open_count
            except DMError:
                oc = None
            raise DMBusy("remove", name or uuid, oc) from e
        info = DeviceInfo.from_header(h)
        if not self.udev and not info.deferred_remove:
            self._remove_node(info.name or name or "")
        return info

    def cancel_deferred_remove(self, name: str | None = None, *, uuid: str | None = None) -> None:
        self.message(name, _CANCEL_DEFERRED, uuid=uuid)

    def rename(self, name: str, new_name: str, *, udev_flags: int = 0) -> DeviceInfo:
        check_name("rename", new_name)
        h, _ = self._call("rename", DM_DEV_RENAME_CMD, name, data=new_name.encode() + b"\0",
                          event_nr=self._cookie(udev_flags))
        if not self.udev:
            self._remove_node(name)
            info = self.info(new_name)
            self._make_node(new_name, info.major, info.minor)
        return DeviceInfo.from_header(h)

    def set_uuid(self, name: str, uuid: str, *, udev_flags: int = 0) -> DeviceInfo:
        """Give a map without a uuid one (the kernel refuses to change an existing uuid)."""
        check_uuid("set uuid", name, uuid)
        h, _ = self._call("set uuid", DM_DEV_RENAME_CMD, name, flags=DM_UUID_FLAG,
                          data=uuid.encode() + b"\0", event_nr=self._cookie(udev_flags))
        return DeviceInfo.from_header(h)

    def suspend(self, name: str | None = None, *, uuid: str | None = None, noflush: bool = False,
                nolockfs: bool = False) -> DeviceInfo:
        flags = DM_SUSPEND_FLAG | (DM_NOFLUSH_FLAG if noflush else 0)
        flags |= DM_SKIP_LOCKFS_FLAG if nolockfs else 0
        h, _ = self._call("suspend", DM_DEV_SUSPEND_CMD, name, uuid=uuid, flags=flags)
        return DeviceInfo.from_header(h)

    def resume(self, name: str | None = None, *, uuid: str | None = None, noflush: bool = False,
               nolockfs: bool = False, udev_flags: int = 0) -> DeviceInfo:
        """Resume (swapping in the inactive table if one is loaded); emits the change uevent."""
        flags = (DM_NOFLUSH_FLAG if noflush else 0) | (DM_SKIP_LOCKFS_FLAG if nolockfs else 0)
        h, _ = self._call("resume", DM_DEV_SUSPEND_CMD, name, uuid=uuid, flags=flags,
                          event_nr=self._cookie(udev_flags))
        info = DeviceInfo.from_header(h)
        if not self.udev:
            self._make_node(info.name, info.major, info.minor)
        return info

    def load(self, name: str | None, targets: Iterable[TargetLine | str], *, uuid: str | None = None,
             readonly: bool = False) -> DeviceInfo:
        """Load an inactive table (TargetLine objects or whole table lines)."""
        lines = [t if isinstance(t, TargetLine) else parse_target_line(t) for t in targets]
        text = "\n".join(t.line() for t in lines)
        if name:
            check_name("load", name)
        try:
            h, _ = self._call("load", DM_TABLE_LOAD_CMD, name, uuid=uuid, data=pack_targets(lines),
                              target_count=len(lines), flags=DM_READONLY_FLAG if readonly else 0)
        except (DMUnavailable, DMNameTooLong):
            raise
        except DMError as e:
            # ENXIO is both "no such map" and "a path device is missing": ask which.
            if isinstance(e, DMNoSuchDevice) and not self.exists(name, uuid=uuid):
                raise
            raise DMTableRejected("load", name or uuid, e.errno, text) from None
        return DeviceInfo.from_header(h)

    def clear(self, name: str | None = None, *, uuid: str | None = None) -> DeviceInfo:
        """Drop the inactive table."""
        h, _ = self._call("clear", DM_TABLE_CLEAR_CMD, name, uuid=uuid)
        return DeviceInfo.from_header(h)

    def info(self, name: str | None = None, *, uuid: str | None = None,
             devno: tuple[int, int] | None = None) -> DeviceInfo:
        h, _ = self._call("info", DM_DEV_STATUS_CMD, name, uuid=uuid, devno=devno)
        return DeviceInfo.from_header(h)

    def exists(self, name: str | None = None, *, uuid: str | None = None) -> bool:
        try:
            self.info(name, uuid=uuid)
        except DMNoSuchDevice:
            return False
        return True

    def table(self, name: str | None = None, *, uuid: str | None = None,
              inactive: bool = False) -> list[TargetLine]:
        return self._table_status("table", name, uuid, DM_STATUS_TABLE_FLAG, inactive)

    def status(self, name: str | None = None, *, uuid: str | None = None, inactive: bool = False,
               noflush: bool = False) -> list[TargetLine]:
        """Target status lines. `noflush` keeps targets from flushing to answer (DM_NOFLUSH_FLAG)."""
        return self._table_status("status", name, uuid, DM_NOFLUSH_FLAG if noflush else 0, inactive)

    def _table_status(self, op: str, name: str | None, uuid: str | None, flags: int,
                      inactive: bool) -> list[TargetLine]:
        if inactive:
            flags |= DM_QUERY_INACTIVE_TABLE_FLAG
        h, data = self._call(op, DM_TABLE_STATUS_CMD, name, uuid=uuid, flags=flags, out=True)
        return unpack_targets(data, h.target_count)

    def table_and_info(self, name: str) -> tuple[DeviceInfo, list[TargetLine]]:
        h, data = self._call("table", DM_TABLE_STATUS_CMD, name, flags=DM_STATUS_TABLE_FLAG, out=True)
        return DeviceInfo.from_header(h), unpack_targets(data, h.target_count)

    def deps(self, name: str | None = None, *, uuid: str | None = None) -> list[tuple[int, int]]:
        """major:minor of the devices the live table uses."""
        _, data = self._call("deps", DM_TABLE_DEPS_CMD, name, uuid=uuid, out=True)
        return unpack_deps(data)

    def message(self, name: str | None, message: str, *, uuid: str | None = None,
                sector: int = 0) -> str | None:
        """Send a target message (e.g. "fail_path 8:16"); returns the target's reply text, if any."""
        data = DM_TARGET_MSG.pack(sector) + message.encode() + b"\0"
        h, out = self._call(f"message {message!r}", DM_TARGET_MSG_CMD, name, uuid=uuid, data=data,
                            out=True)
        if h.flags & DM_DATA_OUT_FLAG:
            return _cstr(out)
        return None

    def wait_event(self, name: str, event_nr: int) -> DeviceInfo:
        """Block until the map's event counter passes `event_nr` (DM_DEV_WAIT)."""
        h, _ = self._call("wait", DM_DEV_WAIT_CMD, name, event_nr=event_nr, out=True)
        return DeviceInfo.from_header(h)

    # -- udev / nodes ------------------------------------------------------------------------------

    def _cookie(self, extra: int) -> int:
        base = DM_UDEV_PRIMARY_SOURCE_FLAG | (DM_UDEV_DISABLE_LIBRARY_FALLBACK if self.udev else 0)
        return udev_cookie(base | extra)

    def _node(self, name: str) -> str:
        return os.path.join(self.mapper_dir, name)

    def _make_node(self, name: str, major: int, minor: int) -> None:
        """Without udev: /dev/mapper/<name> as a block node (mode 0600 like libdevmapper's default)."""
        path = self._node(name)
        want = os.makedev(major, minor)
        try:
            st = os.lstat(path)
            if stat.S_ISBLK(st.st_mode) and st.st_rdev == want:
                return
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.makedirs(self.mapper_dir, exist_ok=True)
        os.mknod(path, 0o600 | stat.S_IFBLK, want)

    def _remove_node(self, name: str) -> None:
        if not name:
            return
        try:
            os.unlink(self._node(name))
        except FileNotFoundError:
            pass
