"""The facts layer against a fake sysfs / udev database / proc tree (data, not mocks)."""

from __future__ import annotations

import os
import socket

import pytest
from sysfs_tree import Tree

from pymultipathd.classify import classify
from pymultipathd.config.load import parse_text
from pymultipathd.paths import facts

W1 = "36001405aaaa"
W2 = "36001405bbbb"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    return Tree(tmp_path).install(monkeypatch)


def test_disk_facts(tree):
    tree.disk("sdb", "8:16", W1, props={"DM_MULTIPATH_DEVICE_PATH": "0"})
    p = facts.path_facts("sdb", parse_text(""))
    assert (p.dev, p.devtype, p.dev_t, p.wwid, p.vendor, p.product) == ("sdb", "disk", "8:16", W1, "LIO-ORG",
                                                                           "disk0")
    assert p.protocol == "scsi:iscsi" and p.released and not p.in_use and not p.hidden
    assert p.properties["ID_SERIAL"] == W1


def test_a_listed_disk_has_the_facts_of_one_looked_up_by_name(tree, monkeypatch):
    """Discovery lists /sys/block (whole disks only) and passes on the number it read there: the facts
    are those of the same disk looked up by name, without reading its number and type again."""
    tree.disk("sdb", "8:16", W1)
    tree.partition("sdb", "sdb1", "8:17")
    by_name = facts.path_facts("sdb", parse_text(""))
    monkeypatch.setattr(facts, "_devtype", lambda dev: pytest.fail(f"{dev}: type read again"))
    listed = facts.world_all(parse_text("")).paths
    assert listed == (by_name,)


@pytest.mark.parametrize(("transport", "protocol"), [
    ("rport-1:0-0", "scsi:fcp"), ("end_device-1:0", "scsi:sas"),
    ("usb1", "scsi:usb"), ("pseudo_0", "scsi:unspec"),
])
def test_protocol_from_topology(tree, transport, protocol):
    tree.disk("sdb", "8:16", W1, transport=transport)
    assert facts.path_facts("sdb").protocol == protocol


def test_partition_is_not_a_disk(tree):
    tree.disk("sdb", "8:16", W1)
    tree.partition("sdb", "sdb1", "8:17")
    assert facts.path_facts("sdb1").devtype == "partition"


def test_in_use_by_holder_mount_or_swap(tree):
    tree.disk("sdb", "8:16", W1)
    tree.partition("sdb", "sdb1", "8:17")
    assert not facts.path_facts("sdb").in_use
    tree.mount("8:17")
    assert facts.path_facts("sdb").in_use
    tree.disk("sdc", "8:32", W2)
    (tree.sys / "block" / "sdc" / "holders" / "md0").mkdir()
    p = facts.path_facts("sdc")
    assert p.in_use and p.holders == ("md0",)
    tree.disk("sdd", "8:48", W2)
    with (tree.proc / "swaps").open("a") as f:
        f.write("/dev/sdd partition 1024 0 -2\n")
    assert facts.path_facts("sdd").in_use


def test_hidden_and_missing_device(tree):
    base = tree.disk("nvme0c0n1", "259:1", W1)
    (base / "hidden").write_text("1\n")
    assert facts.path_facts("nvme0c0n1").hidden
    with pytest.raises(facts.FactsError, match="sdz"):
        facts.path_facts("sdz")


def test_uninitialized_disks_are_not_siblings(tree):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1, initialized=False)
    tree.disk("sdd", "8:48", W1)
    target, world = facts.world_for("sdb", parse_text(""))
    assert target.dev == "sdb" and [p.dev for p in world.paths] == ["sdb", "sdd"]
    _, alone = facts.world_for("sdb", parse_text(""), siblings=False)
    assert [p.dev for p in alone.paths] == ["sdb"]


def test_event_environment_beats_the_database(tree, monkeypatch):
    tree.disk("sdb", "8:16", None, initialized=False)  # first "add": no database entry yet
    event = {"SUBSYSTEM": "block", "ID_SERIAL": W1, "ID_WWN": "0x1",
             "DEVPATH": "/devices/platform/host3/session3/target3:0:0/3:0:0:1/block/sdb"}
    assert facts.path_facts("sdb", env=event).wwid == W1
    assert facts.path_facts("sdb", env={**event, "DEVPATH": "/devices/x/block/sdc"}).wwid is None  # not sdb's
    # the event is what the entry passes down, never this process's own environment
    for k, v in event.items():
        monkeypatch.setenv(k, v)
    assert facts.path_facts("sdb").wwid is None


def test_maps_wwids_failed_timers_socket(tree):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    tree.mpath_map("dm-0", "mpatha", W1, ["sdb", "sdc"])
    tree.wwids(W1)
    (tree.run / "failed_wwids").mkdir()
    (tree.run / "failed_wwids" / W2).write_text("")
    (tree.run / "find_multipaths").mkdir()
    timer = tree.run / "find_multipaths" / "8:16"
    timer.write_text("")
    os.utime(timer, (1234.0, 1234.0))
    world = facts.world_all(parse_text(""), now=1000.0)
    assert [(m.name, m.uuid, m.paths) for m in world.maps] == [("mpatha", "mpath-" + W1, ("sdb", "sdc"))]
    assert world.wwids == {W1} and world.failed_wwids == {W2} and world.timers == {"8:16": 1234.0}
    assert [p.dev for p in world.paths] == ["sdb", "sdc"]  # dm-0 has no udev entry here
    assert not world.daemon_running
    target = next(p for p in world.paths if p.dev == "sdb")
    assert target.holders == ("dm-0",) and classify(target, world, parse_text(""), for_udev=False).rule \
        == "member_of_map"


def test_daemon_reachable_on_abstract_socket(tree):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + os.environ["MULTIPATH_SOCKET_NAME"][1:])
        server.listen(1)
        assert facts.daemon_reachable()
    assert not facts.daemon_reachable()


def test_uid_attribute_from_config(tree):
    tree.disk("sdb", "8:16", W1, props={"ID_OTHER": "3600xyz"})
    conf = parse_text('defaults {\n uid_attribute "ID_OTHER"\n}\n')
    assert facts.path_facts("sdb", conf).wwid == "3600xyz"


def test_a_disk_gone_during_the_scan_is_no_sibling(tree, monkeypatch):
    tree.disk("sdb", "8:16", W1)
    tree.disk("sdc", "8:32", W1)
    real = facts.path_facts

    def vanishing(dev, *args, **kwargs):
        if dev == "sdc":  # listed, then removed before its facts were read
            raise facts.FactsError(f"{dev}: no such block device")
        return real(dev, *args, **kwargs)

    monkeypatch.setattr(facts, "path_facts", vanishing)
    target, world = facts.world_for("sdb", parse_text(""))
    assert target.dev == "sdb" and [p.dev for p in world.paths] == ["sdb"]
