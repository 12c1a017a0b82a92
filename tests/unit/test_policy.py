"""The daemon's policy driven by tables of events, against a stand-in kernel that applies its actions.

Each scenario is the situation an administrator meets on a real array: a path dies and comes back, a group
fails over and back under each failback mode, all paths are gone while I/O queues (no_path_retry), the last
path of a map goes away. The stand-in kernel does what dm-multipath does with the messages: fail and reinstate
paths, switch groups (the next I/O goes to the new group), switch queueing.
"""

from __future__ import annotations

import pytest

from pymultipathd.classify import PathFacts
from pymultipathd.config import parse_text
from pymultipathd.dm import table as dmt
from pymultipathd.policy import actions as act
from pymultipathd.policy import decide
from pymultipathd.policy import events as ev
from pymultipathd.policy.settings import (
    Failback,
    FailbackMode,
    LastDel,
    MapSettings,
    NoPathRetry,
    RetryMode,
    map_settings,
)
from pymultipathd.policy.state import DaemonState, MapState, PathCheck, PathState
from pymultipathd.record import replace

UP, DOWN, GHOST, PENDING, TIMEOUT, SHAKY, UNDEF = (PathCheck.UP, PathCheck.DOWN, PathCheck.GHOST,
                                                   PathCheck.PENDING, PathCheck.TIMEOUT, PathCheck.SHAKY,
                                                   PathCheck.UNDEF)
WWID = "36001405aaaabbbbccccdddd"


class Bed:
    """One map of `groups` path groups with `per_group` paths each (group 1 has the best priority), all
    paths up and active, group 1 in use; and a kernel that carries out the policy's messages. The daemon's
    view of the map (m.table, m.status) changes only when the policy asks to read it again (Refresh,
    Revisit), as with the real kernel: a message raises no event."""

    def __init__(self, settings: MapSettings | None = None, *, groups: int = 2, per_group: int = 1,
                 queueing: bool = False) -> None:
        settings = self.settings = settings or MapSettings()
        self.state = DaemonState()
        self.m = MapState(name="mpatha", wwid=WWID)
        self.state.maps["mpatha"] = self.m
        specs, devs = [], []
        for g in range(groups):
            group = []
            for i in range(per_group):
                n = g * per_group + i
                dev, dev_t = f"sd{chr(ord('b') + n)}", f"8:{16 * (n + 1)}"
                self.state.paths[dev] = PathState(dev=dev, dev_t=dev_t, map="mpatha", chk_state=UP,
                                                  prio=50 - 10 * g, interval=settings.polling_interval,
                                                  facts=PathFacts(dev=dev, dev_t=dev_t, wwid=WWID),
                                                  size=2048)
                group.append(dmt.PathSpec(dev_t))
                devs.append(dev)
            specs.append(dmt.PathGroup(tuple(group)))
        self.m.table = dmt.MultipathTable(size=2048, groups=tuple(specs),
                                          features=dmt.Features(queue_if_no_path=queueing))
        self.m.status = dmt.MultipathStatus(groups=tuple(
            dmt.GroupStatus("A" if gi == 0 else "E", tuple(dmt.PathStatus(s.dev, True, 0) for s in g.paths))
            for gi, g in enumerate(specs)), next_group=1)
        self.state.set_paths(self.m, devs)
        self.k_table, self.k_status = self.m.table, self.m.status  # the kernel's own
        self.done: list[act.Action] = []

    def p(self, dev: str) -> PathState:
        return self.state.paths[dev]

    def settings_of(self, m: MapState) -> MapSettings:
        return self.settings

    def feed(self, event: ev.Event) -> list[act.Action]:
        """The policy's actions for the event, carried out as the daemon would (Revisit included)."""
        out = decide.step(self.state, event, self.settings_of)
        done = []
        for a in out:
            done.append(a)
            self.kernel(a)
            if isinstance(a, act.Revisit):
                done += self.feed(ev.MapRevisited(a.map, getattr(event, "now", 0.0), a.came_up))
        self.done += done
        return done

    def kernel(self, a: act.Action) -> None:
        if isinstance(a, (act.FailPath, act.ReinstatePath)):
            dev_t = self.state.paths[a.dev].dev_t
            self.set_active(dev_t, isinstance(a, act.ReinstatePath), seen=False)
        elif isinstance(a, act.SwitchGroup):
            self.use_group(a.group, seen=False)
        elif isinstance(a, act.SetQueueing):
            features = replace(self.k_table.features, queue_if_no_path=a.on)
            self.k_table = replace(self.k_table, features=features)
        elif isinstance(a, (act.Refresh, act.Revisit)):
            self.m.table, self.m.status = self.k_table, self.k_status

    def set_active(self, dev_t: str, active: bool, seen: bool = True) -> None:
        """The kernel fails or reinstates a path (`seen`: and the daemon has read the map since)."""
        st = self.k_status
        self.k_status = replace(st, groups=tuple(replace(g, paths=tuple(
            replace(p, active=active) if p.dev == dev_t else p for p in g.paths)) for g in st.groups))
        if seen:
            self.m.status = self.k_status

    def use_group(self, n: int, seen: bool = True) -> None:
        """The kernel's switch to group n (as it does itself when the group in use has no usable path)."""
        st = self.k_status
        self.k_status = replace(st, next_group=n, groups=tuple(
            replace(g, state="A" if i == n else "E") for i, g in enumerate(st.groups, 1)))
        if seen:
            self.m.status = self.k_status

    def check(self, dev: str, state: PathCheck, now: float = 0.0,
              prio: int | None = None) -> list[act.Action]:
        return self.feed(ev.PathChecked(dev, state, now, f"test {state}", prio))


