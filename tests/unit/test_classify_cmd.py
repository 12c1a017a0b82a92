"""`pymultipath classify --facts` (offline) and `pymultipath snapshot`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sysfs_tree import Tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W1 = "36001405aaaa"
PROPS = {"ID_SERIAL": W1, "ID_WWN": "0x1"}


def run(tree, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYMULTIPATH_FIND_MULTIPATHS"}
    env.update(tree.env(), PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "pymultipathd.cli.pymultipath", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


def facts_file(tree, data):
    f = tree.root / "facts.json"
    f.write_text(json.dumps(data))
    return str(f)


def test_issue_example_offline(tree):
    tree.config("defaults {\n find_multipaths smart\n}\n")
    data = {"paths": [{"dev": "sdb", "devtype": "disk", "dev_t": "8:16", "wwid": W1, "vendor": "LIO-ORG",
                       "product": "disk", "protocol": "scsi:iscsi", "properties": PROPS, "holders": [],
                       "in_use": False, "hidden": False, "released": False},
                      {"dev": "sdd", "dev_t": "8:48", "wwid": "36001405dddd",
                       "properties": {"ID_SERIAL": "36001405dddd", "ID_WWN": "0x1"}}],
            "maps": [{"name": "mpatha", "uuid": "mpath-" + W1, "paths": ["sdb"]}],
            "wwids": [W1], "failed_wwids": [], "daemon_running": True, "now": 1700000000.0,
            "timers": {"8:48": 1700000010.0}}
    r = run(tree, "classify", "--facts", facts_file(tree, data), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"paths": [
        {"dev": "sdb", "verdict": "yes", "rule": "member_of_map", "wait_until": None},
        {"dev": "sdd", "verdict": "maybe", "rule": "waiting", "wait_until": 1700000010.0}]}
    text = run(tree, "classify", "--facts", facts_file(tree, data), "--explain")
    assert "sdd\tmaybe\twaiting until 1700000010" in text.stdout and "=> waiting" in text.stderr


def test_what_if_with_another_config(tree):
    data = {"paths": [{"dev": "sdb", "dev_t": "8:16", "wwid": W1, "properties": PROPS}]}
    other = tree.root / "greedy.conf"
    other.write_text("defaults {\n find_multipaths greedy\n}\n")
    f = facts_file(tree, data)
    assert "\tno\tstrict" in run(tree, "classify", "--facts", f).stdout
    assert "\tyes\tgreedy" in run(tree, "--config", str(other), "classify", "--facts", f).stdout


@pytest.mark.parametrize(("content", "message"), [
    ('{"paths": [{"dev": "sdb", "in_use": "perhaps"}]}', "paths.0.in_use"),
    ('{"paths": [{"devv": "sdb"}]}', "paths.0.dev"),
    ('{"paths": [], "timers": {"8:16": "soon"}}', "timers.8:16"),
    ('{"paths": [', "facts.json:1: not JSON"),
])
def test_bad_facts_name_the_file_and_field(tree, content, message):
    f = tree.root / "facts.json"
    f.write_text(content)
    r = run(tree, "classify", "--facts", str(f))
    assert r.returncode == 1 and str(f) in r.stderr and message in r.stderr


def test_snapshot_round_trip(tree):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    tree.mpath_map("dm-0", "mpatha", W1, ["sdb"])
    out = tree.root / "snap.json"
    r = run(tree, "snapshot", "-o", str(out))
    assert r.returncode == 0, r.stderr
    snap = json.loads(out.read_text())
    assert [p["dev"] for p in snap["paths"]] == ["sdb", "sdc"] and snap["maps"][0]["paths"] == ["sdb"]
    r = run(tree, "classify", "--facts", str(out), "--json")
    verdicts = {p["dev"]: p["rule"] for p in json.loads(r.stdout)["paths"]}
    # the snapshot recorded no daemon on the socket: -u's view says so for sdc
    assert verdicts == {"sdb": "member_of_map", "sdc": "daemon_not_running"}
