"""The array-specific path checkers: emc_clariion, hp_sw, rdac and cciss_tur.

Each is a blocking function (devnode, timeout) -> CheckResult like the generic checkers in checkers.py
(which registers them). The decisions are pure functions of a parsed reply, so they are tested without I/O;
the functions named after the checkers only send the commands and hand the replies to them.

Upstream's checkers can answer "wild" (the checker does not work with this device); this daemon has no such
state, so a device that refuses a checker's command is reported down, with a message that says why.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from pymultipathd.paths import sgio
from pymultipathd.policy.state import PathCheck
from pymultipathd.record import record

if TYPE_CHECKING:
    from pymultipathd.paths.checkers import CheckResult

UP, DOWN, GHOST, SHAKY = PathCheck.UP, PathCheck.DOWN, PathCheck.GHOST, PathCheck.SHAKY

# host_status values after which emc_clariion and rdac send their INQUIRY again (a passing transport fault)
TRANSPORT_RETRY = frozenset({sgio.DID_BUS_BUSY, sgio.DID_ERROR, sgio.DID_SOFT_ERROR,
                             sgio.DID_TRANSPORT_DISRUPTED})
INQUIRY_TRIES = 5     # emc_clariion and rdac: sends of the INQUIRY at most
READ_TRIES = 3        # emc_clariion's read of sector 0: sends at most (unit attentions are retried)
MEMORY_LIMIT = 65536  # paths (and LUNs) emc_clariion remembers at most (a few hundred bytes each)


def _result(state: PathCheck, message: str) -> CheckResult:
    # checkers.py imports this module to register the checkers, so the record class is looked up on use
    from pymultipathd.paths.checkers import CheckResult

    return CheckResult(state, message)


def _sense_key(res: sgio.SgResult) -> int | None:
    """The sense key of a failed command that returned sense data, read as the vendor checkers read it: only
    for CHECK CONDITION, COMMAND TERMINATED or the driver's sense flag, and only with 3 bytes or more."""
    return res.sense_key if sgio.carries_sense(res) and len(res.sense) > 2 else None


def _unsupported(name: str, why: str) -> CheckResult:
    """Upstream's PATH_WILD: the checker cannot judge this device, which says nothing about the path."""
    return _result(PathCheck.WILD, f"{name}: checker not supported by this device ({why})")