def kinds(actions: list[act.Action]) -> list[str]:
    return [type(a).__name__ for a in actions if not isinstance(a, act.Log)]


# --- checker states ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("before", "active", "result", "wanted", "after"),
    [
        (UP, True, DOWN, ["FailPath", "Revisit"], DOWN),
        (UP, True, TIMEOUT, ["FailPath", "Revisit"], TIMEOUT),      # no answer in checker_timeout: failed
        (UP, True, SHAKY, ["FailPath", "Revisit"], SHAKY),
        (UP, True, PENDING, [], UP),                                # no answer yet: nothing changes
        (DOWN, False, PENDING, [], DOWN),
        (DOWN, False, UP, ["ReinstatePath", "Revisit"], UP),
        (DOWN, False, GHOST, ["ReinstatePath", "Revisit"], GHOST),  # a standby port is usable
        (TIMEOUT, False, UP, ["ReinstatePath", "Revisit"], UP),
        (UP, True, UP, [], UP),
        (UP, True, GHOST, [], GHOST),                               # both usable: nothing to tell the kernel
        (UNDEF, True, UP, [], UP),                                  # a first check that agrees
        (UNDEF, True, DOWN, ["FailPath", "Revisit"], DOWN),
        (UP, False, UP, ["ReinstatePath", "Revisit"], UP),          # the kernel failed it on an I/O error
        (DOWN, True, DOWN, ["FailPath", "Revisit"], DOWN),          # reinstated by hand, still dead
    ],
)
def test_checker_verdicts(before, active, result, wanted, after):
    bed = Bed()
    bed.p("sdb").chk_state = before
    bed.set_active("8:16", active)
    assert kinds(bed.check("sdb", result)) == wanted
    assert bed.p("sdb").chk_state is after
    assert bed.m.status.path("8:16").active is (after.usable if wanted else active)


def test_a_pending_check_is_looked_at_again_soon_and_says_nothing():
    bed = Bed(MapSettings(polling_interval=5.0))
    assert bed.check("sdb", PENDING, now=100.0) == []
    assert bed.p("sdb").next_check == 100.0 + decide.PENDING_RECHECK
    assert bed.p("sdb").failures == 0 and bed.m.stats.path_faults == 0


@pytest.mark.parametrize("active", [True, False])
def test_a_checker_that_cannot_judge_the_device_changes_nothing_and_says_so_once(active):
    """Upstream's PATH_WILD (an rdac checker on a disk without the RDAC page): the path is neither failed
    nor reinstated, whatever the kernel has it as, and the warning is not repeated at every check."""
    bed = Bed(MapSettings(polling_interval=5.0))
    bed.p("sdb").chk_state = UP
    bed.set_active("8:16", active)
    said = bed.check("sdb", PathCheck.WILD, now=1.0)
    assert [type(a).__name__ for a in said] == ["Log"] and "unusable path checker" in said[0].text
    assert bed.check("sdb", PathCheck.WILD, now=6.0) == []
    assert bed.p("sdb").chk_state is PathCheck.WILD and bed.p("sdb").next_check == 11.0
    assert bed.m.status.path("8:16").active is active and bed.m.stats.path_faults == 0


