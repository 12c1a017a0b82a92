"""Control commands over the daemon's public interface, with no kernel: what `reset map(s) stats` and the
counters of `show maps stats` do, and that a refusal from the core reaches the client as "fail"."""

from __future__ import annotations

import asyncio
import types

import pytest

from pymultipathd.config import load
from pymultipathd.control import grammar
from pymultipathd.control.server import CommandFailed
from pymultipathd.daemon import handlers
from pymultipathd.daemon.core import Core
from pymultipathd.policy.state import MapState, MapStats


def _daemon() -> types.SimpleNamespace:
    core = Core(load.parse_text(""), ctl=None)
    for name in ("mpatha", "mpathb"):
        m = MapState(name=name, wwid=f"3600{name}")
        m.stats = MapStats(path_faults=3, switch_grp=2, map_loads=4, map_failures=1, queueing_timeouts=1)
        core.state.maps[name] = m
    return types.SimpleNamespace(core=core, initramfs_warnings=[])


def _run(d: types.SimpleNamespace, text: str) -> str:
    async def go() -> str:
        try:
            return await handlers.dispatch(d, grammar.parse(text))
        finally:
            await d.core.close()
    return asyncio.run(go())


def _stats(d: types.SimpleNamespace, name: str) -> list[str]:
    from pymultipathd.control import format as fmt

    return fmt.show_maps(d.core.state, "%0 %1 %2 %x %4", raw=True, only=[d.core.state.maps[name]]).split()


def test_show_maps_stats_shows_the_counters_and_reset_map_stats_zeroes_one_map():
    d = _daemon()
    assert _stats(d, "mpatha") == ["3", "2", "4", "1", "1"]
    assert _run(d, "reset map mpatha stats") == ""
    assert _stats(d, "mpatha") == ["0", "0", "0", "0", "0"]
    assert _stats(d, "mpathb") == ["3", "2", "4", "1", "1"]


def test_reset_maps_stats_zeroes_every_map():
    d = _daemon()
    assert _run(d, "reset maps stats") == ""
    assert {tuple(_stats(d, n)) for n in ("mpatha", "mpathb")} == {("0", "0", "0", "0", "0")}


def test_a_refusal_of_the_core_is_a_fail_with_its_reason():
    d = _daemon()
    with pytest.raises(CommandFailed, match="mpatha has no path group 3"):
        _run(d, "switchgroup map mpatha group 3")
    with pytest.raises(CommandFailed, match="device not found"):
        _run(d, "reset map nosuch stats")


@pytest.mark.parametrize(("removed", "deferred", "kept", "said"), [
    (True, False, False, "last path gone, map removed"),
    (False, True, True, "removed deferred"),
    (False, False, True, "map kept (queueing I/O), it is in use:\nheld by mkfs (pid 42)"),
])
def test_the_last_path_gone_of_a_held_map_keeps_it_and_says_who_holds_it(removed, deferred, kept, said,
                                                                        caplog):
    """The policy's RemoveMap as the shell carries it out: a map something holds stays, with the report."""
    from pymultipathd import flush
    from pymultipathd.dm import table as dmt
    from pymultipathd.policy import actions as act

    d = _daemon()
    m = d.core.state.maps["mpatha"]
    m.table = dmt.MultipathTable(size=8, groups=(), features=dmt.Features(queue_if_no_path=True))
    asked: list[bool] = []

    async def flush_map(name: str, *, deferred: bool = False) -> flush.FlushResult:
        asked.append(deferred)
        return flush.FlushResult(name, removed=removed, deferred=deferred_result,
                                 report="held by mkfs (pid 42)")
    deferred_result = deferred
    d.core.flush_map = flush_map

    async def go() -> None:
        await d.core.execute([act.RemoveMap("mpatha", deferred=deferred)])
        await d.core.close()
    with caplog.at_level("INFO", logger="pymultipathd"):
        asyncio.run(go())
    assert asked == [deferred]
    assert ("mpatha" in d.core.state.maps) is kept
    assert said in caplog.text


