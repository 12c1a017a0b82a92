"""SCSI commands through the SG_IO ioctl (struct sg_io_hdr, <scsi/sg.h>), for checkers and prioritizers."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from pymultipathd import locations
from pymultipathd.record import record
from pymultipathd.sysread import close_quietly

T = TypeVar("T")

SG_IO = 0x2285
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
SG_INFO_OK_MASK = 0x1
# SCSI sense keys
NO_SENSE, RECOVERED_ERROR, NOT_READY, MEDIUM_ERROR, HARDWARE_ERROR = 0x00, 0x01, 0x02, 0x03, 0x04
ILLEGAL_REQUEST, UNIT_ATTENTION, DATA_PROTECT, ABORTED_COMMAND = 0x05, 0x06, 0x07, 0x0B
# SCSI status bytes
GOOD, CHECK_CONDITION, BUSY, RESERVATION_CONFLICT = 0x00, 0x02, 0x08, 0x18

# host_status values that mean the transport, not the LUN, failed
DID_OK = 0x00


class SgIoHdr(ctypes.Structure):
    _fields_ = [
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


@record(frozen=True)
class SgResult:
    ok: bool
    status: int
    host_status: int
    driver_status: int
    sense: bytes
    data: bytes

    @property
    def sense_key(self) -> int | None:
        s = self.sense
        if len(s) < 3:
            return None
        if s[0] & 0x7F in (0x72, 0x73):  # descriptor format
            return s[1] & 0x0F
        return s[2] & 0x0F

    @property
    def asc_ascq(self) -> tuple[int, int] | None:
        s = self.sense
        if s and s[0] & 0x7F in (0x72, 0x73):
            return (s[2], s[3]) if len(s) >= 4 else None
        return (s[12], s[13]) if len(s) >= 14 else None


MAX_TIMEOUT_MS = 0xFFFFFFFF
SENSE_LEN = 64
MAX_CDB = 255  # cmd_len is one byte
HDR_SIZE = ctypes.sizeof(SgIoHdr)
GOOD_NO_DATA = SgResult(ok=True, status=GOOD, host_status=DID_OK, driver_status=0, sense=b"", data=b"")


class _Buffers(threading.local):
    """A thread's header, sense and CDB buffers, reused by each of its commands (one at a time: the ioctl
    returns before the next begins). Building the ctypes objects anew cost several times the ioctl's own
    Python cost, at every check of every path."""

    def __init__(self) -> None:
        self.hdr = SgIoHdr()
        self.hdr_at = ctypes.addressof(self.hdr)
        self.sense = ctypes.create_string_buffer(SENSE_LEN)
        self.cdb = ctypes.create_string_buffer(MAX_CDB)


_buffers = _Buffers()


def sg_io(fd: int, cdb: bytes, data_len: int = 0, timeout_ms: int = 30000,
          data_out: bytes | None = None) -> SgResult:
    """Issue one command, reading up to `data_len` bytes from the device or sending `data_out` to it;
    raises OSError if the ioctl itself fails (no such device, not SCSI)."""
    if not 6 <= len(cdb) <= MAX_CDB:  # a CDB is 6 bytes at least; cmd_len and the thread's buffer hold 255
        raise ValueError(f"a SCSI command of {len(cdb)} bytes (6 to {MAX_CDB} can be sent)")
    b = _buffers
    hdr = b.hdr
    ctypes.memset(b.hdr_at, 0, HDR_SIZE)  # also the reply's fields: nothing of the last command is left
    ctypes.memmove(b.cdb, cdb, len(cdb))
    data = None
    if data_out is not None:
        data = ctypes.create_string_buffer(data_out, max(len(data_out), 1))
        hdr.dxfer_direction, hdr.dxfer_len = SG_DXFER_TO_DEV, len(data_out)
    elif data_len:
        data = ctypes.create_string_buffer(data_len)
        hdr.dxfer_direction, hdr.dxfer_len = SG_DXFER_FROM_DEV, data_len
    else:
        hdr.dxfer_direction = SG_DXFER_NONE
    if data is not None and hdr.dxfer_len:
        hdr.dxferp = ctypes.addressof(data)
    hdr.interface_id = ord("S")
    hdr.cmd_len = len(cdb)
    hdr.mx_sb_len = SENSE_LEN
    hdr.cmdp = ctypes.addressof(b.cdb)
    hdr.sbp = ctypes.addressof(b.sense)
    # the header's timeout is 32 bits and 0 means the kernel's default: a huge checker_timeout must neither
    # wrap to a short one nor become 0
    hdr.timeout = min(max(timeout_ms, 1), MAX_TIMEOUT_MS)
    fcntl.ioctl(fd, SG_IO, hdr)
    ok = (hdr.info & SG_INFO_OK_MASK) == 0
    status, host_status, driver_status = hdr.status, hdr.host_status, hdr.driver_status
    sense_len = hdr.sb_len_wr
    if data is None and ok and not (status or host_status or driver_status or sense_len):
        return GOOD_NO_DATA  # a TEST UNIT READY that passed: most commands sent, one shared answer
    return SgResult(
        ok=ok,
        status=status,
        host_status=host_status,
        driver_status=driver_status,
        sense=b.sense.raw[:sense_len],
        data=data.raw[: max(0, data_len - hdr.resid)] if data is not None and data_out is None else b"",
    )


def generic_node(devnode: str) -> str:
    """The disk's SCSI generic node (/dev/sgN next to /dev/sdX) if it has one, else `devnode`.

    SG_IO on the disk's own node waits for a command uninterruptibly: on a path whose session is blocked
    (a dead fabric, a long recovery_tmo) the checking thread sleeps in D state, and a process with such a
    thread cannot exit, so the daemon could not stop until the fabric came back. Through the sg node the
    wait for the command is killable. Not every wait: while the SCSI host runs its error handler, SG_IO
    waits for the handler to finish before the command is queued, uninterruptibly on either node
    (scsi_block_when_processing_errors), for as long as the handler's own timeouts allow. The name comes
    from the disk's sysfs directory, never from a device."""
    name = os.path.basename(devnode)
    try:
        entries = sorted(os.listdir(os.path.join(locations.sysfs(), "block", name, "device", "scsi_generic")))
    except OSError:
        return devnode
    sg = [e for e in entries if e.startswith("sg") and e[2:].isdigit()]
    node = os.path.join(os.path.dirname(devnode), sg[0]) if sg else devnode
    return node if os.path.exists(node) else devnode