def test_healthy_paths_back_off_to_max_polling_interval_and_trouble_resets_it():
    bed = Bed(MapSettings(polling_interval=5.0, max_polling_interval=20.0))
    seen = []
    for t in range(5):
        bed.check("sdb", UP, now=float(t))
        seen.append(bed.p("sdb").interval)
    assert seen == [10.0, 20.0, 20.0, 20.0, 20.0]
    bed.check("sdb", DOWN, now=10.0)
    assert bed.p("sdb").interval == 5.0 and bed.p("sdb").next_check == 15.0


def test_fault_counters_count_lost_paths_and_lost_maps():
    bed = Bed()
    bed.check("sdb", DOWN)
    assert (bed.p("sdb").failures, bed.m.stats.path_faults, bed.m.stats.map_failures) == (1, 1, 0)
    bed.check("sdc", DOWN)
    assert (bed.m.stats.path_faults, bed.m.stats.map_failures) == (2, 1)
    bed.check("sdc", DOWN)  # still down: not a new fault
    assert bed.m.stats.path_faults == 2


def test_group_by_prio_regroups_when_a_priority_changes():
    bed = Bed(MapSettings(regroup_on_prio=True))
    out = bed.check("sdb", UP, prio=10)
    assert act.Regroup(WWID) in out and bed.p("sdb").prio == 10
    assert "Revisit" in kinds(out)  # failback decides anew with the new priorities
    plain = Bed()
    assert act.Regroup(WWID) not in plain.check("sdb", UP, prio=10)


def test_queueing_resumed_is_read_back_so_the_daemon_knows_the_map_queues():
    bed = Bed(MapSettings(no_path_retry=NoPathRetry(RetryMode.COUNT, 1), polling_interval=5.0), queueing=True)
    _all_down(bed)
    for t in (0.0, 5.0):
        bed.feed(ev.Tick(t))
    assert not bed.m.queueing
    bed.check("sdb", UP, now=6.0)
    assert bed.k_table.features.queue_if_no_path and bed.m.queueing  # what release_queueing relies on


def test_a_check_of_a_path_removed_meanwhile_does_nothing():
    bed = Bed()
    del bed.state.paths["sdb"]
    assert bed.check("sdb", DOWN) == []


# --- failback -----------------------------------------------------------------------------------------

def _fail_over(bed: Bed) -> None:
    """Group 1's path dies; the kernel moves I/O to group 2."""
    bed.check("sdb", DOWN, now=0.0)
    bed.use_group(2)


@pytest.mark.parametrize(
    ("failback", "switches"),
    [
        (Failback(FailbackMode.IMMEDIATE), True),
        (Failback(FailbackMode.FOLLOWOVER), True),   # the path came up as the first of its group
        (Failback(FailbackMode.MANUAL), False),
        (Failback(FailbackMode.DEFERRED, 10), False),  # not yet: see the deferred test
    ],
)
def test_failback_when_the_best_groups_path_comes_back(failback, switches):
    bed = Bed(MapSettings(failback=failback))
    _fail_over(bed)
    out = bed.check("sdb", UP, now=5.0)
    assert (act.SwitchGroup("mpatha", 1) in out) is switches
    assert bed.m.status.next_group == (1 if switches else 2)


def test_failback_n_seconds_waits_then_switches_on_the_tick():
    bed = Bed(MapSettings(failback=Failback(FailbackMode.DEFERRED, 10)))
    _fail_over(bed)
    bed.check("sdb", UP, now=5.0)
    assert bed.m.failback_due == 15.0
    assert kinds(bed.feed(ev.Tick(14.0))) == []
    assert kinds(bed.feed(ev.Tick(15.0))) == ["SwitchGroup", "Refresh"]
    assert bed.m.status.next_group == 1 and bed.m.failback_due is None
    assert kinds(bed.feed(ev.Tick(30.0))) == []


def test_failback_n_seconds_is_called_off_when_the_map_is_back_on_the_best_group():
    bed = Bed(MapSettings(failback=Failback(FailbackMode.DEFERRED, 10)))
    _fail_over(bed)
    bed.check("sdb", UP, now=5.0)
    bed.use_group(1)  # an administrator switched back meanwhile
    bed.check("sdb", UP, now=6.0)
    assert kinds(bed.feed(ev.Tick(15.0))) == []


def test_followover_does_not_undo_a_switch_while_its_group_kept_a_usable_path():
    bed = Bed(MapSettings(failback=Failback(FailbackMode.FOLLOWOVER)), per_group=2)
    bed.check("sdb", DOWN, now=0.0)  # one of group 1's two paths
    bed.use_group(2)                 # another host (or an administrator) moved I/O to group 2
    out = bed.check("sdb", UP, now=5.0)
    assert act.SwitchGroup("mpatha", 1) not in out  # group 1 never went away: the switch stays


