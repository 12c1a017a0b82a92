"""Who is at the other end of a unix socket, and whether to believe it.

udev runs our helper as root and imports what the daemon answers as device properties; our admin client sends
root's commands to whoever listens on the control socket. An abstract socket name can be bound by any local
user first (before the daemon starts, or while it restarts), so a client only believes a peer that runs as
root, or as the client's own user (a user can only fool themselves). SO_PEERCRED gives the credentials the
peer had when it called listen() or connect(); the kernel fills them in, the peer cannot forge them.

udev imports this on every disk event: only os and the C socket module.
"""

from __future__ import annotations

import _socket
import os
import sys

_UCRED_SIZE = 12  # struct ucred: pid_t pid, uid_t uid, gid_t gid (three 32-bit integers)


def credentials(sock: _socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected unix socket."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED_SIZE)
    pid, uid, gid = (int.from_bytes(raw[i:i + 4], sys.byteorder) for i in (0, 4, 8))
    return pid, uid, gid


def trusted(uid: int) -> bool:
    """A peer whose answers we act on: root, or ourselves."""
    return uid == 0 or uid == os.geteuid()


def comm(pid: int, proc: str = "/proc") -> str:
    """The command name of `pid`, for messages ("?" once it is gone). The process chose it (prctl): control
    characters are escaped so it cannot forge log lines or drive a terminal."""
    try:
        with open(f"{proc}/{pid}/comm", "rb") as f:
            raw = f.read(64).decode("utf-8", "replace").removesuffix("\n")
    except OSError:
        return "?"
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in raw) or "?"


def describe(pid: int, uid: int) -> str:
    return f"pid {pid} ({comm(pid)}), uid {uid}"


def report_untrusted(program: str, name: str, pid: int, uid: int, marker_dir: str) -> bool:
    """Say (on stderr and in the system log) that the listener on `name` is not to be believed, once per
    listening process: a marker file <marker_dir>/untrusted-peer.<pid> records that it was said, so a
    squatter answering every udev event does not flood the journal. Returns True if it was said now."""
    try:
        os.close(os.open(os.path.join(marker_dir, f"untrusted-peer.{pid}"),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    except OSError:
        pass  # no run directory we may write: better said every time than never
    msg = (f"{program}: ignoring {name}: it is served by {describe(pid, uid)}, not root; "
           "deciding without the daemon")
    sys.stderr.write(msg + "\n")
    import syslog  # rare: kept off the import path of every udev event

    syslog.openlog(program, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_ERR, msg)
    return True