def _send(fd: int, cdb: bytes, data_len: int, timeout: float, tries: int = 1,
          retry_on: frozenset[int] = frozenset()) -> sgio.SgResult:
    """Send a command, again (up to `tries` sends) while it fails with a host_status in `retry_on` and the
    check's time is not used up."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, tries + 1):
        res = sgio.sg_io(fd, cdb, data_len=data_len, timeout_ms=int(timeout * 1000))
        if res.ok or res.host_status not in retry_on or attempt == tries or time.monotonic() >= deadline:
            return res
    raise AssertionError("unreachable: the last try returns")


# --- emc_clariion ----------------------------------------------------------------------------------------

CLARIION_PAGE = 0xC0      # vendor VPD page: the "unit report" of a CLARiiON/VNX storage processor
CLARIION_PAGE_LEN = 128   # bytes asked for; a shorter reply reads as zeros beyond its end
# lun_state (byte 4)
LUN_UNBOUND, LUN_BOUND, LUN_OWNED = 0, 1, 2
INACTIVE_SNAPSHOT = (0x25, 0x01)  # ILLEGAL REQUEST with this ASC/ASCQ: a read of an inactive snapshot LUN


@record(frozen=True)
class ClariionUnitReport:
    """INQUIRY VPD page 0xC0 of an EMC CLARiiON/VNX (the fields the checker looks at)."""

    page_code: int        # byte 1, 0xC0
    revision: int         # byte 9, 0 for the layout read here
    lun_state: int        # byte 4: 0 unbound (or the LUNZ placeholder), 1 bound, owned by the peer SP,
    #                       2 owned by the SP this path goes through
    default_sp: int       # byte 5: the SP that owns the LUN by default (0 SP A, 1 SP B)
    port: int             # byte 7: the SP port this path comes in on
    current_sp: int       # byte 8: the SP this path goes through
    wwn: bytes            # bytes 10-25: the LUN's unique id
    initiator_type: int   # byte 27: the effective initiator type registered for this host (3 expected)
    failover_mode: int    # byte 28, low 3 bits: 4 (PNR failover) or 6 (ALUA failover) expected
    arraycommpath: bool   # byte 30, bit 2: the array accepts commands on the non-owning SP
    lun_operation: int    # byte 48: 0 normal operation; else e.g. a non-disruptive software upgrade

    @property
    def active(self) -> bool:
        return self.lun_state == LUN_OWNED


def parse_clariion_page(data: bytes) -> ClariionUnitReport:
    b = data[:CLARIION_PAGE_LEN].ljust(CLARIION_PAGE_LEN, b"\0")
    return ClariionUnitReport(page_code=b[1], revision=b[9], lun_state=b[4], default_sp=b[5], port=b[7],
                              current_sp=b[8], wwn=bytes(b[10:26]), initiator_type=b[27],
                              failover_mode=b[28] & 0x07, arraycommpath=bool(b[30] & 0x04),
                              lun_operation=b[48])


def sp_name(sp: int) -> str:
    return f"SP {chr(ord('A') + sp)}" if sp in (0, 1) else f"SP #{sp}"


def clariion_ownership(page: ClariionUnitReport) -> str:
    """Which SP owns the LUN and which one the path goes through, in words."""
    via = sp_name(page.current_sp)
    if page.active:
        return f"{via} owns the LUN, this path goes through it"
    owner = sp_name(1 - page.current_sp) if page.current_sp in (0, 1) else "the peer SP"
    return f"{owner} owns the LUN, this path goes through {via}"


def clariion_page_verdict(page: ClariionUnitReport) -> tuple[PathCheck, str] | None:
    """The state the page alone decides (a wrong format or setup, an unusable LUN), or None: go on."""
    if page.page_code != CLARIION_PAGE or page.revision != 0:
        return DOWN, (f"unit report page in an unknown format (page 0x{page.page_code:02x}, "
                      f"revision {page.revision})")
    wrong = []
    if page.initiator_type != 3:
        wrong.append(f"initiator type {page.initiator_type}, not 3")
    if page.failover_mode not in (4, 6):
        wrong.append(f"failover mode bits {page.failover_mode}, neither PNR nor ALUA")
    if not page.arraycommpath:
        wrong.append("arraycommpath off")
    if wrong:
        return DOWN, "path not set up for failover on the array: " + ", ".join(wrong)
    if page.lun_operation != 0:
        return SHAKY, (f"LUN not available for normal operations (operation code 0x{page.lun_operation:02x}, "
                       "e.g. a software upgrade in progress)")
    if page.lun_state == LUN_UNBOUND:
        return DOWN, "logical unit is unbound, or is the LUNZ placeholder"
    return None


class ClariionMemory:
    """What emc_clariion keeps between checks: each path's LUN WWN, seen at its first good check (a path that
    suddenly leads to another LUN is failed), and the LUNs found to be inactive snapshots (their passive paths
    answer the unit report normally, so only a read on the active path tells). Checks of different paths run
    at once on several threads, so every access holds the lock; both tables are bounded (least recently
    checked entries go first)."""

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._wwn: OrderedDict[str, tuple[tuple[int, int], bytes]] = OrderedDict()  # devnode -> (node, wwn)
        self._inactive: OrderedDict[bytes, None] = OrderedDict()                  # WWNs of inactive snapshots

    def remembered_wwn(self, devnode: str, node: tuple[int, int], wwn: bytes) -> bytes:
        """The WWN this path had at its first check (`wwn` if this is the first one). `node` tells device
        nodes apart: a path removed and added again under the same name is a new path."""
        with self._lock:
            seen = self._wwn.get(devnode)
            if seen is None or seen[0] != node:
                seen = (node, wwn)
            self._wwn[devnode] = seen
            self._wwn.move_to_end(devnode)
            _trim(self._wwn, self._limit)
            return seen[1]

    def set_inactive_snapshot(self, wwn: bytes, inactive: bool) -> None:
        with self._lock:
            if inactive:
                self._inactive[wwn] = None
                self._inactive.move_to_end(wwn)
                _trim(self._inactive, self._limit)
            else:
                self._inactive.pop(wwn, None)

    def inactive_snapshot(self, wwn: bytes) -> bool:
        with self._lock:
            return wwn in self._inactive

    def forget(self, devnode: str) -> None:
        with self._lock:
            self._wwn.pop(devnode, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._wwn)


def _trim(table: OrderedDict[str, tuple[tuple[int, int], bytes]] | OrderedDict[bytes, None],
          limit: int) -> None:
    while len(table) > limit:
        table.popitem(last=False)


CLARIION_MEMORY = ClariionMemory()


def forget_path(devnode: str) -> None:
    """Drop what the checkers remember of a path (call it when the path is removed)."""
    CLARIION_MEMORY.forget(devnode)


def _node_identity(devnode: str) -> tuple[int, int]:
    try:
        st = os.stat(devnode)
    except OSError:
        return (0, 0)
    return (st.st_ino, st.st_rdev)


def read_sector0(fd: int, timeout: float) -> sgio.SgResult | None:
    """Read the LUN's first block, for readsector0 and emc_clariion (unit attentions are retried); None when
    the host had no memory for the transfer, which says nothing about the path."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, READ_TRIES + 1):
        try:
            res = sgio.sg_io(fd, sgio.read10(0, 1), data_len=4096, timeout_ms=int(timeout * 1000))
        except OSError as err:
            if err.errno == errno.ENOMEM:
                return None
            if err.errno != errno.EINTR or attempt == READ_TRIES:
                raise
            continue
        if res.ok or res.sense_key != sgio.UNIT_ATTENTION or attempt == READ_TRIES \
                or time.monotonic() >= deadline:
            return res
    raise AssertionError("unreachable: the last try returns")


