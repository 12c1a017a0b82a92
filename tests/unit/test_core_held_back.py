"""A map an administrator removed (del map) is not made again by its paths' change uevents, late ones from
its own creation included, as upstream's daemon does not; a new path, `add map` and reconfigure do."""

from __future__ import annotations

import asyncio

import pytest

from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.daemon import core as core_mod
from pymultipathd.daemon.core import Core

W = "3600a"


@pytest.fixture
def core(monkeypatch):
    from tests.unit.test_core_prio_timeout import _sysinfo

    _sysinfo(monkeypatch)
    monkeypatch.setattr(core_mod, "is_path_candidate", lambda dev: True)
    monkeypatch.setattr(core_mod.facts, "path_facts",
                        lambda dev, config, **kw: PathFacts(dev=dev, dev_t="8:16", wwid=W, vendor="ACME",
                                                            product="Box"))
    c = Core(load.parse_text("defaults {\n find_multipaths greedy\n}\n"), ctl=None)
    made: list[set[str]] = []

    async def reconcile(wwids):
        made.append(set(wwids))

    monkeypatch.setattr(c, "reconcile", reconcile)
    c.made = made
    yield c
    c.runner.close()


def _events(c: Core, *actions: str, close: bool = True) -> None:
    async def run() -> None:
        for action in actions:
            c.on_uevent(action, "sdb")
        if close:
            await c.settle()

    asyncio.run(run())


def test_change_events_do_not_remake_a_removed_map_but_a_new_path_does(core):
    _events(core, "change")
    assert core.made == [{W}]
    core.held_back.add(W)  # what remove_map does once the map is gone
    _events(core, "change", "change")
    assert core.made == [{W}]
    _events(core, "add")  # a path added (a new LUN mapping, a rescan that adds): made again
    assert core.made == [{W}, {W}] and W not in core.held_back


def test_a_queued_wwid_is_dropped_when_its_map_is_removed_before_the_batch_closes(core):
    async def run() -> None:
        core.on_uevent("change", "sdb")  # queued; the batch closes after BATCH_QUIET
        core.held_back.add(W)            # del map meanwhile
        await core.settle()

    asyncio.run(run())
    assert core.made == []


def test_add_map_lifts_it(core):
    core.held_back.add(W)
    asyncio.run(core.add_map(W))
    assert W not in core.held_back and core.made == [{W}]


def test_paths_a_removed_map_frees_let_go_of_what_their_checks_kept(core, monkeypatch):
    """Outside a map a path is not checked: what was kept open for its checks (its sg node) is closed when
    the map goes, so a program that takes the disk next may open the node exclusively."""
    from pymultipathd.policy import decide
    from pymultipathd.policy.state import MapState

    _events(core, "add")
    forgotten: list[str] = []
    monkeypatch.setattr(core.runner, "forget", forgotten.append)
    decide.created(core.state, MapState(name="mpatha", wwid=W), ("sdb",))
    core.forget_map(core.state.maps["mpatha"])
    assert core.state.paths["sdb"].map is None and forgotten == ["/dev/sdb"]


def test_a_batch_that_waited_for_a_removal_does_not_make_the_map_again(core, monkeypatch):
    """del map and a batch's assembly take turns (one lock): a batch that was waiting while the map was
    removed skips it, whatever it had queued."""
    monkeypatch.setattr(core, "world", lambda: pytest.fail("a WWID held back was planned"))

    async def run() -> None:
        await core._assembly.acquire()  # a removal is under way
        batch = asyncio.ensure_future(Core.reconcile(core, {W}))  # the real one, not the fixture's
        await asyncio.sleep(0)
        core.held_back.add(W)  # the removal done
        core._assembly.release()
        await batch

    asyncio.run(run())


def test_del_map_waits_for_a_batch_that_is_assembling(core, monkeypatch):
    from pymultipathd import flush
    from pymultipathd.policy import decide
    from pymultipathd.policy.state import MapState

    _events(core, "add")
    decide.created(core.state, MapState(name="mpatha", wwid=W), ("sdb",))
    flushed: list[str] = []

    async def flush_map(name: str, **kw) -> flush.FlushResult:
        flushed.append(name)
        return flush.FlushResult(name, removed=True, deferred=False, report="")

    monkeypatch.setattr(core, "flush_map", flush_map)

    async def run() -> flush.FlushResult:
        await core._assembly.acquire()  # a batch is making maps
        removal = asyncio.ensure_future(core.remove_map(core.state.maps["mpatha"]))
        await asyncio.sleep(0.05)
        assert flushed == []  # it waits for the batch
        core._assembly.release()
        return await removal

    res = asyncio.run(run())
    assert res.removed and flushed == ["mpatha"] and W in core.held_back and "mpatha" not in core.state.maps
