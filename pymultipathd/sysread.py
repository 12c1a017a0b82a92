"""Reading small kernel-provided files (sysfs, /proc, the udev database): one place for the error policy.

Devices vanish under our feet, so a missing or unreadable file is an answer ("not there"), not an error;
undecodable bytes are replaced rather than fatal. Stdlib only: the udev helper uses it.
"""

from __future__ import annotations


def read_text(path: str) -> str | None:
    """The file's text, stripped; None if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def read_attr(path: str) -> str:
    """Like read_text, but "" when the file cannot be read (for attributes where absent = empty)."""
    return read_text(path) or ""


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""
