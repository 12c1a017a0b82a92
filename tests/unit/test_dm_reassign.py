"""reassign_maps: device-mapper devices built directly on a path of a multipath map are moved onto the map
(dm/maps.py reassign_holders), against a sysfs tree in a temporary directory and a stand-in for the DM ioctls
(the host has no device mapper; the VM test in tests/vm/test_keywords_vm.py does it for real)."""

from __future__ import annotations

from pymultipathd import locations
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm.errors import DMError
from pymultipathd.dm.table import TargetLine


class FakeControl:
    def __init__(self, tables: dict[str, list[TargetLine]], refuse: set[str] = frozenset()) -> None:
        self.tables, self.refuse, self.loaded, self.resumed = tables, refuse, {}, []

    def table(self, name: str) -> list[TargetLine]:
        return self.tables[name]

    def load(self, name: str, lines: list[TargetLine]) -> None:
        if name in self.refuse:
            raise DMError("load", name, 16)
        self.loaded[name] = lines

    def resume(self, name: str, *, noflush: bool = False) -> None:
        assert noflush  # queued I/O of the device being moved is kept, not flushed
        self.resumed.append(name)
        self.tables[name] = self.loaded[name]


def _sysfs(tmp_path, monkeypatch, disks: dict[str, tuple[str, list[str]]], dm_names: dict[str, str]) -> None:
    for dev, (devno, holders) in disks.items():
        (tmp_path / "block" / dev / "holders").mkdir(parents=True)
        (tmp_path / "block" / dev / "dev").write_text(devno + "\n")
        for h in holders:
            (tmp_path / "block" / dev / "holders" / h).touch()
    for dm, name in dm_names.items():
        (tmp_path / "block" / dm / "dm").mkdir(parents=True)
        (tmp_path / "block" / dm / "dm" / "name").write_text(name + "\n")
    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))


def test_retarget_replaces_whole_device_numbers_only():
    lines = [TargetLine(0, 100, "linear", "8:16 2048"), TargetLine(100, 50, "striped", "2 64 8:16 0 8:160 0")]
    moved = dmmaps.retarget(lines, {"8:16": "253:4"})
    assert [t.params for t in moved] == ["253:4 2048", "2 64 253:4 0 8:160 0"]
    assert dmmaps.retarget(lines, {"8:1": "253:4"}) == lines


def test_a_volume_on_a_path_is_moved_onto_the_map(tmp_path, monkeypatch):
    _sysfs(tmp_path, monkeypatch, {"sdb": ("8:16", ["dm-0", "dm-1"]), "sdc": ("8:32", ["dm-0"])},
           {"dm-0": "mpatha", "dm-1": "vg-lv"})
    mpatha = TargetLine(0, 100, "multipath", "0 0 1 1 service-time 0 2 1 8:16 1 8:32 1")
    ctl = FakeControl({"mpatha": [mpatha],
                       "vg-lv": [TargetLine(0, 80, "linear", "8:16 384")]})
    assert dmmaps.reassign_holders(ctl, "253:0", ["sdb", "sdc"]) == {"vg-lv": ""}  # type: ignore[arg-type]
    assert ctl.tables["vg-lv"] == [TargetLine(0, 80, "linear", "253:0 384")]
    assert "mpatha" not in ctl.loaded  # the map itself is never touched


def test_a_device_on_both_paths_gets_both_moved_and_a_refusal_leaves_the_others(tmp_path, monkeypatch):
    _sysfs(tmp_path, monkeypatch, {"sdb": ("8:16", ["dm-1", "dm-2"]), "sdc": ("8:32", ["dm-1"])},
           {"dm-1": "striped", "dm-2": "busy"})
    ctl = FakeControl({"striped": [TargetLine(0, 80, "striped", "2 64 8:16 0 8:32 0")],
                       "busy": [TargetLine(0, 80, "linear", "8:16 0")]}, refuse={"busy"})
    tried = dmmaps.reassign_holders(ctl, "253:0", ["sdb", "sdc"])  # type: ignore[arg-type]
    assert tried["striped"] == "" and "busy" in tried["busy"] and "Device or resource busy" in tried["busy"]
    assert ctl.tables["striped"] == [TargetLine(0, 80, "striped", "2 64 253:0 0 253:0 0")]


def test_non_dm_holders_and_gone_paths_are_left_alone(tmp_path, monkeypatch):
    _sysfs(tmp_path, monkeypatch, {"sdb": ("8:16", ["md0"])}, {})
    ctl = FakeControl({})
    assert dmmaps.reassign_holders(ctl, "253:0", ["sdb", "sdz"]) == {}  # type: ignore[arg-type]