def emc_clariion(devnode: str, timeout: float, memory: ClariionMemory | None = None) -> CheckResult:
    name = "emc_clariion"
    memory = CLARIION_MEMORY if memory is None else memory
    fd = sgio.open_path(devnode)
    try:
        try:
            res = _send(fd, sgio.inquiry(CLARIION_PAGE, CLARIION_PAGE_LEN), CLARIION_PAGE_LEN, timeout,
                        INQUIRY_TRIES, TRANSPORT_RETRY)
        except OSError as err:
            if err.errno == errno.ENOTTY:
                return _unsupported(name, "no SG_IO on it")
            return _result(DOWN, f"{name}: sending the unit report query failed: {err.strerror or err}")
        key = _sense_key(res)
        if key == sgio.ILLEGAL_REQUEST:
            return _unsupported(name, "INQUIRY page 0xC0 refused")
        if not res.ok:
            return _result(DOWN, f"{name}: unit report query failed: {sgio.describe(res)}")
        page = parse_clariion_page(res.data)
        verdict = clariion_page_verdict(page)
        if verdict is not None:
            return _result(verdict[0], f"{name}: {verdict[1]}")
        known = memory.remembered_wwn(devnode, _node_identity(devnode), page.wwn)
        if known != page.wwn:
            return _result(DOWN, f"{name}: logical unit WWN has changed (was {known.hex()}, "
                                 f"now {page.wwn.hex()})")
        where = clariion_ownership(page)
        if not page.active:
            if memory.inactive_snapshot(known):
                return _result(DOWN, f"{name}: passive path to inactive snapshot LUN {known.hex()} ({where})")
            return _result(UP, f"{name}: passive path is healthy ({where})")
        # Only the active path tells an inactive snapshot: its read fails, the passive paths' reads do not
        # get that far (they answer NOT READY, as for any LUN the SP does not own).
        read = read_sector0(fd, timeout)
        if read is None or read.ok:
            memory.set_inactive_snapshot(known, False)
            return _result(UP, f"{name}: active path is healthy ({where})")
        if read.sense_key == sgio.ILLEGAL_REQUEST and read.asc_ascq == INACTIVE_SNAPSHOT:
            memory.set_inactive_snapshot(known, True)
            return _result(DOWN, f"{name}: active path to inactive snapshot LUN {known.hex()} ({where})")
        return _result(DOWN, f"{name}: read error on LUN {known.hex()}: {sgio.describe(read)}")
    finally:
        os.close(fd)


# --- hp_sw ---------------------------------------------------------------------------------------------

HP_SW_SERIAL_PAGE = 0x80  # unit serial number: any LUN answers it, on the passive controller too
HP_SW_ALLOC = 255


def hp_sw_inquiry_verdict(res: sgio.SgResult) -> tuple[PathCheck, str] | None:
    """The state a failed serial number INQUIRY decides, or None: the controller answers, go on."""
    if res.ok:
        return None
    key = _sense_key(res)
    if key == sgio.RECOVERED_ERROR:
        return None
    if key == sgio.ILLEGAL_REQUEST:
        return PathCheck.WILD, "checker not supported by this device (INQUIRY page 0x80 refused)"
    return DOWN, f"path down (serial number INQUIRY failed: {sgio.describe(res)})"


