"""The control socket server: upstream framing over unix sockets, on the asyncio loop.

The server knows nothing of maps or paths. It parses, checks the peer's permission and hands the command to a
dispatch coroutine supplied by the daemon, which returns the reply text (or raises CommandFailed). Defences
against slow or hostile clients: a per-read idle timeout, a command-size limit checked on the length word, a
cap on concurrent connections, and a per-command deadline so one stuck handler cannot hold a client forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable

from pymultipathd import locations
from pymultipathd.control import framing, grammar

log = logging.getLogger(__name__)

_UCRED = struct.Struct("iII")  # pid, uid, gid


class CommandFailed(Exception):
    """A handler's refusal; the text goes to the client after "fail\\n"."""


Dispatch = Callable[[grammar.Command], Awaitable[str]]


def reply_for_parse_error(err: grammar.CommandError) -> str:
    return f"fail\n{err}\n{grammar.reference()}"


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return _UCRED.unpack(creds)[1]


def bind_unix(name: str) -> socket.socket:
    """Bind a listening socket: "@name" is abstract, anything else a pathname (a stale file is replaced)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    if name.startswith("@"):
        sock.bind(locations.unix_address(name))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        sock.bind(name)
        os.chmod(name, 0o666)  # permission is decided per command from SO_PEERCRED, as upstream does
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ControlServer:
    def __init__(
        self,
        dispatch: Dispatch,
        *,
        idle_timeout: float = 30.0,
        command_timeout: float = 60.0,
        max_clients: int = 64,
    ) -> None:
        self._dispatch = dispatch
        self._idle = idle_timeout
        self._cmd_timeout = command_timeout
        self._slots = asyncio.Semaphore(max_clients)
        self._servers: list[asyncio.base_events.Server] = []
        self.on_quit: Callable[[], None] | None = None

    async def start(self, socks: list[socket.socket]) -> None:
        for sock in socks:
            self._servers.append(await asyncio.start_unix_server(self._client, sock=sock))

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
            await srv.wait_closed()
        self._servers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            # Over the cap: answer at once and drop, rather than queueing an unbounded backlog.
            writer.write(framing.encode("fail\ntoo many clients\n"))
            await _drain_close(writer)
            return
        async with self._slots:
            try:
                await self._serve(reader, writer)
            except (TimeoutError, ConnectionError, framing.FrameError) as err:
                log.debug("control client dropped: %s", err)
            except Exception:  # a bug in a handler must never take the server down
                log.exception("control client failed")
            finally:
                await _drain_close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else -1
        decoder = framing.Decoder()
        while True:
            data = await asyncio.wait_for(reader.read(4096), self._idle)
            if not data:
                return
            for text in decoder.feed(data):
                reply, quit_ = await self._answer(text, uid)
                writer.write(framing.encode(reply))
                await writer.drain()
                if quit_:
                    return

    async def _answer(self, text: str, uid: int) -> tuple[str, bool]:
        try:
            cmd = grammar.parse(text)
        except grammar.CommandError as err:
            return reply_for_parse_error(err), False
        if cmd.keywords == ("quit",):
            return "ok\n", True  # upstream closes the connection; clients read nothing more
        if uid != 0 and not cmd.read_only:
            return "fail\npermission deny: need to be root\n", False
        try:
            out = await asyncio.wait_for(self._dispatch(cmd), self._cmd_timeout)
        except CommandFailed as err:
            return f"fail\n{err}\n" if str(err) else "fail\n", False
        except TimeoutError:
            return "fail\ntimeout\n", False
        except Exception as err:
            log.exception("command %r failed", text)
            return f"fail\n{err}\n", False
        return (out or "ok\n"), False


async def _drain_close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await writer.drain()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
