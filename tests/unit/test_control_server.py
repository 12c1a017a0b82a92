"""The control server over a real unix socket on the host (no daemon state: a table-driven dispatch).

The attack tests need real SO_PEERCRED credentials of other users: they run as root (as make check and CI
do) and fork peer processes that drop to other uids; as anyone else they fail, they do not skip."""

import asyncio
import contextlib
import itertools
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable

import pytest

from pymultipathd import locations
from pymultipathd.control import client, framing, grammar
from pymultipathd.control.server import TOO_MANY, CommandFailed, ControlServer
from pymultipathd.listen import bind_unix
from pymultipathd.store import StoreError

DAEMON = "pid 1 running\n"
BIG = 1 << 20  # a reply far larger than a unix socket's buffers (about 200 KiB each way)
NOBODY = 65534
HANG = 30.0  # seconds after which a wait is a hang, not slowness


def _dispatch(cmd: grammar.Command) -> str | Awaitable[str]:
    """As the daemon's: a reply at once from a handler that never waits, else a coroutine (run as a task)."""
    if cmd.keywords == ("show", "daemon"):
        return DAEMON
    if cmd.keywords == ("show", "maps"):
        return "m" * BIG + "\n"
    if cmd.keywords == ("disablequeueing", "map"):
        return _waits_then_fails(cmd.params["map"])
    if cmd.keywords == ("show", "status"):
        return asyncio.sleep(5, "too late\n")
    if cmd.keywords == ("show", "config"):
        raise RuntimeError("handler bug")
    if cmd.keywords == ("show", "blacklist"):
        raise StoreError("cannot write /etc/multipath/wwids: Read-only file system (EROFS)")
    if cmd.keywords == ("show", "topology"):
        return _waits_then_fails(None)
    if cmd.keywords == ("show", "wildcards"):
        time.sleep(0.01)  # a handler's own work: the server's time, never counted against the client
        return "wildcards\n"
    if cmd.keywords == ("reconfigure",):
        return _replies_no_text()
    return f"{cmd.name}\n"


async def _replies_no_text() -> str:
    await asyncio.sleep(0)
    return 42  # type: ignore[return-value]  # a handler bug


async def _waits_then_fails(name: str | None) -> str:
    await asyncio.sleep(0.01)
    if name == "nosuch":
        raise CommandFailed("device not found")
    if name is None:
        raise RuntimeError("handler bug after a wait")
    return ""


_names = itertools.count()


@contextlib.contextmanager
def _serving(name: str, **limits):
    """Run a ControlServer with `limits` on its own loop in a thread, listening on `name`."""
    loop = asyncio.new_event_loop()
    srv = ControlServer(_dispatch, **limits)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start([bind_unix(name)]))
        ready.set()
        loop.run_forever()
        # connections still open when the test ends: cancel their handlers, then close the loop
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10), "the control server did not start"
    try:
        yield name
    finally:
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


@pytest.fixture
def server():
    """A small server on an abstract socket; yields its name."""
    with _serving(f"@pymultipathd-test-{os.getpid()}-{next(_names)}", idle_timeout=2.0, request_timeout=1.0,
                  command_timeout=0.5, max_clients=4, max_nonroot_clients=2, max_clients_per_uid=2) as name:
        yield name


