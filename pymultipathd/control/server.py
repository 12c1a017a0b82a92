"""The control socket server: upstream framing over unix sockets, on the asyncio loop.

The server knows nothing of maps or paths. It parses, checks the peer's permission and hands the command to a
dispatch coroutine supplied by the daemon, which returns the reply text (or raises CommandFailed).

Any local user may connect, so no client, however slow or hostile, may hold what root needs to manage the
daemon. Every wait on a client is bounded as a whole: the wait for the next request, the arrival of one
request once its first byte is in (a byte now and then does not extend it), the writing of each reply, the
closing of the connection; and a command-size limit is checked on the length word. Connection slots are
counted per peer uid (SO_PEERCRED, read once at accept): non-root peers together may hold only part of them
and each uid only a few, so some are always root's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from pymultipathd import peer
from pymultipathd.control import framing, grammar
from pymultipathd.errors import PymultipathError

log = logging.getLogger(__name__)

TOO_MANY = "fail\ntoo many clients\n"
REFUSAL_LOG_INTERVAL = 10.0  # seconds between log lines about refused connections: a flood is one line


class CommandFailed(PymultipathError):
    """A handler's refusal; the text goes to the client after "fail\\n"."""


class _Expired(Exception):
    """A client exceeded one of its deadlines; the connection is dropped."""


Dispatch = Callable[[grammar.Command], Awaitable[str]]


def reply_for_parse_error(err: grammar.CommandError) -> str:
    return f"fail\n{err}\n{grammar.reference()}"


class _Slots:
    """Who holds the connection slots. Root may take any of the `total`; non-root peers together at most
    `nonroot` (fewer than `total`, so the rest are root's alone) and each uid at most `per_uid`, so one user
    cannot shut the others out either. Entries exist only for uids holding slots, so this stays small."""

    def __init__(self, total: int, nonroot: int, per_uid: int) -> None:
        if not 1 <= per_uid <= nonroot < total:
            raise ValueError(f"connection caps must satisfy 1 <= per uid ({per_uid}) <= non-root "
                             f"({nonroot}) < total ({total}), so that root always has slots of its own")
        self._total, self._nonroot, self._per_uid = total, nonroot, per_uid
        self._used = 0
        self._used_nonroot = 0
        self._by_uid: dict[int, int] = {}

    def take(self, uid: int) -> str | None:
        """Take a slot for `uid`; if none may be had, the reason (for the log)."""
        if self._used >= self._total:
            return f"all {self._total} connections in use"
        if uid != 0:
            if self._used_nonroot >= self._nonroot:
                return f"non-root peers hold {self._nonroot} connections, their limit"
            if self._by_uid.get(uid, 0) >= self._per_uid:
                return f"this uid holds {self._per_uid} connections, its limit"
            self._used_nonroot += 1
            self._by_uid[uid] = self._by_uid.get(uid, 0) + 1
        self._used += 1
        return None

    def give_back(self, uid: int) -> None:
        self._used -= 1
        if uid != 0:
            self._used_nonroot -= 1
            left = self._by_uid.pop(uid) - 1
            if left:
                self._by_uid[uid] = left


