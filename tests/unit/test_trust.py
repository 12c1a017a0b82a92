"""Trust boundaries, each tested by performing the attack: a local user squatting the daemon's socket names
(the udev helper's clients, the admin client, the classifier's "daemon running" probe, the daemon's own
bind), a peer trickling bytes to hold a udev worker, and store files the daemon or `-u` cannot read or write.

The squatters are real processes running as uid 65534, so SO_PEERCRED is the kernel's, not a stub's: the
tests need root (as CI has) to start them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import signal
import socket
import threading
import time

import pytest
from sysfs_tree import Tree
from test_udev_front import FALLBACK_RC, Server, call, front  # noqa: F401 - front is a fixture
from test_udev_helper import W1, answering_daemon, control_listener, run

from pymultipathd import listen, locations, store, udevlink
from pymultipathd.control import client
from pymultipathd.daemon.persist import Persist
from pymultipathd.paths import facts

NOBODY = 65534
_SERIAL = itertools.count()

class Squatter:
    """A forked process that drops to uid 65534, binds an abstract name and answers every connection with
    the same bytes, reporting on a pipe how many bytes each client sent (so a test can tell a client that
    sent nothing). Forked rather than exec'd: the test's interpreter may live where that user cannot go."""

    def __init__(self, reply: bytes = b"") -> None:
        assert os.geteuid() == 0, "these tests start processes as another user: run them as root (CI does)"
        self.name = f"@/pymp-test/squat-{os.getpid()}-{next(_SERIAL)}"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the squatter; never returns into pytest
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                self._serve(w, reply)
            finally:
                os._exit(0)
        os.close(w)
        self.pid = pid
        self._report = os.fdopen(r, "r")
        assert self._report.readline() == "ready\n"

    def _serve(self, w: int, reply: bytes) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(locations.unix_address(self.name))
        s.listen(16)
        os.write(w, b"ready\n")
        while True:
            c, _ = s.accept()
            c.settimeout(2)
            got = b""
            try:
                while chunk := c.recv(65536):
                    got += chunk
            except OSError:
                pass
            os.write(w, f"{len(got)}\n".encode())
            with contextlib.suppress(OSError):
                c.sendall(reply)
            c.close()

    def received(self) -> int:
        """Bytes the next finished connection sent."""
        return int(self._report.readline())

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self._report.close()


@pytest.fixture
def squatter():
    made = []

    def start(reply: bytes = b"") -> Squatter:
        made.append(Squatter(reply))
        return made[-1]

    yield start
    for s in made:
        s.close()


CLAIM = udevlink.encode_reply(0, 'DM_MULTIPATH_DEVICE_PATH="1"\n', "")


def test_the_python_helper_never_believes_a_non_root_listener(squatter, tmp_path, monkeypatch, capfd):
    s = squatter(CLAIM)
    monkeypatch.setenv("PYMULTIPATH_HELPER_SOCKET", s.name)
    monkeypatch.setenv("PYMULTIPATH_RUNDIR", str(tmp_path))
    assert udevlink.ask("-u", "sdb", False, {}) is None  # decides alone
    err = capfd.readouterr().err
    assert f"pid {s.pid}" in err and "uid 65534, not root" in err and s.name in err
    assert (tmp_path / f"untrusted-peer.{s.pid}").exists()
    assert udevlink.ask("-u", "sdb", False, {}) is None
    assert capfd.readouterr().err == ""  # said once per squatting process, not once per udev event


def test_the_compiled_front_never_believes_a_non_root_listener(front, squatter, tmp_path):  # noqa: F811
    s = squatter(CLAIM)
    r = call(front, "-u", "sdb", socket_name=s.name, PYMULTIPATH_RUNDIR=str(tmp_path))
    assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-u sdb:1\n")  # pymultipath decides
    assert f"pid {s.pid}" in r.stderr and "uid 65534, not root" in r.stderr
    assert (tmp_path / f"untrusted-peer.{s.pid}").exists()
    r = call(front, "-u", "sdb", socket_name=s.name, PYMULTIPATH_RUNDIR=str(tmp_path))
    assert (r.returncode, r.stdout, r.stderr) == (FALLBACK_RC, "fallback:-u sdb:1\n", "")


class Trickler(Server):
    """A root listener that reads the request, then sends one byte of a reply every 0.3 s for a minute:
    each single read completes well within any per-call timeout."""

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            while conn.recv(65536):
                pass
            for byte in udevlink.encode_reply(0, "x" * 200, ""):
                if self._stop.wait(0.3):
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return


def test_one_deadline_bounds_the_front_against_a_trickling_peer(front, tmp_path):  # noqa: F811
    server = Trickler(f"@/pymp-test/trickle-{os.getpid()}-{next(_SERIAL)}", b"")
    try:
        # call() gives up after 30 s: a front that times each read alone would still be reading then
        r = call(front, "-u", "sdb", socket_name=server.name)
    finally:
        server.close()
    assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-u sdb:1\n")


def test_one_deadline_bounds_the_python_helper_against_a_trickling_peer(monkeypatch):
    server = Trickler(f"@/pymp-test/trickle-{os.getpid()}-{next(_SERIAL)}", b"")
    monkeypatch.setenv("PYMULTIPATH_HELPER_SOCKET", server.name)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(udevlink.ask("-u", "sdb", False, {}, 1.0)))
    try:
        worker.start()
        worker.join(30)  # the reply takes 60 s to trickle out
        assert not worker.is_alive(), "the helper kept reading past its deadline"
    finally:
        server.close()
    assert result == [None]


def test_the_admin_client_sends_nothing_to_a_non_root_listener(squatter):
    s = squatter(b"\x05\0\0\0\0\0\0\0ok\n\0")
    with pytest.raises(client.ClientError, match=rf"served by pid {s.pid} .*uid 65534, not root"):
        client.send("reconfigure", s.name)
    assert s.received() == 0


def test_the_daemon_running_probe_ignores_a_non_root_listener(squatter, monkeypatch):
    s = squatter()
    monkeypatch.setenv("MULTIPATH_SOCKET_NAME", s.name)
    assert facts.daemon_reachable() is False
    own = f"@/pymp-test/own-{os.getpid()}-{next(_SERIAL)}"
    monkeypatch.setenv("MULTIPATH_SOCKET_NAME", own)
    with listen.bind_unix(own):
        assert facts.daemon_reachable() is True


def test_binding_a_squatted_name_names_the_squatter(squatter):
    s = squatter()
    with pytest.raises(listen.SocketInUse) as info:
        listen.bind_unix(s.name)
    assert info.value.holder_uid == NOBODY and info.value.errno == errno.EADDRINUSE
    assert f"pid {s.pid}" in str(info.value) and "uid 65534, NOT ROOT" in str(info.value)
    own = f"@/pymp-test/own-{os.getpid()}-{next(_SERIAL)}"
    with listen.bind_unix(own), pytest.raises(listen.SocketInUse) as info:
        listen.bind_unix(own)  # held by root: another daemon, which must stop this one from starting
    assert info.value.holder_uid == 0 and "another multipath daemon" in str(info.value)


def test_the_private_socket_lives_where_only_root_can_go(tmp_path):
    d = tmp_path / "pymultipathd"
    with listen.bind_unix(str(d / "udev-helper"), private=True):
        assert (d.stat().st_mode & 0o777, (d / "udev-helper").stat().st_mode & 0o777) == (0o700, 0o600)
    d.chmod(0o755)
    listen.bind_unix(str(d / "udev-helper"), private=True).close()
    assert d.stat().st_mode & 0o777 == 0o700
    for bad in (lambda: d.chmod(0o777), lambda: os.chown(d, NOBODY, NOBODY)):
        d.chmod(0o700)
        os.chown(d, 0, 0)
        bad()
        with pytest.raises(OSError, match="refusing to listen there"):
            listen.bind_unix(str(d / "udev-helper"), private=True)
    d2 = tmp_path / "elsewhere"
    d2.mkdir()
    (tmp_path / "link").symlink_to(d2)
    with pytest.raises(OSError, match="refusing to listen there"):
        listen.bind_unix(str(tmp_path / "link" / "udev-helper"), private=True)


def test_the_default_helper_socket_is_a_pathname(monkeypatch):
    monkeypatch.delenv("PYMULTIPATH_HELPER_SOCKET", raising=False)
    assert locations.helper_socket().startswith("/run/")


# --- store files that cannot be read or written ---------------------------------------------------------


def test_u_answers_with_a_rule_when_the_wwids_file_is_unreadable(tmp_path):
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", W1)
    (tmp_path / "wwids").mkdir()  # reading it fails (EISDIR), whoever runs the helper
    listener = control_listener(tree)
    try:
        r = run(tree, "-u", "sdb", "--explain")
    finally:
        listener.close()
    assert (r.returncode, r.stdout) == (0, 'DM_MULTIPATH_DEVICE_PATH="0"\n')
    assert "Traceback" not in r.stderr
    unread = f"cannot read {tmp_path / 'wwids'}: Is a directory (EISDIR); decided as if it were empty"
    assert unread in r.stderr
    assert "sdb: no (rule strict)" in r.stderr


def test_the_daemon_answers_udev_when_the_wwids_file_is_unreadable(tmp_path, monkeypatch):
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    tree.config("defaults {\n find_multipaths greedy\n}\n")
    (tmp_path / "wwids").mkdir()
    with answering_daemon(tree, monkeypatch) as service:
        r = run(tree, "-u", "sdb")
        assert (service.answered, service.declined) == (1, 0)
    assert (r.returncode, r.stdout) == (0, 'DM_MULTIPATH_DEVICE_PATH="1"\n')
    assert "EISDIR" in r.stderr and "Traceback" not in r.stderr


def test_a_smart_wait_reaches_the_rules_as_whole_seconds(tmp_path):
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths smart\n find_multipaths_timeout 7\n}\n")
    listener = control_listener(tree)
    try:
        r = run(tree, "-u", "sdb")
    finally:
        listener.close()
    wait = r.stdout.splitlines()[0]
    assert wait.startswith("FIND_MULTIPATHS_WAIT_UNTIL=") and wait.split("=")[1].strip('"') in ("6", "7")


@pytest.fixture
def unwritable(tmp_path, monkeypatch):
    """A bindings file and a wwids file that can be read but not written: their lock files are
    directories, so the locked update fails (ENOTDIR would do too; root ignores permission bits)."""
    bindings, wwids = tmp_path / "bindings", tmp_path / "wwids"
    bindings.write_text("mpatha 3600a01\n")
    for f in (bindings, wwids):
        (tmp_path / (f.name + ".lock")).mkdir()
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(bindings))
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(wwids))
    monkeypatch.setenv("PYMULTIPATH_RUNDIR", str(tmp_path / "run"))
    return tmp_path


def test_names_fall_back_to_the_binding_or_the_wwid_when_bindings_cannot_be_written(unwritable, caplog):
    persist = Persist()
    with caplog.at_level(logging.ERROR, logger="pymultipathd"):
        assert persist.aliases(["3600a01", "3600a02"], "mpath", ()) == {"3600a01": "mpatha"}
        assert persist.aliases(["3600a03"], "mpath", ()) == {}
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1, errors  # once, until a write works again
    assert f"cannot open lock file {unwritable / 'bindings.lock'}" in errors[0] and "(EISDIR)" in errors[0]
    (unwritable / "bindings.lock").rmdir()
    assert persist.aliases(["3600a03"], "mpath", ()) == {"3600a03": "mpathb"}
    assert persist.failing == {}


def test_wwids_that_cannot_be_recorded_are_kept_and_written_later(unwritable, caplog):
    persist = Persist()
    with caplog.at_level(logging.INFO, logger="pymultipathd"):
        persist.record_wwids(["3600a01"])
        persist.record_wwids(["3600a02"])
        persist.retry(time.monotonic() + 3600)
        assert persist.unrecorded == {"3600a01", "3600a02"}
        (unwritable / "wwids.lock").rmdir()
        persist.retry(time.monotonic() + 1)  # not due yet: the last attempt was just now
        assert persist.unrecorded
        persist.retry(time.monotonic() + 7200)
    assert persist.unrecorded == set() and store.read_wwids() == ["3600a01", "3600a02"]
    logged = [r.getMessage() for r in caplog.records]
    assert sum("cannot open lock file" in m for m in logged) == 1, logged
    assert "wwids: written again" in logged


def test_a_map_is_still_made_when_no_store_file_can_be_written(tmp_path, monkeypatch):
    """Core._create over a device-mapper stand-in: bindings, wwids and the failed-WWID markers all
    unwritable (their directories are files); the map is created, named after its WWID."""
    from pymultipathd.classify import PathFacts
    from pymultipathd.config import load
    from pymultipathd.daemon.core import Core
    from pymultipathd.dm import maps as dmmaps
    from pymultipathd.policy.actions import CreateMap
    from pymultipathd.policy.state import PathState

    (tmp_path / "etc").write_text("")
    (tmp_path / "run").write_text("")
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(tmp_path / "etc" / "bindings"))
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(tmp_path / "etc" / "wwids"))
    monkeypatch.setenv("PYMULTIPATH_RUNDIR", str(tmp_path / "run"))
    made = []

    async def scenario() -> None:
        core = Core(load.parse_text("defaults {\n user_friendly_names yes\n}\n"), ctl=None)

        async def dm(fn, *args, **kw):  # the DM thread, without device mapper: only creates are expected
            assert fn is dmmaps.create_multipath
            made.append(args[1])

        async def refresh(m):
            return None

        core.dm, core.refresh_map = dm, refresh
        p = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(dev="sdb", wwid="3600a01"))
        core.state.paths["sdb"] = p
        core._bind_aliases(["3600a01"], {"3600a01": ("sdb",)})
        await core._create(CreateMap("3600a01", ("sdb",), table=None))
        core.persist.record_wwids(core._created)
        assert set(core.persist.failing) == {"bindings", "failed_wwids", "wwids"}
        assert core.persist.unrecorded == {"3600a01"}

    asyncio.run(scenario())
    assert made == ["3600a01"]


def test_a_wwid_is_cut_where_upstreams_buffer_cuts_it(tmp_path, monkeypatch):
    """The LUN's owner chooses the WWID's length; it reaches the blacklist regexes."""
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", "3" + "a" * 5000)
    for k, v in tree.env().items():
        monkeypatch.setenv(k, v)
    path, _ = facts.world_for("sdb", None, siblings=False, daemon_running=True)
    assert path.wwid == "3" + "a" * (facts.WWID_SIZE - 2)


def test_a_huge_value_is_matched_on_its_head(monkeypatch):
    from pymultipathd.config import ere

    assert ere.search("^a+$", "a" * ere.MAX_TEXT + "b")  # the tail past the cap is not read
    assert not ere.search("b", "a" * ere.MAX_TEXT + "b")


def test_a_flooded_abstract_name_is_not_a_running_daemon(monkeypatch, tmp_path):
    """A user binds the control name and keeps its backlog full: EAGAIN there says nothing about root. The
    pathname socket, which only root can create, still counts when its backlog is full (a daemon busy
    starting, as upstream counts EAGAIN)."""
    squat = f"@/pymp-test/flood-{os.getpid()}-{next(_SERIAL)}"
    path = str(tmp_path / "multipathd.socket")
    monkeypatch.setenv("MULTIPATH_SOCKET_NAME", squat)
    monkeypatch.setenv("PYMULTIPATH_SOCKET_PATH", path)
    with contextlib.ExitStack() as stack:
        full = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        full.bind(locations.unix_address(squat))
        full.listen(0)
        for _ in range(3):  # fill the backlog of the stand-in
            c = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(locations.unix_address(squat))
        assert facts.daemon_reachable() is False
        busy = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        busy.bind(path)
        busy.listen(0)
        for _ in range(3):
            c = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(path)
        assert facts.daemon_reachable() is True


def test_a_squatter_that_cannot_be_asked_is_not_another_daemon(squatter, monkeypatch, tmp_path):
    """Bound without listen(): the daemon cannot ask who it is, and must not take it for another daemon."""
    from pymultipathd.daemon import main

    name = f"@/pymp-test/nolisten-{os.getpid()}-{next(_SERIAL)}"
    monkeypatch.setenv("PYMULTIPATH_SOCKET_PATH", str(tmp_path / "multipathd.socket"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(locations.unix_address(name))
        with pytest.raises(listen.SocketInUse) as info:
            listen.bind_unix(name)
        assert info.value.holder_uid is None and "does not answer" in str(info.value)
        assert main._another_daemon(info.value) is False
        with listen.bind_unix(str(tmp_path / "multipathd.socket")):  # root answers on the pathname
            assert main._another_daemon(info.value) is True


def test_the_admin_client_waits_for_room_in_a_flooded_backlog(tmp_path):
    """A full backlog made the client's connect fail at once (EAGAIN): one local process looping connects
    locked root out. It now waits, up to its timeout, for the server to accept."""
    path = str(tmp_path / "ctl.sock")
    server = listen.bind_unix(path)
    server.setblocking(True)
    fillers = []
    for _ in range(socket.SOMAXCONN + 2):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        fillers.append(c)

    def drain() -> None:
        time.sleep(0.5)
        for _ in range(len(fillers) + 1):
            server.accept()[0].close()

    t = threading.Thread(target=drain)
    t.start()
    try:
        with client.connect(path, timeout=20):
            pass
    finally:
        t.join(30)
        for c in fillers:
            c.close()
        server.close()


def test_a_squatters_chosen_name_cannot_forge_log_lines(tmp_path):
    from pymultipathd import peer

    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "comm").write_bytes(b"x\n\x1b[2Jroot ok\n")
    assert peer.comm(7, str(tmp_path)) == "x\\x0a\\x1b[2Jroot ok"


def test_a_wwid_no_store_file_can_hold_gets_no_map(tmp_path, monkeypatch):
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", "3600a/../../etc")
    for k, v in tree.env().items():
        monkeypatch.setenv(k, v)
    path, _ = facts.world_for("sdb", None, siblings=False, daemon_running=True)
    assert path.wwid is None


def test_one_unstorable_wwid_does_not_block_recording_the_others(unwritable, caplog):
    (unwritable / "wwids.lock").rmdir()
    persist = Persist()
    persist.record_wwids(["3600a01", "bad/wwid"])
    persist.mark_failed("bad/wwid", True)  # logged, not raised
    assert persist.unrecorded == set() and store.read_wwids() == ["3600a01"]
    assert "not recording bad/wwid" in caplog.text and "no failed marker for bad/wwid" in caplog.text
