"""`pymultipath -u` / `-c` as udev runs them: a subprocess against a fake sysfs/udev tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from sysfs_tree import Tree

from pymultipathd import locations, udevlink
from pymultipathd.classify import MapFacts, PathFacts
from pymultipathd.cli import udev_helper
from pymultipathd.config.load import sources_signature
from pymultipathd.daemon.udev_service import UdevService
from pymultipathd.paths import facts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W1 = "36001405aaaa"
W2 = "36001405bbbb"


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


def control_listener(tree) -> socket.socket:
    """A listening socket where the daemon's control socket would be: -u only checks connect()."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(locations.unix_address(tree.env()["MULTIPATH_SOCKET_NAME"]))
    s.listen(socket.SOMAXCONN)  # never accepts: a full backlog on an abstract name is not a daemon
    return s


@pytest.fixture(params=["listener", "answering"])
def daemon(request, tree, monkeypatch):
    """A listening socket where the daemon's would be: -u only checks that connect() succeeds. "answering"
    also runs the daemon's helper service (daemon/udev_service.py), so every test below checks that the
    answer the daemon gives for the helper is the one the helper gives alone."""
    s = control_listener(tree)
    if request.param == "listener":
        yield s
    else:
        with answering_daemon(tree, monkeypatch) as service:
            yield s
        assert service.answered + service.declined > 0, "the helper never asked the daemon"
    s.close()


@contextlib.contextmanager
def answering_daemon(tree, monkeypatch, known=None):
    """The daemon's helper service on its own loop in a thread, in the tree's environment, with the
    configuration as it is now (later edits make it load the files afresh, as after an edit in real life)."""
    for k, v in tree.env().items():
        monkeypatch.setenv(k, v)
    for k in ("DEVPATH", "SUBSYSTEM", "PYMULTIPATH_FIND_MULTIPATHS"):
        monkeypatch.delenv(k, raising=False)
    signature, (config, _) = sources_signature(), udev_helper.load_config()
    service = UdevService(lambda: (signature, config), known)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        assert asyncio.run_coroutine_threadsafe(service.start(), loop).result(10)
        yield service
        asyncio.run_coroutine_threadsafe(service.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run(tree, *args, **env):
    drop = ("DEVPATH", "SUBSYSTEM", "PYMULTIPATH_FIND_MULTIPATHS")
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(tree.env(**env), PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "pymultipathd.cli.pymultipath", *args], env=full,
                          capture_output=True, text=True, timeout=60)


