"""A fake SG_IO layer for checker and prioritizer tests: a SCSI device that answers from a table.

`FakeSg.install(monkeypatch)` replaces sgio.open_path and sgio.sg_io. Answers are keyed by a CDB prefix (the
longest matching prefix wins), so `dev.on(sgio.inquiry(0xC9)[:3], data=...)` answers one VPD page whatever
the allocation length. A CDB with no answer gets what a real target says to a command or page it does not
support: CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB. Sense and status bytes are written here from
SPC-4 (fixed-format sense 70h, descriptor format 72h) so tests state them byte by byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from pymultipathd.paths import sgio

DID_NO_CONNECT, DID_TIME_OUT, DID_TRANSPORT_DISRUPTED = 0x01, 0x03, 0x0E  # host_status values
DRIVER_SENSE = 0x08


def fixed_sense(key: int, asc: int = 0, ascq: int = 0) -> bytes:
    """Fixed-format sense data (response code 70h), 18 bytes, additional length 10."""
    s = bytearray(18)
    s[0], s[2], s[7], s[12], s[13] = 0x70, key & 0x0F, 10, asc, ascq
    return bytes(s)


def descriptor_sense(key: int, asc: int = 0, ascq: int = 0) -> bytes:
    """Descriptor-format sense data (response code 72h) with no descriptors."""
    return bytes([0x72, key & 0x0F, asc, ascq, 0, 0, 0, 0])


def good(data: bytes = b"") -> sgio.SgResult:
    return sgio.SgResult(ok=True, status=sgio.GOOD, host_status=0, driver_status=0, sense=b"", data=data)


def check_condition(sense: bytes) -> sgio.SgResult:
    return sgio.SgResult(ok=False, status=sgio.CHECK_CONDITION, host_status=0, driver_status=DRIVER_SENSE,
                         sense=sense, data=b"")


def host_error(host_status: int) -> sgio.SgResult:
    return sgio.SgResult(ok=False, status=0, host_status=host_status, driver_status=0, sense=b"", data=b"")


Answer = sgio.SgResult | BaseException | Callable[[bytes], sgio.SgResult]


@dataclass
class FakeSg:
    answers: dict[bytes, Answer] = field(default_factory=dict)
    calls: list[bytes] = field(default_factory=list)
    timeouts_ms: list[int] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    open_error: OSError | None = None

    def on(self, cdb_prefix: bytes, answer: Answer | None = None, *, data: bytes | None = None) -> FakeSg:
        """Answer CDBs starting with cdb_prefix: a result, an exception to raise from the ioctl, a function
        of the CDB, or (data=) GOOD with that data."""
        if answer is None:
            answer = good(data or b"")
        self.answers[bytes(cdb_prefix)] = answer
        return self

    def sg_io(self, fd: int, cdb: bytes, data_len: int = 0, timeout_ms: int = 30000) -> sgio.SgResult:
        self.calls.append(bytes(cdb))
        self.timeouts_ms.append(timeout_ms)
        match = max((p for p in self.answers if bytes(cdb).startswith(p)), key=len, default=None)
        if match is None:
            return check_condition(fixed_sense(sgio.ILLEGAL_REQUEST, 0x24, 0x00))
        ans = self.answers[match]
        if isinstance(ans, BaseException):
            raise ans
        if callable(ans):
            ans = ans(bytes(cdb))
        if ans.data and data_len:  # the transfer is cut at the allocation length, as a target does
            ans = sgio.SgResult(ans.ok, ans.status, ans.host_status, ans.driver_status, ans.sense,
                                ans.data[:data_len])
        return ans

    def open_path(self, devnode: str) -> int:
        self.opened.append(devnode)
        if self.open_error is not None:
            raise self.open_error
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

    def install(self, monkeypatch) -> FakeSg:  # type: ignore[no-untyped-def]
        monkeypatch.setattr(sgio, "open_path", self.open_path)
        monkeypatch.setattr(sgio, "sg_io", self.sg_io)
        return self
