"""A blocking client of the control socket (for the CLI and tests; works against upstream multipathd too)."""

from __future__ import annotations

import socket
import struct

from pymultipathd import locations, peer
from pymultipathd.control import framing
from pymultipathd.errors import PymultipathError


class ClientError(PymultipathError, OSError):
    """No answer from the daemon: it cannot be reached, is not trusted, or did not reply in time."""


def connect(name: str | None = None, timeout: float = 10.0) -> socket.socket:
    """Connect to `name`, or to the configured abstract socket and then the pathname one. A listener that
    is not root (nor this user) is never sent a command: anyone can bind an abstract name first."""
    names = [name] if name else [locations.socket_name(), locations.socket_path()]
    problems = []
    for n in names:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # A blocking connect bounded by SO_SNDTIMEO waits for room in a full backlog; with settimeout() a
        # unix connect fails at once with EAGAIN, and one local process flooding connects locks root out.
        sec = max(timeout, 0.001)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", int(sec), int((sec - int(sec)) * 1e6)))
        try:
            sock.connect(locations.unix_address(n))
            sock.settimeout(timeout)
            pid, uid, _gid = peer.credentials(sock)
        except OSError as err:
            sock.close()
            problems.append(f"{n}: {err.strerror or err}")
            continue
        if peer.trusted(uid):
            return sock
        sock.close()
        problems.append(f"{n}: refused to talk to it: served by {peer.describe(pid, uid)}, not root")
    raise ClientError(f"cannot connect to the multipath daemon: {'; '.join(problems)}")


def request(sock: socket.socket, command: str) -> str:
    if len(command.encode()) + 1 > framing.MAX_COMMAND:
        raise ClientError(f"command longer than {framing.MAX_COMMAND - 1} bytes")
    try:
        sock.sendall(framing.encode(command))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon may answer and close before reading (e.g. "too many clients"): read that answer
    except OSError as err:  # a timeout too: every failure to reach the daemon is a ClientError
        raise ClientError(f"cannot send the command: {err.strerror or err}") from err
    decoder = framing.Decoder(max_len=framing.MAX_REPLY)
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError as err:
            raise ClientError("timed out waiting for the daemon's reply") from err
        except ConnectionResetError:
            data = b""
        except OSError as err:
            raise ClientError(f"reading the daemon's reply: {err.strerror or err}") from err
        if not data:
            raise ClientError("the daemon closed the connection without a reply")
        try:
            replies = decoder.feed(data)
        except framing.FrameError as err:  # not upstream's framing: not a multipath daemon, or a broken one
            raise ClientError(f"unreadable reply: {err}") from None
        if replies:
            return replies[0]


def as_printed(reply: str) -> str:
    """A reply as the client prints it: ending in a newline unless empty."""
    return reply if reply.endswith("\n") or not reply else reply + "\n"


def send(command: str, name: str | None = None, timeout: float = 10.0) -> str:
    with connect(name, timeout) as sock:
        return request(sock, command)