def test_immediate_undoes_a_manual_switch_on_a_steady_check_and_manual_does_not():
    for mode, wanted in ((FailbackMode.IMMEDIATE, ["SwitchGroup", "Refresh"]), (FailbackMode.MANUAL, []),
                         (FailbackMode.FOLLOWOVER, [])):
        bed = Bed(MapSettings(failback=Failback(mode)))
        bed.use_group(2)
        assert kinds(bed.check("sdc", UP)) == wanted, mode


# --- no_path_retry --------------------------------------------------------------------------------------

def _all_down(bed: Bed) -> None:
    for dev in list(bed.state.paths):
        bed.check(dev, DOWN, now=0.0)


def test_a_tick_asks_for_a_maps_settings_only_when_its_clock_has_work():
    """The tick runs for every map every second: a map with usable paths and nothing due costs no settings
    lookup; a queueing map with no usable path (no_path_retry's count) does."""
    bed = Bed(MapSettings(no_path_retry=NoPathRetry(RetryMode.COUNT, 3)), queueing=True)
    asked: list[str] = []

    def settings_of(m: MapState) -> MapSettings:
        asked.append(m.name)
        return bed.settings

    assert decide.tick(bed.state, bed.m, settings_of, 1.0) == [] and asked == []
    _all_down(bed)
    decide.tick(bed.state, bed.m, settings_of, 2.0)
    assert asked == ["mpatha"] and bed.m.retry_ticks == 3


def test_no_path_retry_n_fails_queued_io_after_n_intervals():
    bed = Bed(MapSettings(no_path_retry=NoPathRetry(RetryMode.COUNT, 3), polling_interval=5.0), queueing=True)
    _all_down(bed)
    timeline = {}
    for t in (0.0, 1.0, 5.0, 6.0, 10.0, 15.0):
        timeline[t] = (kinds(bed.feed(ev.Tick(t))), bed.m.retry_ticks)
    assert timeline == {
        0.0: ([], 3), 1.0: ([], 3),   # within one interval: counted once
        5.0: ([], 2), 6.0: ([], 2), 10.0: ([], 1),
        15.0: (["SetQueueing", "Refresh"], None),
    }
    assert not bed.m.queueing and bed.m.stats.queueing_timeouts == 1


def test_no_path_retry_counting_stops_when_a_path_comes_back_and_queueing_resumes():
    bed = Bed(MapSettings(no_path_retry=NoPathRetry(RetryMode.COUNT, 2), polling_interval=5.0), queueing=True)
    _all_down(bed)
    for t in (0.0, 5.0, 10.0):
        bed.feed(ev.Tick(t))
    assert not bed.m.queueing  # ran out: I/O failed
    out = bed.check("sdb", UP, now=12.0)
    assert act.SetQueueing("mpatha", True) in out and bed.m.queueing
    bed.feed(ev.Tick(13.0))
    assert bed.m.retry_ticks is None


@pytest.mark.parametrize("retry", [NoPathRetry(RetryMode.QUEUE), NoPathRetry(RetryMode.FAIL), NoPathRetry()])
def test_queue_fail_and_unset_never_count(retry):
    bed = Bed(MapSettings(no_path_retry=retry), queueing=retry.mode is RetryMode.QUEUE)
    _all_down(bed)
    for t in range(0, 100, 5):
        assert kinds(bed.feed(ev.Tick(float(t)))) == []
    assert bed.m.queueing is (retry.mode is RetryMode.QUEUE)


def test_queueing_an_administrator_disabled_is_not_resumed_by_a_path_coming_back():
    bed = Bed(MapSettings(no_path_retry=NoPathRetry(RetryMode.QUEUE)), queueing=False)
    bed.m.queueing_disabled = True
    _all_down(bed)
    assert act.SetQueueing("mpatha", True) not in bed.check("sdb", UP, now=5.0)


@pytest.mark.parametrize(("text", "mode", "count", "queues"), [
    ("queue", RetryMode.QUEUE, 0, True), ("fail", RetryMode.FAIL, 0, False), ("0", RetryMode.FAIL, 0, False),
    ("5", RetryMode.COUNT, 5, True),
])
def test_no_path_retry_settings_from_the_configuration(text, mode, count, queues):
    cfg = parse_text(f"defaults {{\n no_path_retry {text}\n}}\n")
    s = map_settings(lambda kw: cfg.resolve(kw, wwid=WWID, vendor="ACME", product="disk"))
    assert (s.no_path_retry, s.queue_if_no_path) == (NoPathRetry(mode, count), queues)