@pytest.fixture
def socket_dir():
    """A directory for a pathname socket that other uids may reach (bind_unix makes the socket 0666)."""
    d = tempfile.mkdtemp(prefix="pymultipathd-ctl-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_replies_and_several_commands_per_connection(server):
    with client.connect(server) as sock:
        assert client.request(sock, "show daemon") == DAEMON
        assert client.request(sock, "disablequeueing map mpatha") == "ok\n"  # empty output -> ok
        assert client.request(sock, "disablequeueing map nosuch") == "fail\ndevice not found\n"
        assert client.request(sock, "sho pat") .startswith("fail\npat: not found\nCLI commands reference:")


def test_requests_sent_together_are_all_answered(server):
    with client.connect(server) as sock:
        sock.sendall(framing.encode("show daemon") + framing.encode("disablequeueing map nosuch")
                     + framing.encode("show daemon")[:5])
        replies = _read_replies(sock, 2)
        sock.sendall(framing.encode("show daemon")[5:])  # the rest of the third, split across sends
        replies += _read_replies(sock, 1)
    assert replies == [DAEMON, "fail\ndevice not found\n", DAEMON]


def test_a_read_full_of_requests_is_answered_in_order_a_batch_a_turn(server):
    """Hundreds of requests in one send, a command that waits among them: every one answered, in order (the
    server answers ANSWER_BATCH of them a turn of its loop, and waits for the command before the next)."""
    frames = [framing.encode("show daemon")] * 300
    frames[150] = framing.encode("disablequeueing map nosuch")
    with client.connect(server) as sock:
        sock.sendall(b"".join(frames))
        replies = _read_replies(sock, 300)
    assert replies == [DAEMON] * 150 + ["fail\ndevice not found\n"] + [DAEMON] * 149


def test_the_server_s_own_time_is_not_the_client_s(server):
    """300 requests sent at once whose answers take the server 3 s in all, past the 2 s idle deadline that
    ran when they came: every one is answered (the deadline waits while the server works)."""
    with client.connect(server) as sock:
        sock.sendall(framing.encode("show wildcards") * 300)
        assert _read_replies(sock, 300) == ["wildcards\n"] * 300


def test_handler_errors_and_timeouts_do_not_kill_the_server(server, caplog):
    assert client.send("show config", server).startswith("fail\nhandler bug")
    assert client.send("show topology", server) == "fail\nhandler bug after a wait\n"
    assert client.send("reconfigure", server) == "fail\nthe handler replied int, not text\n"
    # a project error the handler did not word itself: its message, and no traceback in the log as for a bug
    with caplog.at_level(logging.WARNING, logger="pymultipathd.control.server"):
        reply = client.send("show blacklist", server)
    assert reply == "fail\ncannot write /etc/multipath/wwids: Read-only file system (EROFS)\n"
    assert [r.exc_info for r in caplog.records if "show blacklist" in r.getMessage()] == [None]
    assert client.send("show status", server) == "fail\ntimeout\n"
    assert client.send("show daemon", server) == DAEMON


def test_garbage_and_huge_length_word_drop_only_that_client(server):
    with client.connect(server) as s:
        s.sendall(struct.pack("@N", 1 << 40))
        s.settimeout(5)
        assert s.recv(100) == b""  # dropped
    with client.connect(server) as s:
        s.sendall(b"\x05\x00\x00")  # partial length word, then silence: the request deadline drops it
        s.settimeout(5)
        assert s.recv(100) == b""
    with client.connect(server) as s:
        s.settimeout(5)  # nothing at all: the idle deadline drops it
        assert s.recv(100) == b""
    assert client.send("show daemon", server) == DAEMON


def test_connection_cap(server):
    held = []
    for _ in range(4):
        held.append(client.connect(server))
        assert client.request(held[-1], "show daemon") == DAEMON  # now surely holding a slot
    try:
        # the fifth is told and dropped; the held ones still work
        assert client.send("show daemon", server) == TOO_MANY
        assert client.request(held[0], "show daemon") == DAEMON
    finally:
        for s in held:
            s.close()
    # slots come back once the server has seen the EOFs
    for _ in range(50):
        reply = client.send("show daemon", server)
        if reply == DAEMON:
            break
        time.sleep(0.1)
    assert reply == DAEMON


def test_caps_must_leave_root_slots_of_its_own():
    with pytest.raises(ValueError):
        ControlServer(_dispatch, max_clients=8, max_nonroot_clients=8, max_clients_per_uid=2)
    with pytest.raises(ValueError):
        ControlServer(_dispatch, max_clients=8, max_nonroot_clients=4, max_clients_per_uid=5)


def test_non_root_may_only_show(server):
    _require_root()
    with _as_user(NOBODY, _ask, server, ["show daemon", "disablequeueing map mpatha"]) as peer:
        assert peer.recv() == {"replies": [DAEMON, "fail\npermission deny: need to be root\n"]}


def test_quit_closes(server):
    with client.connect(server) as sock:
        assert client.request(sock, "quit") == "ok\n"
        sock.settimeout(5)
        assert sock.recv(10) == b""


def test_stopping_the_server_closes_its_connections():
    with contextlib.ExitStack() as stack:
        with _serving(f"@pymultipathd-test-{os.getpid()}-{next(_names)}") as name:
            sock = stack.enter_context(client.connect(name))
            assert client.request(sock, "show daemon") == DAEMON
        sock.settimeout(5)
        assert sock.recv(10) == b""  # closed by the server's close, not left to the process's end


def test_command_length_limit_in_client():
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(client.ClientError):
        client.request(s, "x" * framing.MAX_COMMAND)


def test_replies_are_printed_ending_in_one_newline():
    assert client.as_printed("ok") == "ok\n"
    assert client.as_printed("fail\ndevice not found\n") == "fail\ndevice not found\n"
    assert client.as_printed("") == ""


# --- attacks by local users, with real credentials ------------------------------------------------------

# Small deadlines keep these to seconds. The trickle interval is far below the idle timeout, so a per-read
# idle timeout would never fire; a request still takes 20 bytes x 0.2 s = 4 s to trickle in, past its 1 s.
TRICKLE = dict(idle_timeout=5.0, request_timeout=1.0, write_timeout=1.0, command_timeout=2.0)
INTERVAL = 0.2


def test_slowloris_from_one_user_cannot_lock_root_out(socket_dir, caplog):
    """63 connections from nobody, each trickling a request one byte at a time: the per-uid cap refuses all
    but 8, those 8 are dropped at their request deadline, and root is answered throughout."""
    _require_root()
    caplog.set_level(logging.DEBUG, logger="pymultipathd.control.server")
    with _serving(os.path.join(socket_dir, "control"), **TRICKLE) as path:
        with _as_user(NOBODY, _trickle, path, 63) as peer:
            assert peer.recv() == {"connected": 63}
            peer.send("go")
            answers = _root_asks_until(peer, path)
            result = peer.recv()
    assert answers and all(a == DAEMON for a in answers), answers
    assert result == {"refused": 55, "dropped": 8, "open": 0, "answered": 0}
    assert len(_drops(caplog, peer.pid, NOBODY, "request not complete")) == 8


def test_slowloris_from_many_users_leaves_root_its_slots(socket_dir, caplog):
    """8 uids x 8 trickling connections: non-root peers get 48 of the 64 slots, another non-root uid is
    refused while they hold them, root is answered, and every trickling connection ends."""
    _require_root()
    caplog.set_level(logging.DEBUG, logger="pymultipathd.control.server")
    with _serving(os.path.join(socket_dir, "control"), **TRICKLE) as path, contextlib.ExitStack() as stack:
        peers = [stack.enter_context(_as_user(NOBODY - i, _trickle, path, 8)) for i in range(8)]
        for p in peers:
            assert p.recv() == {"connected": 8}
        assert client.send("show daemon", path) == DAEMON  # while non-root peers hold all they may
        with _as_user(NOBODY - 8, _ask, path, ["show daemon"]) as late:
            assert late.recv() == {"replies": [TOO_MANY]}
        for p in peers:
            p.send("go")
        answers = _root_asks_until(peers[-1], path)
        results = [p.recv() for p in peers]
    assert answers and all(a == DAEMON for a in answers), answers
    assert sum(r["refused"] for r in results) == 16
    assert sum(r["dropped"] for r in results) == 48
    assert all(r["open"] == 0 and r["answered"] == 0 for r in results), results


def test_clients_that_never_read_are_dropped_at_the_write_timeout(socket_dir, caplog):
    """Every slot held by clients that send requests for large replies and never read them (two of nobody,
    two of root): the write timeout drops them, closing does not wait on them, and root is answered.
    Idle and request deadlines are long here, so only the write timeout can free a slot."""
    _require_root()
    caplog.set_level(logging.DEBUG, logger="pymultipathd.control.server")
    limits = dict(idle_timeout=600.0, request_timeout=600.0, write_timeout=1.0, command_timeout=2.0,
                  max_clients=4, max_nonroot_clients=2, max_clients_per_uid=2)
    with _serving(os.path.join(socket_dir, "control"), **limits) as path:
        with _as_user(NOBODY, _hoard, path, 2) as peer:
            assert peer.recv() == {"sent": 2}
            mine = _hoarders(path, 2)
            try:
                deadline = time.monotonic() + HANG
                while (reply := client.send("show daemon", path)) != DAEMON:
                    assert reply == TOO_MANY
                    assert time.monotonic() < deadline, (
                        "root still shut out: clients that do not read hold every slot")
                    time.sleep(0.1)
                # all four dropped before any is read: a connection read before its deadline is served
                while len(_drops(caplog, peer.pid, NOBODY, "reply not read")
                          + _drops(caplog, os.getpid(), 0, "reply not read")) < 4:
                    assert time.monotonic() < deadline, "clients that do not read were not all dropped"
                    time.sleep(0.05)
                peer.send("check")
                theirs = peer.recv()
                ours = [_read_to_end(s) for s in mine]
            finally:
                for s in mine:
                    s.close()
    for got in theirs["conns"] + ours:
        assert got["closed"], "the server still holds a connection that never read its replies"
        assert 0 < got["bytes"] < HOARD_REQUESTS * BIG  # some of a reply, never all of them
        assert TOO_MANY.encode() not in got["head"].encode("latin-1")  # it did hold a slot
    assert len(_drops(caplog, peer.pid, NOBODY, "reply not read")) == 2
    assert len(_drops(caplog, os.getpid(), 0, "reply not read")) == 2


def test_per_uid_cap(socket_dir, caplog):
    """A ninth connection of one non-root uid is refused, and said so in the log with its pid and uid;
    root and another uid are served meanwhile, and the eight still work."""
    _require_root()
    caplog.set_level(logging.INFO, logger="pymultipathd.control.server")
    with _serving(os.path.join(socket_dir, "control")) as path:  # the shipped caps: 8 per uid
        with _as_user(NOBODY, _hold, path, 8) as greedy:
            assert greedy.recv() == {"held": [DAEMON] * 8, "ninth": TOO_MANY}
            assert client.send("show daemon", path) == DAEMON
            with _as_user(NOBODY - 1, _ask, path, ["show daemon"]) as other:
                assert other.recv() == {"replies": [DAEMON]}
            greedy.send("again")
            assert greedy.recv() == {"again": DAEMON}
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and f"pid {greedy.pid} uid {NOBODY}:" in refusals[0], refusals


# --- helpers --------------------------------------------------------------------------------------------


def _require_root():
    assert os.geteuid() == 0, (
        "these tests need root (make check and CI run them as root): they fork peers that switch to other "
        "uids, so that the server sees real SO_PEERCRED credentials")


def _read_replies(sock: socket.socket, n: int, timeout: float = 10.0) -> list[str]:
    sock.settimeout(timeout)
    decoder = framing.Decoder(max_len=framing.MAX_REPLY)
    replies: list[str] = []
    while len(replies) < n:
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        replies += decoder.feed(data)
    return replies


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(10)
    s.connect(locations.unix_address(path))
    return s


def _ask1(path: str, command: str) -> str:
    with _connect(path) as s:
        try:
            s.sendall(framing.encode(command))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read: the answer is waiting
        return _read_replies(s, 1)[0]


def _root_asks_until(peer: "_Peer", path: str) -> list[str]:
    """Root asks `show daemon` over and over until `peer` has something to say; the answers."""
    answers = []
    deadline = time.monotonic() + HANG + 15  # the peer gives up after HANG, and says what it saw
    while not peer.has_message():
        assert time.monotonic() < deadline, "the attacking peer never finished"
        answers.append(client.send("show daemon", path))
        time.sleep(0.05)
    return answers


def _drops(caplog, pid: int, uid: int, why: str) -> list[str]:
    start = f"control client pid {pid} uid {uid} dropped: {why}"
    return [m for r in caplog.records if (m := r.getMessage()).startswith(start)]


HOARD_REQUESTS = 20


def _hoarders(path: str, n: int) -> list[socket.socket]:
    """n connections that each ask for HOARD_REQUESTS large replies and read none of them."""
    conns = [_connect(path) for _ in range(n)]
    for s in conns:
        s.sendall(framing.encode("show maps") * HOARD_REQUESTS)  # a few hundred bytes: fits at once
    return conns


def _read_to_end(s: socket.socket) -> dict:
    """Read what is there until the server's close; "closed" False if it kept the connection open."""
    s.settimeout(5)
    got = bytearray()
    try:
        while data := s.recv(1 << 20):
            got += data
    except ConnectionResetError:
        pass  # closed with our requests unread: the data before it was still delivered
    except TimeoutError:
        return {"closed": False, "bytes": len(got), "head": bytes(got[:64]).decode("latin-1")}
    return {"closed": True, "bytes": len(got), "head": bytes(got[:64]).decode("latin-1")}


# What the peers of other uids do, in the forked child (fds of the server closed, uid switched). Each talks
# to the test over a socketpair, one JSON document a line.


def _ask(ctl: "_Peer", path: str, commands: list[str]) -> None:
    ctl.send({"replies": [_ask1(path, c) for c in commands]})


def _hold(ctl: "_Peer", path: str, n: int) -> None:
    held = [_connect(path) for _ in range(n)]
    replies = []
    for s in held:  # each answered, so each surely holds its slot
        s.sendall(framing.encode("show daemon"))
        replies += _read_replies(s, 1)
    ctl.send({"held": replies, "ninth": _ask1(path, "show daemon")})
    assert ctl.recv() == "again"
    held[0].sendall(framing.encode("show daemon"))
    ctl.send({"again": _read_replies(held[0], 1)[0]})


def _hoard(ctl: "_Peer", path: str, n: int) -> None:
    conns = _hoarders(path, n)
    ctl.send({"sent": n})
    assert ctl.recv() == "check"
    ctl.send({"conns": [_read_to_end(s) for s in conns]})


def _trickle(ctl: "_Peer", path: str, n: int) -> None:
    """Open n connections, then send each a request one byte per INTERVAL until the server closes them all
    (or HANG passes); report how each ended: refused, dropped without an answer, or still open."""
    frame = framing.encode("show daemon")
    conns = [{"s": _connect(path), "got": b"", "open": True, "sent": 0} for _ in range(n)]
    for c in conns:
        c["s"].setblocking(False)
    ctl.send({"connected": n})
    assert ctl.recv() == "go"
    deadline = time.monotonic() + HANG
    while any(c["open"] for c in conns) and time.monotonic() < deadline:
        for c in conns:
            if c["open"]:
                _collect(c)
            if c["open"]:
                try:
                    c["s"].send(frame[c["sent"] % len(frame):][:1])
                    c["sent"] += 1
                except (BrokenPipeError, ConnectionResetError):
                    _collect(c)
                    c["open"] = False
        time.sleep(INTERVAL)
    refused = [c for c in conns if TOO_MANY.encode() in c["got"]]
    ctl.send({"refused": len(refused),
              "dropped": sum(not c["open"] and c not in refused for c in conns),
              "open": sum(c["open"] for c in conns),
              "answered": sum(DAEMON.encode() in c["got"] for c in conns)})


def _collect(c: dict) -> None:
    while True:
        try:
            data = c["s"].recv(4096)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            c["open"] = False
            return
        c["got"] += data


class _Peer:
    """One end of the line between the test and a forked peer."""

    def __init__(self, sock: socket.socket, pid: int = 0) -> None:
        self.sock = sock
        self.pid = pid
        self._buf = b""

    def send(self, msg: object) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def has_message(self) -> bool:
        return b"\n" in self._buf or bool(select.select([self.sock], [], [], 0)[0])

    def recv(self, timeout: float = HANG) -> object:
        self.sock.settimeout(timeout)
        while b"\n" not in self._buf:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"peer process {self.pid} said nothing for {timeout} s")
            if not data:
                pytest.fail(f"peer process {self.pid} ended without a word")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if isinstance(msg, dict) and "error" in msg:
            pytest.fail(f"peer process {self.pid} (uid {msg['uid']}) failed:\n{msg['error']}")
        return msg


