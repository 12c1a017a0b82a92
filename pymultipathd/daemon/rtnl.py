"""A small rtnetlink reader for the link watch: link and address notifications, link and address dumps, and
the route to an address, over plain AF_NETLINK/NETLINK_ROUTE sockets.

pyroute2 did this before, at about 13 MB of the daemon's memory for three kinds of message. Here the parsing
is pure (bytes in, typed records out; anything malformed is skipped, never raised) and apart from the
sockets: `Events` reads the multicast groups, `Query` sends requests and collects their replies. Neither
blocks the event loop. `Events` only receives, from a non-blocking socket woken by loop.add_reader: taking an
already queued notification off a socket that never asked for a dump is a dequeue (netlink_recvmsg runs a
dump callback, which takes the RTNL lock on older kernels, only on the socket that asked for the dump).
`Query` runs each request and its reply on a thread of its own with a blocking socket: before Linux ~6.9-6.11
(RHEL 8 and 9 among them) link and address dumps and route lookups take rtnl_mutex, the first part of a dump
within send() and the later ones within recvmsg(), and a driver holding RTNL for seconds would otherwise stall
the whole loop; a request that does not come back in time leaves its thread and socket behind (see Query).
Every read takes at most RECV_BUFFER bytes: a longer datagram is cut by the kernel and dropped here (an event
socket reports that as lost events, as it does ENOBUFS, so that its user can dump again).

Formats: linux/netlink.h (nlmsghdr, nlmsgerr, rtattr alignment), linux/rtnetlink.h (rtmsg),
linux/if_link.h (ifinfomsg), linux/if_addr.h (ifaddrmsg).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pymultipathd.errors import PymultipathError
from pymultipathd.record import record
from pymultipathd.threadname import name_this_thread

log = logging.getLogger("pymultipathd")

RECV_BUFFER = 64 * 1024   # bytes read per datagram: dump parts are at most ~32 KiB (netlink_dump's skb)
EVENT_BUFFER = 1 << 20    # kernel receive buffer asked for the event socket (kernel memory, not ours)
REQUEST_TIMEOUT = 5.0     # seconds for the kernel to answer a request; it answers at once or never
DUMP_ATTEMPTS = 3         # dumps redone when the kernel says the table changed under them
MAX_ABANDONED = 4         # requests left stuck in the kernel (each holding a thread and a socket) at most

# linux/netlink.h
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR = 0x1, 0x2, 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; the socket module does not name it
# linux/rtnetlink.h
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF = 1, 4

HEADER = struct.Struct("=IHHII")    # nlmsghdr: length, type, flags, sequence, port id
ATTR = struct.Struct("=HH")         # rtattr: length, type
IFINFO = struct.Struct("=BxHiII")   # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")    # ifaddrmsg: family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src length, tos, table, protocol, scope, type, flags
ERRNO = struct.Struct("=i")         # nlmsgerr's error (negative errno, 0 for an acknowledgement)
U32 = struct.Struct("=I")
ADDRESS_SIZE: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 16}


@record(frozen=True)
class LinkEvent:
    """RTM_NEWLINK: a link's state now (a notification, or one record of a link dump)."""

    index: int
    flags: int              # ifi_flags: IFF_UP, IFF_LOWER_UP, ...
    ifname: str | None = None  # absent from some notifications


@record(frozen=True)
class AddrEvent:
    """RTM_NEWADDR (added) or RTM_DELADDR: an address of interface `index`, as text (None when absent)."""

    index: int
    address: str | None
    added: bool


Event = LinkEvent | AddrEvent


class Overrun(PymultipathError):
    """Notifications were lost (the socket buffer overran, or a datagram was too long): dump again."""


class NetlinkError(PymultipathError, OSError):
    """The kernel refused a request (NLMSG_ERROR, or an error at the end of a dump)."""


# ------------------------------------------------------------------------------------ parsing (pure)

