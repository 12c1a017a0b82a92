"""The control socket server: upstream framing over unix sockets, on the asyncio loop.

The server knows nothing of maps or paths. It parses, checks the peer's permission and hands the command to a
dispatch function supplied by the daemon, which returns the reply text, or (a command that waits) a coroutine
that does, or raises CommandFailed.

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
import math
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pymultipathd import peer
from pymultipathd.control import framing, grammar
from pymultipathd.errors import PymultipathError

log = logging.getLogger(__name__)

TOO_MANY = "fail\ntoo many clients\n"
REFUSAL_LOG_INTERVAL = 10.0  # seconds between log lines about refused connections: a flood is one line
ANSWER_BATCH = 16  # requests of one connection answered in one turn of the loop, at most
READ_SIZE = 4096  # bytes read from a client at a time (a request is at most framing.MAX_COMMAND)


class CommandFailed(PymultipathError):
    """A handler's refusal; the text goes to the client after "fail\\n"."""


Dispatch = Callable[[grammar.Command], "str | Awaitable[str]"]


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
        self._live: set[_Connection] = set()  # connections holding a slot

    async def start(self, socks: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in socks:
            self._servers.append(await loop.create_unix_server(lambda: _Connection(self), sock=sock))

    async def close(self) -> None:
        """Stop listening, and close the connections: a command still running answers first, within the
        command and write timeouts; what is left then is cut. (Server.wait_closed waits for every
        connection from Python 3.12.1 on, so they are closed before it is awaited.)"""
        for srv in self._servers:
            srv.close()
        for conn in list(self._live):
            conn.close_when_idle()
        try:
            async with asyncio.timeout(self._cmd_timeout + self._write_timeout):
                for srv in self._servers:
                    await srv.wait_closed()
        except TimeoutError:
            for conn in list(self._live):
                conn.cut()
        self._servers.clear()

    def start_answer(self, text: str, uid: int) -> tuple[str, bool] | Coroutine[Any, Any, tuple[str, bool]]:
        """(reply, close after it) for one request; for a command that waits, the coroutine that makes
        them (to run as a task)."""
        try:
            cmd = grammar.parse(text)
        except grammar.CommandError as err:
            return reply_for_parse_error(err), False
        if cmd.keywords == ("quit",):
            return "ok\n", True  # upstream closes the connection; clients read nothing more
        if uid != 0 and not cmd.read_only:
            return "fail\npermission deny: need to be root\n", False
        try:
            out = self._dispatch(cmd)
        except Exception as err:
            return _failure(text, err), False
        if isinstance(out, str):
            return (out or "ok\n"), False
        return self._finish(text, out)

    async def _finish(self, text: str, reply: Awaitable[str]) -> tuple[str, bool]:
        try:
            async with asyncio.timeout(self._cmd_timeout):
                out = await reply
            if not isinstance(out, str):
                raise TypeError(f"the handler replied {type(out).__name__}, not text")
        except Exception as err:
            return _failure(text, err), False
        return (out or "ok\n"), False

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


def _failure(text: str, err: Exception) -> str:
    """The reply to a command whose handler raised."""
    if isinstance(err, CommandFailed):
        return f"fail\n{err}\n" if str(err) else "fail\n"
    if isinstance(err, TimeoutError):
        return "fail\ntimeout\n"
    if isinstance(err, PymultipathError):  # a refusal the handler did not word itself (a DM or store error)
        log.warning("command %r failed: %s", text, err)
        return f"fail\n{err}\n"
    log.exception("command %r failed", text, exc_info=err)
    return f"fail\n{err}\n"


class _Connection(asyncio.BufferedProtocol):
    """One client, as a protocol: a request that a plain handler answers is read, answered and written
    within one turn of the loop, with no task or timer of its own (a stream reader and writer cost two
    turns, a task wake-up and two timers per request, more than a `show` of a small host takes to make).

    Requests are answered one at a time, in order. While a reply waits for the client to read it, or a
    command runs as a task, the connection reads nothing more. One timer per connection bounds every wait
    on the client: it is armed once and, when it fires, re-armed for the deadline in force then if that
    moved (so a deadline that moves with each request costs an assignment, not a timer):
    - the next request's first byte: idle_timeout from accept or from the last reply handed to the kernel;
    - the rest of a request once its first byte is in: request_timeout (bytes left over after a reply
      start a request when the reply is out, not when they came);
    - the client reading a reply: write_timeout from when the kernel's buffer was full;
    - closing: write_timeout for what is still buffered, then the connection is cut.
    While the server works (a command running as a task, or the rest of a batch) the client has no
    deadline: the command timeout bounds a command, and it runs to its end even if the client goes (half a
    reconfigure is worse than an unread answer). A client is read READ_SIZE bytes at a time, and nothing
    more is answered once a write found it gone."""

    def __init__(self, server: ControlServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._decoder = framing.Decoder()  # requests received and not yet answered, as bytes
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._pid, self._uid = 0, -1
        self._slot = False  # holds one of the server's slots (given back once, when nothing needs it)
        self._task: asyncio.Task[tuple[str, bool]] | None = None  # a command that waits, running
        self._blocked = False  # the kernel's buffer is full: the client has not read the last reply
        self._reading = True
        self._yielding = False  # answered a batch: the rest after other work of the loop has had a turn
        self._eof = False  # the client sends no more: closed once what it asked is answered
        self._ending = False  # closing (after quit, EOF or a bad frame): nothing more is read or answered
        self._lost = False
        self._deadline: float | None = None  # when the client's current wait ends (None: no wait on it)
        self._why = ("", "", 0.0)  # (what, verb, limit) of the deadline in force, worded only if it passes
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # pause_writing comes as soon as a reply is not all in the kernel, so write_timeout bounds each
        # reply and none lingers in our buffer while the next request is awaited
        transport.set_write_buffer_limits(high=0)
        try:
            self._pid, self._uid, _gid = peer.credentials(transport.get_extra_info("socket"))
        except (OSError, TypeError, AttributeError):
            self._pid, self._uid = 0, -1  # unknown: treated as an unprivileged peer of its own
        refusal = self._server._slots.take(self._uid)
        if refusal is not None:
            # Answered at once, without reading, and dropped: nothing is queued for a peer over its cap.
            self._server._log_refusal(self._pid, self._uid, refusal)
            transport.write(framing.encode(TOO_MANY))
            self._end()
            return
        self._slot = True
        self._server._live.add(self)
        self._wait(self._server._idle, "next request")

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer  # reads of READ_SIZE at most: what a client makes us hold stays small

    def buffer_updated(self, nbytes: int) -> None:
        if self._ending:
            return
        started = not self._decoder.pending  # these bytes begin a request
        self._decoder.push(self._buffer[:nbytes])
        self._answer_queued(started)

    def eof_received(self) -> bool:
        self._eof = True
        if not self._ending:
            self._answer_queued()
        return True  # closed by us, once the replies are out

    def pause_writing(self) -> None:
        self._blocked = True
        if not self._ending:
            self._wait(self._server._write_timeout, "reply", "not read")

    def resume_writing(self) -> None:
        self._blocked = False
        if not self._ending:
            self._answer_queued(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if exc is not None and not self._ending:
            self._log_drop(str(exc))
        if self._task is None:
            self._give_back()

    # --- answering ----------------------------------------------------------------------------------

    def _answer_queued(self, fresh: bool = False) -> None:
        """Answer the requests received, in order, until a reply must wait for the client, a command runs,
        or a batch is answered (the rest after a turn of the loop: a read full of requests must not hold
        the daemon's other work). `fresh`: a deadline for the rest of a request starts now (its first bytes
        just came, or the reply before it is out)."""
        try:
            answered = 0
            assert self._transport is not None
            while not (self._blocked or self._task or self._ending or self._transport.is_closing()) \
                    and answered < ANSWER_BATCH:
                text = self._decoder.pop()
                if text is None:
                    break
                answered += 1
                out = self._server.start_answer(text, self._uid)
                if isinstance(out, tuple):
                    self._reply(*out)
                else:
                    self._task = self._loop.create_task(out)
                    self._task.add_done_callback(self._answered)
            if self._ending or self._transport.is_closing():  # a write found the client gone
                return
            if answered == ANSWER_BATCH and not self._yielding:
                self._yielding = True
                self._loop.call_soon(self._after_batch)
            stalled = self._blocked or self._task is not None or self._yielding
            if stalled == self._reading:
                self._reading = not stalled
                (self._transport.resume_reading if self._reading else self._transport.pause_reading)()
            if stalled:
                if not self._blocked:
                    # the server's time, not the client's: a command (bounded by the command timeout)
                    # or the rest of a batch; the deadline starts again when they are done
                    self._deadline = None
                return
            if self._eof:
                self._end()  # the client's EOF, now that what it asked before is answered
            elif not self._decoder.pending:
                self._wait(self._server._idle, "next request")
            elif answered or fresh:  # the rest of a request: from its first byte, or from the last reply
                self._wait(self._server._request_timeout, "request")
        except framing.FrameError as err:
            self._drop(str(err))
        except Exception:  # a bug here must never take the server down
            self._failed()

    def _after_batch(self) -> None:
        self._yielding = False
        if not (self._ending or self._lost):
            self._answer_queued(True)

    def _answered(self, task: asyncio.Task[tuple[str, bool]]) -> None:
        self._task = None
        if self._lost:
            self._give_back()
            return
        if task.cancelled():  # the loop is ending
            self.cut()
            return
        try:
            self._reply(*task.result())
        except Exception:  # a bug here must never leave the connection without a deadline, or its slot
            self._failed()
            return
        self._answer_queued(True)

    def _reply(self, reply: str, close: bool) -> None:
        assert self._transport is not None
        self._transport.write(framing.encode(reply))
        if close:
            self._end()

    # --- ending -------------------------------------------------------------------------------------

    def _end(self) -> None:
        """Close after what is still buffered is read, within the write timeout; else cut."""
        self._ending = True
        assert self._transport is not None
        self._transport.close()
        if not self._lost:
            self._wait(self._server._write_timeout, "closing", "not done")

    def _drop(self, why: str) -> None:
        self._log_drop(why)
        self._end()

    def _failed(self) -> None:
        """A bug in answering this client, logged with its traceback: the connection goes, its slot too."""
        log.exception("control client pid %d uid %d failed", self._pid, self._uid)
        self.cut()

    def _log_drop(self, why: str) -> None:
        log.debug("control client pid %d uid %d dropped: %s", self._pid, self._uid, why)

    def cut(self) -> None:
        """Drop the connection now, replies still buffered included."""
        self._ending = True
        assert self._transport is not None
        self._transport.abort()

    def _give_back(self) -> None:
        if self._slot:
            self._slot = False
            self._server._live.discard(self)
            self._server._slots.give_back(self._uid)  # only once the socket is gone: slots bound sockets

    def close_when_idle(self) -> None:
        """The server stops: close now, or after the reply of the command running."""
        self._eof = True
        if not (self._ending or self._lost or self._task is not None):
            self._end()

    # --- the one timer ------------------------------------------------------------------------------

    def _wait(self, limit: float, what: str, verb: str = "not complete") -> None:
        """The client has `limit` seconds from now for `what`."""
        self._deadline = when = self._loop.time() + limit
        self._why = (what, verb, limit)
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._deadline is None or self._lost:
            return
        if self._loop.time() < self._deadline:  # it moved since the timer was set
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        what, verb, limit = self._why
        self._log_drop(f"{what} {verb} within {limit:g} s")
        self._deadline = None
        self.cut()