def hp_sw(devnode: str, timeout: float) -> CheckResult:
    """HP active/passive arrays (MSA, EVA in active/passive mode): both controllers answer INQUIRY, only the
    active one answers TEST UNIT READY; the passive one says NOT READY until it is switched over."""
    name = "hp_sw"
    fd = sgio.open_path(devnode)
    try:
        try:
            inq = sgio.sg_io(fd, sgio.inquiry(HP_SW_SERIAL_PAGE, HP_SW_ALLOC), data_len=HP_SW_ALLOC,
                             timeout_ms=int(timeout * 1000))
        except OSError as err:
            if err.errno == errno.ENOTTY:
                return _unsupported(name, "no SG_IO on it")
            return _result(DOWN, f"{name}: path down (serial number INQUIRY not sent: {err.strerror or err})")
        verdict = hp_sw_inquiry_verdict(inq)
        if verdict is not None:
            return _result(verdict[0], f"{name}: {verdict[1]}")
        try:
            tur = sgio.sg_io(fd, sgio.TEST_UNIT_READY, timeout_ms=int(timeout * 1000))
        except OSError as err:
            return _result(GHOST, f"{name}: path ghost (TEST UNIT READY not sent: {err.strerror or err})")
        if tur.ok:
            return _result(UP, f"{name}: path up (active controller)")
        return _result(GHOST, f"{name}: path ghost (the controller answers INQUIRY but not TEST UNIT READY: "
                              f"passive, {sgio.describe(tur)})")
    finally:
        os.close(fd)


# --- rdac ----------------------------------------------------------------------------------------------

RDAC_PAGE = 0xC9     # vendor VPD page "volume access control" of LSI/Engenio/NetApp E-series arrays
RDAC_PAGE_LEN = 48   # bytes asked for; a shorter reply reads as zeros beyond its end
# asymmetric access states (low nibble of bytes 10 and 12), as in REPORT TARGET PORT GROUPS
AAS_UNAVAILABLE, AAS_OFFLINE, AAS_TRANSITIONING = 0x3, 0xE, 0xF
# why a controller is unavailable (byte 11, valid with AAS_UNAVAILABLE)
RDAC_UNAVAILABLE_WHY = {
    0x2: "controller not responding to queries",
    0x3: "controller held in reset",
    0x4: "controller firmware download in progress",
    0x5: "controller firmware download in progress",
    0x6: "controller quiesced on an administrator's request",
    0x7: "controller in service mode",
}


@record(frozen=True)
class RdacVolumeAccess:
    """INQUIRY VPD page 0xC9 of an RDAC array (the fields the checker looks at)."""

    peripheral: int     # byte 0: peripheral qualifier (bits 7-5) and device type (bits 4-0)
    avt: bool           # byte 8, bit 7: auto volume transfer (the LUN moves to the SP that gets its I/O)
    ioship: bool        # byte 8, bit 5: I/O shipping (the non-owning controller forwards I/O)
    tpg_data: bool      # byte 8, bit 4: bytes 10-13 hold target port group states
    owner: bool         # byte 8, bit 0: this path's controller owns the LUN (current volume path)
    preferred: bool     # byte 9, bit 0: this path's controller is the LUN's preferred owner
    aas_cur: int        # byte 10, low nibble: this controller's asymmetric access state
    why_cur: int        # byte 11: vendor reason for this controller's state
    aas_alt: int        # byte 12, low nibble: the other controller's asymmetric access state

    @property
    def connected(self) -> bool:
        # qualifier 0 and type 0 (a disk): a qualifier 1 means no LUN is connected at this address
        return (self.peripheral & 0x7F) == 0


def parse_rdac_page(data: bytes) -> RdacVolumeAccess:
    b = data[:RDAC_PAGE_LEN].ljust(RDAC_PAGE_LEN, b"\0")
    return RdacVolumeAccess(peripheral=b[0], avt=bool(b[8] & 0x80), ioship=bool(b[8] & 0x20),
                            tpg_data=bool(b[8] & 0x10), owner=bool(b[8] & 0x01), preferred=bool(b[9] & 0x01),
                            aas_cur=b[10] & 0x0F, why_cur=b[11], aas_alt=b[12] & 0x0F)


