"""`pymultipath -u` / `-c` as udev runs them: a subprocess against a fake sysfs/udev tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from sysfs_tree import Tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W1 = "36001405aaaa"
W2 = "36001405bbbb"


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


@pytest.fixture
def daemon(tree):
    """A listening socket where the daemon's would be: -u only checks that connect() succeeds."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0" + tree.env()["MULTIPATH_SOCKET_NAME"][1:])
    s.listen(8)
    yield s
    s.close()


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
