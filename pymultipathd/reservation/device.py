"""Persistent-reservation commands sent through one path (SG_IO), and what their replies mean.

A reply becomes a PrStatus, whose numbers are mpathpersist's exit codes (upstream's MPATH_PR_*), so scripts
written for it read ours alike. UNIT ATTENTION (a reset: the target says it once per I_T nexus) and NOT
READY "operation in progress" are retried, as upstream does, up to MAX_TRIES commands, with one exception:
a PR OUT is never sent again after a UNIT ATTENTION that reports a change of reservations or registrations
(ASC 2Ah: "reservations preempted", "registrations preempted", ...). The command was not carried out, and
what it was decided on is stale: sent again, a REGISTER could give a host that was just fenced off its key
back. The caller learns the UNIT ATTENTION and decides afresh.
Blocking: callers run these on their own threads, each bounded by its SG_IO timeout.
"""

from __future__ import annotations

import enum
import os
import time

from pymultipathd.paths import sgio
from pymultipathd.record import record
from pymultipathd.reservation import codec

MAX_TRIES = 5


class PrStatus(enum.IntEnum):
    SUCCESS = 0
    SYNTAX_ERROR = 1
    NOT_READY = 2
    MEDIUM_ERROR = 3
    HARDWARE_ERROR = 4
    ILLEGAL_REQUEST = 5
    UNIT_ATTENTION = 6
    INVALID_OP = 7
    ABORTED_COMMAND = 8
    NO_SENSE = 9
    MALFORMED = 10
    RESERVATION_CONFLICT = 11
    FILE_ERROR = 12
    DMMP_ERROR = 13
    THREAD_ERROR = 14
    OTHER = 15

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    PrStatus.SUCCESS: "success",
    PrStatus.SYNTAX_ERROR: "syntax error",
    PrStatus.NOT_READY: "not ready",
    PrStatus.MEDIUM_ERROR: "medium error",
    PrStatus.HARDWARE_ERROR: "hardware error",
    PrStatus.ILLEGAL_REQUEST: "illegal request (the device refused the command or its parameters)",
    PrStatus.UNIT_ATTENTION: "unit attention",
    PrStatus.INVALID_OP: "persistent reservations not supported by the device",
    PrStatus.ABORTED_COMMAND: "aborted command",
    PrStatus.NO_SENSE: "no sense",
    PrStatus.MALFORMED: "malformed reply",
    PrStatus.RESERVATION_CONFLICT: "reservation conflict",
    PrStatus.FILE_ERROR: "cannot open the device",
    PrStatus.DMMP_ERROR: "multipath map or daemon error",
    PrStatus.THREAD_ERROR: "no answer in time",
    PrStatus.OTHER: "failed",
}

_BY_SENSE_KEY = {
    sgio.NO_SENSE: PrStatus.NO_SENSE, sgio.RECOVERED_ERROR: PrStatus.SUCCESS,
    sgio.NOT_READY: PrStatus.NOT_READY,
    sgio.MEDIUM_ERROR: PrStatus.MEDIUM_ERROR, sgio.HARDWARE_ERROR: PrStatus.HARDWARE_ERROR,
    sgio.ILLEGAL_REQUEST: PrStatus.ILLEGAL_REQUEST, sgio.UNIT_ATTENTION: PrStatus.UNIT_ATTENTION,
    sgio.ABORTED_COMMAND: PrStatus.ABORTED_COMMAND,
}
INVALID_OPCODE = (0x20, 0x00)  # ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE
IN_PROGRESS = (0x04, 0x07)     # NOT READY / operation in progress
PARAMETERS_CHANGED = 0x2A      # UNIT ATTENTION ASC: reservations or registrations changed by another nexus


def status_of(res: sgio.SgResult) -> PrStatus:
    """What one reply means (pure)."""
    status = res.status & 0x7E
    if status == sgio.RESERVATION_CONFLICT:
        return PrStatus.RESERVATION_CONFLICT
    if sgio.carries_sense(res) and res.sense_key is not None:
        if res.sense_key == sgio.ILLEGAL_REQUEST and res.asc_ascq == INVALID_OPCODE:
            return PrStatus.INVALID_OP
        return _BY_SENSE_KEY.get(res.sense_key, PrStatus.OTHER)
    if status == sgio.GOOD and res.host_status == sgio.DID_OK and (res.driver_status & 0x0F) == 0:
        return PrStatus.SUCCESS
    return PrStatus.OTHER


def _retry(res: sgio.SgResult, st: PrStatus, out: bool) -> bool:
    if st is PrStatus.UNIT_ATTENTION:
        code = res.asc_ascq
        return not (out and code is not None and code[0] == PARAMETERS_CHANGED)
    return st is PrStatus.NOT_READY and res.asc_ascq == IN_PROGRESS


@record(frozen=True)
class Reply:
    status: PrStatus
    data: bytes = b""
    detail: str = ""      # the SCSI status and sense in words, or why no command was sent

    @property
    def ok(self) -> bool:
        return self.status is PrStatus.SUCCESS

    def __str__(self) -> str:
        return self.status.text + (f" ({self.detail})" if self.detail and not self.ok else "")


def _send(devnode: str, cdb: bytes, timeout: float, *, data_len: int = 0, data_out: bytes | None = None,
          ) -> Reply:
    try:
        fd = sgio.open_path(devnode, write=True)
    except OSError as err:
        return Reply(PrStatus.FILE_ERROR, detail=f"{devnode}: {err.strerror or err}")
    try:
        for attempt in range(MAX_TRIES):
            try:
                res = sgio.sg_io(fd, cdb, data_len=data_len, timeout_ms=int(timeout * 1000),
                                 data_out=data_out)
            except OSError as err:
                return Reply(PrStatus.OTHER, detail=f"SG_IO: {err.strerror or err}")
            st = status_of(res)
            if st is PrStatus.SUCCESS:
                return Reply(st, res.data)
            if not _retry(res, st, data_out is not None) or attempt == MAX_TRIES - 1:
                return Reply(st, detail=sgio.describe(res))
            if st is PrStatus.NOT_READY:
                time.sleep(0.001)
        raise AssertionError("unreachable")
    finally:
        os.close(fd)


def prin(devnode: str, action: codec.PrIn, timeout: float, alloc_len: int = codec.DEFAULT_ALLOC_LEN) -> Reply:
    return _send(devnode, codec.prin_cdb(action, alloc_len), timeout, data_len=alloc_len)


def prout(devnode: str, action: codec.PrOut, prtype: codec.PrType, params: bytes, timeout: float) -> Reply:
    return _send(devnode, codec.prout_cdb(action, prtype, len(params)), timeout, data_out=params)