# devnode -> the sg node generic_node found for it, as its lookup (a listdir in sysfs) costs more than the
# open. Checked before each open against the disk's sysfs directory (one stat), so a device that took the
# disk's name is never reached through its predecessor's sg node; dropped by forget_node.
_sg_nodes: dict[str, str] = {}
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE})  # the daemon's or the system's open-file limit


def _sg_node_holds(devnode: str, node: str) -> bool:
    """Is `node` still the SCSI generic node of the disk named as devnode is."""
    return os.path.exists(
        f"{locations.sysfs()}/block/{os.path.basename(devnode)}/device/scsi_generic/{os.path.basename(node)}")


def forget_node(devnode: str) -> None:
    """The path is gone: its sg node's name is looked up afresh if the name is used again."""
    _sg_nodes.pop(devnode, None)


def open_path(devnode: str, *, write: bool = False) -> int:
    """A descriptor for SG_IO on the path, opened for the caller to close; `write` for commands that
    change the device's state (the kernel lets a read-only descriptor send only commands it knows to be
    harmless). Raises OSError, EMFILE/ENFILE (OUT_OF_FDS) included: out of descriptors is the host's
    state, never the path's."""
    # O_NONBLOCK: opening must not wait for a medium; the checker must never hang in open().
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
    node = _sg_nodes.get(devnode)
    if node is not None:
        if _sg_node_holds(devnode, node):
            try:
                return _open_node(devnode, node, flags)
            except OSError as err:
                if err.errno in OUT_OF_FDS:
                    raise
        # gone, or no longer this disk's: looked up again
        _sg_nodes.pop(devnode, None)
    node = generic_node(devnode)
    if node != devnode:  # a disk without one is looked up each time: the sg driver may be loaded later
        _sg_nodes[devnode] = node
    return _open_node(devnode, node, flags)


def _open_node(devnode: str, node: str, flags: int) -> int:
    try:
        return os.open(node, flags)
    except OSError as err:
        if node == devnode or err.errno != errno.EBUSY:
            raise
        # another program holds the sg node exclusively (O_EXCL, a maintenance tool): the disk's own node
        # still answers, and a busy sg node says nothing about the path
        return os.open(devnode, flags)


SCSI_GENERIC_MAJOR = 21  # <linux/major.h>
GONE = frozenset({errno.ENODEV, errno.ENXIO})  # what the sg driver answers once its device was removed
SG_SET_RESERVED_SIZE = 0x2275