def _align(n: int) -> int:
    return (n + 3) & ~3


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence, payload) of each message of a datagram. A header whose length does not fit
    ends the walk: the messages after it cannot be found."""
    at = 0
    while at + HEADER.size <= len(data):
        length, kind, flags, seq, _port = HEADER.unpack_from(data, at)
        if length < HEADER.size or at + length > len(data):
            return
        yield kind, flags, seq, data[at + HEADER.size:at + length]
        at += _align(length)


def attributes(data: bytes) -> dict[int, bytes]:
    """type -> value of a run of rtattrs (the first of a type wins); stops at a malformed one."""
    out: dict[int, bytes] = {}
    at = 0
    while at + ATTR.size <= len(data):
        length, kind = ATTR.unpack_from(data, at)
        if length < ATTR.size or at + length > len(data):
            break
        out.setdefault(kind & NLA_TYPE_MASK, data[at + ATTR.size:at + length])
        at += _align(length)
    return out


def address_text(family: int, raw: bytes | None) -> str | None:
    """An IPv4 or IPv6 address as inet_ntop writes it (so as iSCSI's sysfs shows portals); None if not one."""
    if raw is None or ADDRESS_SIZE.get(family) != len(raw):
        return None
    return socket.inet_ntop(family, raw)


def parse_link(payload: bytes) -> LinkEvent | None:
    if len(payload) < IFINFO.size:
        return None
    _family, _type, index, flags, _change = IFINFO.unpack_from(payload)
    name = attributes(payload[IFINFO.size:]).get(IFLA_IFNAME)
    ifname = name.split(b"\0", 1)[0].decode("utf-8", "replace") if name else None
    return LinkEvent(index=index, flags=flags, ifname=ifname or None)


def parse_addr(payload: bytes, added: bool) -> AddrEvent | None:
    """IFA_ADDRESS, else IFA_LOCAL: IPv6 gives only the former; IPv4 both, equal but on point-to-point links
    (where IFA_ADDRESS is the peer's; pyroute2's reading, kept)."""
    if len(payload) < IFADDR.size:
        return None
    family, _plen, _flags, _scope, index = IFADDR.unpack_from(payload)
    attrs = attributes(payload[IFADDR.size:])
    address = address_text(family, attrs.get(IFA_ADDRESS)) or address_text(family, attrs.get(IFA_LOCAL))
    return AddrEvent(index=index, address=address, added=added)


def parse_route_oif(payload: bytes) -> int | None:
    """The output interface of an RTM_NEWROUTE (None without one: a multipath or unreachable route)."""
    if len(payload) < RTMSG.size:
        return None
    oif = attributes(payload[RTMSG.size:]).get(RTA_OIF)
    return U32.unpack(oif)[0] if oif is not None and len(oif) == U32.size else None


def parse_error(payload: bytes) -> int:
    """The errno of an NLMSG_ERROR (0: an acknowledgement); EPROTO when too short to say."""
    if len(payload) < ERRNO.size:
        return errno.EPROTO
    return -ERRNO.unpack_from(payload)[0]


def decode(kind: int, payload: bytes) -> Event | None:
    """The record of a notification the link watch follows; None for any other message or a malformed one."""
    if kind == RTM_NEWLINK:
        return parse_link(payload)
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        return parse_addr(payload, added=kind == RTM_NEWADDR)
    return None


def events(data: bytes) -> list[Event]:
    """The records of a datagram of notifications."""
    out = []
    for kind, _flags, _seq, payload in messages(data):
        event = decode(kind, payload)
        if event is not None:
            out.append(event)
    return out


class Reply:
    """The messages answering request `seq`, fed datagram by datagram: complete at NLMSG_DONE, at an
    NLMSG_ERROR, or at a message without NLM_F_MULTI (the one answer of a request that is not a dump).
    Messages of other sequence numbers (late answers to a request that timed out) are ignored."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.records: list[tuple[int, bytes]] = []  # (type, payload)
        self.error = 0             # errno the kernel answered with
        self.interrupted = False   # NLM_F_DUMP_INTR: the table changed during the dump; it may be incoherent
        self.done = False

    def feed(self, data: bytes) -> None:
        for kind, flags, seq, payload in messages(data):
            if seq != self.seq or self.done or kind in (NLMSG_NOOP, NLMSG_OVERRUN):
                continue
            if flags & NLM_F_DUMP_INTR:
                self.interrupted = True
            if kind == NLMSG_ERROR:
                self.error, self.done = parse_error(payload), True
            elif kind == NLMSG_DONE:
                # since Linux 4.x the end of a dump carries the error that cut it short, if any
                self.error = parse_error(payload) if len(payload) >= ERRNO.size else 0
                self.done = True
            else:
                self.records.append((kind, payload))
                self.done = not flags & NLM_F_MULTI


def request(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body


def route_request(dst: str, seq: int) -> bytes | None:
    """RTM_GETROUTE for the host route to `dst`; None when `dst` is not an IPv4 or IPv6 address."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            raw = socket.inet_pton(family, dst)
        except (OSError, ValueError):
            continue
        attr = ATTR.pack(ATTR.size + len(raw), RTA_DST) + raw
        return request(RTM_GETROUTE, 0, seq, RTMSG.pack(family, len(raw) * 8, 0, 0, 0, 0, 0, 0, 0) + attr)
    return None


# ---------------------------------------------------------------------------------------- sockets

async def _readable(fd: int) -> None:
    """Until `fd` is readable. One waiter per descriptor: the loop keeps one reader callback per fd (Events
    has one consumer)."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not woken.done():  # a wake-up already queued when the waiter was cancelled
            woken.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await woken
    finally:
        loop.remove_reader(fd)


class _Socket:
    """A non-blocking NETLINK_ROUTE socket bound to multicast `groups`, read on the loop. It only receives:
    it never sends a request, so never has a dump running, and its recvmsg only dequeues notifications already
    queued (no RTNL lock taken, however old the kernel); requests go through Query, off the loop."""

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            self.sock.setblocking(False)
            self.sock.bind((0, groups))
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> _Socket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def receive(self) -> tuple[bytes, bool]:
        """One datagram and whether the kernel cut it (longer than RECV_BUFFER). OSError(ENOBUFS) when
        messages were dropped because the socket's buffer was full."""
        while True:
            try:
                data, _anc, flags, _addr = self.sock.recvmsg(RECV_BUFFER)
            except BlockingIOError:
                await _readable(self.sock.fileno())
                continue
            return data, bool(flags & socket.MSG_TRUNC)


class Events(_Socket):
    """Notifications of the rtnetlink multicast `groups` (RTMGRP_*)."""

    def __init__(self, groups: int) -> None:
        super().__init__(groups)
        # room for a burst (every VLAN of a trunk flapping at once); root may pass net.core.rmem_max
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, EVENT_BUFFER)
                break
            except OSError:
                continue

    def __enter__(self) -> Events:
        return self

    async def next(self) -> list[Event]:
        """The records of the next datagram (often none: messages of other kinds); Overrun when some were
        lost."""
        try:
            data, cut = await self.receive()
        except OSError as err:
            if err.errno == errno.ENOBUFS:
                raise Overrun("the socket's receive buffer overran (ENOBUFS)") from None
            raise
        if cut:
            raise Overrun(f"a datagram longer than {RECV_BUFFER} bytes was cut")
        return events(data)