@pytest.mark.parametrize(("text", "wanted"), [
    ("manual", Failback(FailbackMode.MANUAL)), ("immediate", Failback(FailbackMode.IMMEDIATE)),
    ("followover", Failback(FailbackMode.FOLLOWOVER)), ("15", Failback(FailbackMode.DEFERRED, 15)),
    ("0", Failback(FailbackMode.MANUAL)),
])
def test_failback_settings_from_the_configuration(text, wanted):
    cfg = parse_text(f"defaults {{\n failback {text}\n}}\n")
    s = map_settings(lambda kw: cfg.resolve(kw, wwid=WWID, vendor="ACME", product="disk"))
    assert s.failback == wanted


# --- the last path gone ----------------------------------------------------------------------------------

def _last_gone(bed: Bed) -> list[act.Action]:
    bed.state.paths.clear()  # every path of the map is gone
    return decide.assemble(bed.state, ev.PathsSettled(WWID, ()), _resolver(parse_text(""), bed.settings))


def _resolver(cfg, s: MapSettings):
    words = {"flush_on_last_del": s.flush_on_last_del.value, "deferred_remove": s.deferred_remove,
             "no_path_retry": "queue"}
    return lambda kw: words[kw] if kw in words else cfg.resolve(kw, wwid=WWID, vendor="ACME", product="disk")


@pytest.mark.parametrize(("last_del", "open_count", "deferred", "wanted"), [
    (LastDel.ALWAYS, 1, False, [act.SetQueueing("mpatha", False), act.RemoveMap("mpatha", deferred=False)]),
    (LastDel.NEVER, 0, False, [act.RemoveMap("mpatha", deferred=False)]),
    (LastDel.UNUSED, 1, False, [act.RemoveMap("mpatha", deferred=False)]),   # in use: keep queueing
    (LastDel.UNUSED, 0, False, [act.SetQueueing("mpatha", False), act.RemoveMap("mpatha", deferred=False)]),
    (LastDel.NEVER, 1, True, [act.RemoveMap("mpatha", deferred=True)]),      # deferred_remove
])
def test_last_path_gone(last_del, open_count, deferred, wanted):
    bed = Bed(MapSettings(flush_on_last_del=last_del, deferred_remove=deferred), queueing=True)
    bed.m.open_count = open_count
    out = [a for a in _last_gone(bed) if not isinstance(a, act.Log)]
    assert out == wanted
    assert bed.m.queueing_disabled is (act.SetQueueing("mpatha", False) in wanted)


def test_last_path_gone_of_a_map_that_does_not_queue_only_removes_it():
    bed = Bed(MapSettings(flush_on_last_del=LastDel.ALWAYS), queueing=False)
    assert [a for a in _last_gone(bed) if not isinstance(a, act.Log)] == [act.RemoveMap("mpatha", False)]


# --- assembly -----------------------------------------------------------------------------------------

def _conf_resolver(text: str = ""):
    cfg = parse_text(text)
    return lambda kw: cfg.resolve(kw, wwid=WWID, vendor="ACME", product="disk")


def test_assemble_creates_a_map_for_claimed_paths_and_nothing_without_them():
    state = DaemonState()
    for dev, minor in (("sdb", 16), ("sdc", 32)):
        state.paths[dev] = PathState(dev=dev, dev_t=f"8:{minor}", size=2048,
                                     facts=PathFacts(dev=dev, dev_t=f"8:{minor}", wwid=WWID))
    out = decide.assemble(state, ev.PathsSettled(WWID, ("sdb", "sdc")), _conf_resolver())
    assert kinds(out) == ["CreateMap"] and out[0].devs == ("sdb", "sdc")
    assert decide.assemble(state, ev.PathsSettled("other", ()), _conf_resolver()) == []


def test_assemble_refuses_paths_of_different_sizes_out_loud():
    state = DaemonState()
    for dev, minor, size in (("sdb", 16, 2048), ("sdc", 32, 4096)):
        state.paths[dev] = PathState(dev=dev, dev_t=f"8:{minor}", size=size,
                                     facts=PathFacts(dev=dev, dev_t=f"8:{minor}", wwid=WWID))
    out = decide.assemble(state, ev.PathsSettled(WWID, ("sdb", "sdc")), _conf_resolver())
    assert [type(a) for a in out] == [act.Log] and "disagree on size" in out[0].text