class KeptNodes:
    """A descriptor of each path's sg node, kept open between checks that only send commands through one
    (tur, readsector0). Opening the node, with its first command, costs several times the command alone: in
    the emulated test guest 600 us of CPU for stat, open, TEST UNIT READY and close, 110 us for the TEST
    UNIT READY on a kept descriptor, and a round checks every path.

    - Only sg nodes are kept. The disk's own node (opened when the sg node is held exclusively or there is
      none) is closed after each use: a command through it waits uninterruptibly (see generic_node).
    - Each kept node's reserve buffer is cut to the driver's minimum (a page): the sg driver gives every
      open one of 32 KiB by default, kernel memory a thousand paths would hold for commands that move at
      most a block. Commands that need more get buffers of their own from the driver.
    - A descriptor holds a device, not a name: once the device is removed its commands fail (ENODEV) and
      never reach a device that took the name. Such a descriptor is closed and the name opened afresh for
      the same use (nothing was sent); after any other error it is closed and the error is the caller's.
    - Each counts against the open-file limit (max_fds): at most a quarter of it is kept (the rest are
      opened for each use), and `drop_all` (the limit was reached) closes the idle ones and keeps none from
      then on.
    - While held the node cannot be opened exclusively (O_EXCL), and the sg driver holds the device out of
      runtime suspend. The daemon closes it (`close`) when the path leaves its map or goes (`del map`,
      `del path`, the disk's removal): a path outside a map is not checked.
    - One user per devnode at a time (CheckRunner: one check in flight per path). A descriptor in use is
      out of the table, so `close` and `drop_all` never close one a command is being sent through (its
      number could be given to another open meanwhile)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}  # device name ("sdb") -> its sg node's descriptor
        self._lock = threading.Lock()
        self.keeping = True  # False once descriptors ran out: each use opens and closes the node
        self._last_cap = 0  # see _cap

    def use(self, devnode: str, func: Callable[[int, float], T], timeout: float) -> T:
        """func(descriptor, timeout) on the path's sg node, opened if none is kept. Raises what open_path
        raises (EMFILE/ENFILE included) and what func raises."""
        name = devnode.rpartition("/")[2]
        fd = self._fds.pop(name, None)
        if fd is not None:
            try:
                result = func(fd, timeout)
            except OSError as err:
                close_quietly(fd)
                if err.errno not in GONE:
                    raise
                # The kept node's device was removed (its remove event not seen yet, or lost): nothing was
                # sent. The name is opened afresh and answers for the device that has it now, if any.
                return self._use_new(devnode, name, func, timeout)
            except BaseException:
                close_quietly(fd)
                raise
            self._put(name, fd)
            return result
        return self._use_new(devnode, name, func, timeout)

    def _use_new(self, devnode: str, name: str, func: Callable[[int, float], T], timeout: float) -> T:
        fd = open_path(devnode)
        try:
            keep = _is_sg_node(fd) and len(self._fds) < self._cap()
            if keep:
                _cut_reserve(fd)
            result = func(fd, timeout)
        except BaseException:
            close_quietly(fd)
            raise
        if keep:
            self._put(name, fd)
        else:
            close_quietly(fd)
        return result

    def _put(self, name: str, fd: int) -> None:
        with self._lock:
            if self.keeping:
                self._fds[name] = fd
                return
        close_quietly(fd)

    def _cap(self) -> int:
        """How many may be kept: a quarter of the open-file limit (max_fds), so that once many paths' nodes
        are held the descriptors the daemon opens elsewhere (prioritizers, uevents, clients) still fit. The
        limit is read again only when the table reaches the cap read last (a reconfigure may raise it)."""
        if len(self._fds) >= self._last_cap:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self._last_cap = soft // 4 if soft != resource.RLIM_INFINITY else sys.maxsize
        return self._last_cap

    def __len__(self) -> int:
        return len(self._fds)

    def close(self, dev: str) -> None:
        """The path `dev` ("sdb") is gone, or its node must be free: close its descriptor (if kept and
        idle)."""
        fd = self._fds.pop(dev, None)
        if fd is not None:
            close_quietly(fd)

    def close_all(self) -> None:
        # one entry at a time: each pop (here, in close, in use) is atomic, so whoever takes a descriptor
        # out of the table is its only owner and no descriptor is closed twice (its number may be reused)
        while True:
            try:
                _, fd = self._fds.popitem()
            except KeyError:
                return
            close_quietly(fd)

    def drop_all(self) -> None:
        """Out of descriptors, or stopping: close the idle ones and keep none from now on (descriptors in
        use are closed by their users)."""
        with self._lock:
            self.keeping = False
        self.close_all()

    def resume(self) -> None:
        """Keep nodes again after drop_all (a reconfigure may have raised the limit); the cap is read anew."""
        with self._lock:
            self.keeping = True
            self._last_cap = 0


def _is_sg_node(fd: int) -> bool:
    try:
        return os.major(os.fstat(fd).st_rdev) == SCSI_GENERIC_MAJOR
    except OSError:
        return False


def _cut_reserve(fd: int) -> None:
    """The descriptor's reserve buffer down to the driver's minimum (it rounds 0 up to a page)."""
    try:
        fcntl.ioctl(fd, SG_SET_RESERVED_SIZE, bytes(4))  # an int 0, passed by address
    except OSError:  # a buffer in use or mapped: the default stays, which only costs memory
        pass


TEST_UNIT_READY = bytes(6)


def read10(lba: int = 0, blocks: int = 1) -> bytes:
    return bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])


def inquiry(page: int | None = None, alloc_len: int = 255) -> bytes:
    """INQUIRY: the standard data (page None) or vital product data page `page` (EVPD)."""
    evpd, code = (0, 0) if page is None else (1, page)
    return bytes([0x12, evpd, code]) + alloc_len.to_bytes(2, "big") + bytes([0])


def report_target_port_groups(alloc_len: int = 4096) -> bytes:
    # MAINTENANCE IN / REPORT TARGET PORT GROUPS (service action 0x0a), for the ALUA prioritizer
    return bytes([0xA3, 0x0A, 0, 0, 0, 0]) + alloc_len.to_bytes(4, "big") + bytes([0, 0])


# prioritizers


def netapp_gva(page: int, alloc_len: int = 128) -> bytes:
    """NetApp ONTAP's vendor-specific "get vendor attributes" command (opcode C0h): attribute page `page`
    (41h names the host's iSCSI initiator kind). The bytes 01 0A 98 0A after the opcode are the fixed
    signature ONTAP expects; the reply repeats 0A 98 0A 01 at offset 4."""
    return bytes([0xC0, 0, 0x01, 0x0A, 0x98, 0x0A, page & 0xFF, alloc_len & 0xFF, 0, 0])


# checkers

# host_status values (<scsi/scsi.h>) the checkers tell apart
DID_NO_CONNECT, DID_BUS_BUSY, DID_TIME_OUT, DID_BAD_TARGET, DID_ABORT = 0x01, 0x02, 0x03, 0x04, 0x05
DID_ERROR, DID_SOFT_ERROR, DID_TRANSPORT_DISRUPTED, DID_TRANSPORT_FAILFAST = 0x07, 0x0B, 0x0E, 0x0F
COMMAND_TERMINATED = 0x22  # an obsolete status byte that, like CHECK CONDITION, comes with sense data
DRIVER_SENSE = 0x08        # driver_status flag: the reply carries sense data


def carries_sense(res: SgResult) -> bool:
    """Whether a reply's sense data is to be read, as upstream's vendor checkers and prioritizers decide:
    CHECK CONDITION or COMMAND TERMINATED status, or the driver's sense flag."""
    return (res.status & 0x7E) in (CHECK_CONDITION, COMMAND_TERMINATED) \
        or (res.driver_status & 0x0F) == DRIVER_SENSE


def describe(res: SgResult) -> str:
    """A failed command's status, host and driver bytes and its sense key and ASC/ASCQ, for messages."""
    text = f"status 0x{res.status:x} host 0x{res.host_status:x} driver 0x{res.driver_status:x}"
    if res.host_status == DID_TIME_OUT:
        text += " (timed out)"
    key, code = res.sense_key, res.asc_ascq
    if key is not None:
        text += f" sense key 0x{key:x}"
        if code:
            text += f" asc/ascq 0x{code[0]:02x}/0x{code[1]:02x}"
    return text


# block devices

BLKBSZGET = 0x80081270  # _IOR(0x12, 112, size_t): a block device's soft block size (the kernel writes an int)


def block_size(fd: int) -> int | None:
    """The block device's soft block size (BLKBSZGET); None if it will not say or says nothing positive."""
    try:
        raw = fcntl.ioctl(fd, BLKBSZGET, bytes(8))
    except OSError:
        return None
    size = int.from_bytes(raw[:4], sys.byteorder, signed=True)
    return size if size > 0 else None
