"""The compiled udev front (udev/pymultipath-udev.c), built here with the host's C compiler: it sends the
request `pymultipath -u` would send, prints the daemon's answer; with no daemon at all it gives the Python
helper's answer itself (compared byte for byte with udev_helper.main over fake sysfs trees); and it runs
`pymultipath` with the same arguments whenever it has no answer to print."""

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
from pymultipathd.cli import udev_helper

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


# --- no daemon: the front answers itself --------------------------------------------------------------------
# The front built with its own control socket names (upstream's are the host's: a multipathd running there
# must not change these tests), and the Python helper pointed at the same ones: the oracle.

CONTROL_NAME = f"@/pymp-test/{os.getpid()}/front-control"
# pymultipathd.locations' variables the front reads as Python does; any other one sends the call to Python
HONOURED = ("PYMULTIPATH_SYSFS", "PYMULTIPATH_RUNDIR", "PYMULTIPATH_HELPER_SOCKET")


@pytest.fixture(scope="module")
def control_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("control") / "multipathd.socket")


@pytest.fixture(scope="module")
def alone(tmp_path_factory, control_path):
    """The front of `front`, with control sockets of its own (CONTROL_NAME, control_path)."""
    return build(tmp_path_factory.mktemp("alone"),
                 f'#!/bin/sh\necho "fallback:$*:$PYMULTIPATH_DAEMON_ASKED"\nexit {FALLBACK_RC}\n',
                 f"-DTIMEOUT_S=1 -DCONTROL_NAME='\"{CONTROL_NAME}\"' -DCONTROL_PATH='\"{control_path}\"'")


def dm_holder(tree: Tree, dm: str, uuid: bytes | None, slaves: list[str],
              holds: list[str] | None = None) -> None:
    """Device-mapper device `dm` with dm/uuid `uuid` (None: no such file) and these slaves; `holds`: the
    devices whose holders/ name it (default: the slaves, as the kernel links both ways)."""
    base = tree.sys / "block" / dm
    (base / "slaves").mkdir(parents=True)
    (base / "dev").write_text("254:9\n")
    if uuid is not None:
        (base / "dm").mkdir()
        (base / "dm" / "uuid").write_bytes(uuid)
    for s in slaves:
        (base / "slaves" / s).symlink_to(tree.sys / "class" / "block" / s)
    for h in slaves if holds is None else holds:
        (tree.sys / "class" / "block" / h / "holders" / dm).symlink_to(base)


def timer(tree: Tree, dev_t: str, seconds: float) -> Path:
    """A smart-mode wait of `dev_t` ending `seconds` from now (mtime = deadline)."""
    directory = tree.run / "find_multipaths"
    directory.mkdir(exist_ok=True)
    (directory / dev_t).touch()
    deadline = time.time() + seconds
    os.utime(directory / dev_t, (deadline, deadline))
    return directory / dev_t


def call_alone(alone: str, tree: Tree, *args: str, **env: str):
    """The front as udev runs it, in `tree` (the two locations it honours), with no daemon to ask."""
    return call(alone, *args, PYMULTIPATH_SYSFS=str(tree.sys), PYMULTIPATH_RUNDIR=str(tree.run), **env)


def python_alone(tree: Tree, control_path: str, monkeypatch, capsys, flag: str,
                 dev: str) -> tuple[int, str, str]:
    """What the Python helper prints and returns, in `tree`, looking for the daemon where `alone` looks."""
    for k, v in tree.env(MULTIPATH_SOCKET_NAME=CONTROL_NAME, PYMULTIPATH_SOCKET_PATH=control_path).items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    rc = udev_helper.main([flag, dev], env={})
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def held_tree(tmp_path):
    """Disks held and not held by multipath maps, and by other holders, two with a wait running."""
    tree = Tree(tmp_path)
    for i, name in enumerate("bcdefghijklmn"):
        tree.disk(f"sd{name}", f"8:{16 * (i + 1)}", W1)
    tree.partition("sdg", "sdg1", "8:97")
    tree.partition("sdn", "sdn1", "8:209")
    dm_holder(tree, "dm-0", b"mpath-36001405aaaa\n", ["sdb", "sdc"])   # sdb, sdc: paths of a map
    dm_holder(tree, "dm-1", b"LVM-Zx9aQ3bd\n", ["sdd"])                  # sdd: an LVM physical volume
    dm_holder(tree, "dm-2", b"mpath-36001405gggg\n", ["sdg1"])          # sdg1, not sdg: a map's path
    dm_holder(tree, "dm-3", b" \t\n\v\f\r\x1c\x1d\x1e\x1fmpath-36001405hhhh\n", ["sdh"])  # str.strip()s
    dm_holder(tree, "dm-4", None, ["sdi"])                              # no dm/uuid: not a map
    dm_holder(tree, "dm-5", b"mpath-36001405kkkk\n", [], holds=["sdk"])  # held, but not among its slaves
    dm_holder(tree, "dm-6", b"", ["sdl"])
    dm_holder(tree, "dm-7", b"mpath", ["sdm"])
    dm_holder(tree, "dm-10", b"mpath-36001405nnnn\n", ["sdn", "sdn1"], holds=["sdn1"])  # found by sdn1
    (tree.sys / "block" / "md0").mkdir()                                # sdj: in an md array
    (tree.sys / "block" / "sdj" / "holders" / "md0").symlink_to(tree.sys / "block" / "md0")
    return tree