@contextlib.contextmanager
def _as_user(uid: int, fn, *args):
    """Fork a process that runs fn(line, *args) as `uid` (and gid) with no supplementary groups; yield the
    test's end of the line. The child first closes every inherited descriptor but its own end of the line:
    holding a copy of one of the server's connections would keep that connection open when the server
    closes it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
            line = _Peer(theirs)
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                fn(line, *args)
                code = 0
            except BaseException:
                line.send({"error": traceback.format_exc(), "uid": uid})
        finally:
            os._exit(code)
    theirs.close()
    peer = _Peer(ours, pid)
    try:
        yield peer
    finally:
        ours.close()  # a peer waiting for the test's word sees EOF and ends
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)


def test_the_interactive_shell_survives_a_pause_longer_than_the_idle_deadline(monkeypatch, tmp_path, capsys):
    """`pymultipathd -k`: a person thinks longer than the server keeps an idle connection."""
    from pymultipathd.cli import pymultipathd as cli

    name = str(tmp_path / "ctl.sock")
    monkeypatch.setenv("MULTIPATH_SOCKET_NAME", name)
    lines = iter(["show daemon", "PAUSE", "show daemon"])

    def typed(prompt: str) -> str:
        line = next(lines, None)
        if line is None:
            raise EOFError
        if line == "PAUSE":
            time.sleep(1.0)  # past the server's idle deadline below
            return ""
        return line

    monkeypatch.setattr("builtins.input", typed)
    with _serving(name, idle_timeout=0.3):
        assert cli._interactive(str(tmp_path / "history")) == 0
    out = capsys.readouterr()
    assert out.out.count("pid 1 running") == 2 and "pymultipathd:" not in out.err, out
    assert (tmp_path / "history").exists()  # where the entry said, not in the real home directory
