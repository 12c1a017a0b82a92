"""Logging: the journal with structured fields under systemd, readable stderr lines otherwise.

Call sites pass the objects they talk about as `extra={"DEVICE": "sdb", "MAP": "mpatha", "WWID": ...}`; the
journal stores them as fields (journalctl DEVICE=sdb), stderr shows them after the message.
"""

from __future__ import annotations

import logging
import os
import sys

FIELDS = ("DEVICE", "MAP", "WWID")
VERBOSITY = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG, 4: logging.DEBUG}


class _StderrFormatter(logging.Formatter):
    def __init__(self, timestamps: bool) -> None:
        super().__init__("%(asctime)s %(message)s" if timestamps else "%(message)s", "%b %d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = [f"{k.lower()}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None)]
        return f"{text} [{' '.join(tags)}]" if tags else text


def under_journal(stream: str) -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM to its dev:inode)."""
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup(verbosity: int = 2, timestamps: bool = True, journal_stream: str = "") -> None:
    """`journal_stream`: the JOURNAL_STREAM the program's entry read."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(VERBOSITY.get(verbosity, logging.DEBUG))
    handler: logging.Handler
    if under_journal(journal_stream):
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="pymultipathd")
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_StderrFormatter(False))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter(timestamps))
    root.addHandler(handler)


def fields(dev: str | None = None, map: str | None = None, wwid: str | None = None) -> dict[str, str]:
    """`extra=` for a log call: log.info("...", extra=fields(dev="sdb"))."""
    return {k: v for k, v in (("DEVICE", dev), ("MAP", map), ("WWID", wwid)) if v}
