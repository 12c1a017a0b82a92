"""Partition maps of a new map whose table cannot be read yet (EIO: the kernel failed the map's only path, as
it may on a hot-plugged path's first I/O): logged, not raised out of the batch, and read again once a path of
the map is usable."""

import asyncio
import errno
import logging

from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.daemon.core import Core
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm.errors import DMError
from pymultipathd.policy.state import MapState, PathState


class _NoDM:
    def list_devices(self) -> list:
        return []

    def info(self, name: str) -> str:
        return name  # what read_partitions gets: the stand-in below only needs the map's name


def test_unreadable_partition_table_is_read_again_once_a_path_is_usable(caplog, monkeypatch):
    read: list[str] = []
    failing = True

    def read_partitions(info: str) -> dmmaps.PartitionTable:  # block I/O through the map, on its thread
        read.append(info)
        if failing:
            raise OSError(errno.EIO, "Input/output error")
        return dmmaps.PartitionTable()

    monkeypatch.setattr(dmmaps, "read_partitions", read_partitions)

    async def scenario() -> list[str]:
        nonlocal failing
        core = Core(load.parse_text(""), ctl=_NoDM())

        async def dm(fn, *args, **kw):  # the DM thread, without device mapper
            return [] if fn is dmmaps.add_partition_maps else fn(*args, **kw)

        core.dm = dm
        core.state.maps["mpatha"] = MapState(name="mpatha", wwid="3600a", paths=["sdb"])
        core.state.paths["sdb"] = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(dev="sdb"))
        await core._partition_maps(["mpatha", "gone"])  # a map removed meanwhile is skipped
        assert read == ["mpatha"] and set(core._partition_retry) == {"mpatha"}

        await core.policy_tick()  # not due yet
        core._partition_retry["mpatha"] = (0.0, 5.0)
        await core.policy_tick()  # due, but no usable path: the read would fail again
        assert read == ["mpatha"]

        core.state.paths["sdb"].chk_state = "up"
        await core.policy_tick()  # still unreadable: tried again, later, with a longer wait
        assert read == ["mpatha"] * 2 and core._partition_retry["mpatha"][1] == 10.0
        failing = False
        core._partition_retry["mpatha"] = (0.0, 10.0)
        await core.policy_tick()
        assert read == ["mpatha"] * 3 and core._partition_retry == {}
        await core.policy_tick()
        return read

    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        assert asyncio.run(scenario()) == ["mpatha"] * 3
    assert "mpatha: partition table unreadable now (Input/output error); trying again in 5 s" in caplog.text


def test_a_failed_device_listing_is_retried_not_raised(caplog):
    class FailingList:
        def list_devices(self) -> list:
            raise DMError("list", None, errno.EIO)

    async def scenario() -> dict:
        core = Core(load.parse_text(""), ctl=FailingList())

        async def dm(fn, *args, **kw):
            return fn(*args, **kw)

        core.dm = dm
        core.state.maps["mpatha"] = MapState(name="mpatha", wwid="3600a")
        await core._partition_maps(["mpatha"])
        return core._partition_retry

    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        assert set(asyncio.run(scenario())) == {"mpatha"}
    assert "mpatha: cannot list device-mapper devices" in caplog.text


def test_a_map_whose_table_was_replaced_is_left_alone_and_the_others_still_refresh(caplog):
    """`pymultipath -f MAP --error-io` swaps in an error table while the daemon runs: the DM-event resync
    forgets that map (it must not reload a queueing table over it) and goes on with the others."""
    from pymultipathd.dm import table as dmt
    from pymultipathd.dm.ioctl import ListedDevice

    class Listing:
        def list_devices(self) -> list:
            return [ListedDevice("gone", 253, 1, event_nr=9), ListedDevice("fine", 253, 2, event_nr=9)]

    async def scenario() -> tuple[list[str], list[str]]:
        core = Core(load.parse_text(""), ctl=Listing())
        refreshed = []

        async def dm(fn, *args, **kw):
            return fn(*args, **kw)

        async def refresh(m):
            if m.name == "gone":
                raise dmt.TableError("gone: not a multipath table")
            refreshed.append(m.name)

        core.dm, core.refresh_map = dm, refresh
        for name in ("gone", "fine"):
            core.state.maps[name] = MapState(name=name, wwid=f"3600{name}")
        await core._dm_resync()
        return refreshed, sorted(core.state.maps)

    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        assert asyncio.run(scenario()) == (["fine"], ["fine"])
    assert "gone: no longer a multipath table; the daemon leaves it alone" in caplog.text