class _Worker:
    """One daemon thread running the calls given to it, in order. A call stuck in the kernel holds only this
    thread, and a daemon thread does not hold up the process's exit (a ThreadPoolExecutor's would)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...],
                                            concurrent.futures.Future[Any]] | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        job: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((fn, args, job))
        return job

    def stop(self) -> None:
        """End the thread once the calls given before are done."""
        self._jobs.put(None)

    def _serve(self) -> None:
        name_this_thread()
        while (item := self._jobs.get()) is not None:
            fn, args, job = item
            if not job.set_running_or_notify_cancel():  # cancelled while queued
                continue
            try:
                job.set_result(fn(*args))
            except BaseException as err:  # handed to the waiter, as a ThreadPoolExecutor does
                job.set_exception(err)


_abandoned_lock = threading.Lock()
_abandoned = 0  # requests abandoned while still inside the kernel (their threads not back yet)


def abandoned() -> int:
    """How many abandoned requests have not come back from the kernel yet."""
    with _abandoned_lock:
        return _abandoned


def _exchange(sock: socket.socket, message: bytes, seq: int) -> Reply:
    """On a Query's thread: send a request and collect its reply. The socket is blocking with SO_SNDTIMEO and
    SO_RCVTIMEO, which bound the waits for buffer room and for a datagram; a wait for rtnl_mutex inside the
    call is bounded by nothing, which is why this runs off the loop."""
    deadline = time.monotonic() + REQUEST_TIMEOUT
    try:
        sock.send(message)
    except BlockingIOError:  # SO_SNDTIMEO ran out
        raise TimeoutError("the request could not be sent in time") from None
    reply = Reply(seq)
    while not reply.done:
        if time.monotonic() > deadline:  # answers of other requests kept coming, never this one's end
            raise TimeoutError(f"no complete answer in {REQUEST_TIMEOUT} s")
        try:
            data, _anc, flags, _addr = sock.recvmsg(RECV_BUFFER)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError(f"no answer in {REQUEST_TIMEOUT} s") from None
        if flags & socket.MSG_TRUNC:  # a lost part would leave the reply incomplete, or waiting for its end
            raise NetlinkError(errno.EMSGSIZE, f"a reply longer than {RECV_BUFFER} bytes")
        reply.feed(data)
    return reply


class _Channel:
    """A blocking request socket and the thread that alone uses it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.worker = _Worker("rtnl-query")

    def close(self) -> None:
        """Closed on its own thread, after the call it may be in: never under a call still using the socket
        (its descriptor could be reused meanwhile)."""
        self.worker.submit(self.sock.close)
        self.worker.stop()

    def abandon(self) -> None:
        """Left to a request still in the kernel: closed, and no longer counted, when that comes back."""
        global _abandoned
        with _abandoned_lock:
            _abandoned += 1

        def back() -> None:
            global _abandoned
            self.sock.close()
            with _abandoned_lock:
                _abandoned -= 1
            log.info("rtnetlink: an abandoned request came back from the kernel")

        self.worker.submit(back)
        self.worker.stop()