class ControlServer:
    def __init__(
        self,
        dispatch: Dispatch,
        *,
        # Between requests on one connection, measured from accept or the last reply as a whole: the CLI
        # sends its command as soon as it connects, and a script keeping a connection for several commands
        # sends them back to back; 30 s is ample for those on a stalled machine, and no more is owed.
        idle_timeout: float = 30.0,
        # From a request's first byte to its last: a request is at most 512 bytes, which a live client
        # writes at once, so 10 s is only for a machine under heavy load; a trickling client gets no more.
        request_timeout: float = 10.0,
        # To hand one reply to the kernel, i.e. for the client to read all but a socket buffer of it: a
        # live client reads as the reply comes; one that does not must not keep its slot.
        write_timeout: float = 10.0,
        command_timeout: float = 60.0,
        # 64 connections in all. Non-root peers (monitoring: read-only `show` commands, one or two at a
        # time) get 48 of them and 8 per uid; the other 16 are root's alone, for the administrator's tools.
        max_clients: int = 64,
        max_nonroot_clients: int = 48,
        max_clients_per_uid: int = 8,
    ) -> None:
        if min(idle_timeout, request_timeout, write_timeout, command_timeout) <= 0:
            raise ValueError("control server timeouts must be positive")
        self._dispatch = dispatch
        self._idle = idle_timeout
        self._request_timeout = request_timeout
        self._write_timeout = write_timeout
        self._cmd_timeout = command_timeout
        self._slots = _Slots(max_clients, max_nonroot_clients, max_clients_per_uid)
        self._refusals_unlogged = 0
        self._refusal_log_after = float("-inf")
        self._servers: list[asyncio.base_events.Server] = []

    async def start(self, socks: list[socket.socket]) -> None:
        for sock in socks:
            self._servers.append(await asyncio.start_unix_server(self._client, sock=sock))

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
            await srv.wait_closed()
        self._servers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # drain() then waits until the whole reply is in the kernel, so write_timeout bounds each reply and
        # no reply lingers in our buffer once the next wait for a request begins.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            pid, uid, _gid = peer.credentials(writer.get_extra_info("socket"))
        except (OSError, TypeError, AttributeError):
            pid, uid = 0, -1  # unknown: treated as an unprivileged peer of its own
        refusal = self._slots.take(uid)
        if refusal is not None:
            # Answer at once, without reading, and drop: nothing is queued for a peer over its cap.
            self._log_refusal(pid, uid, refusal)
            writer.write(framing.encode(TOO_MANY))
            await self._close(writer)
            return
        abort = False
        try:
            await self._serve(reader, writer, uid)
        except _Expired as err:
            abort = True
            log.debug("control client pid %d uid %d dropped: %s", pid, uid, err)
        except (ConnectionError, framing.FrameError) as err:
            log.debug("control client pid %d uid %d dropped: %s", pid, uid, err)
        except Exception:  # a bug in a handler must never take the server down
            log.exception("control client pid %d uid %d failed", pid, uid)
        finally:
            try:
                await self._close(writer, abort=abort)
            finally:
                self._slots.give_back(uid)  # only once the socket is gone, so slots bound open sockets

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, uid: int) -> None:
        decoder = framing.Decoder()
        while True:
            texts = await self._next_requests(reader, decoder)
            if texts is None:
                return
            for text in texts:
                reply, quit_ = await self._answer(text, uid)
                writer.write(framing.encode(reply))
                await self._drain(writer)
                if quit_:
                    return

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Wait, within the write timeout, until the kernel has the whole reply. Most replies fit in the
        socket's buffer and are there once written: then drain() only reports a connection's error, with no
        wait to bound, and no timer is set and cancelled for the reply."""
        if not writer.transport.get_write_buffer_size():
            await writer.drain()
            return
        try:
            async with asyncio.timeout(self._write_timeout):
                await writer.drain()
        except TimeoutError:
            raise _Expired(f"reply not read within {self._write_timeout:g} s") from None

    async def _next_requests(
        self, reader: asyncio.StreamReader, decoder: framing.Decoder
    ) -> list[str] | None:
        """The next complete requests, or None at EOF. The wait for a request's first byte is bounded by the
        idle timeout, and from there the rest of it by the request timeout, whatever arrives meanwhile.
        Bytes left over from the previous read start a request now, not when they came: the time spent
        answering the requests before them is the server's, not the client's."""
        loop = asyncio.get_running_loop()
        if decoder.pending:
            what, limit = "request", self._request_timeout
        else:
            what, limit = "next request", self._idle
        expires = loop.time() + limit
        while True:
            try:
                async with asyncio.timeout_at(expires):
                    data = await reader.read(4096)
            except TimeoutError:
                raise _Expired(f"{what} not complete within {limit:g} s") from None
            if not data:
                return None
            started = not decoder.pending
            texts = decoder.feed(data)
            if texts:
                return texts
            if started:
                what, limit = "request", self._request_timeout
                expires = loop.time() + limit

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
            # In this connection's task, not one of its own (wait_for's): that task, its scheduling and
            # its extra turns of the loop cost more than most show commands take to answer.
            async with asyncio.timeout(self._cmd_timeout):
                out = await self._dispatch(cmd)
        except CommandFailed as err:
            return f"fail\n{err}\n" if str(err) else "fail\n", False
        except TimeoutError:
            return "fail\ntimeout\n", False
        except PymultipathError as err:  # a refusal the handler did not word itself (a DM or store error)
            log.warning("command %r failed: %s", text, err)
            return f"fail\n{err}\n", False
        except Exception as err:
            log.exception("command %r failed", text)
            return f"fail\n{err}\n", False
        return (out or "ok\n"), False

    async def _close(self, writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
        """Close after sending what is still buffered (a last reply), within the write timeout; a client that
        stopped reading is cut off (abort discards the buffer), so closing never waits on it."""
        if not abort:
            writer.close()
            try:
                async with asyncio.timeout(self._write_timeout):
                    await writer.wait_closed()
                return
            except Exception:  # timed out, or the peer went away first: make sure the socket is gone
                pass
        writer.transport.abort()

    def _log_refusal(self, pid: int, uid: int, why: str) -> None:
        """One line per REFUSAL_LOG_INTERVAL at most, with a count of those not logged: a peer flooding the
        socket with connections must not flood the journal too."""
        now = time.monotonic()
        if now < self._refusal_log_after:
            self._refusals_unlogged += 1
            return
        unlogged, self._refusals_unlogged = self._refusals_unlogged, 0
        self._refusal_log_after = now + REFUSAL_LOG_INTERVAL
        log.info("control: refused a connection from pid %d uid %d: %s%s", pid, uid, why,
                 f" ({unlogged} more refused since the last such message)" if unlogged else "")