class _Ctl:
    """Device mapper's message ioctl, recorded (or refused)."""

    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.refuse = refuse

    def message(self, name: str, text: str) -> None:
        from pymultipathd.dm.errors import DMError

        if self.refuse:
            raise DMError(f"{name}: refused")
        self.sent.append((name, text))


def _core_with_map(ctl: _Ctl) -> Core:
    from pymultipathd.classify import PathFacts
    from pymultipathd.dm import table as dmt
    from pymultipathd.policy.state import PathCheck, PathState

    core = Core(load.parse_text("defaults {\n no_path_retry queue\n}\n"), ctl=ctl)
    m = MapState(name="mpatha", wwid="3600a")
    m.table = dmt.MultipathTable(size=8, groups=(dmt.PathGroup((dmt.PathSpec("8:16"),)),
                                                 dmt.PathGroup((dmt.PathSpec("8:32"),))),
                                 features=dmt.Features(queue_if_no_path=True))
    m.status = dmt.MultipathStatus(groups=(
        dmt.GroupStatus("A", (dmt.PathStatus("8:16", True, 0),)),
        dmt.GroupStatus("E", (dmt.PathStatus("8:32", True, 0),))))
    core.state.maps["mpatha"] = m
    for dev, dev_t in (("sdb", "8:16"), ("sdc", "8:32")):
        core.state.paths[dev] = PathState(dev=dev, dev_t=dev_t, map="mpatha", chk_state=PathCheck.UP,
                                          facts=PathFacts(dev=dev, dev_t=dev_t, wwid="3600a"))
    core.state.set_paths(m, ["sdb", "sdc"])

    async def refresh(m: MapState) -> None:  # the map as the kernel has it: unchanged here
        return None
    core.refresh_map = refresh
    return core


def test_a_group_switch_counts_only_when_the_kernel_took_it():
    from pymultipathd.policy import actions as act

    for refuse, wanted in ((True, 0), (False, 1)):
        core = _core_with_map(_Ctl(refuse))

        async def go(core: Core = core) -> None:
            await core.execute([act.SwitchGroup("mpatha", 2)])
            await core.close()
        asyncio.run(go())
        assert core.state.maps["mpatha"].stats.switch_grp == wanted


def test_a_check_that_outlived_its_device_is_not_applied_to_the_device_that_took_its_name():
    from pymultipathd.classify import PathFacts
    from pymultipathd.paths.checkers import CheckResult
    from pymultipathd.policy.state import PathCheck, PathState

    ctl = _Ctl()
    core = _core_with_map(ctl)
    old = core.state.paths["sdb"]

    async def check(*args: object, **kw: object) -> CheckResult:
        # while the old sdb's check hangs, it is removed and another LUN's disk takes the name
        core.state.paths["sdb"] = PathState(dev="sdb", dev_t="8:64", map="mpathb", chk_state=PathCheck.UP,
                                            facts=PathFacts(dev="sdb", dev_t="8:64", wwid="3600b"))
        return CheckResult(PathCheck.TIMEOUT, "tur did not answer")
    core.runner.check = check

    async def go() -> None:
        await core.check_and_apply(old)
        await core.close()
    asyncio.run(go())
    assert ctl.sent == [] and core.state.paths["sdb"].chk_state is PathCheck.UP


def test_the_last_path_gone_is_decided_on_whether_the_map_is_open_now():
    """flush_on_last_del unused (the default): a map mounted since the daemon last read it keeps queueing."""
    from pymultipathd import flush

    ctl = _Ctl()
    core = _core_with_map(ctl)
    m = core.state.maps["mpatha"]
    m.open_count = 0  # as read at its creation, before fstab mounted it

    async def refresh(m: MapState) -> None:
        m.open_count = 1  # the kernel's count now
    core.refresh_map = refresh

    async def flush_map(name: str, *, deferred: bool = False) -> flush.FlushResult:
        return flush.FlushResult(name, removed=False, deferred=False, report="mounted on /srv")
    core.flush_map = flush_map
    core.state.paths.clear()  # every path of the map is gone

    async def go() -> None:
        await core._assemble("3600a", ())
        await core.close()
    asyncio.run(go())
    assert ("mpatha", "fail_if_no_path") not in ctl.sent and not m.queueing_disabled