def test_assemble_leaves_a_map_that_matches_alone_and_reloads_one_that_does_not():
    bed = Bed()
    res = _conf_resolver("defaults {\n path_grouping_policy failover\n}\n")
    assert kinds(decide.assemble(bed.state, ev.PathsSettled(WWID, ("sdb", "sdc")), res)) == ["Refresh"]
    bed.state.paths["sdd"] = PathState(dev="sdd", dev_t="8:64", size=2048,
                                       facts=PathFacts(dev="sdd", dev_t="8:64", wwid=WWID))
    out = decide.assemble(bed.state, ev.PathsSettled(WWID, ("sdb", "sdc", "sdd")), res)
    assert kinds(out) == ["ReloadMap", "Refresh"] and out[0].table.line().count("8:64") == 1
    assert bed.p("sdd").map is None  # joins when the reloaded table is read back (a refused load: never)


def test_assemble_switches_only_queueing_by_message_when_nothing_else_differs():
    bed = Bed(queueing=False)
    res = _conf_resolver("defaults {\n path_grouping_policy failover\n no_path_retry queue\n}\n")
    out = decide.assemble(bed.state, ev.PathsSettled(WWID, ("sdb", "sdc")), res)
    assert kinds(out) == ["SetQueueing", "Refresh"] and out[0] == act.SetQueueing("mpatha", True)


# --- the kernel and the network -----------------------------------------------------------------------

def test_a_path_the_kernel_failed_is_checked_at_once():
    bed = Bed()
    bed.p("sdb").next_check = 50.0
    bed.set_active("8:16", False)
    out = bed.feed(ev.MapChanged("mpatha", 7.0))
    assert bed.p("sdb").next_check == 7.0 and [a.dev for a in out if isinstance(a, act.Log)] == ["sdb"]


def test_link_trouble_fails_the_paths_behind_it_at_once():
    bed = Bed()
    out = bed.feed(ev.LinkTrouble(frozenset({"sdb", "nosuch"}), "link eth1 down", 3.0))
    assert kinds(out) == ["FailPath", "Refresh"]
    assert bed.p("sdb").chk_state is DOWN and bed.p("sdb").next_check == 3.0
    assert bed.m.stats.path_faults == 1 and not bed.m.status.path("8:16").active


def test_a_check_sent_before_the_link_went_away_reinstates_nothing():
    """A check in flight when the link went down comes back "up" (its TUR crossed before the cut): that
    verdict predates the loss, so the path link_trouble failed stays failed until a check sent after it
    says otherwise. Reinstating it let the same cut fail it twice (link, then address) and count two
    faults against san_path_err_threshold."""
    bed = Bed()
    bed.feed(ev.LinkTrouble(frozenset({"sdb"}), "link eth1 down", 3.0))
    stale = bed.feed(ev.PathChecked("sdb", UP, 3.2, "tur ok", None, 2.9))
    assert stale == [] and bed.p("sdb").chk_state is DOWN and bed.p("sdb").next_check == 3.2
    fresh = bed.feed(ev.PathChecked("sdb", UP, 4.0, "tur ok", None, 3.5))
    assert "ReinstatePath" in kinds(fresh) and bed.p("sdb").usable
    assert bed.feed(ev.PathChecked("sdb", DOWN, 5.0, "tur down", None, 2.0)) != []  # a "down" always counts


def test_events_for_a_map_removed_meanwhile_do_nothing():
    bed = Bed()
    for e in (ev.MapRevisited("gone", 0.0), ev.MapChanged("gone", 0.0), ev.Tick(0.0)):
        bed.state.maps.pop("mpatha", None)
        assert decide.step(bed.state, e, bed.settings_of) == []


def test_link_trouble_on_the_last_usable_path_counts_a_map_failure():
    bed = Bed()
    bed.check("sdc", DOWN)
    bed.feed(ev.LinkTrouble(frozenset({"sdb"}), "link down", 1.0))
    assert (bed.m.stats.path_faults, bed.m.stats.map_failures) == (2, 1)


def test_queueing_time_counts_spells_with_no_usable_path():
    bed = Bed(MapSettings(no_path_retry=NoPathRetry(RetryMode.QUEUE)), queueing=True)
    bed.feed(ev.Tick(0.0))
    _all_down(bed)
    bed.feed(ev.Tick(10.0))          # the spell starts when the tick sees it
    assert bed.m.queueing_time(25.0) == 15.0
    bed.check("sdb", UP, now=30.0)
    bed.feed(ev.Tick(31.0))          # over
    assert bed.m.stats.total_q_time == 21.0 and bed.m.queueing_time(100.0) == 21.0