def test_a_hung_partition_read_leaves_the_dm_thread_free(monkeypatch, caplog):
    """Fault 5 (issue 17): the read of a map queueing with no usable path blocks in the kernel. It ran on
    the single DM thread, so the reinstate that would have unblocked it could never be sent. The read now
    has threads of its own and a deadline; the map is read again later."""
    import threading

    from pymultipathd.daemon import core as core_mod
    from pymultipathd.dm.ioctl import DeviceInfo

    release = threading.Event()
    monkeypatch.setattr(dmmaps, "read_partitions", lambda info: release.wait(30))
    monkeypatch.setattr(core_mod, "PARTITION_READ_TIMEOUT", 0.2)

    class Ctl:
        def list_devices(self) -> list:
            return []

        def info(self, name: str) -> DeviceInfo:
            return DeviceInfo(name=name, uuid="mpath-3600a", major=253, minor=0, open_count=0, event_nr=0,
                              target_count=1, flags=0)

        def message(self, name: str, text: str) -> None:
            return None

    async def scenario() -> bool:
        core = Core(load.parse_text(""), ctl=Ctl())
        core.state.maps["mpatha"] = MapState(name="mpatha", wwid="3600a", paths=["sdb"])
        try:
            await core._partition_maps(["mpatha"])  # returns once the read's deadline passed
            # the DM thread still answers: a reinstate can go out
            await asyncio.wait_for(core.dm(core.ctl.message, "mpatha", "reinstate_path 8:16"), 5)
            return "mpatha" in core._partition_retry
        finally:
            release.set()
            await core.close()

    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        assert asyncio.run(scenario())
    assert "partition table read did not answer within 0.2 s" in caplog.text


def test_a_hung_holders_scan_leaves_the_dm_thread_free(monkeypatch):
    """Fault 8 (issue 17): the daemon's flush (del map, last path gone) scanned every process's open files
    on the DM thread; one hung file system under some process stalled every DM call. The scan now runs on
    the map-io threads with a deadline, and the flush reports what it could not find out."""
    import threading

    from pymultipathd import flush, holders
    from pymultipathd.daemon import core as core_mod
    from pymultipathd.paths import holderscan

    release = threading.Event()
    target = holders.BlockDev("dm-0", "253:0", "mpatha", "mpath-3600a", open_count=1)
    monkeypatch.setattr(holderscan, "dm_state", lambda ctl, name: (target, [], False, 2))
    monkeypatch.setattr(holderscan, "gather", lambda *a, **k: release.wait(30))
    monkeypatch.setattr(core_mod, "HOLDERS_SCAN_TIMEOUT", 0.2)
    flushed: list = []

    def fake_flush(ctl, name, *, deferred=False, snap=None, rescan=True):
        flushed.append((name, rescan))
        return flush.FlushResult(name, False, False, holders.explain(snap, holders.find_holders(snap)))

    monkeypatch.setattr(flush, "flush", fake_flush)

    async def scenario() -> str:
        core = Core(load.parse_text(""), ctl=_NoDM())
        try:
            res = await core.flush_map("mpatha")
            # the DM thread still answers while the scan's thread is stuck
            assert await asyncio.wait_for(core.dm(lambda: "free"), 5) == "free"
            return res.report
        finally:
            release.set()
            await core.close()

    report = asyncio.run(scenario())
    assert flushed == [("mpatha", False)]  # never scanned again on the DM thread
    assert "did not finish within 0.2 s" in report and "[unknown]" in report