def rdac_verdict(page: RdacVolumeAccess) -> tuple[PathCheck, str]:
    if not page.connected:
        return DOWN, f"path down (LUN not connected: peripheral byte 0x{page.peripheral:02x})"
    both_moving = False
    if page.tpg_data:
        if page.aas_cur == AAS_UNAVAILABLE:
            why = RDAC_UNAVAILABLE_WHY.get(page.why_cur,
                                           f"controller unavailable (reason 0x{page.why_cur:02x})")
            return DOWN, f"path down ({why})"
        if page.aas_cur == AAS_TRANSITIONING:
            if page.aas_alt != AAS_TRANSITIONING:  # only this controller: it is starting up
                return DOWN, "path down (controller starting up)"
            both_moving = True  # both: an ownership change (mode select or STPG) is under way
    notes = []
    if page.preferred:
        notes.append("preferred path")
    if page.avt:
        notes.append("auto volume transfer on")
    if both_moving:
        notes.append("ownership change in progress")
    extra = "".join(f"; {n}" for n in notes)
    if page.owner:
        return UP, f"path up (this controller owns the LUN{extra})"
    if page.ioship:
        return UP, f"path up (the other controller owns the LUN, this one ships I/O to it{extra})"
    return GHOST, f"path ghost (the other controller owns the LUN{extra})"


def rdac(devnode: str, timeout: float) -> CheckResult:
    name = "rdac"
    fd = sgio.open_path(devnode)
    try:
        try:
            res = _send(fd, sgio.inquiry(RDAC_PAGE, RDAC_PAGE_LEN), RDAC_PAGE_LEN, timeout, INQUIRY_TRIES,
                        TRANSPORT_RETRY)
        except OSError as err:
            if err.errno == errno.ENOTTY:
                return _unsupported(name, "no SG_IO on it")
            return _result(DOWN, f"{name}: path down (INQUIRY page 0xC9 not sent: {err.strerror or err})")
        if not res.ok:
            key = _sense_key(res)
            if key == sgio.ILLEGAL_REQUEST:
                return _unsupported(name, "INQUIRY page 0xC9 refused")
            if key != sgio.RECOVERED_ERROR:
                return _result(DOWN, f"{name}: path down (INQUIRY page 0xC9 failed: {sgio.describe(res)})")
        state, why = rdac_verdict(parse_rdac_page(res.data))
        return _result(state, f"{name}: {why}")
    finally:
        os.close(fd)


# --- cciss_tur -----------------------------------------------------------------------------------------
# HP Smart Array logical volumes under the old cciss block driver (/dev/cciss/cXdY), which has no SG_IO: a
# TEST UNIT READY goes through the driver's pass-through ioctl. The driver left Linux in 4.14 (hpsa disks
# are SCSI disks and take tur); on a kernel without it every such ioctl fails with ENOTTY.

CCISS_IOC_MAGIC = ord("B")
CCISS_XFER_NONE, CCISS_ATTR_SIMPLE, CCISS_TYPE_CMD = 0x00, 0x04, 0x00
CCISS_LOGICAL_VOLUME = 0x1  # LUN address mode: logical volume addressing
CCISS_COMMAND_STATUS = {
    0x0: "success", 0x1: "target status", 0x2: "data underrun", 0x3: "data overrun", 0x4: "invalid command",
    0x5: "protocol error", 0x6: "hardware error", 0x7: "connection lost", 0x8: "aborted",
    0x9: "abort failed", 0xA: "unsolicited abort", 0xB: "timeout", 0xC: "unabortable",
}


class CcissLogvolInfo(ctypes.Structure):
    """LogvolInfo_struct of <linux/cciss_ioctl.h> (CCISS_GETLUNINFO), 12 bytes."""

    _fields_ = [("lun_id", ctypes.c_uint32), ("num_opens", ctypes.c_int), ("num_parts", ctypes.c_int)]


class CcissRequestBlock(ctypes.Structure):
    """RequestBlock_struct (packed), 20 bytes: the CDB and how to send it."""

    _pack_ = 1
    _fields_ = [("cdb_len", ctypes.c_uint8), ("type_attr_dir", ctypes.c_uint8),  # bitfields, see _type_byte
                ("timeout", ctypes.c_uint16), ("cdb", ctypes.c_uint8 * 16)]


class CcissErrorInfo(ctypes.Structure):
    """ErrorInfo_struct (packed), 48 bytes: how the command ended."""

    _pack_ = 1
    _fields_ = [("scsi_status", ctypes.c_uint8), ("sense_len", ctypes.c_uint8),
                ("command_status", ctypes.c_uint16), ("residual_cnt", ctypes.c_uint32),
                ("more_err_info", ctypes.c_uint8 * 8), ("sense_info", ctypes.c_uint8 * 32)]