def test_json_and_wildcards_report_the_real_values():
    import json

    from pymultipathd.control import format as fmt
    from pymultipathd.policy.settings import Failback, FailbackMode, MapSettings

    d = _daemon()
    m = d.core.state.maps["mpatha"]
    m.suspended, m.read_only, m.failback_due, m.queueing_since = True, True, 107.4, 90.0
    m.stats.total_q_time = 5.0
    settings = MapSettings(failback=Failback(FailbackMode.DEFERRED, 30))
    doc = json.loads(fmt.maps_json(d.core.state, [m], single=True, settings_of=lambda _m: settings,
                                   now=100.0))["map"]
    assert {k: doc[k] for k in ("dm_st", "write_prot", "failback", "path_faults", "switch_grp", "map_loads",
                                "total_q_time", "q_timeouts")} == {
        "dm_st": "suspended", "write_prot": "ro", "failback": "7/30", "path_faults": 3, "switch_grp": 2,
        "map_loads": 4, "total_q_time": 15, "q_timeouts": 1}
    followover = MapSettings(failback=Failback(FailbackMode.FOLLOWOVER))
    text = fmt.show_maps(d.core.state, "%F %r %3", raw=True, only=[m], settings_of=lambda _m: followover,
                         now=100.0)
    assert text.split() == ["followover", "ro", "15"]


def test_topology_shows_a_table_path_whose_device_is_gone():
    """An unmapped LUN leaves its path in the map's table; -ll shows it, as upstream does, since that is
    where the map's holders still send I/O."""
    from pymultipathd.control import format as fmt
    from pymultipathd.dm import table as dmt

    core = _core_with_map(_Ctl())
    m = core.state.maps["mpatha"]
    m.status = dmt.MultipathStatus(groups=(
        dmt.GroupStatus("A", (dmt.PathStatus("8:16", True, 0),)),
        dmt.GroupStatus("E", (dmt.PathStatus("8:32", False, 3),))))
    del core.state.paths["sdc"]  # 8:32's disk was deleted
    core.state.set_paths(m, ["sdb"])
    lines = fmt.topology(core.state, m).splitlines()
    assert lines[-1] == "  `- #:#:#:# - 8:32 failed faulty unknown"
    asyncio.run(core.close())


def test_show_paths_leaves_out_a_blacklisted_disk_that_show_devices_lists():
    from pymultipathd.classify import PathFacts
    from pymultipathd.control import format as fmt
    from pymultipathd.policy.state import PathState

    d = _daemon()
    st = d.core.state
    st.paths["vda"] = PathState(dev="vda", dev_t="254:0", facts=PathFacts(dev="vda", dev_t="254:0"),
                                blacklisted=True, verdict="no (blacklisted:devnode)")
    st.paths["sdb"] = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(dev="sdb", dev_t="8:16"))
    assert fmt.show_paths(st, "%d", raw=True).split() == ["sdb"]
    assert "vda no (blacklisted:devnode)" in _run(d, "show devices")
    d2 = _daemon()
    d2.core.state.paths.update(st.paths)
    assert "paths: 1" in _run(d2, "show status")


def test_show_status_repeats_what_the_initramfs_classified_differently():
    d = _daemon()
    assert "initramfs" not in _run(d, "show status")
    d.initramfs_warnings = ["initramfs fingerprint: 1 difference; rebuild: pymultipath verify --fix",
                            "initramfs fingerprint: wwids: root only: 3600a"]
    out = _run(d, "show status")
    assert out.endswith("\n".join(d.initramfs_warnings) + "\n")