class Query:
    """Requests and their replies, one at a time, each on the thread of the current channel (a blocking
    socket and its thread) while the loop awaits it for at most REQUEST_TIMEOUT. A request that does not
    finish cleanly in time (no answer, cancelled, a reply cut short) may leave the kernel inside a call, or a
    dump running on the socket (the next dump would be refused with EBUSY): its channel is abandoned, to be
    closed when the call returns, and the next request opens a new one. At most MAX_ABANDONED such requests
    are left in the kernel at once; past that, requests fail at once (NetlinkError EBUSY) instead of leaving
    another thread behind."""

    def __init__(self) -> None:
        self._seq = 0
        self._lock = asyncio.Lock()
        self._channel: _Channel | None = self._open()

    def __enter__(self) -> Query:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _socket(self) -> socket.socket:
        """A new NETLINK_ROUTE socket for requests (a test's fake kernel hands out its own)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        return sock

    def _open(self) -> _Channel:
        stuck = abandoned()
        if stuck >= MAX_ABANDONED:
            raise NetlinkError(errno.EBUSY, f"{stuck} rtnetlink requests are still stuck in the kernel; "
                                            "not asking more until one comes back")
        sock = self._socket()
        try:
            sock.setblocking(True)
            seconds = max(REQUEST_TIMEOUT, 0.001)
            timeval = struct.pack("@ll", int(seconds), int(seconds % 1 * 1_000_000))
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                sock.setsockopt(socket.SOL_SOCKET, option, timeval)
        except OSError:
            sock.close()
            raise
        return _Channel(sock)

    def next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    async def ask(self, message: bytes, seq: int) -> Reply:
        """Send a request and collect its reply, off the loop; TimeoutError after REQUEST_TIMEOUT."""
        async with self._lock:
            if self._channel is None:
                self._channel = self._open()
            channel = self._channel
            job = channel.worker.submit(_exchange, channel.sock, message, seq)
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    return await asyncio.wrap_future(job)
            except TimeoutError as err:
                if not err.args:  # the loop's timeout, not the thread's
                    raise TimeoutError(f"no answer from the kernel in {REQUEST_TIMEOUT} s") from None
                raise
            finally:
                # anything but a reply read to its end leaves the socket in doubt; a job that is not done is
                # still inside the kernel (a cancelled one that had not started is done)
                job.cancel()  # if not started yet (the loop's cancelling of it comes only later)
                clean = job.done() and not job.cancelled() and job.exception() is None
                if not clean:
                    self._channel = None
                    if job.done():
                        channel.close()
                    else:
                        channel.abandon()
                        log.warning("rtnetlink: a request still in the kernel after %s s; leaving its thread "
                                    "and socket (%d left so far, at most %d), asking on a new socket",
                                    REQUEST_TIMEOUT, abandoned(), MAX_ABANDONED)
    async def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        """Every record of a table; redone (a few times) when the table changed during the dump."""
        for _ in range(DUMP_ATTEMPTS):
            seq = self.next_seq()
            reply = await self.ask(request(kind, NLM_F_DUMP, seq, body), seq)
            if reply.error:
                raise NetlinkError(reply.error, f"rtnetlink dump {kind}: {os.strerror(reply.error)}")
            if not reply.interrupted:
                break
        return reply.records  # the last attempt's, even if interrupted: as good as any later one

    async def links(self) -> list[LinkEvent]:
        records = await self.dump(RTM_GETLINK, IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        return [link for kind, p in records if kind == RTM_NEWLINK and (link := parse_link(p)) is not None]

    async def addresses(self) -> list[AddrEvent]:
        records = await self.dump(RTM_GETADDR, IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        return [a for kind, p in records if kind == RTM_NEWADDR and (a := parse_addr(p, True)) is not None]

    async def route_oif(self, dst: str) -> int | None:
        """The interface the kernel would send to `dst` through; None when it has no route there (its answer
        is an error) or `dst` is not an address."""
        seq = self.next_seq()
        message = route_request(dst, seq)
        if message is None:
            return None
        reply = await self.ask(message, seq)
        for kind, payload in reply.records:
            if kind == RTM_NEWROUTE:
                return parse_route_oif(payload)
        return None
