"""A new path's priority is read on a checker thread, never on the event loop, and checks and prioritizers
take the device's own SCSI timeout unless checker_timeout is set."""

from __future__ import annotations

import asyncio
import threading

from pymultipathd import topology
from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.daemon.core import Core
from pymultipathd.paths import checkers, prio, sysinfo
from pymultipathd.policy.settings import map_settings

FACTS = PathFacts(dev="sdb", dev_t="8:16", wwid="3600a", vendor="ACME", product="Box")


def _sysinfo(monkeypatch, timeout: float = 45.0) -> None:
    for name, value in (("hcil", "3:0:0:1"), ("target_node_name", "t"), ("size_sectors", 8),
                        ("unit_serial", "s"), ("dev_state", "running"), ("access_state", "")):
        monkeypatch.setattr(sysinfo, name, lambda dev, devpath=None, v=value: v)
    monkeypatch.setattr(sysinfo, "command_timeout", lambda dev: timeout)


def test_the_daemon_reads_a_new_paths_priority_on_a_checker_thread(monkeypatch):
    _sysinfo(monkeypatch)
    calls: list[tuple[str, str, str, float]] = []

    def fake_priority(name: str, dev: str, args: str = "", timeout: float = 30.0, read=None) -> int:
        calls.append((threading.current_thread().name, name, args, timeout))
        return 50

    monkeypatch.setattr(prio, "priority", fake_priority)
    core = Core(load.parse_text('defaults {\n prio alua\n prio_args "exclusive_pref_bit"\n}\n'), ctl=None)
    try:
        p = core._path_from_facts(FACTS, None)
        assert calls == [] and p.prio_due and p.prio == 0  # nothing sent to the device on the loop
        assert (p.prio_name, p.prio_args, p.scsi_timeout) == ("alua", "exclusive_pref_bit", 45.0)
        core.state.paths[p.dev] = p

        asyncio.run(core._read_priorities([p]))
        assert p.prio == 50 and not p.prio_due
        (thread, name, args, timeout), = calls
        assert thread != threading.main_thread().name and thread.startswith("checker")
        assert (name, args, timeout) == ("alua", "exclusive_pref_bit", 45.0)
    finally:
        core.runner.close()


def test_a_priority_that_does_not_come_back_stays_due(monkeypatch):
    _sysinfo(monkeypatch, timeout=0.2)
    release = threading.Event()

    def hung(name: str, dev: str, args: str = "", timeout: float = 30.0, read=None) -> int:
        release.wait(10)
        return 10

    monkeypatch.setattr(prio, "priority", hung)
    monkeypatch.setattr(checkers, "QUEUE_GRACE", 0.1)
    core = Core(load.parse_text("defaults {\n prio alua\n}\n"), ctl=None)
    try:
        p = core._path_from_facts(FACTS, None)
        core.state.paths[p.dev] = p
        asyncio.run(core._read_priorities([p]))
        assert p.prio_due and p.prio == 0
    finally:
        release.set()
        core.runner.close()


def test_the_cli_reads_the_priority_at_once(monkeypatch):
    _sysinfo(monkeypatch)
    monkeypatch.setattr(prio, "priority", lambda name, dev, args="", timeout=30.0, read=None: 10)
    resolve = topology.resolver(load.parse_text("defaults {\n prio alua\n checker_timeout 7\n}\n"),
                                FACTS.wwid, FACTS.vendor, FACTS.product)
    p = topology.path_state(FACTS, resolve, None)
    assert p.prio == 10 and not p.prio_due
    assert topology.check_timeout(resolve, p) == 7.0


def test_checks_take_the_devices_timeout_unless_checker_timeout_is_set(monkeypatch):
    _sysinfo(monkeypatch, timeout=90.0)
    resolve = topology.resolver(load.parse_text(""), FACTS.wwid, FACTS.vendor, FACTS.product)
    p = topology.path_state(FACTS, resolve, None)
    assert map_settings(resolve).checker_timeout is None
    assert topology.check_timeout(resolve, p) == 90.0


def test_command_timeout_reads_the_scsi_devices_timeout(tmp_path, monkeypatch):
    from pymultipathd import locations

    dev = tmp_path / "block" / "sdz" / "device"
    dev.mkdir(parents=True)
    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    assert sysinfo.command_timeout("sdz") == 30.0  # no attribute: the SCSI layer's default
    (dev / "timeout").write_text("60\n")
    assert sysinfo.command_timeout("sdz") == 60.0
    (dev / "timeout").write_text("junk\n")
    assert sysinfo.command_timeout("sdz") == 30.0


def test_a_removed_path_is_forgotten_by_the_checkers(monkeypatch):
    """emc_clariion remembers each path's LUN WWN; a device removed and added again under the same name
    (another LUN, perhaps) must not be judged against the old one, nor the table grow with every path."""
    from pymultipathd.paths import vendor_checkers

    _sysinfo(monkeypatch)
    memory = vendor_checkers.ClariionMemory()
    monkeypatch.setattr(vendor_checkers, "CLARIION_MEMORY", memory)
    memory.remembered_wwn("/dev/sdb", (1, 2), b"wwn-1")
    core = Core(load.parse_text("defaults {\n path_checker emc_clariion\n}\n"), ctl=None)
    try:
        core.state.paths["sdb"] = core._path_from_facts(FACTS, None)
        monkeypatch.setattr("pymultipathd.daemon.core.is_path_candidate", lambda dev: True)

        async def remove() -> None:
            core.on_uevent("remove", "sdb")

        asyncio.run(remove())
        assert "sdb" not in core.state.paths and len(memory) == 0
    finally:
        core.runner.close()


def test_a_hung_identity_read_holds_one_thread_and_keeps_its_path_out(monkeypatch):
    """recheck_wwid: while a path's VPD read hangs, its next checks start no second read, and the path is
    not reinstated (the verdict is pending) until a read answers."""
    from pymultipathd.daemon import core as core_mod
    from pymultipathd.paths import vpd
    from pymultipathd.policy.state import MapState, PathCheck

    _sysinfo(monkeypatch, timeout=0.1)
    monkeypatch.setattr(core_mod, "RECHECK_MARGIN", 0.1)
    release, reads, executed = threading.Event(), [], []

    def hung_read(devnode: str, timeout: float) -> bytes | None:
        reads.append(devnode)
        release.wait(10)
        return None

    monkeypatch.setattr(vpd, "read_page", hung_read)
    core = Core(load.parse_text("defaults {\n recheck_wwid yes\n}\n"), ctl=None)

    async def up(*a, **k) -> checkers.CheckResult:
        return checkers.CheckResult(PathCheck.UP, "test")

    async def record(todo) -> None:
        executed.extend(todo)

    monkeypatch.setattr(core.runner, "check", up)
    monkeypatch.setattr(core, "execute", record)
    try:
        p = core._path_from_facts(FACTS, None)
        p.map, p.chk_state = "mpatha", PathCheck.DOWN
        core.state.paths[p.dev] = p
        core.state.maps["mpatha"] = MapState(name="mpatha", wwid=FACTS.wwid)
        core.state.set_paths(core.state.maps["mpatha"], ["sdb"])

        async def go() -> None:
            await core.check_and_apply(p)   # the read did not answer in time: taken as unread
            p.chk_state = PathCheck.DOWN
            executed.clear()
            await core.check_and_apply(p)   # still hanging: no second read; pending, so it stays down
            assert p.chk_state is PathCheck.DOWN and executed == []
        asyncio.run(go())
        assert reads == ["/dev/sdb"]
    finally:
        release.set()
        core.runner.close()
