"""The control server over a real unix socket on the host (no daemon state: a table-driven dispatch)."""

import asyncio
import itertools
import os
import socket
import struct
import threading
import time

import pytest

from pymultipathd.control import client, framing, grammar
from pymultipathd.control.server import CommandFailed, ControlServer, bind_unix


async def _dispatch(cmd: grammar.Command) -> str:
    if cmd.keywords == ("show", "daemon"):
        return "pid 1 running\n"
    if cmd.keywords == ("disablequeueing", "map"):
        if cmd.params["map"] == "nosuch":
            raise CommandFailed("device not found")
        return ""
    if cmd.keywords == ("show", "status"):
        await asyncio.sleep(5)
    if cmd.keywords == ("show", "config"):
        raise RuntimeError("handler bug")
    return f"{cmd.name}\n"


_names = itertools.count()


@pytest.fixture
def server():
    """Run a ControlServer on its own loop in a thread, on an abstract socket; yield its name."""
    path = f"@pymultipathd-test-{os.getpid()}-{next(_names)}"
    loop = asyncio.new_event_loop()
    srv = ControlServer(_dispatch, idle_timeout=2.0, command_timeout=0.5, max_clients=4)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start([bind_unix(path)]))
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)
    yield path
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)


def test_replies_and_several_commands_per_connection(server):
    with client.connect(server) as sock:
        assert client.request(sock, "show daemon") == "pid 1 running\n"
        assert client.request(sock, "disablequeueing map mpatha") == "ok\n"  # empty output -> ok
        assert client.request(sock, "disablequeueing map nosuch") == "fail\ndevice not found\n"
        assert client.request(sock, "sho pat") .startswith("fail\npat: not found\nCLI commands reference:")


def test_handler_errors_and_timeouts_do_not_kill_the_server(server):
    assert client.send("show config", server).startswith("fail\nhandler bug")
    assert client.send("show status", server) == "fail\ntimeout\n"
    assert client.send("show daemon", server) == "pid 1 running\n"


def test_garbage_and_huge_length_word_drop_only_that_client(server):
    with client.connect(server) as s:
        s.sendall(struct.pack("@N", 1 << 40))
        s.settimeout(5)
        assert s.recv(100) == b""  # dropped
    with client.connect(server) as s:
        s.sendall(b"\x05\x00\x00")  # partial length word, then silence: the idle timeout drops it
        s.settimeout(5)
        assert s.recv(100) == b""
    assert client.send("show daemon", server) == "pid 1 running\n"


def test_connection_cap(server):
    held = []
    for _ in range(4):
        held.append(client.connect(server))
        assert client.request(held[-1], "show daemon") == "pid 1 running\n"  # now surely holding a slot
    try:
        # the fifth is told and dropped; the held ones still work
        assert client.send("show daemon", server) == "fail\ntoo many clients\n"
        assert client.request(held[0], "show daemon") == "pid 1 running\n"
    finally:
        for s in held:
            s.close()
    # slots come back once the server has seen the EOFs
    for _ in range(50):
        reply = client.send("show daemon", server)
        if reply == "pid 1 running\n":
            break
        time.sleep(0.1)
    assert reply == "pid 1 running\n"


def test_non_root_may_only_show(server):
    assert os.geteuid() == 0, "run the unit tests as root (make check does): this test drops to nobody"
    pid = os.fork()
    if pid == 0:  # child: drop to nobody and ask
        try:
            os.setgid(65534)
            os.setuid(65534)
            ok = client.send("show daemon", server) == "pid 1 running\n"
            denied = client.send("disablequeueing map mpatha", server) == (
                "fail\npermission deny: need to be root\n")
            os._exit(0 if ok and denied else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_quit_closes(server):
    with client.connect(server) as sock:
        assert client.request(sock, "quit") == "ok\n"
        sock.settimeout(5)
        assert sock.recv(10) == b""


def test_command_length_limit_in_client():
    with pytest.raises(client.ClientError):
        client.request(socket.socket(socket.AF_UNIX), "x" * framing.MAX_COMMAND)


def test_replies_are_printed_ending_in_one_newline():
    assert client.as_printed("ok") == "ok\n"
    assert client.as_printed("fail\ndevice not found\n") == "fail\ndevice not found\n"
    assert client.as_printed("") == ""
