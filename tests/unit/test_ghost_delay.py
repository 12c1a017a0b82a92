"""ghost_delay: a new map whose paths are all ghosts (standby ports) is announced to udev as not ready until
an active path appears or ghost_delay seconds pass, through the policy with the stand-in kernel of
test_policy.py."""

from __future__ import annotations

from pymultipathd.classify import PathFacts
from pymultipathd.config import parse_text
from pymultipathd.dm import ioctl
from pymultipathd.dm import maps as dmmaps
from pymultipathd.policy import actions as act
from pymultipathd.policy import decide
from pymultipathd.policy import events as ev
from pymultipathd.policy.settings import MapSettings, map_settings
from pymultipathd.policy.state import DaemonState, PathCheck, PathState
from tests.unit.test_policy import GHOST, UP, WWID, Bed, kinds

CONF = "defaults {\n ghost_delay 30\n path_grouping_policy multibus\n}\n"


def _state(*checks: PathCheck) -> DaemonState:
    state = DaemonState()
    for i, c in enumerate(checks):
        dev, dev_t = f"sd{chr(ord('b') + i)}", f"8:{16 * (i + 1)}"
        state.paths[dev] = PathState(dev=dev, dev_t=dev_t, chk_state=c, size=2048,
                                     facts=PathFacts(dev=dev, dev_t=dev_t, wwid=WWID))
    return state


def _create(state: DaemonState, conf: str = CONF) -> act.CreateMap:
    cfg = parse_text(conf)
    out = decide.assemble(state, ev.PathsSettled(WWID, tuple(sorted(state.paths))),
                          lambda k: cfg.resolve(k, wwid=WWID))
    made = [a for a in out if isinstance(a, act.CreateMap)]
    assert len(made) == 1, out
    return made[0]


def test_a_map_of_ghost_paths_only_is_made_not_ready_for_ghost_delay():
    assert _create(_state(GHOST, GHOST)).not_ready_for == 30.0


def test_a_map_with_an_active_path_or_unchecked_paths_is_made_ready():
    assert _create(_state(GHOST, UP)).not_ready_for == 0.0
    assert _create(_state(PathCheck.UNDEF, PathCheck.UNDEF)).not_ready_for == 0.0
    assert _create(_state(PathCheck.DOWN, PathCheck.DOWN)).not_ready_for == 0.0


def test_without_ghost_delay_ghost_paths_make_a_ready_map():
    assert _create(_state(GHOST, GHOST), "defaults {\n path_grouping_policy multibus\n}\n").not_ready_for == 0
    assert map_settings(parse_text("defaults {\n ghost_delay no\n}\n").resolve).ghost_delay == 0.0


def _waiting_bed(until: float = 30.0) -> Bed:
    bed = Bed(MapSettings(ghost_delay=30.0), groups=2)
    for p in bed.state.paths.values():
        p.chk_state = GHOST
    bed.m.not_ready_until = until
    return bed


def test_an_active_path_ends_the_wait_at_once():
    bed = _waiting_bed()
    assert "AnnounceReady" not in kinds(bed.check("sdb", GHOST, 1.0))   # still standby
    out = bed.check("sdc", UP, 2.0)
    assert act.AnnounceReady("mpatha") in out and bed.m.not_ready_until is None
    assert any("sdc is an active path" in a.text for a in out if isinstance(a, act.Log))
    assert "AnnounceReady" not in kinds(bed.check("sdb", UP, 3.0))      # once


def test_the_wait_ends_after_ghost_delay_without_an_active_path():
    bed = _waiting_bed(until=30.0)
    assert "AnnounceReady" not in kinds(bed.feed(ev.Tick(29.0)))
    out = bed.feed(ev.Tick(30.0))
    assert "AnnounceReady" in kinds(out) and bed.m.not_ready_until is None
    assert any("no active path within ghost_delay (30 s)" in a.text for a in out if isinstance(a, act.Log))
    assert "AnnounceReady" not in kinds(bed.feed(ev.Tick(40.0)))


def test_the_not_ready_flags_are_multipaths_no_paths_flag_and_the_other_rules_one():
    # upstream's MPATH_UDEV_NO_PATHS_FLAG, and DM_UDEV_DISABLE_OTHER_RULES_FLAG, which systemd's rules turn
    # into SYSTEMD_READY=0 on hosts without multipath's own udev rules
    flags = ioctl.DM_SUBSYSTEM_UDEV_FLAG2 | ioctl.DM_UDEV_DISABLE_OTHER_RULES_FLAG
    assert dmmaps.NOT_READY_UDEV_FLAGS == flags
    assert ioctl.udev_cookie(dmmaps.NOT_READY_UDEV_FLAGS) == 0x0408 << 16


def test_a_refused_ready_reload_is_tried_again_at_a_later_tick(monkeypatch):
    """The announcement is a table load: one the kernel refuses (busy, no memory) must not leave the map
    announced not ready for good."""
    import asyncio

    from pymultipathd.config import load
    from pymultipathd.daemon import core as core_mod
    from pymultipathd.dm import table as dmt
    from pymultipathd.dm.errors import DMError
    from pymultipathd.policy.state import MapState

    c = core_mod.Core(load.parse_text(""), ctl=None)
    m = MapState(name="mpatha", wwid=WWID, dev_t="253:0",
                 table=dmt.MultipathTable(size=2048, groups=(dmt.PathGroup((dmt.PathSpec("8:16"),)),)))
    c.state.maps["mpatha"] = m
    loads: list[int] = []

    def reload_map(ctl, name, lines, *, udev_flags=0, **kw):
        loads.append(udev_flags)
        if len(loads) == 1:
            raise DMError("load", name, 16)

    async def refresh(name: str) -> bool:
        return True
    monkeypatch.setattr(core_mod.dmmaps, "reload_map", reload_map)
    monkeypatch.setattr(c, "_refresh_or_forget", refresh)

    async def run() -> None:
        await c.execute([act.AnnounceReady("mpatha")])
        assert m.not_ready_until is not None      # refused: still to do
        m.not_ready_until = 0.0                    # the retry is due
        await c.policy_tick()
        assert m.not_ready_until is None
    try:
        asyncio.run(run())
    finally:
        c.runner.close()
    assert loads == [0, 0]  # both without the not-ready flags
