"""Marginal paths: marginal_path_* (a path the kernel fails twice is sampled with direct reads before it is
reinstated) and marginal_pathgroups (a marginal path stays in its map, in a group of its own, used last),
driven through the policy with the stand-in kernel of test_policy.py; the grouping, the settings, the load
warnings, the output words and the sampler's counting."""

from __future__ import annotations

import asyncio
import os

import pytest

from pymultipathd.config import parse_text
from pymultipathd.control import format as fmt
from pymultipathd.daemon import iosample
from pymultipathd.paths.grouping import Member, best_group, group_members
from pymultipathd.policy import actions as act
from pymultipathd.policy import events as ev
from pymultipathd.policy import plan
from pymultipathd.policy.settings import MapSettings, MarginalPath, SanPathErr, map_settings
from pymultipathd.policy.state import IoCheck, PathCheck
from tests.unit.test_policy import DOWN, UP, Bed, kinds

RULE = MarginalPath(double_failed_time=60.0, sample_time=120.0, rate_threshold=100, recheck_gap_time=300.0)


def _bed(*, groups: bool = False, rule: MarginalPath = RULE) -> Bed:
    return Bed(MapSettings(marginal_path=rule, marginal_pathgroups=groups), groups=2)


def _kernel_fails(bed: Bed, dev: str, now: float) -> list[act.Action]:
    """The kernel fails the path on an I/O error and the daemon reads the map (a DM event)."""
    bed.set_active(bed.p(dev).dev_t, False)
    return bed.feed(ev.MapChanged("mpatha", now))


def _texts(actions: list[act.Action]) -> str:
    return "\n".join(a.text for a in actions if isinstance(a, act.Log))


def _suspect(bed: Bed, dev: str = "sdb", at: float = 0.0) -> None:
    """Fail `dev` twice within the window, reinstated by a check in between."""
    _kernel_fails(bed, dev, at)
    assert "ReinstatePath" in kinds(bed.check(dev, UP, at + 1))  # once: still believed
    out = _kernel_fails(bed, dev, at + 2)
    assert "not reinstated in mpatha until an I/O error check" in _texts(out)
    assert bed.p(dev).io_check is IoCheck.WAITING


# --- the policy ---------------------------------------------------------------------------------------

def test_a_path_failed_twice_is_sampled_not_reinstated():
    bed = _bed()
    _suspect(bed)
    out = bed.check("sdb", UP, 3.0)
    assert "ReinstatePath" not in kinds(out)
    assert act.SampleIo("mpatha", "sdb", 120.0) in out
    assert bed.p("sdb").chk_state is PathCheck.DELAYED and bed.p("sdb").io_check is IoCheck.SAMPLING
    assert bed.m.status.path("8:16").active is False
    assert "SampleIo" not in kinds(bed.check("sdb", UP, 8.0))  # one sample at a time
    assert "ReinstatePath" not in kinds(bed.check("sdb", UP, 8.0))


def test_failures_further_apart_than_the_window_are_not_counted_together():
    bed = _bed(rule=MarginalPath(10.0, 120.0, 100, 300.0))
    _kernel_fails(bed, "sdb", 0.0)
    bed.check("sdb", UP, 1.0)
    out = _kernel_fails(bed, "sdb", 20.0)                      # 20 s later: a new window
    assert bed.p("sdb").io_check is IoCheck.NONE and "I/O error check" not in _texts(out)
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 21.0))
    _kernel_fails(bed, "sdb", 25.0)                            # within 10 s of the 20 s one
    assert bed.p("sdb").io_check is IoCheck.WAITING


def test_a_path_the_checker_fails_twice_is_suspect_too():
    # upstream counts device mapper's PATH_FAILED events, which the daemon's own fail_path raises as well:
    # a link that flaps on an idle map is found by the checker alone
    bed = _bed()
    bed.check("sdb", DOWN, 0.0)
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 1.0))
    out = bed.check("sdb", DOWN, 2.0)
    assert "not reinstated in mpatha until an I/O error check" in _texts(out)
    assert "SampleIo" in kinds(bed.check("sdb", UP, 3.0))


def test_a_link_cut_counts_as_a_failure():
    bed = _bed()
    bed.feed(ev.LinkTrouble(frozenset({"sdb"}), "link down", 0.0))
    bed.check("sdb", UP, 1.0)
    out = bed.feed(ev.LinkTrouble(frozenset({"sdb"}), "link down", 2.0))
    assert "not reinstated in mpatha" in _texts(out)