class CcissCommand(ctypes.Structure):
    """IOCTL_Command_struct (CCISS_PASSTHRU), 88 bytes on 64-bit: LUN address, request, error info, buffer."""

    _fields_ = [("lun_info", ctypes.c_uint8 * 8), ("request", CcissRequestBlock),
                ("error_info", CcissErrorInfo), ("buf_size", ctypes.c_uint16), ("buf", ctypes.c_void_p)]


def _ioc(direction: int, nr: int, size: int) -> int:
    # <asm-generic/ioctl.h>: direction (1 write, 2 read) in bits 30-31, size 16-29, type 8-15, number 0-7
    return (direction << 30) | (size << 16) | (CCISS_IOC_MAGIC << 8) | nr


CCISS_PASSTHRU = _ioc(3, 11, ctypes.sizeof(CcissCommand))
CCISS_GETLUNINFO = _ioc(2, 17, ctypes.sizeof(CcissLogvolInfo))


def cciss_ioctl(fd: int, request: int, arg: ctypes.Structure) -> None:
    """The one place cciss_tur talks to the driver (tests replace it); the kernel fills `arg` in."""
    fcntl.ioctl(fd, request, arg)


def cciss_tur_command(lun_id: int) -> CcissCommand:
    """A TEST UNIT READY to logical volume `lun_id`, no data, the controller's own timeout (0)."""
    cmd = CcissCommand()
    # LogDevAddr_struct: VolId (30 bits) then Mode (2 bits) in a 32-bit word
    if sys.byteorder == "little":
        word = (lun_id & 0x3FFFFFFF) | (CCISS_LOGICAL_VOLUME << 30)
    else:
        word = ((lun_id & 0x3FFFFFFF) << 2) | CCISS_LOGICAL_VOLUME
    for i, b in enumerate(word.to_bytes(4, sys.byteorder)):
        cmd.lun_info[i] = b
    cmd.request.cdb_len = 6
    cmd.request.type_attr_dir = _type_byte(CCISS_TYPE_CMD, CCISS_ATTR_SIMPLE, CCISS_XFER_NONE)
    cmd.request.timeout = 0
    return cmd


def _type_byte(kind: int, attribute: int, direction: int) -> int:
    # the request's Type (3 bits), Attribute (3 bits), Direction (2 bits), declared in that order
    if sys.byteorder == "little":
        return kind | (attribute << 3) | (direction << 6)
    return (kind << 5) | (attribute << 2) | direction


def cciss_verdict(command_status: int, scsi_status: int) -> tuple[PathCheck, str]:
    if command_status == 0 and scsi_status == 0:
        return UP, "path up"
    what = CCISS_COMMAND_STATUS.get(command_status, f"command status 0x{command_status:x}")
    return DOWN, f"path down (TEST UNIT READY: {what}, SCSI status 0x{scsi_status:02x})"


def cciss_tur(devnode: str, timeout: float) -> CheckResult:
    name = "cciss_tur"
    fd = os.open(devnode, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = CcissLogvolInfo()
        try:
            cciss_ioctl(fd, CCISS_GETLUNINFO, info)
        except OSError as err:
            if err.errno in (errno.ENOTTY, errno.EINVAL):
                return _result(DOWN, f"{name}: path down ({devnode} is not a cciss logical volume: the "
                                     "CCISS ioctls are refused; the cciss driver left Linux in 4.14, "
                                     "use tur for hpsa disks)")
            return _result(DOWN, f"{name}: path down (reading the volume's LUN failed: "
                                 f"{err.strerror or err})")
        cmd = cciss_tur_command(info.lun_id)
        try:
            cciss_ioctl(fd, CCISS_PASSTHRU, cmd)
        except OSError as err:
            return _result(DOWN, f"{name}: path down (TEST UNIT READY not sent: {err.strerror or err})")
        state, why = cciss_verdict(cmd.error_info.command_status, cmd.error_info.scsi_status)
        return _result(state, f"{name}: {why}")
    finally:
        os.close(fd)


CHECKERS: dict[str, Callable[[str, float], CheckResult]] = {
    "emc_clariion": emc_clariion, "hp_sw": hp_sw, "rdac": rdac, "cciss_tur": cciss_tur}
