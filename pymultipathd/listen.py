"""Listening unix sockets for the daemon: upstream's abstract names, pathnames, and private pathnames.

An abstract name belongs to whoever binds it first, root or not. The daemon cannot take a squatted name
back, so when a bind finds the name in use it asks the holder who it is (SO_PEERCRED) and says so: a
non-root holder is a local user intercepting clients, which the error names with its pid and uid. Where
compatibility does not demand an abstract name (the udev helper's socket), a pathname in a directory only
root may write cannot be squatted at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from pymultipathd import locations, peer
from pymultipathd.errors import PymultipathError

PROBE_TIMEOUT = 1.0  # seconds to ask a name's holder who it is


class SocketInUse(PymultipathError, OSError):
    """The name is bound by another process (named in the message when it could be asked). `holder_uid`:
    the holder's uid, None when it could not be asked (it bound without listening, or keeps its backlog
    full): only a holder known to be root is another daemon."""

    holder_uid: int | None = None


def holder(name: str) -> tuple[int, int] | None:
    """(pid, uid) of the process listening on `name`, or None if nothing answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(PROBE_TIMEOUT)
        try:
            s.connect(locations.unix_address(name))
            pid, uid, _gid = peer.credentials(s)
        except OSError:
            return None
    return pid, uid


def _in_use(name: str) -> SocketInUse:
    who = holder(name)
    if who is None:
        return SocketInUse(errno.EADDRINUSE, f"{name} is in use by a process that does not answer (bound "
                                             "without listening, or its backlog full): `ss -xlp` names it")
    pid, uid = who
    if uid == 0:
        err = SocketInUse(errno.EADDRINUSE, f"{name} is held by {peer.describe(pid, uid)}: another "
                                            "multipath daemon is running")
    else:
        err = SocketInUse(errno.EADDRINUSE, f"{name} is held by {peer.describe(pid, uid)}, NOT ROOT: a local "
                                            "user took the daemon's name and clients that do not check who "
                                            f"answers may be talking to it; stop that process (kill {pid}) "
                                            "and restart the daemon")
    err.holder_uid = uid
    return err


def private_dir(directory: str) -> None:
    """Create `directory` (0700) or check that it is ours alone: a real directory (not a link) owned by
    this user that nobody else may write, so no one else can place or replace a socket in it."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OSError(errno.EPERM, f"{directory} must be a directory owned by uid {os.geteuid()} that no "
                                   f"one else may write (found mode {stat.filemode(st.st_mode)}, uid "
                                   f"{st.st_uid}); refusing to listen there")
    if st.st_mode & 0o077:
        os.chmod(directory, 0o700)


def bind_unix(name: str, *, private: bool = False) -> socket.socket:
    """A listening, non-blocking socket on `name`: "@name" is abstract, anything else a pathname (a stale
    file is replaced). private: only this user may connect (the pathname's directory is made 0700).
    SocketInUse names the holder of a name that is taken."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if name.startswith("@"):
            try:
                sock.bind(locations.unix_address(name))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise _in_use(name) from None
                raise
        else:
            directory = os.path.dirname(name) or "."
            if private:
                private_dir(directory)
            else:
                os.makedirs(directory, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            sock.bind(name)
            # control sockets: permission is decided per command from SO_PEERCRED, as upstream does
            os.chmod(name, 0o600 if private else 0o666)
        sock.listen(socket.SOMAXCONN)  # a burst of clients (udev's workers) waits rather than fails
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