# -u's answer of each device in held_tree (timers: sdb and sde 100.x s from now, sdf over)
HELD_TREE_ANSWERS = {
    "sdb": 'FIND_MULTIPATHS_WAIT_UNTIL="101"\nDM_MULTIPATH_DEVICE_PATH="1"\n',
    "sdc": 'DM_MULTIPATH_DEVICE_PATH="1"\n',
    "sdd": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sde": 'FIND_MULTIPATHS_WAIT_UNTIL="101"\nDM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdf": 'FIND_MULTIPATHS_WAIT_UNTIL="0"\nDM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdg": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdg1": 'DM_MULTIPATH_DEVICE_PATH="1"\n',
    "sdh": 'DM_MULTIPATH_DEVICE_PATH="1"\n',
    "sdi": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdj": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdk": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdl": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdm": 'DM_MULTIPATH_DEVICE_PATH="0"\n',
    "sdn": 'DM_MULTIPATH_DEVICE_PATH="1"\n',
}


def test_with_no_daemon_the_front_answers_as_the_python_helper(alone, control_path, held_tree, monkeypatch,
                                                               capsys):
    """The conformance oracle: for every disk, -u and -c, the front's exit status, stdout and stderr are the
    Python helper's, byte for byte, and it did not run the Python helper to get them."""
    for dev, expected in HELD_TREE_ANSWERS.items():
        for flag in ("-u", "-c"):
            # fresh deadlines for each pair: 100.95 s rounds up to 101 for the next 0.95 s
            timer(held_tree, "8:16", 100.95)  # sdb
            timer(held_tree, "8:64", 100.95)  # sde
            timer(held_tree, "8:80", -5.5)    # sdf
            r = call_alone(alone, held_tree, flag, f"/dev/{dev}" if flag == "-c" else dev)
            python = python_alone(held_tree, control_path, monkeypatch, capsys, flag, dev)
            assert (r.returncode, r.stdout, r.stderr) == python, (flag, dev)
            held = expected.endswith('"1"\n')
            said = f"{dev} is {'' if held else 'not '}a valid multipath device path\n"
            wanted = (0, expected) if flag == "-u" else (0 if held else 1, said)
            assert (r.returncode, r.stdout) == wanted, (flag, dev)


def test_an_unsure_front_runs_the_python_helper(alone, held_tree):
    """Never a guess: whatever the front cannot read as Python would is Python's to answer."""
    expect = (FALLBACK_RC, "fallback:-u {}:1\n", "")

    def fell_back(dev: str, **env: str) -> bool:
        r = call_alone(alone, held_tree, "-u", dev, **env)
        return (r.returncode, r.stdout, r.stderr) == (expect[0], expect[1].format(dev), expect[2])

    tree = held_tree
    assert fell_back("sdz")  # no such device: Python's message
    assert fell_back("..") and fell_back("-x") and fell_back("sd b") and fell_back("sd\u00e9")
    dm_holder(tree, "dm-8", b"\xc2\xa0mpath-36001405nnnn\n", ["sdl"])  # a no-break space Python strips
    assert fell_back("sdl")
    dm_holder(tree, "dm-9", b"mpath-36001405pppp\n", ["sde"])  # held, but its slaves/ cannot be listed
    (tree.sys / "block" / "dm-9" / "dm" / "uuid").unlink()
    os.mkfifo(tree.sys / "block" / "dm-9" / "dm" / "uuid")  # not a regular file: nor is it read
    assert fell_back("sde")
    (tree.sys / "block" / "sdc" / "dev").write_text("8:32 \n")  # not what sysfs writes
    assert fell_back("sdc")
    (tree.sys / "block" / "sdd" / "dev").unlink()
    os.mkfifo(tree.sys / "block" / "sdd" / "dev")  # would hang a reader: never opened blocking
    assert fell_back("sdd")
    (tree.sys / "block" / "sdf" / "dev").write_text("8" * 40 + ":80\n")  # past the bound
    assert fell_back("sdf")
    # the front answers in this tree otherwise
    assert call_alone(alone, tree, "-u", "sdb").stdout == 'DM_MULTIPATH_DEVICE_PATH="1"\n'


def test_explain_goes_to_the_python_helper(alone, held_tree):
    r = call_alone(alone, held_tree, "-c", "sdb", "--explain")
    assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-c sdb --explain:1\n")


@pytest.mark.parametrize("var", sorted(set(locations.ENV_VARS) - set(HONOURED)))
def test_a_location_moved_elsewhere_goes_to_the_python_helper(alone, held_tree, var):
    r = call_alone(alone, held_tree, "-u", "sdb", **{var: "/elsewhere"})
    assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-u sdb:1\n")
    r = call_alone(alone, held_tree, "-u", "sdb", **{var: ""})  # empty: not set, as locations.py reads it
    assert (r.returncode, r.stdout) == (0, 'DM_MULTIPATH_DEVICE_PATH="1"\n')


