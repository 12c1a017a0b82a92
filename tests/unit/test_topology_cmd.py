"""`pymultipath -ll DEV`: a path names the multipath map that holds it, as upstream's -ll takes it."""

from __future__ import annotations

import os

import pytest

from pymultipathd.cli import topology_cmd


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    """sdb and sdc held by dm-0 (a multipath map), sdd by dm-1 (an LVM volume), sde by nothing."""
    root = tmp_path / "sys"
    cls, devs, blk = root / "class" / "block", root / "dev" / "block", root / "devices" / "block"
    for d in (cls, devs, blk):
        d.mkdir(parents=True)
    for name, dev_t in (("sdb", "8:16"), ("sdc", "8:32"), ("sdd", "8:48"), ("sde", "8:64"), ("dm-0", "253:0"),
                        ("dm-1", "253:1")):
        (blk / name / "holders").mkdir(parents=True)
        os.symlink(blk / name, cls / name)
        os.symlink(blk / name, devs / dev_t)
    for dm, uuid, name, held in (("dm-0", "mpath-3600a", "mpatha", ("sdb", "sdc")),
                                 ("dm-1", "LVM-abc", "vg-lv", ("sdd",))):
        (blk / dm / "dm").mkdir()
        (blk / dm / "dm" / "uuid").write_text(uuid + "\n")
        (blk / dm / "dm" / "name").write_text(name + "\n")
        for p in held:
            os.symlink(blk / dm, blk / p / "holders" / dm)
    monkeypatch.setenv("PYMULTIPATH_SYSFS", str(root))
    return root


@pytest.mark.parametrize("ident, expected", [
    ("sdb", "mpatha"), ("sdc", "mpatha"), ("8:32", "mpatha"),
    ("sdd", None),      # held, but by no multipath map
    ("sde", None),      # held by nothing
    ("sdz", None), ("9:9", None), ("../sdb", None), ("", None),
    ("dm-0", None),     # a map itself: find_map resolves it
])
def test_a_path_names_the_map_that_holds_it(sysfs, ident, expected):
    assert topology_cmd.map_of_path(ident) == expected


def test_side_by_side_hung_calls_cost_one_budget_and_failures_are_their_own():
    """The command line's commands to many paths at once: what finished is returned (a value or its
    exception), what did not within its budget is left out, and three hung calls are waited for together."""
    import threading

    from pymultipathd import mapmaker

    release = threading.Event()

    def broken() -> int:
        raise OSError(5, "Input/output error")

    calls = {f"hung{i}": (lambda: release.wait(60) and 0, 0.3) for i in range(3)}
    calls.update({"good": (lambda: 50, 5.0), "broken": (broken, 5.0)})
    box: list[dict] = []
    t = threading.Thread(target=lambda: box.append(mapmaker.side_by_side(calls, "test")), daemon=True)
    t.start()
    t.join(30)  # the hung calls would take 60 s each, one after another 180 s
    release.set()
    assert not t.is_alive() and box
    (got,) = box
    assert got["good"] == 50 and isinstance(got["broken"], OSError)
    assert not any(k.startswith("hung") for k in got)


@pytest.mark.parametrize("check", [False, True])
def test_l_sends_no_io_and_ll_reads_priorities_of_the_paths_that_answered(monkeypatch, check):
    """-l: neither checker nor prioritizer runs; -ll: the checks, then the priorities of usable paths."""
    from pymultipathd import mapmaker, topology
    from pymultipathd.classify import PathFacts
    from pymultipathd.paths import checkers
    from pymultipathd.policy.state import DaemonState, MapState, PathCheck, PathState

    state = DaemonState()
    m = MapState(name="mpatha", wwid="3600a")
    state.maps["mpatha"] = m
    for dev in ("sdb", "sdc"):
        state.paths[dev] = PathState(dev=dev, dev_t="8:0", facts=PathFacts(dev=dev, wwid="3600a"),
                                     prio_name="alua", prio_due=True, map="mpatha")
    state.set_paths(m, ["sdb", "sdc"])
    monkeypatch.setattr(topology, "read_all", lambda ctl, config: (state, []))
    monkeypatch.setattr("pymultipathd.config.load_config", lambda: None)
    monkeypatch.setattr("pymultipathd.dm.ioctl.Control", lambda: None)
    monkeypatch.setattr(topology, "check_timeout", lambda r, p: 1.0)
    monkeypatch.setattr(topology, "resolver", lambda *a: None)
    checked, prio_read = [], []

    def check_now(dev, checker, timeout):
        checked.append(dev)
        up = dev.endswith("sdb")
        return checkers.CheckResult(PathCheck.UP if up else PathCheck.DOWN, "test")
    monkeypatch.setattr(checkers, "check_now", check_now)
    monkeypatch.setattr(mapmaker, "read_priorities", lambda due, config: prio_read.extend(due) or [])
    monkeypatch.setattr("pymultipathd.control.format.topology", lambda st, mm: "")
    topology_cmd._offline(check, None)
    assert (checked, prio_read) == ((["/dev/sdb", "/dev/sdc"], ["sdb"]) if check else ([], []))