def test_a_path_whose_wwid_changed_leaves_its_map():
    """The array mapped another LUN at the path's address: the map is reloaded without it."""
    bed = Bed()
    old = bed.p("sdc")
    bed.state.paths["sdc"] = replace(old, facts=replace(old.facts, wwid="36001405ffff"))
    out = decide.assemble(bed.state, ev.PathsSettled(WWID, ("sdb",)),
                          _conf_resolver("defaults {\n path_grouping_policy failover\n}\n"))
    assert kinds(out) == ["ReloadMap", "Refresh", "Regroup"] and "8:32" not in out[0].table.line()
    assert out[-1] == act.Regroup("36001405ffff")  # its new LUN is planned once it is out of this map


@pytest.mark.parametrize(("conf", "prio", "repeat"), [
    ("", 50, "1"),                                              # rr_min_io_rq's default
    ("rr_min_io_rq 3", 50, "3"),
    ("rr_min_io_rq 3\n rr_weight priorities", 50, "150"),       # times the path's priority
    ('rr_min_io 20\n features "2 queue_mode bio"', 50, "20"),   # bio-based: rr_min_io
])
def test_repeat_count_follows_rr_keywords(conf, prio, repeat):
    from pymultipathd.policy import plan

    p = PathState(dev="sdb", dev_t="8:16", size=2048, prio=prio, chk_state=UP,
                  facts=PathFacts(dev="sdb", dev_t="8:16", wwid=WWID))
    t = plan.build_table([p], _conf_resolver("defaults {\n " + conf + "\n}\n"))
    assert t.groups[0].paths[0].args == (repeat,)
    # the kernel reads a count above 1 back as 1 (and service-time adds its throughput): never a reload
    live = replace(t, groups=(replace(t.groups[0], paths=(dmt.PathSpec("8:16", ("1", "1")),)),))
    assert plan.needs_reload(live, t) is False


# --- persistent reservations ---------------------------------------------------------------------------

@pytest.mark.parametrize(("prflag", "before", "result", "register"), [
    (True, DOWN, UP, True),        # a path that comes back gets the map's key
    (True, TIMEOUT, GHOST, True),
    (True, UNDEF, UP, True),       # a first check: it may have been failed when the keys were synchronised
    (True, UP, UP, False),         # nothing changed
    (True, UP, DOWN, False),
    (False, DOWN, UP, False),      # no key registered for the map (or it was fenced off): nothing
])
def test_a_returning_path_is_registered_only_while_the_map_has_its_key(prflag, before, result, register):
    bed = Bed()
    bed.m.prflag = prflag
    bed.p("sdb").chk_state = before
    bed.set_active("8:16", before.usable)
    out = bed.check("sdb", result)
    assert [a for a in out if isinstance(a, act.RegisterKey)] == (
        [act.RegisterKey(bed.m.name, "sdb")] if register else [])


def test_paths_new_to_a_map_with_its_key_are_registered():
    bed = Bed()
    before = list(bed.m.paths)
    bed.state.set_paths(bed.m, before + ["sdz"])
    assert decide.members_joined(bed.m, before) == []        # prflag unset
    bed.m.prflag = True
    assert decide.members_joined(bed.m, before) == [act.RegisterKey(bed.m.name, "sdz")]
    assert decide.members_joined(bed.m, []) == []            # read for the first time: synchronised whole


@pytest.mark.parametrize(("always", "level"), [(True, act.Level.INFO), (False, act.Level.DEBUG)])
def test_log_checker_err_says_a_path_that_stays_down_at_every_check_or_once(always, level):
    from pymultipathd.policy.settings import map_settings

    word = "always" if always else "once"
    settings = map_settings(lambda kw: word if kw == "log_checker_err" else None)
    assert settings.log_checker_err_always is always
    bed = Bed(settings)
    bed.p("sdb").chk_state = UP
    first = bed.check("sdb", DOWN)   # it fails: said at the warning level either way
    assert [a.level for a in first if isinstance(a, act.Log)] == [act.Level.WARNING]
    for _ in range(3):
        again = [a for a in bed.check("sdb", DOWN) if isinstance(a, act.Log)]
        assert [(a.level, a.text) for a in again] == [(level, "sdb: still down: test down")]


def test_a_member_whose_wwid_is_not_the_maps_is_never_reinstated():
    from pymultipathd.record import replace

    bed = Bed()
    p = bed.p("sdb")
    p.chk_state = DOWN
    bed.set_active(p.dev_t, False)
    p.facts = replace(p.facts, wwid="3600another")  # recheck_wwid found another LUN behind it
    assert "ReinstatePath" not in kinds(bed.check("sdb", UP))
    bed.set_active(p.dev_t, True)                   # reinstated by hand meanwhile: failed again
    assert kinds(bed.check("sdb", UP))[:1] == ["FailPath"]


