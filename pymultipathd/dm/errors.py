"""Typed device-mapper errors: each names the operation, the map and the kernel's reason."""

from __future__ import annotations

import errno as _errno
import os

from pymultipathd.errors import PymultipathError


class DMError(PymultipathError):
    """A device-mapper operation failed.

    `op` is the operation ("create", "load", "remove", ...), `name` the map (or None for global operations),
    `errno` the kernel's error number (0 when the error was found before asking the kernel).
    """

    def __init__(self, op: str, name: str | None, err: int = 0, detail: str = "") -> None:
        self.op = op
        self.name = name
        self.errno = err
        self.reason = detail or (os.strerror(err) if err else "failed")
        where = f" {name}" if name else ""
        super().__init__(f"dm {op}{where}: {self.reason}")


class DMUnavailable(DMError):
    """No device-mapper driver (no /dev/mapper/control, or the module cannot be loaded)."""


class DMNoSuchDevice(DMError):
    """The map does not exist (ENXIO)."""


class DMExists(DMError):
    """A map with that name or uuid already exists (EEXIST)."""


class DMBusy(DMError):
    """The map is open (EBUSY). `open_count` is the kernel's count when known, else None."""

    def __init__(self, op: str, name: str | None, open_count: int | None = None, detail: str = "") -> None:
        self.open_count = open_count
        if not detail:
            detail = "device is busy" + (f" (open count {open_count})" if open_count is not None else "")
        super().__init__(op, name, _errno.EBUSY, detail)


class DMTableRejected(DMError):
    """The kernel refused a table; `table` is the text that was sent. The kernel log has the details."""

    def __init__(self, op: str, name: str | None, err: int, table: str) -> None:
        self.table = table
        super().__init__(op, name, err, f"table rejected ({os.strerror(err)}): {table!r} (see kernel log)")


class DMNameTooLong(DMError):
    """A name or uuid longer than the kernel accepts (DM_NAME_LEN-1 / DM_UUID_LEN-1 bytes)."""

    def __init__(self, op: str, name: str, limit: int, what: str = "name") -> None:
        self.limit = limit
        super().__init__(op, name, _errno.EINVAL, f"{what} is longer than {limit} bytes")


def from_errno(op: str, name: str | None, err: int) -> DMError:
    """The typed error for a failed ioctl (load's EINVAL is mapped by the caller, which has the table)."""
    if err == _errno.ENXIO:
        return DMNoSuchDevice(op, name, err, "no such device")
    if err == _errno.EEXIST:
        return DMExists(op, name, err, "device or uuid already exists")
    if err == _errno.EBUSY:
        return DMBusy(op, name)
    if err == _errno.ENODEV:
        return DMUnavailable(op, name, err)
    return DMError(op, name, err)