def _listen(address: str, backlog: int = 8) -> socket.socket:
    if not address.startswith("@"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(locations.unix_address(address))
    s.listen(backlog)
    return s


def _fill_backlog(listener: socket.socket, address: str) -> list[socket.socket]:
    """Connections nobody accepts, until the next one would get EAGAIN."""
    clients = []
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(locations.unix_address(address))
        except BlockingIOError:
            c.close()
            return clients
        clients.append(c)
        assert len(clients) < 100


@pytest.mark.parametrize("which", ["abstract", "path"])
def test_a_daemon_on_a_control_socket_goes_to_the_python_helper(alone, control_path, held_tree, which,
                                                                monkeypatch, capsys):
    """A listener believed on either control socket is a running daemon: the configuration decides, and only
    Python reads it. A full backlog counts on the pathname (only root creates it), not on an abstract name."""
    address = CONTROL_NAME if which == "abstract" else control_path
    listener = _listen(address)
    try:
        r = call_alone(alone, held_tree, "-u", "sde")
        assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-u sde:1\n")
        listener.close()
        listener = _listen(address, 0)
        clients = _fill_backlog(listener, address)
        r = call_alone(alone, held_tree, "-u", "sde")
        python = python_alone(held_tree, control_path, monkeypatch, capsys, "-u", "sde")
        for c in clients:
            c.close()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(control_path)
    if which == "path":
        assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-u sde:1\n")
    else:
        assert (r.returncode, r.stdout, r.stderr) == python == (0, 'DM_MULTIPATH_DEVICE_PATH="0"\n', "")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to listen as another user")
def test_a_squatter_on_the_abstract_name_is_no_daemon(alone, control_path, held_tree, monkeypatch, capsys):
    """Anyone may bind the abstract name first: a listener that is neither root nor us does not count, for the
    front as for Python (facts.daemon_reachable)."""
    ready, go = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the squatter: binds and listens as nobody, until told to go
        try:
            os.setgid(65534)
            os.setuid(65534)
            listener = _listen(CONTROL_NAME)
            os.write(ready[1], b"!")
            os.read(go[0], 1)
            listener.close()
        finally:
            os._exit(0)
    os.close(ready[1])  # the squatter's ends: its exit is an end of file here
    os.close(go[0])
    try:
        assert os.read(ready[0], 1) == b"!", "the squatter could not listen"
        r = call_alone(alone, held_tree, "-u", "sdb")
        python = python_alone(held_tree, control_path, monkeypatch, capsys, "-u", "sdb")
    finally:
        os.write(go[1], b"!")
        os.waitpid(pid, 0)
        os.close(ready[0])
        os.close(go[1])
    assert (r.returncode, r.stdout, r.stderr) == python == (0, 'DM_MULTIPATH_DEVICE_PATH="1"\n', "")


def test_a_helper_socket_that_answers_still_wins(alone, held_tree, serve):
    """The daemon's answer first: the front decides alone only when nothing listens on the helper socket;
    one that listens and declines is the Python helper's case, as before."""
    serve(udevlink.encode_reply(0, "from the daemon\n", ""))
    r = call_alone(alone, held_tree, "-u", "sdb", PYMULTIPATH_HELPER_SOCKET=serve.name)
    assert (r.returncode, r.stdout) == (0, "from the daemon\n")


def test_a_declining_helper_socket_goes_to_the_python_helper(alone, held_tree, serve):
    serve(udevlink.encode_decline("not root"))
    r = call_alone(alone, held_tree, "-u", "sdb", PYMULTIPATH_HELPER_SOCKET=serve.name)
    assert (r.returncode, r.stdout) == (FALLBACK_RC, "fallback:-u sdb:1\n")


def test_the_fronts_no_daemon_constants_are_pythons():
    with open(SOURCE) as f:
        source = f.read()
    defines = dict(re.findall(r"^#define (\w+) (.+?)(?:\s+/\*.*)?$", source, re.M))
    upstream = locations.Locations()
    assert defines["CONTROL_NAME"] == f'"{upstream.socket_name}"'
    assert defines["CONTROL_PATH"] == f'"{upstream.socket_path}"'
    assert defines["DEFAULT_SYSFS"] == f'"{upstream.sysfs}"'
    assert defines["DEFAULT_RUNDIR"] == f'"{upstream.run_dir}"'
    assert os.path.join(upstream.run_dir, "find_multipaths") == upstream.find_multipaths_dir
    honoured = {defines[k].strip('"') for k in ("HELPER_SOCKET_VAR", "RUNDIR_VAR", "SYSFS_VAR")}
    assert honoured == set(HONOURED)
    table = re.search(r"python_only_vars\[\] = \{(.*?)\};", source, re.S)
    assert table is not None
    python_only = re.findall(r'"(\w+)"', table.group(1))
    # every location variable is either read as locations.py reads it or sends the call to Python
    assert sorted(python_only + list(HONOURED)) == sorted(locations.ENV_VARS)
