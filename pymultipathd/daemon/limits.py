"""max_fds: the daemon's open-file limit (RLIMIT_NOFILE), set at start and on reconfigure.

Each path costs the daemon descriptors (its device state attribute and, for tur and readsector0, its sg node
kept open between checks; its device node while another checker runs; then the udev monitor, sockets of
clients); a host with thousands of paths needs more than the usual 1024. "max" is the kernel's ceiling,
/proc/sys/fs/nr_open, which no process may exceed; a number above it is lowered to it. Running out never
fails a path: a check that cannot open its path is "pending", and the descriptors kept per path are let go
until the next reconfigure (CheckRunner.keep_again).
"""

from __future__ import annotations

import logging
import resource

from pymultipathd import sysread

log = logging.getLogger("pymultipathd")
NR_OPEN = "/proc/sys/fs/nr_open"
NR_OPEN_FALLBACK = 1 << 20  # the kernel's default nr_open, when /proc cannot be read


def nofile_limit(value: object, nr_open: int) -> int:
    """The limit `max_fds` asks for (pure): "max" is nr_open; a number is capped at it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, min(value, nr_open))
    return nr_open


def apply_max_fds(value: object) -> int | None:
    """Set soft and hard RLIMIT_NOFILE; the limit in force, or None when the kernel refused (logged)."""
    raw = sysread.read_text(NR_OPEN)
    nr_open = int(raw) if raw and raw.strip().isdigit() else NR_OPEN_FALLBACK
    want = nofile_limit(value, nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (OSError, ValueError) as err:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning("max_fds %s: cannot set the open-file limit to %d: %s; it stays %d (hard %d)", value,
                    want, err, soft, hard)
        return None
    log.info("open-file limit %d (max_fds %s)", want, value)
    return want