def test_a_healthy_sample_reinstates_the_path_at_its_next_check():
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    out = bed.feed(ev.IoSampled("sdb", reads=6000, errors=600, now=123.0))  # 100/1000: at the threshold
    assert "healthy, reinstated" in _texts(out) and bed.p("sdb").next_check == 123.0
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 123.0))
    assert bed.p("sdb").chk_state is UP and bed.p("sdb").io_check is IoCheck.NONE


def test_a_failing_sample_keeps_the_path_out_until_the_recheck_gap_has_passed():
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    out = bed.feed(ev.IoSampled("sdb", reads=6000, errors=601, now=123.0))
    assert "marginal, kept out of mpatha; checked again in 300 s" in _texts(out)
    assert "(100.2/1000, marginal_path_err_rate_threshold 100)" in _texts(out)
    for t in (124.0, 300.0, 422.0):                            # the gap: up, but neither sampled nor back
        out = bed.check("sdb", UP, t)
        assert kinds(out) == [] and bed.p("sdb").chk_state is PathCheck.DELAYED
    assert "SampleIo" in kinds(bed.check("sdb", UP, 424.0))   # sampled again


def test_a_suspect_path_comes_back_when_its_map_has_no_other():
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)                                  # sampling
    bed.check("sdc", DOWN, 4.0)                                # the other path dies
    out = bed.check("sdb", UP, 5.0)
    assert "ReinstatePath" in kinds(out) and "no other usable path" in _texts(out)
    assert bed.p("sdb").io_check is IoCheck.NONE
    assert bed.feed(ev.IoSampled("sdb", 10, 10, 130.0)) == []  # the late result changes nothing


def test_a_failing_sample_with_no_other_usable_path_lets_the_path_back():
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    bed.p("sdc").chk_state = DOWN                              # died without a check of sdb since
    out = bed.feed(ev.IoSampled("sdb", 100, 90, 123.0))
    assert "has no other usable path: reinstated" in _texts(out)
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 123.0))


def test_a_sample_that_could_not_run_lets_the_path_back_as_upstream():
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    out = bed.feed(ev.IoSampled("sdb", 0, 0, 123.0, trouble="cannot open /dev/sdb: No such device"))
    assert "I/O error check impossible (cannot open /dev/sdb" in _texts(out)
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 124.0))


def test_marginal_path_wins_over_san_path_err_as_upstream():
    bed = Bed(MapSettings(marginal_path=RULE, san_path_err=SanPathErr(1, 2, 1000.0)), groups=2)
    bed.check("sdb", DOWN, 0.0)
    assert "ReinstatePath" in kinds(bed.check("sdb", UP, 1.0))
    bed.check("sdb", DOWN, 2.0)                                # past san_path_err's threshold too
    out = bed.check("sdb", UP, 3.0)
    assert "SampleIo" in kinds(out) and "marginal_path" in bed.p("sdb").chk_msg
    assert bed.p("sdb").held_since is None and bed.p("sdb").err_failures == 0  # san_path_err never counted


# --- marginal_pathgroups ------------------------------------------------------------------------------

def test_with_marginal_pathgroups_a_suspect_path_is_reinstated_into_a_group_of_its_own():
    bed = _bed(groups=True)
    _suspect(bed)
    out = bed.check("sdb", UP, 3.0)
    assert {"ReinstatePath", "SampleIo", "Regroup"} <= set(kinds(out))
    assert bed.p("sdb").marginal and bed.p("sdb").chk_state is UP
    assert "marginal: moved to a path group of its own in mpatha" in _texts(out)
    out = bed.feed(ev.IoSampled("sdb", 6000, 3000, 123.0))
    assert "left in mpatha's marginal path group" in _texts(out)
    assert kinds(bed.check("sdb", UP, 124.0)) == []           # stays marginal, no churn
    bed.p("sdb").io_check_after = 0.0
    bed.check("sdb", UP, 200.0)                                # sampled again ...
    bed.feed(ev.IoSampled("sdb", 6000, 0, 330.0))              # ... healthy now
    out = bed.check("sdb", UP, 330.0)
    assert not bed.p("sdb").marginal and "Regroup" in kinds(out) and "no longer marginal" in _texts(out)


def test_with_marginal_pathgroups_san_path_err_makes_paths_marginal_instead_of_holding_them():
    bed = Bed(MapSettings(san_path_err=SanPathErr(1, 2, 10.0), marginal_pathgroups=True), groups=2)
    for t in (0.0, 2.0):
        bed.check("sdb", DOWN, t)
        out = bed.check("sdb", UP, t + 1)
    assert "ReinstatePath" in kinds(out) and "Regroup" in kinds(out) and bed.p("sdb").marginal
    assert "Regroup" in kinds(bed.check("sdb", UP, 14.0)) and not bed.p("sdb").marginal