def lines(result):
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_two_paths_claimed_in_smart_and_on(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    for mode in ("smart", "on", "greedy"):
        tree.config(f"defaults {{\n find_multipaths {mode}\n}}\n")
        r = run(tree, "-u", "sdb")
        assert r.returncode == 0, r.stderr
        assert r.stdout == 'DM_MULTIPATH_DEVICE_PATH="1"\n'
        assert run(tree, "-c", "/dev/sdb").returncode == 0


def test_strict_single_path_is_not_claimed_and_c_says_so(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    r = run(tree, "-u", "sdb")
    assert (r.returncode, r.stdout) == (0, 'DM_MULTIPATH_DEVICE_PATH="0"\n')
    c = run(tree, "-c", "sdb")
    assert c.returncode == 1 and "is not a valid multipath device path" in c.stdout
    tree.wwids(W1)
    assert run(tree, "-c", "sdb").returncode == 0


def test_no_daemon_no_claim(tree):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    tree.config("defaults {\n find_multipaths greedy\n}\n")
    r = run(tree, "-u", "sdb", "--explain")
    assert lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"0"' and "daemon_not_running" in r.stderr


def test_without_a_daemon_no_configuration_is_read(tree):
    """The answer with no daemon needs none (issue 22: most of a call's cost at boot): a file that does not
    even parse changes nothing, and a member of a map is still claimed."""
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths greedy\n polling_interval\n")  # unterminated, no value
    r = run(tree, "-u", "sdb", "--explain")
    assert lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"0"', r.stderr
    assert "daemon_not_running" in r.stderr and "configuration" not in r.stderr.lower()
    assert run(tree, "-c", "sdb").returncode == 1


def test_smart_single_path_waits_then_is_released(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths smart\n find_multipaths_timeout 30\n}\n")
    before = time.time()
    r = run(tree, "-u", "sdb")
    out = lines(r)
    assert out["DM_MULTIPATH_DEVICE_PATH"] == '"2"'
    left = float(out["FIND_MULTIPATHS_WAIT_UNTIL"].strip('"'))
    assert 0 < left <= 30
    timer = tree.run / "find_multipaths" / "8:16"
    deadline = timer.stat().st_mtime
    assert before + 29 <= deadline <= time.time() + 30
    # a second run keeps the first deadline
    run(tree, "-u", "sdb")
    assert timer.stat().st_mtime == deadline
    # the wait ends: the timer file says so (deadline in the past) -> released
    os.utime(timer, (before - 1, before - 1))
    r = run(tree, "-u", "sdb", "--explain")
    assert r.stdout == 'FIND_MULTIPATHS_WAIT_UNTIL="0"\nDM_MULTIPATH_DEVICE_PATH="0"\n'
    assert "timeout" in r.stderr
    # udev stored the release; later events keep it released even with a second path
    tree.udev("8:16", {"ID_SERIAL": W1, "ID_WWN": "0x1", "DM_MULTIPATH_DEVICE_PATH": "0"})
    tree.disk("sdc", "8:32", W1)
    assert lines(run(tree, "-u", "sdb"))["DM_MULTIPATH_DEVICE_PATH"] == '"0"'


def test_second_path_inside_the_wait_is_claimed_and_the_timer_is_reported(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths smart\n find_multipaths_timeout 30\n}\n")
    assert lines(run(tree, "-u", "sdb"))["DM_MULTIPATH_DEVICE_PATH"] == '"2"'
    tree.disk("sdc", "8:32", W1)
    out = lines(run(tree, "-u", "sdb"))
    # claimed, and the seconds left tell the rules to stop the running timer
    assert out["DM_MULTIPATH_DEVICE_PATH"] == '"1"'
    assert float(out["FIND_MULTIPATHS_WAIT_UNTIL"].strip('"')) > 0


def test_c_has_no_side_effects(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths smart\n}\n")
    assert run(tree, "-c", "sdb").returncode == 0  # maybe counts as "a path", as upstream
    assert not (tree.run / "find_multipaths").exists()


def test_member_of_map_and_partition(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.partition("sdb", "sdb1", "8:17")
    tree.mpath_map("dm-0", "mpatha", W1, ["sdb"])
    assert lines(run(tree, "-u", "sdb"))["DM_MULTIPATH_DEVICE_PATH"] == '"1"'
    assert lines(run(tree, "-u", "sdb1"))["DM_MULTIPATH_DEVICE_PATH"] == '"0"'


def test_deprecated_i_maps_to_greedy(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    r = run(tree, "-i", "-u", "sdb")
    assert lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"1"' and "deprecated" in r.stderr


def test_bad_config_is_named_and_claims_nothing(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.wwids(W1)
    tree.config("defaults {\n find_multipaths sometimes\n}\n")
    r = run(tree, "-u", "sdb")
    assert r.returncode == 0 and lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"0"'
    assert "multipath.conf" in r.stderr


def test_unknown_device_and_usage(tree, daemon):
    r = run(tree, "-u", "sdz")
    assert r.returncode == 0 and lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"0"' and "sdz" in r.stderr
    assert run(tree, "-u", "sdb", "sdc").returncode == 2


def test_explain_names_each_rule(tree, daemon):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W2)
    tree.config("defaults {\n find_multipaths on\n}\n")
    r = run(tree, "-u", "sdb", "--explain")
    for rule in ("member_of_map", "daemon_not_running", "wwids_file", "map_exists", "siblings",
                 "single_path"):
        assert rule in r.stderr
    assert r.stderr.strip().endswith("sdb: no (rule single_path)")


def _modules_after_u(tree, dev):
    """Run -u as the installed launcher does (python -S) and list the pymultipathd modules it loaded."""
    code = (f"import sys; sys.path.insert(0, {REPO!r}); from pymultipathd.cli.pymultipath import main; "
            f"rc = main(['-u', {dev!r}]); print('MODULES', *sorted(m for m in sys.modules "
            "if m.startswith('pymultipathd'))); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k not in ("DEVPATH", "SUBSYSTEM")}
    r = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    *out, modules = r.stdout.splitlines()
    return r.returncode, out, set(modules.split()[1:])


def test_the_daemon_answers_and_the_helper_loads_no_classifier(tree, monkeypatch):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    tree.config("defaults {\n find_multipaths greedy\n}\n")
    with answering_daemon(tree, monkeypatch) as service:
        rc, out, modules = _modules_after_u(tree, "sdb")
        assert (rc, out, service.answered, service.declined) == (0, ['DM_MULTIPATH_DEVICE_PATH="1"'], 1, 0)
        assert modules == {"pymultipathd", "pymultipathd.cli", "pymultipathd.cli.pymultipath",
                           "pymultipathd.locations", "pymultipathd.record", "pymultipathd.peer",
                           "pymultipathd.udevlink"}
        # the config changes on disk: the daemon's answer follows the files, as the helper's own would
        tree.config("defaults {\n find_multipaths strict\n}\n")
        rc, out, _ = _modules_after_u(tree, "sdb")
        assert (rc, out, service.answered) == (0, ['DM_MULTIPATH_DEVICE_PATH="0"'], 2)


def test_a_different_environment_is_declined_and_the_helper_decides(tree, monkeypatch):
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths strict\n}\n")
    with answering_daemon(tree, monkeypatch) as service:
        (tree.root / "other.conf").write_text("defaults {\n find_multipaths greedy\n}\n")
        r = run(tree, "-u", "sdb", PYMULTIPATH_CONF=str(tree.root / "other.conf"))
        assert r.stdout == 'DM_MULTIPATH_DEVICE_PATH="0"\n'  # greedy, but no daemon at the control socket
        assert (service.answered, service.declined) == (0, 1)


def test_the_service_declines_garbage_and_oversized_requests(tree, monkeypatch):
    with answering_daemon(tree, monkeypatch) as service:
        address = locations.unix_address(tree.env()["PYMULTIPATH_HELPER_SOCKET"])
        for payload in (b"hello\0world", b"PYMPU1\0-u\0../sda\x000", b"PYMPU1\0-x\0sda\x000",
                        b"x" * (udevlink.LIMIT + 10)):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(10)
                c.connect(address)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    c.sendall(payload)
                    c.shutdown(socket.SHUT_WR)
                reply = c.recv(65536)
            assert reply.startswith(b"D"), reply
            assert udevlink.decode_reply(reply) is None
        assert (service.answered, service.declined) == (0, 4)


def test_wire_format_round_trip_and_no_daemon(monkeypatch):
    env = {"DEVPATH": "/devices/x/block/sdb", "ID_SERIAL": "a=b c", "EMPTY": ""}
    request = udevlink.encode_request("-u", "sdb", True, env)
    assert udevlink.decode_request(request) == ("-u", "sdb", True, env)
    assert udevlink.decode_reply(udevlink.encode_reply(1, "out\n", "err\n")) == (1, "out\n", "err\n")
    assert udevlink.decode_reply(b"R1\0only two") is None
    assert udevlink.decode_reply(b"R--5\0\0") is None  # one sign at most, as the C front reads it
    with pytest.raises(ValueError):
        udevlink.decode_request(b"PYMPU1\0-u\0sdb\x001\0NOEQUALS")
    monkeypatch.setenv("PYMULTIPATH_HELPER_SOCKET", "@/pymp-test-helper/nobody-listens")
    assert udevlink.ask("-u", "sdb", False) is None


def test_without_a_daemon_only_the_maps_holding_the_disk_are_read(tree):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W2)
    tree.mpath_map("dm-0", "mpatha", W1, ["sdb"])
    tree.mpath_map("dm-1", "mpathb", W2, ["sdc"])
    env = tree.env()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert [m.name for m in facts.holding_maps("sdb")] == ["mpatha"]
        _, world = facts.world_for("sdb", None, siblings=False, daemon_running=False)
        assert [m.name for m in world.maps] == ["mpatha"]
        _, world = facts.world_for("sdb", None, siblings=False, daemon_running=True)
        assert [m.name for m in world.maps] == ["mpatha", "mpathb"]
    # and the helper alone still claims the member of a map without a daemon
    assert lines(run(tree, "-u", "sdb"))["DM_MULTIPATH_DEVICE_PATH"] == '"1"'
    assert lines(run(tree, "-u", "sdc"))["DM_MULTIPATH_DEVICE_PATH"] == '"1"'


def test_the_service_decides_with_the_daemons_maps_and_paths(tree, monkeypatch):
    # sysfs shows sdb alone, with no map; the daemon knows of a map holding sdb, and of sdc, a second path
    control = control_listener(tree)
    tree.disk("sdb", "8:16", W1)
    tree.config("defaults {\n find_multipaths smart\n}\n")
    in_map = facts.Known(maps=(MapFacts("mpathz", "mpath-" + W1, ("sdb",)),), paths=())
    with answering_daemon(tree, monkeypatch, known=lambda: in_map):
        r = run(tree, "-u", "sdb", "--explain")
        assert lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"1"' and "member_of_map" in r.stderr
    sibling = PathFacts(dev="sdc", devtype="disk", dev_t="8:32", wwid=W1, vendor="LIO-ORG", product="disk0",
                        protocol="scsi:iscsi", properties={"ID_SERIAL": W1, "ID_WWN": "0x6001405"})
    with answering_daemon(tree, monkeypatch, known=lambda: facts.Known(maps=(), paths=(sibling,))):
        r = run(tree, "-u", "sdb", "--explain")
        assert lines(r)["DM_MULTIPATH_DEVICE_PATH"] == '"1"' and "(rule siblings)" in r.stderr, r.stderr
    # the helper alone, reading sysfs, sees neither: a single new path waits
    assert lines(run(tree, "-u", "sdb"))["DM_MULTIPATH_DEVICE_PATH"] == '"2"'
    control.close()
