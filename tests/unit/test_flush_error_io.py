"""`pymultipath -f MAP --error-io`: the order of device-mapper operations (over a recording stand-in, the
real sequence is tested in the VM) and the confirmation it asks for."""

from __future__ import annotations

import io

import pytest

from pymultipathd import flush, holders
from pymultipathd.cli import flush_cmd
from pymultipathd.dm.errors import DMError, DMNoSuchDevice
from pymultipathd.dm.ioctl import DeviceInfo
from pymultipathd.dm.table import TargetLine


class RecordingDM:
    """A map of 1024 sectors queueing with no path, and a partition map on it, as DM reports them."""

    def __init__(self, held: bool) -> None:
        self.calls: list[tuple] = []
        self.held = held
        self.gone: set[str] = set()

    def table_and_info(self, name):
        self.calls.append(("table", name))
        return self.info(name), [TargetLine(0, 1024, "multipath",
                                            "1 queue_if_no_path 0 1 1 round-robin 0 1 1 8:16 1")]

    def message(self, name, msg, **kw):
        self.calls.append(("message", name, msg))

    def load(self, name, lines, **kw):
        self.calls.append(("load", name, list(lines)))

    def resume(self, name, **kw):
        self.calls.append(("resume", name, kw))

    def info(self, name):
        if name in self.gone:
            raise DMNoSuchDevice("info", name, 6)
        return DeviceInfo(name=name, uuid="mpath-3600a" if name == "mpatha" else "part1-mpath-3600a",
                          major=253, minor=0 if name == "mpatha" else 1, open_count=1 if self.held else 0,
                          event_nr=0, flags=0, target_count=1)

    def list_devices(self):
        from pymultipathd.dm.ioctl import ListedDevice

        return [ListedDevice("mpatha", 253, 0), ListedDevice("mpatha-part1", 253, 1)]

    def remove(self, name, *, deferred=False, **kw):
        self.calls.append(("remove", name, deferred))
        if not self.held:
            self.gone.add(name)

    def exists(self, name):
        return name not in self.gone


@pytest.mark.parametrize("held", [False, True])
def test_queued_io_fails_before_the_table_swap_and_the_map_goes_with_its_partitions(held, monkeypatch):
    ctl = RecordingDM(held)
    monkeypatch.setattr(flush.dmmaps, "partition_maps",
                        lambda c, name, devices=None: [d for d in c.list_devices() if d.name != name])
    res = flush.error_out(ctl, "mpatha")
    ops = [c for c in ctl.calls if c[0] != "table"]
    assert ops == [("message", "mpatha", "fail_if_no_path"),
                   ("load", "mpatha", ["0 1024 error"]),
                   ("resume", "mpatha", {"nolockfs": True}),
                   ("remove", "mpatha-part1", True), ("remove", "mpatha", True)]
    assert (res.removed, res.deferred) == ((False, True) if held else (True, False))


def test_only_a_multipath_map_is_ever_made_to_fail():
    class LogicalVolume(RecordingDM):
        def info(self, name):
            return DeviceInfo(name=name, uuid="LVM-abc", major=253, minor=7, open_count=1, event_nr=0,
                              flags=0, target_count=1)

    ctl = LogicalVolume(held=True)
    with pytest.raises(DMError, match="not a multipath map"):
        flush.error_out(ctl, "vg-root")
    assert [c for c in ctl.calls if c[0] != "table"] == []


def test_a_failed_swap_leaves_no_error_table_behind():
    class Stuck(RecordingDM):
        def resume(self, name, **kw):
            raise DMError("resume", name, 16)

        def clear(self, name):
            self.calls.append(("clear", name))

    ctl = Stuck(held=True)
    with pytest.raises(DMError):
        flush.error_out(ctl, "mpatha")
    assert ctl.calls[-1] == ("clear", "mpatha")


def _snap(queueing: bool, held: bool) -> holders.Snapshot:
    target = holders.BlockDev("dm-0", "253:0", "mpatha", "mpatha-3600a", 2 if held else 0)
    files = (holders.OpenFile("253:0", 42, "dd", "dd of=/dev/mapper/mpatha"),) if held else ()
    return holders.Snapshot(target=target, open_files=files, queueing=queueing)


def test_the_summary_names_what_is_lost():
    snap = _snap(True, True)
    text = flush.loss_summary(snap, holders.find_holders(snap))
    assert "I/O queued in the map (queue_if_no_path) fails: those writes are LOST" in text
    assert "process 42 (dd) has the device open: its unwritten data is LOST" in text
    assert "Nothing else is touched" in text


def test_no_confirmation_no_change(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    assert flush_cmd._confirmed("mpatha", yes=False) is False
    assert "add --yes to confirm" in capsys.readouterr().err
    assert flush_cmd._confirmed("mpatha", yes=True) is True

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty("mpathb\n"))
    assert flush_cmd._confirmed("mpatha", yes=False) is False
    monkeypatch.setattr("sys.stdin", Tty("mpatha\n"))
    assert flush_cmd._confirmed("mpatha", yes=False) is True


@pytest.mark.parametrize("argv", [["-f", "m", "--yes"], ["-F", "--error-io"], ["holders", "m", "--error-io"],
                                  ["-f", "m", "--error-io", "--deferred"]])
def test_error_io_goes_with_one_flush_alone(argv, capsys):
    assert flush_cmd.main(argv) == 2
    assert "--error-io goes with -f MAP alone" in capsys.readouterr().err
