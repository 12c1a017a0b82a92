"""retrigger_tries / retrigger_delay: a disk udev gave no WWID gets change uevents, spaced and counted, then
is said to stay without one (policy/decide.py uninitialized)."""

from __future__ import annotations

from pymultipathd.classify import PathFacts
from pymultipathd.policy import actions as act
from pymultipathd.policy import decide
from pymultipathd.policy.state import DaemonState, PathState


def _state(**wwids: str | None) -> DaemonState:
    state = DaemonState()
    for i, (dev, wwid) in enumerate(wwids.items()):
        dev_t = f"8:{16 * (i + 1)}"
        state.paths[dev] = PathState(dev=dev, dev_t=dev_t, facts=PathFacts(dev=dev, dev_t=dev_t, wwid=wwid))
    return state


def _sent(out: list[act.Action]) -> list[str]:
    return [a.dev for a in out if isinstance(a, act.Retrigger)]


def udev(p: PathState) -> bool:
    return True


def uninitialized(state: DaemonState, tries: int, delay: float, now: float) -> list[act.Action]:
    return decide.uninitialized(state, tries, delay, now, udev)


def test_a_disk_without_a_wwid_is_retriggered_tries_times_delay_apart():
    state = _state(sdb=None, sdc="36001405aa")
    assert _sent(uninitialized(state, 3, 10.0, 0.0)) == ["sdb"]   # at once, the WWID-less one only
    assert _sent(uninitialized(state, 3, 10.0, 9.0)) == []        # not before the delay
    assert _sent(uninitialized(state, 3, 10.0, 10.0)) == ["sdb"]
    assert _sent(uninitialized(state, 3, 10.0, 20.0)) == ["sdb"]
    out = uninitialized(state, 3, 10.0, 30.0)
    assert _sent(out) == [] and any("after 3 change uevents" in a.text for a in out if isinstance(a, act.Log))
    assert uninitialized(state, 3, 10.0, 100.0) == []              # said once, then quiet


def test_a_disk_that_got_its_wwid_is_counted_afresh():
    state = _state(sdb=None)
    uninitialized(state, 1, 10.0, 0.0)
    state.paths["sdb"].facts = PathFacts(dev="sdb", dev_t="8:16", wwid="36001405aa")
    assert uninitialized(state, 1, 10.0, 10.0) == [] and state.paths["sdb"].retriggers == 0


def test_retrigger_tries_0_never_retriggers_and_blacklisted_disks_are_left_alone():
    state = _state(sdb=None, sdc=None)
    state.paths["sdc"].blacklisted = True
    assert _sent(uninitialized(state, 0, 10.0, 0.0)) == []
    assert _sent(uninitialized(_state(sdb=None), 0, 10.0, 50.0)) == []
    state = _state(sdc=None)
    state.paths["sdc"].blacklisted = True
    assert uninitialized(state, 3, 10.0, 0.0) == []


def test_hidden_disks_and_disks_whose_wwid_comes_from_sysfs_are_never_retriggered():
    from pymultipathd.record import replace

    state = _state(sdb=None, sdc=None)
    state.paths["sdb"].facts = replace(state.paths["sdb"].facts, hidden=True)  # a native NVMe path node, say
    sysfs_wwid = {"sdc"}                                                        # uid_attribute "" for it
    out = decide.uninitialized(state, 3, 10.0, 0.0, lambda p: p.dev not in sysfs_wwid)
    assert out == []
