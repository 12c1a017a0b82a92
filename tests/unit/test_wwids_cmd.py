"""`pymultipath -a/-w/-W` against a sysfs and udev database tree built under tmp_path."""

from __future__ import annotations

import os

import pytest

from pymultipathd import store
from pymultipathd.cli import pymultipath, wwids_cmd

HEADER = store.WWIDS_HEADER.splitlines()


class Tree:
    def __init__(self, root) -> None:
        self.sysfs = root / "sys"
        self.udev = root / "udev"
        self.wwids = str(root / "etc" / "wwids")
        self.udev.mkdir(parents=True)

    def disk(self, name: str, dev_t: str, props: dict[str, str] | None, vendor: str = "LIO-ORG") -> None:
        d = self.sysfs / "class" / "block" / name
        (d / "device").mkdir(parents=True)
        (d / "dev").write_text(dev_t + "\n")
        (d / "device" / "vendor").write_text(vendor + "    \n")
        (d / "device" / "model").write_text("disk0\n")
        if props is not None:
            body = "".join(f"E:{k}={v}\n" for k, v in props.items())
            (self.udev / f"b{dev_t}").write_text(f"S:disk/by-id/x\nI:123\n{body}G:systemd\n")

    def partition(self, name: str, dev_t: str) -> None:
        d = self.sysfs / "class" / "block" / name
        d.mkdir(parents=True)
        (d / "dev").write_text(dev_t + "\n")
        (d / "partition").write_text("1\n")

    def dm(self, n: int, uuid: str) -> None:
        for d in (self.sysfs / "block" / f"dm-{n}", self.sysfs / "class" / "block" / f"dm-{n}"):
            (d / "dm").mkdir(parents=True)
            (d / "dev").write_text(f"253:{n}\n")
            (d / "dm" / "uuid").write_text(uuid + "\n")

    def lines(self) -> list[str]:
        return open(self.wwids).read().split("\n")[:-1]


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Tree:
    t = Tree(tmp_path)
    monkeypatch.setenv("PYMULTIPATH_SYSFS", str(t.sysfs))
    monkeypatch.setenv("PYMULTIPATH_UDEV_DB", str(t.udev))
    monkeypatch.setenv("PYMULTIPATH_WWIDS", t.wwids)
    monkeypatch.setenv("PYMULTIPATH_CONF", str(tmp_path / "no-multipath.conf"))  # built-in defaults
    monkeypatch.setenv("PYMULTIPATH_CONFDIR", str(tmp_path / "no-conf.d"))
    t.disk("sdb", "8:16", {"ID_SERIAL": "36001405aaaa", "ID_WWN": "0x6001405aaaa"})
    return t


@pytest.mark.parametrize("arg", ["sdb", "/dev/sdb"])
def test_add_device_uses_udev_id_serial(tree, arg, capsys):
    assert wwids_cmd.main(["-a", arg]) == 0
    assert capsys.readouterr().out == "wwid '36001405aaaa' added\n"
    assert tree.lines() == [*HEADER, "/36001405aaaa/"]


def test_add_again_says_added_and_notes_it_on_stderr(tree, capsys):
    wwids_cmd.main(["-a", "sdb"])
    capsys.readouterr()
    assert wwids_cmd.main(["-a", "sdb"]) == 0
    out, err = capsys.readouterr()
    assert out == "wwid '36001405aaaa' added\n"
    assert "already in" in err and tree.wwids in err
    assert tree.lines() == [*HEADER, "/36001405aaaa/"]


def test_add_plain_wwid(tree, capsys):
    assert wwids_cmd.main(["-a", "3600a098038303053453f463045727064"]) == 0
    assert capsys.readouterr().out == "wwid '3600a098038303053453f463045727064' added\n"
    assert store.read_wwids(tree.wwids) == ["3600a098038303053453f463045727064"]


def test_add_through_the_dispatcher(tree, capsys):
    assert pymultipath.main(["-a", "sdb"]) == 0
    assert store.read_wwids(tree.wwids) == ["36001405aaaa"]


