"""The checker loop's round through Core.start_checks: every due path is handed to the CheckRunner at once and
each verdict is applied when its thread's result reaches the loop, with the guarantees the per-path
coroutine had: one check in flight per path, a result for a removed path ignored, a failing check logged with
its path and map, and the device state read on the checker's thread, not on the loop."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable

import pytest

from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.daemon.core import Core
from pymultipathd.dm import table as dmt
from pymultipathd.paths import checkers, sysinfo
from pymultipathd.policy import actions as act
from pymultipathd.policy.state import MapState, PathCheck, PathState


def _core(monkeypatch: pytest.MonkeyPatch,
          checker: Callable[[str, float], checkers.CheckResult]) -> tuple[Core, list[act.Action]]:
    """A map of sdb (failed in the kernel's table) and sdc (active), both checked by `checker`; the actions
    the core would carry out are recorded."""
    monkeypatch.setitem(checkers.CHECKERS, "fake", checker)
    core = Core(load.parse_text(""), ctl=None)
    m = MapState(name="mpatha", wwid="3600a")
    group = dmt.PathGroup((dmt.PathSpec("8:16"), dmt.PathSpec("8:32")))
    m.table = dmt.MultipathTable(size=8, groups=(group,))
    m.status = dmt.MultipathStatus(groups=(dmt.GroupStatus("A", (dmt.PathStatus("8:16", False, 1),
                                                                 dmt.PathStatus("8:32", True, 0))),))
    core.state.maps["mpatha"] = m
    for dev, dev_t, state in (("sdb", "8:16", PathCheck.DOWN), ("sdc", "8:32", PathCheck.UP)):
        core.state.paths[dev] = PathState(dev=dev, dev_t=dev_t, map="mpatha", chk_state=state, checker="fake",
                                          facts=PathFacts(dev=dev, dev_t=dev_t, wwid="3600a"), prio=1)
    core.state.set_paths(m, ["sdb", "sdc"])
    done: list[act.Action] = []

    async def execute(todo: list[act.Action]) -> None:
        done.extend(todo)

    monkeypatch.setattr(core, "execute", execute)
    return core, done


async def _settled(core: Core) -> None:
    """Until every verdict handed out is applied."""
    for _ in range(500):
        if not core._checking:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still checking {core._checking}")



def _held_until(release: threading.Event) -> Callable[[str, float], checkers.CheckResult]:
    """A checker that answers "up" once `release` is set (a check still in flight meanwhile)."""
    def slow(dev: str, t: float) -> checkers.CheckResult:
        release.wait(10)
        return checkers.CheckResult(PathCheck.UP, "fine")

    return slow

def test_a_round_applies_each_verdict_as_it_comes(monkeypatch):
    states: list[tuple[str, str]] = []

    def read(self: sysinfo.KeptStates, dev: str) -> str:
        states.append((dev, threading.current_thread().name))
        return "running" if dev == "sdc" else "transport-offline"

    monkeypatch.setattr(sysinfo.KeptStates, "read", read)
    core, done = _core(monkeypatch, lambda dev, t: checkers.CheckResult(PathCheck.UP, "fine"))

    async def go() -> None:
        loop = asyncio.get_running_loop()
        core.start_checks(list(core.state.paths.values()))
        await _settled(core)
        for p in core.state.paths.values():
            assert p.next_check > loop.time()  # the policy took each verdict
        await core.close()

    asyncio.run(go())
    sdb, sdc = core.state.paths["sdb"], core.state.paths["sdc"]
    assert (sdb.chk_state, sdc.chk_state) == (PathCheck.UP, PathCheck.UP)
    assert [type(a).__name__ for a in done if not isinstance(a, act.Log)] == ["ReinstatePath", "Revisit"]
    # the device state was read on the checkers' threads, with the check
    assert (sdb.dev_state, sdc.dev_state) == ("transport-offline", "running")
    assert sorted(d for d, _ in states) == ["sdb", "sdc"]
    assert all(t.startswith("checker") for _, t in states)


def test_a_path_is_not_checked_twice_at_once(monkeypatch):
    release, calls = threading.Event(), []

    def slow(dev: str, t: float) -> checkers.CheckResult:
        calls.append(dev)
        release.wait(10)
        return checkers.CheckResult(PathCheck.UP, "fine")

    core, _ = _core(monkeypatch, slow)
    sdc = core.state.paths["sdc"]

    async def go() -> None:
        core.start_checks([sdc])
        await asyncio.sleep(0.05)
        core.start_checks([sdc])  # its first check is still in flight: skipped
        await asyncio.sleep(0.05)
        assert calls == ["/dev/sdc"]
        release.set()
        await _settled(core)
        core.start_checks([sdc])  # answered and applied: checked again
        await _settled(core)
        await core.close()

    try:
        asyncio.run(go())
    finally:
        release.set()
    assert calls == ["/dev/sdc", "/dev/sdc"]


def test_a_verdict_on_a_path_removed_meanwhile_is_ignored(monkeypatch):
    release = threading.Event()
    slow = _held_until(release)
    core, done = _core(monkeypatch, slow)
    old = core.state.paths["sdb"]
    forgotten: list[str] = []
    monkeypatch.setattr(core.runner, "forget", forgotten.append)
    monkeypatch.setattr("pymultipathd.daemon.core.is_path_candidate", lambda dev: True)

    async def go() -> None:
        core.start_checks([old])
        await asyncio.sleep(0.05)
        core.on_uevent("remove", "sdb")  # and another disk takes the name
        core.state.paths["sdb"] = PathState(dev="sdb", dev_t="8:64", map="mpathb", chk_state=PathCheck.DOWN,
                                            facts=PathFacts(dev="sdb", dev_t="8:64", wwid="3600b"))
        release.set()
        await _settled(core)
        await core.close()

    try:
        asyncio.run(go())
    finally:
        release.set()
    assert done == [] and old.chk_state is PathCheck.DOWN
    assert core.state.paths["sdb"].chk_state is PathCheck.DOWN
    assert forgotten == ["/dev/sdb"]  # what the runner kept open for the removed path is let go


def test_a_path_still_in_flight_elsewhere_is_pending(monkeypatch):
    """The start-up's first checks go through the same runner: a check of the round that finds one in flight
    is answered "pending" at once, and the path is looked at again shortly."""
    release = threading.Event()
    slow = _held_until(release)
    core, done = _core(monkeypatch, slow)
    sdc = core.state.paths["sdc"]

    async def go() -> None:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(core.runner.check("/dev/sdc", "fake", 30.0))
        await asyncio.sleep(0.05)
        core.start_checks([sdc])
        assert not core._checking  # answered and applied at once
        assert loop.time() < sdc.next_check <= loop.time() + 1.0
        release.set()
        await first
        await core.close()

    try:
        asyncio.run(go())
    finally:
        release.set()
    assert sdc.chk_state is PathCheck.UP and done == []


def test_a_check_that_raises_is_logged_and_the_others_go_on(monkeypatch, caplog):
    def picky(dev: str, t: float) -> checkers.CheckResult:
        if dev == "/dev/sdb":
            raise RuntimeError("checker bug")
        return checkers.CheckResult(PathCheck.UP, "fine")

    core, _ = _core(monkeypatch, picky)

    async def go() -> None:
        core.start_checks(list(core.state.paths.values()))
        await _settled(core)
        await core.close()

    asyncio.run(go())
    sdb, sdc = core.state.paths["sdb"], core.state.paths["sdc"]
    assert "sdb: checking the path (map mpatha) failed" in caplog.text
    assert sdb.next_check == 0.0 and sdb.chk_state is PathCheck.DOWN  # due again at the next tick
    assert sdc.next_check > 0.0


def test_a_check_with_no_thread_to_run_on_leaves_the_path_to_the_next_round(monkeypatch):
    """Hung checks hold the pool, and the system will not start the thread of its own a check needs: the
    path is answered "pending" and checked at a later round, never held as "in flight" for ever."""
    calls: list[str] = []

    def fine(dev: str, t: float) -> checkers.CheckResult:
        calls.append(dev)
        return checkers.CheckResult(PathCheck.UP, "fine")

    core, done = _core(monkeypatch, fine)
    sdc = core.state.paths["sdc"]
    core.runner._max_threads = 2
    core.runner._stuck.add("/dev/hung")  # a hung check holds half the pool: each check needs its own thread
    real, refused = threading.Thread.start, []

    def start(self: threading.Thread) -> None:
        if not refused:
            refused.append(self.name)
            raise RuntimeError("can't start new thread")
        real(self)

    monkeypatch.setattr(threading.Thread, "start", start)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        core.start_checks([sdc])
        assert refused and not core._checking  # answered at once: "pending"
        assert loop.time() < sdc.next_check <= loop.time() + 1.0
        core.start_checks([sdc])  # its next round
        await _settled(core)
        await core.close()

    asyncio.run(go())
    assert calls == ["/dev/sdc"] and sdc.chk_state is PathCheck.UP


def test_a_check_out_of_descriptors_leaves_a_working_path_alone(monkeypatch):
    """max_fds reached: the check cannot open the path, which says nothing of the path. It is not failed."""
    def no_fds(dev: str, t: float) -> checkers.CheckResult:
        raise OSError(errno.EMFILE, "Too many open files")

    core, done = _core(monkeypatch, no_fds)
    sdc = core.state.paths["sdc"]

    async def go() -> None:
        core.start_checks([sdc])
        await _settled(core)
        await core.close()

    asyncio.run(go())
    assert sdc.chk_state is PathCheck.UP
    assert not [a for a in done if not isinstance(a, act.Log)]