def _members(*spec: tuple[str, int, bool, bool]) -> list[Member]:
    return [Member(dev_t=f"8:{i}", dev=d, prio=prio, usable=usable, marginal=marg)
            for i, (d, prio, usable, marg) in enumerate(spec)]


def test_marginal_paths_are_grouped_apart_and_last_whatever_their_priority():
    ms = _members(("sdb", 50, True, True), ("sdc", 10, True, False), ("sdd", 10, True, False))
    assert [[m.dev for m in g] for g in group_members(ms, "multibus", split_marginal=True)] == \
        [["sdc", "sdd"], ["sdb"]]
    assert [[m.dev for m in g] for g in group_members(ms, "group_by_prio", split_marginal=True)] == \
        [["sdc", "sdd"], ["sdb"]]
    assert [[m.dev for m in g] for g in group_members(ms, "multibus")] == [["sdb", "sdc", "sdd"]]


def test_failback_prefers_any_usable_normal_group_then_a_marginal_one():
    normal_down = _members(("sdc", 10, False, False))
    marginal_up = _members(("sdb", 50, True, True))
    normal_up = _members(("sdd", 1, True, False))
    assert best_group([marginal_up, normal_up]) == 2
    assert best_group([normal_down, marginal_up]) == 2         # a marginal group beats one with no path


def test_the_plan_splits_marginal_paths_only_with_marginal_pathgroups_on():
    bed = Bed(groups=1, per_group=2)
    paths = bed.state.paths_of(bed.m)
    paths[0].marginal = True
    on = {"path_grouping_policy": "multibus", "marginal_pathgroups": "on"}
    assert len(plan.build_table(paths, on.get).groups) == 2
    assert plan.build_table(paths, on.get).groups[1].paths[0].dev == paths[0].dev_t
    assert len(plan.build_table(paths, {**on, "marginal_pathgroups": "off"}.get).groups) == 1


# --- settings and the configuration ---------------------------------------------------------------------

def _settings(text: str) -> MapSettings:
    cfg = parse_text(text, "multipath.conf")
    return map_settings(lambda k: cfg.resolve(k, wwid=None, vendor=None, product=None))


def test_marginal_path_needs_all_four_keywords_as_upstream():
    base = ("defaults {\n marginal_path_double_failed_time 60\n marginal_path_err_sample_time 120\n"
            " marginal_path_err_recheck_gap_time 300\n")
    assert _settings(base + " marginal_path_err_rate_threshold 5\n}\n").marginal_path == \
        MarginalPath(60.0, 120.0, 5, 300.0)
    assert _settings(base + "}\n").marginal_path is None  # unset threshold: off (upstream's default "no")
    assert _settings(base + " marginal_path_err_rate_threshold no\n}\n").marginal_path is None
    assert _settings(base + " marginal_path_err_rate_threshold 0\n}\n").marginal_path is None
    assert _settings(base.replace(" marginal_path_err_recheck_gap_time 300\n", "") + "}\n").marginal_path \
        is None
    assert _settings("defaults {\n marginal_pathgroups on\n}\n").marginal_pathgroups
    assert not _settings("defaults {\n marginal_pathgroups fpin\n}\n").marginal_pathgroups


def test_a_sample_time_below_120_s_is_warned_about_and_raised_to_it_as_upstream():
    text = ("defaults {\n marginal_path_double_failed_time 60\n marginal_path_err_sample_time 60\n"
            " marginal_path_err_recheck_gap_time 300\n marginal_path_err_rate_threshold 10\n}\n")
    cfg = parse_text(text, "multipath.conf")
    said = [str(w) for w in cfg.warnings]
    assert any("multipath.conf:3" in w and "marginal_path_err_sample_time" in w and "below 120 s" in w
               for w in said), said
    assert _settings(text).marginal_path == MarginalPath(60.0, 120.0, 10, 300.0)


def test_marginal_pathgroups_fpin_is_warned_about():
    cfg = parse_text("defaults {\n marginal_pathgroups fpin\n}\n", "multipath.conf")
    assert any("marginal_pathgroups" in str(w) and "FPIN" in str(w) for w in cfg.warnings)
    assert not parse_text("defaults {\n marginal_pathgroups on\n}\n", "x").warnings


