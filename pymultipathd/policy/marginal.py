"""Marginal paths (marginal_path_*), upstream's meaning: a path failed twice in its map (by the kernel on
an I/O error, or by the daemon after a check; upstream counts the device mapper's PATH_FAILED events, which
both raise) within marginal_path_double_failed_time is suspect. A checker that finds it up is not believed:
the path stays out of its map while direct reads through it are counted for marginal_path_err_sample_time
seconds. At most marginal_path_err_rate_threshold errors per thousand reads and it is reinstated; more, and
it stays out and is sampled again marginal_path_err_recheck_gap_time seconds later. A path is never kept out
when its map has no other usable path: degraded I/O beats none.

A TUR checker cannot see this kind of trouble (a link that drops frames, a controller that fails one read
in ten): the commands that fail are the reads. With marginal_pathgroups on, a suspect path stays in its map,
in a path group of its own that the kernel uses only when the others have no usable path (decide.py).
"""

from __future__ import annotations

from pymultipathd.policy import actions as act
from pymultipathd.policy import events as ev
from pymultipathd.policy.settings import MapSettings, MarginalPath
from pymultipathd.policy.state import DaemonState, IoCheck, MapState, PathState

FAILS_TO_SUSPECT = 2  # failures within the window that make a path suspect (upstream's constant)
BUSY_RETRY = 30.0     # seconds before a sample refused for want of a free reader is asked for again


def path_failed(m: MapState, p: PathState, rule: MarginalPath, now: float) -> list[act.Action]:
    """`p` was failed in `m` (by the kernel, or by the daemon): count it in the current window."""
    if p.io_check is not IoCheck.NONE:
        return []
    if p.io_fails == 0 or now - p.io_fails_since > rule.double_failed_time:
        p.io_fails, p.io_fails_since = 0, now  # a new window
    p.io_fails += 1
    if p.io_fails < FAILS_TO_SUSPECT:
        return []
    p.io_fails = 0
    p.io_check, p.io_check_after = IoCheck.WAITING, now
    return [act.Log(act.Level.WARNING,
                    f"{p.dev}: failed {FAILS_TO_SUSPECT} times within {rule.double_failed_time:g} s "
                    f"(marginal_path_double_failed_time): not reinstated in {m.name} until an I/O error "
                    "check finds it healthy", m.name, p.dev)]


def _others_usable(state: DaemonState, m: MapState, p: PathState) -> bool:
    return any(q.usable for q in state.paths_of(m) if q is not p)


def _clear(p: PathState) -> None:
    p.io_fails, p.io_check, p.io_check_after = 0, IoCheck.NONE, 0.0


def suspect(state: DaemonState, m: MapState, p: PathState, rule: MarginalPath,
            now: float) -> tuple[bool, list[act.Action]]:
    """A check found `p` up. True if it stays out all the same (suspect), with what to do: start its I/O
    error check when its wait is over. A suspect path whose map has no other usable path is let back."""
    if p.io_check is IoCheck.NONE:
        return False, []
    if not _others_usable(state, m, p):
        _clear(p)
        return False, [act.Log(act.Level.WARNING, f"{p.dev}: suspect, but {m.name} has no other usable path: "
                                                  "reinstated without its I/O error check", m.name, p.dev)]
    if p.io_check is IoCheck.WAITING and now >= p.io_check_after:
        p.io_check = IoCheck.SAMPLING
        return True, [act.SampleIo(m.name, p.dev, rule.sample_time),
                      act.Log(act.Level.INFO, f"{p.dev}: I/O error check for {rule.sample_time:g} s",
                              m.name, p.dev)]
    return True, []


def sampled(state: DaemonState, e: ev.IoSampled, s: MapSettings) -> list[act.Action]:
    """The I/O error check of a path is over: reinstate it at its next check (or take it out of the
    marginal group), or keep it out (in the marginal group) for the recheck gap."""
    p = state.paths.get(e.dev)
    if p is None or p.io_check is not IoCheck.SAMPLING:
        return []  # removed meanwhile, or let back early (its map lost its other paths)
    m, rule = state.maps.get(p.map or ""), s.marginal_path
    if rule is None or m is None:
        _clear(p)  # reconfigured without marginal-path detection, or the map is gone
        return []
    if e.busy:  # still suspect: sampled at a check after a short wait
        p.io_check, p.io_check_after = IoCheck.WAITING, e.now + BUSY_RETRY
        return [act.Log(act.Level.INFO, f"{p.dev}: I/O error check postponed {BUSY_RETRY:g} s: as many are "
                                        "under way as the daemon runs at once", m.name, p.dev)]
    p.next_check = e.now  # the verdict takes effect at a check right away (a reinstatement needs one)
    if e.trouble:
        _clear(p)
        return [act.Log(act.Level.WARNING, f"{p.dev}: I/O error check impossible ({e.trouble}); "
                                           "reinstated without it", m.name, p.dev)]
    # no read came back at all (the device did not even open): as bad as can be, not healthy
    rate = e.errors * 1000 / e.reads if e.reads else 1000.0
    said = (f"{p.dev}: I/O error check: {e.errors} of {e.reads} reads failed ({rate:.1f}/1000, "
            f"marginal_path_err_rate_threshold {rule.rate_threshold})")
    if rate <= rule.rate_threshold:
        _clear(p)
        return [act.Log(act.Level.INFO, f"{said}: healthy, reinstated", m.name, p.dev)]
    if not _others_usable(state, m, p):
        _clear(p)
        return [act.Log(act.Level.WARNING, f"{said}; {m.name} has no other usable path: reinstated",
                        m.name, p.dev)]
    p.io_check, p.io_check_after = IoCheck.WAITING, e.now + rule.recheck_gap_time
    where = f"left in {m.name}'s marginal path group" if s.marginal_pathgroups else f"kept out of {m.name}"
    return [act.Log(act.Level.WARNING, f"{said}: marginal, {where}; checked again in "
                                       f"{rule.recheck_gap_time:g} s", m.name, p.dev)]