def test_device_without_udev_entry_is_an_error_naming_it(tree, capsys):
    tree.disk("sdc", "8:32", None)
    assert wwids_cmd.main(["-a", "sdc"]) == 1
    err = capsys.readouterr().err
    assert "cannot find the WWID of sdc" in err and "b8:32" in err
    assert not os.path.exists(tree.wwids)


def test_device_without_id_serial_is_an_error_naming_it(tree, capsys):
    tree.disk("sdd", "8:48", {"ID_WWN": "0x1"})
    assert wwids_cmd.main(["-a", "/dev/sdd"]) == 1
    assert "cannot find the WWID of /dev/sdd: ID_SERIAL is not set in" in capsys.readouterr().err


def test_missing_device_path_is_an_error(tree, capsys):
    assert wwids_cmd.main(["-a", "/dev/sdzz"]) == 1
    assert "device /dev/sdzz not found" in capsys.readouterr().err
    assert not os.path.exists(tree.wwids)


def test_partition_is_refused(tree, capsys):
    tree.partition("sdb1", "8:17")
    assert wwids_cmd.main(["-a", "sdb1"]) == 1
    assert "sdb1 is a partition" in capsys.readouterr().err


def test_multipath_map_gives_its_wwid(tree, capsys):
    tree.dm(0, "mpath-36001405bbbb")
    tree.dm(1, "LVM-abcdef")
    assert wwids_cmd.main(["-a", "dm-0"]) == 0
    assert store.read_wwids(tree.wwids) == ["36001405bbbb"]
    assert wwids_cmd.main(["-a", "dm-1"]) == 1
    assert "dm-1 is a device-mapper device but not a multipath map" in capsys.readouterr().err


def test_remove(tree, capsys):
    store.replace_wwids(["36001405aaaa", "other"], tree.wwids)
    assert wwids_cmd.main(["-w", "/dev/sdb"]) == 0
    assert capsys.readouterr().out == "wwid '36001405aaaa' removed\n"
    assert store.read_wwids(tree.wwids) == ["other"]
    assert wwids_cmd.main(["-w", "other"]) == 0
    assert store.read_wwids(tree.wwids) == []


def test_remove_absent_wwid_notes_it(tree, capsys):
    assert wwids_cmd.main(["-w", "nothere"]) == 0
    out, err = capsys.readouterr()
    assert out == "wwid 'nothere' removed\n"
    assert "was not in" in err


def test_reset_to_current_maps(tree, capsys):
    store.replace_wwids(["stale1", "stale2"], tree.wwids)
    tree.dm(10, "mpath-w10")
    tree.dm(2, "mpath-w2")
    tree.dm(3, "LVM-vg-lv")
    tree.dm(4, "part1-mpath-w2")
    assert wwids_cmd.main(["-W"]) == 0
    assert capsys.readouterr().out == "successfully reset wwids\n"
    assert tree.lines() == [*HEADER, "/w2/", "/w10/"]


def test_reset_without_maps_leaves_header_only(tree, capsys):
    store.replace_wwids(["stale"], tree.wwids)
    assert wwids_cmd.main(["-W"]) == 0
    assert tree.lines() == HEADER


def test_write_failure_exits_1_with_the_file_named(tree, tmp_path, monkeypatch, capsys):
    path = str(tmp_path / ("w" * 240))  # too long a name for the temp file beside it
    open(path, "w").write("/old/\n")
    monkeypatch.setenv("PYMULTIPATH_WWIDS", path)
    assert wwids_cmd.main(["-a", "sdb"]) == 1
    assert f"cannot write {path}" in capsys.readouterr().err
    assert open(path).read() == "/old/\n"


@pytest.mark.parametrize("argv", [["-a"], ["-w", "a", "b"], ["-W", "x"], ["-x", "sdb"], []])
def test_bad_usage_exits_2(tree, argv, capsys):
    assert wwids_cmd.main(argv) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("arg", ["a b/c", ".", ".."])
def test_invalid_wwid_argument_is_an_error(tree, arg, capsys):
    assert wwids_cmd.main(["-a", arg]) == 1
    assert "invalid WWID" in capsys.readouterr().err