def test_paths_and_groups_say_marginal_in_show_and_json():
    bed = Bed(groups=2)
    bed.p("sdc").marginal = True
    assert fmt.marginal_word(bed.p("sdc")) == "marginal" and fmt.marginal_word(bed.p("sdb")) == "normal"
    groups = fmt.map_json(bed.state, bed.m)["path_groups"]
    assert [g["marginal_st"] for g in groups] == ["normal", "marginal"]  # type: ignore[index]
    assert [g["paths"][0]["marginal_st"] for g in groups] == ["normal", "marginal"]  # type: ignore[index]


# --- the sampler ------------------------------------------------------------------------------------

class FakeDevice:
    """os.open/os.preadv of one path device: every `nth` read fails with EIO (the fault the bed's
    iSCSI target makes in the VM test; here only the counting is at stake)."""

    def __init__(self, nth: int) -> None:
        self.nth, self.n, self.real_open, self.flags = nth, 0, os.open, 0

    def open(self, path: str, flags: int) -> int:
        self.flags = flags
        return self.real_open("/dev/null", os.O_RDONLY)

    def preadv(self, fd: int, bufs: list, offset: int) -> int:
        self.n += 1
        if self.n % self.nth == 0:
            raise OSError(5, "Input/output error")
        return iosample.READ_SIZE


def test_the_sampler_counts_failed_reads(monkeypatch):
    dev = FakeDevice(nth=4)
    monkeypatch.setattr(iosample.os, "open", dev.open)
    monkeypatch.setattr(iosample.os, "preadv", dev.preadv)
    monkeypatch.setattr(iosample, "IO_TIMEOUT", 0.25)          # send for 0.5 s of the 0.75 s sample
    reads, errors, trouble = asyncio.run(iosample.sample("/dev/sdx", 0.75))
    assert trouble == "" and reads >= 8 and errors == reads // 4
    assert dev.flags & os.O_DIRECT                             # past the page cache: the device answers


def test_an_unexpected_failure_in_the_reading_thread_is_trouble_not_health(monkeypatch):
    def broken(*_: object) -> None:
        raise MemoryError("no memory for the buffer")
    monkeypatch.setattr(iosample.os, "open", FakeDevice(nth=1).open)
    monkeypatch.setattr(iosample.mmap, "mmap", broken)
    reads, errors, trouble = asyncio.run(iosample.sample("/dev/sdx", 0.2))
    assert "no memory for the buffer" in trouble


def test_the_sampler_says_why_it_could_not_read():
    reads, errors, trouble = asyncio.run(iosample.sample("/nonexistent/sdx", 0.2))
    assert (reads, errors) == (0, 0) and trouble.startswith("cannot open /nonexistent/sdx")


def test_a_read_that_hangs_past_the_timeout_counts_as_failed():
    counts = iosample.Counts(reads=10, errors=1, in_flight_since=100.0)
    assert counts.result(100.0 + iosample.IO_TIMEOUT + 1) == (11, 2)
    assert counts.result(100.0 + 1) == (10, 1)


def test_samplers_are_bounded_and_a_refused_sample_is_asked_for_again_later(monkeypatch):
    monkeypatch.setattr(iosample, "_live", iosample.MAX_SAMPLERS)
    assert asyncio.run(iosample.sample("/dev/sdx", 0.1))[2] == iosample.BUSY
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    out = bed.feed(ev.IoSampled("sdb", 0, 0, 3.5, busy=True))
    assert "postponed" in _texts(out) and bed.p("sdb").io_check is IoCheck.WAITING
    assert kinds(bed.check("sdb", UP, 10.0)) == [] and bed.p("sdb").chk_state is PathCheck.DELAYED
    assert "SampleIo" in kinds(bed.check("sdb", UP, 34.0))


def test_a_sample_in_which_no_read_came_back_is_not_healthy():
    bed = _bed()
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    out = bed.feed(ev.IoSampled("sdb", 0, 0, 123.0))
    assert "marginal, kept out of mpatha" in _texts(out)


def test_an_open_that_hangs_counts_as_a_read_under_way(monkeypatch):
    import threading

    release = threading.Event()

    def hung_open(path: str, flags: int) -> int:
        release.wait(5)
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(iosample.os, "open", hung_open)
    monkeypatch.setattr(iosample, "IO_TIMEOUT", 0.2)
    try:
        reads, errors, trouble = asyncio.run(iosample.sample("/dev/sdx", 0.6))
    finally:
        release.set()
    assert (reads, errors) == (1, 1)


@pytest.mark.parametrize("groups", [False, True])
def test_a_removed_paths_late_sample_is_ignored(groups):
    bed = _bed(groups=groups)
    _suspect(bed)
    bed.check("sdb", UP, 3.0)
    del bed.state.paths["sdb"]
    assert bed.feed(ev.IoSampled("sdb", 100, 50, 123.0)) == []