def test_a_member_with_another_wwid_leaves_the_map_even_when_claimed_for_it_and_its_lun_is_planned():
    # the classifier claims a map's members for the map; recheck_wwid found another LUN behind sdc
    from pymultipathd.config import load
    from pymultipathd.record import replace

    bed = Bed()
    p = bed.p("sdc")
    p.facts = replace(p.facts, wwid="3600another")
    cfg = load.parse_text("")
    out = decide.assemble(bed.state, ev.PathsSettled(bed.m.wwid, ("sdb", "sdc")),
                          lambda kw: cfg.resolve(kw, wwid=bed.m.wwid))
    reload = next(a for a in out if isinstance(a, act.ReloadMap))
    assert [s.dev for g in reload.table.groups for s in g.paths] == [bed.p("sdb").dev_t]
    assert out[-1] == act.Regroup("3600another")


# --- san_path_err_*: a path that keeps failing is held back --------------------------------------------

def _flappy(threshold: int = 1, forget: int = 2, recovery: float = 10.0) -> Bed:
    from pymultipathd.policy.settings import SanPathErr

    return Bed(MapSettings(san_path_err=SanPathErr(threshold, forget, recovery)))


def _bounce(bed: Bed, now: float) -> list[str]:
    bed.check("sdb", DOWN, now)
    return kinds(bed.check("sdb", UP, now + 1))


def test_a_path_failing_past_the_threshold_is_held_out_for_the_recovery_time():
    bed = _flappy(threshold=1, recovery=10.0)
    assert "ReinstatePath" in _bounce(bed, 0.0)           # first failure: within the threshold
    held = bed.check("sdb", DOWN, 2.0) and bed.check("sdb", UP, 3.0)
    assert "ReinstatePath" not in kinds(held) and bed.p("sdb").chk_state is PathCheck.DELAYED
    assert any("held out of mpatha" in a.text for a in held if isinstance(a, act.Log))
    assert "ReinstatePath" not in kinds(bed.check("sdb", UP, 12.0))   # 9 s held: not yet
    assert bed.m.status.path("8:16").active is False
    back = bed.check("sdb", UP, 13.5)                                  # past 10 s: back in
    assert "ReinstatePath" in kinds(back) and bed.p("sdb").chk_state is UP
    assert bed.p("sdb").err_failures == 0


def test_a_held_path_is_reinstated_at_once_when_the_map_has_no_other():
    bed = _flappy(threshold=1)
    _bounce(bed, 0.0)
    bed.check("sdb", DOWN, 2.0)
    bed.check("sdb", UP, 3.0)
    assert bed.p("sdb").chk_state is PathCheck.DELAYED
    bed.check("sdc", DOWN, 4.0)                                        # the map's other path fails
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 5.0))


def test_failing_again_while_held_restarts_the_recovery_time():
    bed = _flappy(threshold=1, recovery=10.0)
    _bounce(bed, 0.0)
    _bounce(bed, 2.0)                                                  # held since 3.0
    bed.check("sdb", DOWN, 8.0)
    bed.check("sdb", UP, 9.0)                                          # held again since 9.0
    assert "ReinstatePath" not in kinds(bed.check("sdb", UP, 14.0))
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 19.5))


def test_healthy_checks_forget_failures_one_per_forget_rate():
    bed = _flappy(threshold=1, forget=2)
    _bounce(bed, 0.0)
    assert bed.p("sdb").err_failures == 1
    for t in (3.0, 4.0, 5.0):                                          # forget_rate 2, then one forgotten
        bed.check("sdb", UP, t)
    assert bed.p("sdb").err_failures == 0
    assert "ReinstatePath" in _bounce(bed, 10.0)                       # counted afresh: within the threshold


@pytest.mark.parametrize("words", [("2", "no", "10"), ("0", "5", "10"), ("no", "no", "no")])
def test_san_path_err_acts_only_with_all_three_set(words):
    from pymultipathd.policy.settings import map_settings

    values = dict(zip(("san_path_err_threshold", "san_path_err_forget_rate", "san_path_err_recovery_time"),
                      [int(w) if w.isdigit() else w for w in words], strict=True))
    assert map_settings(values.get).san_path_err is None
    full = {"san_path_err_threshold": 2, "san_path_err_forget_rate": 5, "san_path_err_recovery_time": 10}
    assert map_settings(full.get).san_path_err is not None
