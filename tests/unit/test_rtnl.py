"""The link watch's rtnetlink reader (pymultipathd/daemon/rtnl.py) and the link watch over it.

The parsers against messages built here with struct, as the kernel lays them out; the request/reply side
against a fake kernel (a datagram socket pair standing in for the netlink socket); the link watch's rules
against a fake query; and, as root, all of it against the kernel with a dummy link.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymultipathd.daemon import linkwatch, rtnl
from pymultipathd.daemon.linkwatch import IFF_LOWER_UP, IFF_UP, LinkWatch

UP = IFF_UP | IFF_LOWER_UP


# ------------------------------------------------------------------------------------- builders

def pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def attr(kind: int, value: bytes) -> bytes:
    return pad(struct.pack("=HH", 4 + len(value), kind) + value)


def nlmsg(kind: int, body: bytes, seq: int = 0, nlflags: int = 0) -> bytes:
    return pad(struct.pack("=IHHII", 16 + len(body), kind, nlflags, seq, 4242) + body)


def link(index: int, flags: int, name: str | None = None, kind: int = rtnl.RTM_NEWLINK, **kw) -> bytes:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, flags, 0xFFFFFFFF)
    body += attr(4, struct.pack("=I", 1500))  # IFLA_MTU, before the name as the kernel puts it
    if name is not None:
        body += attr(rtnl.IFLA_IFNAME, name.encode() + b"\0")
    return nlmsg(kind, body, **kw)


def addr(index: int, address: str | None = None, local: str | None = None, kind: int = rtnl.RTM_NEWADDR,
         family: int | None = None, **kw) -> bytes:
    text = address or local or "0.0.0.0"
    family = family or (socket.AF_INET6 if ":" in text else socket.AF_INET)
    body = struct.pack("=BBBBI", family, 32, 0, 0, index)
    if address is not None:
        body += attr(rtnl.IFA_ADDRESS, socket.inet_pton(family, address))
    if local is not None:
        body += attr(rtnl.IFA_LOCAL, socket.inet_pton(family, local))
    body += attr(3, b"eth0\0")  # IFA_LABEL
    return nlmsg(kind, body, **kw)


def route(oif: int | None, seq: int = 0, family: int = socket.AF_INET) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, 32, 0, 0, 254, 0, 0, 1, 0)
    body += attr(rtnl.RTA_DST, socket.inet_pton(socket.AF_INET, "203.0.113.9"))
    if oif is not None:
        body += attr(rtnl.RTA_OIF, struct.pack("=I", oif))
    return nlmsg(rtnl.RTM_NEWROUTE, body, seq=seq)


def error(err: int, seq: int) -> bytes:
    echoed = struct.pack("=IHHII", 36, 26, 1, seq, 0)  # the request's header
    return nlmsg(rtnl.NLMSG_ERROR, struct.pack("=i", -err) + echoed, seq=seq)


def done(seq: int, err: int = 0) -> bytes:
    return nlmsg(rtnl.NLMSG_DONE, struct.pack("=i", -err), seq=seq, nlflags=rtnl.NLM_F_MULTI)


def payload(message: bytes) -> bytes:
    return next(rtnl.messages(message))[3]


# --------------------------------------------------------------------------------------- parsing

def test_link_with_and_without_name():
    assert rtnl.parse_link(payload(link(3, UP, "eth1"))) == rtnl.LinkEvent(3, UP, "eth1")
    assert rtnl.parse_link(payload(link(7, IFF_UP))) == rtnl.LinkEvent(7, IFF_UP, None)
    assert rtnl.parse_link(b"\0" * 15) is None


def test_link_name_without_nul_and_not_utf8():
    body = struct.pack("=BxHiII", 0, 1, 2, 0, 0) + attr(rtnl.IFLA_IFNAME, b"ab\xff")
    assert rtnl.parse_link(body) == rtnl.LinkEvent(2, 0, "ab\ufffd")


def test_ipv4_address_prefers_ifa_address_over_local():
    assert rtnl.parse_addr(payload(addr(2, "192.0.2.9", "192.0.2.8")), True) == \
        rtnl.AddrEvent(2, "192.0.2.9", True)  # point-to-point: IFA_ADDRESS is the peer; kept as before
    assert rtnl.parse_addr(payload(addr(2, local="192.0.2.8")), False) == \
        rtnl.AddrEvent(2, "192.0.2.8", False)


def test_ipv6_address():
    assert rtnl.parse_addr(payload(addr(5, "fd00::0002")), True) == rtnl.AddrEvent(5, "fd00::2", True)


def test_address_of_wrong_length_or_family_is_none():
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 4) + attr(rtnl.IFA_ADDRESS, b"\1\2\3")
    assert rtnl.parse_addr(body, True) == rtnl.AddrEvent(4, None, True)
    body = struct.pack("=BBBBI", 99, 32, 0, 0, 4) + attr(rtnl.IFA_ADDRESS, b"\1\2\3\4")
    assert rtnl.parse_addr(body, True) == rtnl.AddrEvent(4, None, True)
    assert rtnl.parse_addr(b"\0" * 7, True) is None


def test_events_of_a_datagram():
    data = (link(2, 0, "eth0") + addr(2, "192.0.2.1", kind=rtnl.RTM_DELADDR) + route(2)
            + link(9, 0, "gone", kind=rtnl.RTM_DELLINK) + addr(3, "fd00::1"))
    assert rtnl.events(data) == [rtnl.LinkEvent(2, 0, "eth0"), rtnl.AddrEvent(2, "192.0.2.1", False),
                                 rtnl.AddrEvent(3, "fd00::1", True)]


def test_route_oif():
    assert rtnl.parse_route_oif(payload(route(6))) == 6
    assert rtnl.parse_route_oif(payload(route(None))) is None
    assert rtnl.parse_route_oif(b"\0" * 11) is None


def test_attribute_flags_masked_and_first_wins():
    data = attr(rtnl.IFLA_IFNAME | 0x8000, b"x\0") + attr(rtnl.IFLA_IFNAME, b"y\0")
    assert rtnl.attributes(data) == {rtnl.IFLA_IFNAME: b"x\0"}


def test_route_request_layout():
    msg = rtnl.route_request("fd00::7", 12)
    assert msg is not None
    [(kind, flags, seq, body)] = list(rtnl.messages(msg))
    assert (kind, flags, seq) == (rtnl.RTM_GETROUTE, rtnl.NLM_F_REQUEST, 12)
    family, dst_len = struct.unpack_from("=BB", body)
    assert (family, dst_len) == (socket.AF_INET6, 128)
    assert rtnl.attributes(body[12:])[rtnl.RTA_DST] == socket.inet_pton(socket.AF_INET6, "fd00::7")
    v4 = rtnl.route_request("192.0.2.3", 1)
    assert v4 is not None and struct.unpack_from("=BB", v4, 16) == (socket.AF_INET, 32)
    for bad in ("iqn.2003-01.org:target", "", "fe80::1%eth0", "192.0.2.300"):
        assert rtnl.route_request(bad, 1) is None


# ------------------------------------------------------------------------------------- replies

def test_multipart_dump_across_datagrams():
    r = rtnl.Reply(5)
    multi = rtnl.NLM_F_MULTI
    r.feed(link(1, UP, "lo", seq=5, nlflags=multi) + link(2, UP, "eth0", seq=5, nlflags=multi))
    assert not r.done
    r.feed(link(3, 0, "old", seq=4, nlflags=rtnl.NLM_F_MULTI))  # a late answer to an earlier request
    r.feed(link(4, 0, "eth1", seq=5, nlflags=rtnl.NLM_F_MULTI) + done(5))
    assert r.done and r.error == 0 and not r.interrupted
    assert [rtnl.parse_link(p).index for _, p in r.records] == [1, 2, 4]
    r.feed(link(5, 0, "after", seq=5, nlflags=rtnl.NLM_F_MULTI))  # nothing after the end
    assert len(r.records) == 3


def test_dump_interrupted_and_error_at_end():
    r = rtnl.Reply(1)
    r.feed(link(1, UP, "lo", seq=1, nlflags=rtnl.NLM_F_MULTI | rtnl.NLM_F_DUMP_INTR) + done(1))
    assert r.done and r.interrupted
    r = rtnl.Reply(1)
    r.feed(done(1, errno.EMSGSIZE))
    assert r.done and r.error == errno.EMSGSIZE


def test_error_and_single_answer():
    r = rtnl.Reply(8)
    r.feed(error(errno.ENETUNREACH, 8))
    assert r.done and r.error == errno.ENETUNREACH and r.records == []
    r = rtnl.Reply(8)
    r.feed(route(3, seq=8))
    assert r.done and r.error == 0 and len(r.records) == 1
    r = rtnl.Reply(8)
    r.feed(nlmsg(rtnl.NLMSG_ERROR, b"\1", seq=8))  # too short to say which error
    assert r.done and r.error == errno.EPROTO


VALID = (link(2, UP, "eth0", seq=1, nlflags=rtnl.NLM_F_MULTI) + addr(2, "192.0.2.1", "192.0.2.1", seq=1)
         + addr(3, "fd00::1", kind=rtnl.RTM_DELADDR, seq=1) + route(4, seq=1) + error(errno.EINVAL, 1)
         + done(1))


def _swallow(data: bytes) -> None:
    """Everything a reader does with a datagram: nothing may raise."""
    rtnl.events(data)
    rtnl.Reply(1).feed(data)
    for kind, _flags, _seq, body in rtnl.messages(data):
        rtnl.parse_link(body)
        rtnl.parse_addr(body, kind == rtnl.RTM_NEWADDR)
        rtnl.parse_route_oif(body)
        rtnl.parse_error(body)


def test_every_truncation_is_a_clean_skip():
    for n in range(len(VALID)):
        _swallow(VALID[:n])
    # a cut message and all after it are skipped; those before it are read
    assert rtnl.events(VALID[:len(link(2, UP, "eth0")) + 10]) == [rtnl.LinkEvent(2, UP, "eth0")]


def test_lying_lengths_are_skipped():
    assert list(rtnl.messages(struct.pack("=IHHII", 8, 16, 0, 0, 0) + b"\0" * 32)) == []  # under a header
    assert list(rtnl.messages(struct.pack("=IHHII", 4096, 16, 0, 0, 0) + b"\0" * 32)) == []  # past the end
    body = struct.pack("=BxHiII", 0, 1, 2, 0, 0) + struct.pack("=HH", 2, 3) + b"eth0"  # attribute length 2
    assert rtnl.parse_link(body) == rtnl.LinkEvent(2, 0, None)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_never_raises(data):
    _swallow(data)
    _swallow(VALID + data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_corrupted_bytes_never_raise(flips):
    data = bytearray(VALID)
    for at, value in flips:
        data[at] = value
    _swallow(bytes(data))


# ------------------------------------------------------------------ requests against a fake kernel

class FakeKernel:
    """A Query whose netlink sockets are ends of datagram pairs; the test is the kernel at the other ends
    (`kernel`, the latest: a request that timed out makes the query open a new socket). While `hold` is set
    to an unset threading.Event, the sockets handed out block in send() until it is set, as a kernel waiting
    for the RTNL lock does."""

    def __init__(self):
        self.kernels: list[socket.socket] = []
        self.hold: threading.Event | None = None
        self.pending: list[bytes] = []  # answers queued on the next socket handed out
        fake = self

        class Query(rtnl.Query):
            def _socket(self):
                return fake._socket()

        self.Query = Query
        self.query = Query()

    def reopen(self) -> None:
        """A new query (its first socket opened now: stuck while `hold` says so; with the current timeout)."""
        self.query.close()
        self.query = self.Query()

    def _socket(self) -> socket.socket:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.setblocking(False)
        self.kernels.append(theirs)
        for d in self.pending:
            theirs.send(d)
        self.pending = []
        if self.hold is not None:
            return _Stuck(self.hold, fileno=mine.detach())
        return mine

    @property
    def kernel(self) -> socket.socket:
        return self.kernels[-1]

    def answer(self, *datagrams: bytes) -> None:  # queued before the request: the query reads them after
        for d in datagrams:
            self.kernel.send(d)

    def asked(self) -> list[tuple[int, int, int, bytes]]:
        out = []
        while True:
            try:
                out += list(rtnl.messages(self.kernel.recv(65536)))
            except BlockingIOError:
                return out

    def close(self):
        if self.hold is not None:
            self.hold.set()
        self.query.close()
        for k in self.kernels:
            k.close()


class _Stuck(socket.socket):
    """A socket whose send() waits for `release`, as the kernel waits for rtnl_mutex held by a driver, then
    fails (the fake kernel has no answer for it)."""

    def __init__(self, release: threading.Event, fileno: int):
        super().__init__(socket.AF_UNIX, socket.SOCK_DGRAM, 0, fileno)
        self.release = release

    def send(self, data, flags=0):
        self.release.wait()
        raise ConnectionResetError(errno.ECONNRESET, "let go")


@pytest.fixture
def fake():
    k = FakeKernel()
    yield k
    k.close()
    deadline = time.monotonic() + 10  # no request left in a fake kernel for the next test to count
    while rtnl.abandoned() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rtnl.abandoned() == 0


def test_route_get(fake):
    fake.answer(route(7, seq=99), route(3, seq=1))  # a late answer of another sequence first
    assert asyncio.run(fake.query.route_oif("203.0.113.9")) == 3
    [(kind, _flags, seq, _body)] = fake.asked()
    assert (kind, seq) == (rtnl.RTM_GETROUTE, 1)


def test_route_get_error_is_no_route(fake):
    fake.answer(error(errno.ENETUNREACH, 1))
    assert asyncio.run(fake.query.route_oif("203.0.113.9")) is None
    assert asyncio.run(fake.query.route_oif("not an address")) is None
    assert len(fake.asked()) == 1  # nothing asked for a name that is not an address


def test_dump_links_and_addresses(fake):
    multi = rtnl.NLM_F_MULTI
    fake.answer(link(1, UP, "lo", seq=1, nlflags=multi), link(2, 0, "eth0", seq=1, nlflags=multi) + done(1),
                addr(1, "127.0.0.1", seq=2, nlflags=multi) + addr(2, "fd00::2", seq=2, nlflags=multi)
                + done(2))

    async def both():
        return await fake.query.links(), await fake.query.addresses()

    links, addrs = asyncio.run(both())
    assert links == [rtnl.LinkEvent(1, UP, "lo"), rtnl.LinkEvent(2, 0, "eth0")]
    assert addrs == [rtnl.AddrEvent(1, "127.0.0.1", True), rtnl.AddrEvent(2, "fd00::2", True)]
    asked = fake.asked()
    assert [(k, f & rtnl.NLM_F_DUMP == rtnl.NLM_F_DUMP) for k, f, _, _ in asked] == \
        [(rtnl.RTM_GETLINK, True), (rtnl.RTM_GETADDR, True)]


def test_interrupted_dump_is_redone(fake):
    intr = rtnl.NLM_F_MULTI | rtnl.NLM_F_DUMP_INTR
    fake.answer(link(1, UP, "lo", seq=1, nlflags=intr) + done(1),
                link(1, UP, "lo", seq=2, nlflags=rtnl.NLM_F_MULTI) + link(2, UP, "eth0", seq=2,
                                                                          nlflags=rtnl.NLM_F_MULTI) + done(2))
    assert [x.index for x in asyncio.run(fake.query.links())] == [1, 2]


def test_dump_error_raises(fake):
    fake.answer(error(errno.EINVAL, 1))
    with pytest.raises(rtnl.NetlinkError) as e:
        asyncio.run(fake.query.links())
    assert e.value.errno == errno.EINVAL


def test_request_timeout(fake, monkeypatch):
    monkeypatch.setattr(rtnl, "REQUEST_TIMEOUT", 0.05)
    with pytest.raises(TimeoutError, match="no answer"):
        asyncio.run(fake.query.route_oif("203.0.113.9"))
    assert len(fake.kernels) == 1  # the next request's socket is opened when it is asked
    fake.kernels[0].send(route(5, seq=1))  # the late answer lets the abandoned thread go, on the old socket
    fake.pending = [route(6, seq=2)]
    assert asyncio.run(fake.query.route_oif("203.0.113.9")) == 6
    assert len(fake.kernels) == 2 and fake.asked()[0][2] == 2  # asked on a new socket


def test_unanswered_request_does_not_block_the_loop(fake, monkeypatch):
    """The kernel does not come back from send() (RTNL held): the loop runs on, the request times out, its
    thread and socket are left behind, and the next request is asked on a new socket and answered."""
    monkeypatch.setattr(rtnl, "REQUEST_TIMEOUT", 0.2)
    fake.hold = threading.Event()
    fake.reopen()  # a query whose first socket blocks in send()

    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        begun = time.monotonic()
        with pytest.raises(TimeoutError):
            await fake.query.route_oif("203.0.113.9")
        assert 0.15 < time.monotonic() - begun < 2 and ticks >= 8  # the loop went on meanwhile
        assert rtnl.abandoned() == 1
        stuck, fake.hold = fake.hold, None
        fake.pending = [route(4, seq=2)]
        assert await fake.query.route_oif("203.0.113.9") == 4  # not queued behind the stuck one
        stuck.set()  # the kernel lets the old request go: its thread closes its socket and ends
        await _until(lambda: rtnl.abandoned() == 0, "abandoned request back")
        t.cancel()

    asyncio.run(scenario())
    assert len(fake.kernels) == 3  # the fixture's first query's socket, the stuck one, the new one


def test_abandoned_requests_are_bounded(fake, monkeypatch, caplog):
    monkeypatch.setattr(rtnl, "REQUEST_TIMEOUT", 0.05)
    monkeypatch.setattr(rtnl, "MAX_ABANDONED", 2)
    release = threading.Event()
    fake.hold = release
    fake.reopen()

    async def scenario():
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await fake.query.route_oif("203.0.113.9")
        begun = time.monotonic()
        with pytest.raises(rtnl.NetlinkError) as e:  # no third thread left behind: refused at once
            await fake.query.route_oif("203.0.113.9")
        assert e.value.errno == errno.EBUSY and time.monotonic() - begun < 0.05
        release.set()
        await _until(lambda: rtnl.abandoned() == 0, "abandoned requests back")
        fake.hold = None
        fake.pending = [route(3, seq=4)]
        return await fake.query.route_oif("203.0.113.9")

    assert asyncio.run(scenario()) == 3
    assert "leaving its thread and socket (2 left so far, at most 2)" in caplog.text


def test_cancelled_request_leaves_its_socket(fake):
    """A request cancelled while in the kernel: its socket may still have a dump running; not used again."""
    async def scenario():
        ask = asyncio.ensure_future(fake.query.links())
        await asyncio.sleep(0.05)
        ask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ask
        fake.kernels[0].send(done(1))  # the kernel finishes: the thread comes back
        await _until(lambda: rtnl.abandoned() == 0, "abandoned request back")
        fake.pending = [link(1, UP, "lo", seq=2, nlflags=rtnl.NLM_F_MULTI) + done(2)]
        return await fake.query.links()

    assert asyncio.run(scenario()) == [rtnl.LinkEvent(1, UP, "lo")]
    assert len(fake.kernels) == 2


def test_reply_longer_than_the_buffer(fake, monkeypatch):
    monkeypatch.setattr(rtnl, "RECV_BUFFER", 64)
    fake.answer(link(1, UP, "x" * 100, seq=1, nlflags=rtnl.NLM_F_MULTI) + done(1))
    with pytest.raises(rtnl.NetlinkError) as e:
        asyncio.run(fake.query.links())
    assert e.value.errno == errno.EMSGSIZE


def test_events_cut_datagram_is_an_overrun(monkeypatch):
    monkeypatch.setattr(rtnl, "RECV_BUFFER", 64)
    ev = rtnl.Events(0)
    ev.sock.close()
    ev.sock, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ev.sock.setblocking(False)
    try:
        kernel.send(link(1, UP, "x" * 100))
        with pytest.raises(rtnl.Overrun):
            asyncio.run(ev.next())
        kernel.send(link(1, UP, "lo"))
        assert asyncio.run(ev.next()) == [rtnl.LinkEvent(1, UP, "lo")]
    finally:
        ev.close()
        kernel.close()


def test_waiting_for_a_reply_does_not_block_the_loop(fake):
    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        ask = asyncio.ensure_future(fake.query.route_oif("203.0.113.9"))
        await asyncio.sleep(0.1)
        assert not ask.done() and ticks >= 5
        fake.kernel.send(route(4, seq=1))
        oif = await ask
        t.cancel()
        return oif

    assert asyncio.run(scenario()) == 4


# --------------------------------------------------------------- the link watch's rules (fake query)

class FakeQuery:
    def __init__(self, links=(), addrs=(), routes=None):
        self.link_list = list(links)
        self.addr_list = list(addrs)
        self.routes = dict(routes or {})
        self.asked: list[str] = []

    async def links(self):
        return self.link_list

    async def addresses(self):
        return self.addr_list

    async def route_oif(self, dst):
        self.asked.append(dst)
        if dst == "timeout":
            raise TimeoutError
        return self.routes.get(dst)


def make_watch(portals, query):
    trouble: list[tuple[set[str], str]] = []

    async def on_trouble(hit, why):
        trouble.append((hit, why))

    w = LinkWatch(lambda: set(portals), on_trouble)
    w._query = query
    return w, trouble


def test_rules_link_down_uses_remembered_interface():
    q = FakeQuery(links=[rtnl.LinkEvent(2, UP, "eth0"), rtnl.LinkEvent(3, UP, "eth1")],
                  addrs=[rtnl.AddrEvent(3, "192.0.2.7", True)], routes={"203.0.113.1": 2, "203.0.113.2": 3})
    w, trouble = make_watch({"203.0.113.1", "203.0.113.2", "192.0.2.7"}, q)

    async def scenario():
        await w._resync(report=False)
        assert w._portal_if == {"203.0.113.1": 2, "203.0.113.2": 3, "192.0.2.7": 3}  # local: its interface
        q.routes = {}  # routes vanish with the link: the remembered interface is what counts
        await w._handle(rtnl.LinkEvent(2, IFF_UP))  # up without carrier: down; the name is remembered
        await w._handle(rtnl.LinkEvent(3, IFF_LOWER_UP, "eth1"))
        await w._handle(rtnl.LinkEvent(4, 0, "eth9"))  # carries no portal
        await w._handle(rtnl.LinkEvent(3, UP))  # back up: interfaces asked again
        assert w._portal_if["203.0.113.2"] is None and w._portal_if["192.0.2.7"] == 3

    asyncio.run(scenario())
    assert trouble == [({"203.0.113.1"}, "link eth0 down"), ({"203.0.113.2", "192.0.2.7"}, "link eth1 down")]


def test_rules_addresses():
    q = FakeQuery(links=[rtnl.LinkEvent(2, UP, "eth0")])
    w, trouble = make_watch({"192.0.2.7", "not-an-address", "timeout"}, q)

    async def scenario():
        await w._resync(report=False)
        await w._handle(rtnl.AddrEvent(2, "192.0.2.7", True))
        assert w._addr_if == {"192.0.2.7": 2}
        await w._handle(rtnl.AddrEvent(2, "192.0.2.8", False))  # not a portal
        await w._handle(rtnl.AddrEvent(2, None, False))
        await w._handle(rtnl.AddrEvent(2, "192.0.2.7", False))
        assert w._addr_if == {}

    asyncio.run(scenario())
    assert trouble == [({"192.0.2.7"}, "address 192.0.2.7 removed")]
    assert w._portal_if["timeout"] is None  # a request that failed: no interface, no crash


def test_resync_after_lost_events_reports_what_changed():
    q = FakeQuery(links=[rtnl.LinkEvent(2, UP, "eth0"), rtnl.LinkEvent(3, UP, "eth1"),
                         rtnl.LinkEvent(5, 0, "eth5")],
                  addrs=[rtnl.AddrEvent(2, "192.0.2.7", True), rtnl.AddrEvent(2, "192.0.2.8", True)],
                  routes={"203.0.113.1": 3, "203.0.113.5": 5})
    w, trouble = make_watch({"192.0.2.7", "203.0.113.1", "203.0.113.5"}, q)

    async def scenario():
        await w._resync(report=False)
        assert trouble == []  # down at start (eth5): not reported, the checker finds out
        # meanwhile, unseen: 192.0.2.7 removed, eth1 down; eth5 still down
        q.addr_list = [rtnl.AddrEvent(2, "192.0.2.8", True)]
        q.link_list = [rtnl.LinkEvent(2, UP, "eth0"), rtnl.LinkEvent(3, 0, "eth1"),
                       rtnl.LinkEvent(5, 0, "eth5")]
        await w._resync(report=True)

    asyncio.run(scenario())
    assert trouble == [({"192.0.2.7"}, "address 192.0.2.7 removed"), ({"203.0.113.1"}, "link eth1 down")]


class FakeEvents:
    """Hands out batches of events, or raises what is queued (or made by a function queued, when its turn
    comes); then waits for ever."""

    def __init__(self, items):
        self.items = list(items)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return None

    async def next(self):
        if not self.items:
            await asyncio.Event().wait()
        item = self.items.pop(0)
        item = item() if callable(item) else item
        if isinstance(item, Exception):
            raise item
        return item


def test_run_dumps_again_after_lost_events(monkeypatch, caplog):
    q = FakeQuery(links=[rtnl.LinkEvent(2, UP, "eth0")], addrs=[rtnl.AddrEvent(2, "192.0.2.7", True)])

    def lose_address():  # what the kernel's tables say after the lost events
        q.addr_list = []
        return rtnl.Overrun("the socket's receive buffer overran (ENOBUFS)")

    monkeypatch.setattr(rtnl, "Query", lambda: _Ctx(q))
    monkeypatch.setattr(rtnl, "Events", lambda groups: FakeEvents([[rtnl.LinkEvent(2, UP)], lose_address]))
    w, trouble = make_watch({"192.0.2.7"}, None)

    async def scenario():
        task = asyncio.ensure_future(w.run())
        await _until(lambda: trouble, "trouble")
        task.cancel()

    asyncio.run(scenario())
    assert trouble == [({"192.0.2.7"}, "address 192.0.2.7 removed")]
    assert "events lost (the socket's receive buffer overran (ENOBUFS))" in caplog.text


class FailingQuery(FakeQuery):
    """Its address dumps raise what `failures` holds, one per dump, first (None: that one succeeds)."""

    def __init__(self, failures, **kw):
        super().__init__(**kw)
        self.failures = list(failures)

    async def addresses(self):
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return await super().addresses()


def _watch_with(monkeypatch, query, event_lists):
    """run() over `query` (counting how often one is made) and one FakeEvents per start, in turn."""
    monkeypatch.setattr(linkwatch, "RETRY_FIRST", 0.01)
    made = []

    def new_query():
        made.append(query)
        return _Ctx(query)

    feeds = [FakeEvents(items) for items in event_lists]
    monkeypatch.setattr(rtnl, "Query", new_query)
    monkeypatch.setattr(rtnl, "Events", lambda groups: feeds.pop(0) if feeds else FakeEvents([]))
    return made


def test_watch_survives_failed_dumps(monkeypatch, caplog):
    """A resync after lost events times out, the dumps of the next start are refused: the watch starts
    again each time (new sockets), reports what changed while it was down, and then what it sees."""
    q = FailingQuery([None, TimeoutError("no answer from the kernel in 5.0 s"),
                      rtnl.NetlinkError(errno.EBUSY, "rtnetlink dump 22: Device or resource busy")],
                     links=[rtnl.LinkEvent(2, UP, "eth0"), rtnl.LinkEvent(3, UP, "eth1")],
                     routes={"203.0.113.1": 2, "203.0.113.2": 3})

    def lose():
        q.link_list = [rtnl.LinkEvent(2, 0, "eth0"), rtnl.LinkEvent(3, UP, "eth1")]  # eth0 down, unseen
        return rtnl.Overrun("the socket's receive buffer overran (ENOBUFS)")

    made = _watch_with(monkeypatch, q, [[lose], [], [[rtnl.LinkEvent(3, IFF_UP, "eth1")]]])
    w, trouble = make_watch({"203.0.113.1", "203.0.113.2"}, None)

    async def scenario():
        task = asyncio.ensure_future(w.run())
        await _until(lambda: len(trouble) == 2 or task.done(), "both links down")
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert trouble == [({"203.0.113.1"}, "link eth0 down"), ({"203.0.113.2"}, "link eth1 down")]
    assert len(made) == 3
    assert "link watch: no answer from the kernel in 5.0 s; starting again in 0.01 s" in caplog.text
    assert "rtnetlink dump 22: Device or resource busy; starting again in 0.02 s" in caplog.text


def test_watch_restarts_after_an_unexpected_error(monkeypatch, caplog):
    q = FakeQuery(links=[rtnl.LinkEvent(2, UP, "eth0")], routes={"203.0.113.1": 2})
    made = _watch_with(monkeypatch, q, [[RuntimeError("boom")], [[rtnl.LinkEvent(2, 0, "eth0")]]])
    w, trouble = make_watch({"203.0.113.1"}, None)

    async def scenario():
        task = asyncio.ensure_future(w.run())
        await _until(lambda: trouble or task.done(), "link down")
        assert not task.done()
        task.cancel()

    asyncio.run(scenario())
    assert trouble == [({"203.0.113.1"}, "link eth0 down")]
    assert len(made) == 2 and "link watch failed; starting again in 0.01 s" in caplog.text
    assert "RuntimeError: boom" in caplog.text


class _Ctx:
    def __init__(self, inner):
        self.inner = inner

    def __enter__(self):
        return self.inner

    def __exit__(self, *_):
        return None


def test_daemon_imports_no_pyroute2():
    code = ("import sys, pymultipathd.daemon.main; "
            "print(sorted(m for m in ('pyroute2', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------- live, with a dummy link

ADDRESS = "198.51.100.77"  # TEST-NET-2: not the 192.0.2.0/24 of the test VM's portals nor of CI hosts
ROUTED = "203.0.113.77"    # reached through the dummy link by a route of its own


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def dummy():
    if os.geteuid() != 0:
        pytest.skip("making a dummy link needs root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` (iproute2) to make a dummy link with")
    name = f"pympt{os.getpid() % 100000}"
    for kind in ("dummy", "ifb"):  # ifb where the kernel has no dummy driver: also up with a carrier, alone
        made = _ip("link", "add", name, "type", kind)
        if made.returncode == 0:
            break
    else:
        pytest.skip(f"cannot make a dummy (or ifb) link: {made.stderr.strip()}")
    try:
        for args in (("addr", "add", f"{ADDRESS}/32", "dev", name), ("link", "set", name, "up"),
                     ("route", "add", f"{ROUTED}/32", "dev", name)):
            done_ = _ip(*args)
            assert done_.returncode == 0, done_.stderr
        yield name, socket.if_nametoindex(name)
    finally:
        _ip("link", "del", name)  # its address and route go with it


async def _until(predicate, what, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_live_query(dummy):
    name, index = dummy

    async def scenario():
        with rtnl.Query() as q:
            links = await q.links()
            addrs = await q.addresses()
            oif = await q.route_oif(ROUTED)
            lo = await q.route_oif("127.0.0.1")
        return links, addrs, oif, lo

    links, addrs, oif, lo = asyncio.run(scenario())
    mine = [x for x in links if x.index == index]
    assert mine == [rtnl.LinkEvent(index, mine[0].flags, name)] and linkwatch.is_running(mine[0].flags)
    assert rtnl.AddrEvent(index, ADDRESS, True) in addrs
    assert oif == index and lo == socket.if_nametoindex("lo")


def test_live_events(dummy):
    name, index = dummy

    async def scenario():
        seen: list[rtnl.Event] = []
        with rtnl.Events(linkwatch.GROUPS) as ev:
            assert _ip("link", "set", name, "down").returncode == 0
            assert _ip("addr", "del", f"{ADDRESS}/32", "dev", name).returncode == 0
            async with asyncio.timeout(5):
                while rtnl.AddrEvent(index, ADDRESS, False) not in seen:
                    seen += [e for e in await ev.next() if e.index == index]
        return seen

    seen = asyncio.run(scenario())
    downs = [e for e in seen if isinstance(e, rtnl.LinkEvent)]
    assert downs and not linkwatch.is_running(downs[0].flags) and downs[0].ifname == name


def test_live_overrun(dummy):
    name, _ = dummy

    async def scenario():
        with rtnl.Events(linkwatch.GROUPS) as ev:
            ev.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)  # the kernel's minimum, ~2 KiB
            batch = "".join(f"addr add 198.51.100.{i}/32 dev {name}\n" for i in range(100, 160))
            subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True, timeout=10)
            async with asyncio.timeout(5):
                for _ in range(1000):
                    await ev.next()
        return None

    with pytest.raises(rtnl.Overrun):
        asyncio.run(scenario())


def test_live_link_watch(dummy):
    name, index = dummy
    portals = {ADDRESS, ROUTED, "192.0.2.250"}

    async def scenario():
        trouble: list[tuple[set[str], str]] = []

        async def on_trouble(hit, why):
            trouble.append((hit, why))

        w = LinkWatch(lambda: set(portals), on_trouble)
        task = asyncio.ensure_future(w.run())
        try:
            await _until(lambda: len(w._portal_if) == 3 or task.done(), "portals remembered")
            assert not task.done(), task.exception()
            assert w._portal_if[ADDRESS] == index and w._portal_if[ROUTED] == index  # local; routed
            assert _ip("link", "set", name, "down").returncode == 0
            await _until(lambda: trouble, "link down")
            assert _ip("addr", "del", f"{ADDRESS}/32", "dev", name).returncode == 0
            await _until(lambda: any("removed" in why for _, why in trouble), "address removed")
        finally:
            task.cancel()
        return trouble

    trouble = asyncio.run(scenario())
    assert trouble[0] == ({ADDRESS, ROUTED}, f"link {name} down")
    assert set(map(repr, trouble)) == {repr(trouble[0]), repr(({ADDRESS}, f"address {ADDRESS} removed"))}
