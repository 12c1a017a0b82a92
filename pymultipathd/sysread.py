"""Reading small kernel-provided files (sysfs, /proc, the udev database): one place for the error policy.

Devices vanish under our feet, so a missing or unreadable file is an answer ("not there"), not an error;
undecodable bytes are replaced rather than fatal. Stdlib only: the udev helper uses it.
"""

from __future__ import annotations

import os

PAGE = 4096  # the most a sysfs attribute's read gives
CHUNK = 65536  # bytes asked for per read() of a whole file


def read_text(path: str) -> str | None:
    """The file's text, stripped; None if it cannot be read."""
    raw = _read_all(path)
    return None if raw is None else raw.decode("utf-8", "replace").strip()


def _read_all(path: str) -> bytes | None:
    """The whole file, or None if it cannot be read. Unbuffered: open() would add a stat, a terminal check
    and a seek to the open, read and close that a small kernel file needs, and every system call is dear
    under emulation, where discovery reads a dozen attributes per disk. Read until the end: a /proc file may
    come in several pieces, each shorter than asked for."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_page(path: str) -> str | None:
    """A sysfs attribute's text, stripped (None if it cannot be read): one read() of a page, which holds any
    sysfs attribute, without a buffered text file. For attributes read at every check of every path."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, PAGE).decode("utf-8", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def pread_page(fd: int) -> str | None:
    """The text of an attribute kept open, stripped (None if the read fails): sysfs makes an attribute's
    text afresh for every read at offset 0."""
    try:
        return os.pread(fd, PAGE, 0).decode("utf-8", "replace").strip()
    except OSError:
        return None


def read_attr(path: str) -> str:
    """Like read_text, but "" when the file cannot be read (for attributes where absent = empty)."""
    return read_text(path) or ""


def read_bytes(path: str) -> bytes:
    return _read_all(path) or b""


def _follow(path: str) -> str:
    try:
        target = os.readlink(path)
    except OSError:  # not a link (a real directory, as in test trees) or gone
        return path
    return os.path.normpath(os.path.join(os.path.dirname(path), target))


def device_dir(block_dir: str) -> str:
    """What os.path.realpath(block_dir + "/device") gives for a disk's sysfs directory, in two readlink calls:
    realpath lstats every component of the ~12-deep /sys/devices path, and each system call is costly under
    emulation, where the daemon did this three times per path event. Lexical resolution is exact here:
    sysfs links are one level deep and point at real directories."""
    return _follow(os.path.join(_follow(block_dir), "device"))


def close_quietly(fd: int) -> None:
    """Close a descriptor whose close can tell nothing useful (a read-only one, or one being given up)."""
    try:
        os.close(fd)
    except OSError:
        pass
