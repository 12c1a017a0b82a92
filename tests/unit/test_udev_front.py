"""The compiled udev front (udev/pymultipath-udev.c), built here with the host's C compiler: it sends the
request `pymultipath -u` would send, prints the daemon's answer, and runs `pymultipath` with the same
arguments whenever there is no answer to print."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sysfs_tree import Tree
from test_udev_helper import W1, answering_daemon, control_listener
from test_udev_helper import run as run_python_helper

from pymultipathd import locations, udevlink

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(REPO, "udev", "pymultipath-udev.c")
FALLBACK_RC = 7
_SERIAL = itertools.count()


def build(prefix: Path, fallback: str, cflags: str = "") -> str:
    """The front as `make helper` builds it, for PREFIX=prefix, whose bin/pymultipath (what it falls back
    to) is the shell script `fallback`."""
    assert shutil.which(os.environ.get("CC", "cc")), \
        "a C compiler is needed to test udev/pymultipath-udev.c (`make setup` installs gcc)"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "bin" / "pymultipath").write_text(fallback)
    (prefix / "bin" / "pymultipath").chmod(0o755)
    binary = prefix / "pymultipath-udev"
    subprocess.run(["make", "-s", "-C", REPO, "helper", f"PREFIX={prefix}", f"HELPER={binary}",
                    f"CFLAGS=-Werror {cflags}"], check=True)
    return str(binary)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """The front built with a 1 s timeout, falling back to a script that reports how it was called."""
    return build(tmp_path_factory.mktemp("front"),
                 f'#!/bin/sh\necho "fallback:$*:$PYMULTIPATH_DAEMON_ASKED"\nexit {FALLBACK_RC}\n',
                 "-DTIMEOUT_S=1")


class Server:
    """One-connection-at-a-time stand-in for the daemon's helper socket: records each request and answers
    it with `reply` (None: read the request and never answer)."""

    def __init__(self, name: str, reply: bytes | None) -> None:
        self.name, self.reply, self.requests = name, reply, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + name[1:] if name.startswith("@") else name)
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
                self.requests.append(b"".join(chunks))
                if self.reply is None:
                    self._stop.wait(20)  # far past the front's timeout (1 s in these builds)
                else:
                    conn.sendall(self.reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def serve():
    servers = []
    name = f"@/pymp-test/front-{os.getpid()}-{next(_SERIAL)}"

    def start(reply: bytes | None) -> Server:
        servers.append(Server(name, reply))
        return servers[-1]

    start.name = name
    yield start
    for s in servers:
        s.close()


def call(front: str, *args: str, socket_name: str = "@/pymp-test/nobody-listens", **env: str):
    full = {"PATH": "/usr/bin:/bin", "PYMULTIPATH_HELPER_SOCKET": socket_name, **env}
    return subprocess.run([front, *args], env=full, capture_output=True, text=True, timeout=30)


def test_prints_the_daemons_answer_and_exits_with_its_status(front, serve):
    server = serve(udevlink.encode_reply(0, 'DM_MULTIPATH_DEVICE_PATH="1"\n', "why\n"))
    r = call(front, "-u", "sdb", socket_name=serve.name, ID_SERIAL="a=b c", EMPTY="")
    assert (r.returncode, r.stdout, r.stderr) == (0, 'DM_MULTIPATH_DEVICE_PATH="1"\n', "why\n")
    # byte for byte what `pymultipath -u sdb` sends with the same environment
    env = {"PATH": "/usr/bin:/bin", "PYMULTIPATH_HELPER_SOCKET": serve.name, "ID_SERIAL": "a=b c",
           "EMPTY": ""}
    assert server.requests[0] == udevlink.encode_request("-u", "sdb", False, env)

    server.reply = udevlink.encode_reply(1, "", "")
    r = call(front, "-c", "/dev/sdc/", "--explain", socket_name=serve.name)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")
    assert udevlink.decode_request(server.requests[1])[:3] == ("-c", "sdc", True)
    server.reply = udevlink.encode_reply(-1, "", "")  # as `sys.exit(-1)` would exit
    assert call(front, "-u", "sdb", socket_name=serve.name).returncode == 255
    # an empty "asked" variable is not set: the daemon is asked
    r = call(front, "-u", "sdb", socket_name=serve.name, PYMULTIPATH_DAEMON_ASKED="")
    assert (r.returncode, len(server.requests)) == (255, 4)


def test_a_path_socket_works_as_an_abstract_one(front, tmp_path):
    server = Server(str(tmp_path / "helper.sock"), udevlink.encode_reply(0, "answered\n", ""))
    try:
        r = call(front, "-u", "sdb", socket_name=server.name)
    finally:
        server.close()
    assert (r.returncode, r.stdout, len(server.requests)) == (0, "answered\n", 1)


@pytest.mark.parametrize("reply", [udevlink.encode_decline("not root"), b"", b"R0\0only one field",
                                   b"Rx\0\0", b"R0\0a\0b\0c", b"R1234567\0\0", b"?"])
def test_anything_but_an_answer_runs_pymultipath_with_the_same_arguments(front, serve, reply):
    server = serve(reply)
    r = call(front, "-u", "sdb", socket_name=serve.name)
    assert (r.returncode, r.stdout, r.stderr) == (FALLBACK_RC, "fallback:-u sdb:1\n", "")
    assert len(server.requests) == 1


def test_no_daemon_or_a_silent_one_runs_pymultipath(front, serve):
    r = call(front, "-u", "sdb", "--explain")
    assert (r.returncode, r.stdout, r.stderr) == (FALLBACK_RC, "fallback:-u sdb --explain:1\n", "")
    serve(None)  # reads the request and holds the connection 20 s: the front gives up after its 1 s
    t0 = time.monotonic()
    r = call(front, "-u", "sdb", socket_name=serve.name)
    assert (r.returncode, r.stdout, r.stderr) == (FALLBACK_RC, "fallback:-u sdb:1\n", "")
    assert time.monotonic() - t0 < 15, "the front waited for the daemon past its timeout"


@pytest.mark.parametrize("args", [[], ["-u"], ["-x", "sdb"], ["-u", "sdb", "sdc"], ["-u", "/"],
                                  ["-u", "--explain"], ["-u", "--config=/etc/other.conf", "sdb"],
                                  ["-i", "-u", "sdb"]])
def test_usage_errors_and_options_are_left_to_pymultipath(front, serve, args):
    server = serve(udevlink.encode_reply(0, "", ""))
    r = call(front, *args, socket_name=serve.name)
    assert (r.returncode, r.stdout, r.stderr) == (FALLBACK_RC, f"fallback:{' '.join(args)}:1\n", "")
    assert server.requests == []


def test_asked_already_or_an_oversized_environment_never_reaches_the_daemon(front, serve):
    server = serve(udevlink.encode_reply(0, "", ""))
    r = call(front, "-u", "sdb", socket_name=serve.name, PYMULTIPATH_DAEMON_ASKED="1")
    assert r.stdout == "fallback:-u sdb:1\n"
    big = {f"BIG{i}": "x" * 120_000 for i in range(10)}  # past udevlink.LIMIT in all
    r = call(front, "-u", "sdb", socket_name=serve.name, **big)
    assert r.stdout == "fallback:-u sdb:1\n"
    assert server.requests == []


def test_the_python_helper_does_not_ask_again_after_the_front(monkeypatch):
    from pymultipathd.cli import pymultipath

    monkeypatch.setattr(udevlink, "ask", lambda *a, **k: pytest.fail("asked the daemon a second time"))
    assert pymultipath._ask_daemon("-u", ["sdb"], {udevlink.ASKED_VAR: "1"}) is None
    monkeypatch.setenv(udevlink.ASKED_VAR, "1")  # as the front runs it: the entry reads its environment
    monkeypatch.setattr(pymultipath, "_run", lambda *a, **k: 0)
    assert pymultipath.main(["-u", "sdb"]) == 0


def test_same_answer_as_the_python_helper_from_the_real_service(tmp_path, monkeypatch):
    """End to end against the daemon's helper service over a fake sysfs: the front answered, the front
    falling back to the real `pymultipath`, and `pymultipath -u` itself agree."""
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    tree.config("defaults {\n find_multipaths greedy\n}\n")
    binary = build(tmp_path / "prefix", f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m "
                   'pymultipathd.cli.pymultipath "$@"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("DEVPATH", "SUBSYSTEM",
                                                              "PYMULTIPATH_FIND_MULTIPATHS")}
    env.update(tree.env())
    listener = control_listener(tree)
    try:
        with answering_daemon(tree, monkeypatch) as service:
            answered = subprocess.run([str(binary), "-u", "sdb"], env=env, capture_output=True, text=True,
                                      timeout=60)
            assert (service.answered, service.declined) == (1, 0)
        alone = subprocess.run([str(binary), "-u", "sdb"], env=env, capture_output=True, text=True,
                               timeout=60)
        python = run_python_helper(tree, "-u", "sdb")
    finally:
        with contextlib.suppress(OSError):
            listener.close()
    assert answered.stdout == alone.stdout == python.stdout == 'DM_MULTIPATH_DEVICE_PATH="1"\n'
    assert answered.returncode == alone.returncode == python.returncode == 0


def test_the_fronts_constants_are_the_python_helpers(monkeypatch):
    """The C file cannot import udevlink: what both sides must agree on is compared here."""
    with open(SOURCE) as f:
        defines = dict(re.findall(r"^#define (\w+) (.+?)(?:\s+/\*.*)?$", f.read(), re.M))
    monkeypatch.delenv("PYMULTIPATH_HELPER_SOCKET", raising=False)
    assert defines["MAGIC"] == f'"{udevlink.MAGIC.decode()}"'
    assert (defines["LIMIT"], udevlink.LIMIT) == ("(1 << 20)", 1 << 20)
    assert float(defines["TIMEOUT_S"]) == udevlink.TIMEOUT
    assert defines["DEFAULT_SOCKET"] == f'"{locations.helper_socket()}"'
    assert defines["ASKED_VAR"] == f'"{udevlink.ASKED_VAR}"'
