"""A dead portal with a patient initiator must not cost the healthy paths (issue 17, fault 1).

40 iSCSI LUNs over the bed's two portals, one map of two paths each. Portal 0 stops answering as on a dead
fabric: its packets are dropped beyond the host (no link or address changes, so the daemon's link watch sees
nothing and only the checkers can tell) and its session waits 600 s in recovery, so its 40 disks are blocked.
The TURs in flight when the session dropped come back at once (DID_TRANSPORT_DISRUPTED); every later one
hangs, and those checks hold the daemon's checker threads. A check queued behind them must count as pending,
never as timed out. The old daemon failed all 40 healthy paths behind portal 1 about checker_timeout after the
pool filled ("tur did not answer within 30 s"), every map lost every path, and `systemctl stop` hung behind
the stuck threads for over 120 s.

dmsetup is the oracle: every portal-1 path stays active in DM through the hang, I/O through maps whose
portal-0 path the daemon failed completes, and the daemon stops promptly with the maps in place.
"""

from __future__ import annotations

import glob
import inspect
import time

import pytest

from pymultipathd.paths.checkers import CheckRunner
from tests.vm import dm
from tests.vm.bench_udev import MultipathState, StandInDaemon
from tests.vm.pympd import UNIT, Pympd, config
from tests.vm.sysutil import read_sysfs, run, settle, wait_for
from tests.vm.writeverify import WriteVerify

# More LUNs than CheckRunner's threads (32, pymultipathd/paths/checkers.py): the hung checks of portal 0
# then hold every thread, and checks of the healthy paths wait in the pool's queue. With 32 or fewer, each
# hung check would get a thread of its own and the healthy ones would still run: nothing to see.
LUNS = 40
POOL = inspect.signature(CheckRunner).parameters["max_threads"].default
assert LUNS > POOL, f"the test needs more hung paths than the daemon's {POOL} checker threads"
CHECKER_TIMEOUT = 10  # s; low, so the old failure (a queued check timing out) shows up within seconds
MAX_POLL = 4          # max_polling_interval of pympd.config(): every path is checked at least this often
RECOVERY_TMO = 600    # s the hung session waits; far longer than the test
STOP_BOUND = 30       # s: a behaviour bound, not a benchmark (the unit's TimeoutStopSec is 90 s)


def _not_blocked(devs: list[str]) -> list[str]:
    """Those of devs whose SCSI device is not 'blocked' (a session in recovery holds every command)."""
    return [d for d in devs if read_sysfs(f"/sys/block/{d}/device/state") != "blocked"]


def _unit_state() -> str:
    return run(["systemctl", "is-active", UNIT], check=False).strip()


def _threads(pid: str) -> str:
    """The threads of a process that are not plainly sleeping, by state and kernel stack."""
    found: dict[str, int] = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            state = read_sysfs(f"{task}/stat").rsplit(") ", 1)[1][0]
            if state != "S":
                stack = " < ".join(f.split()[1] for f in read_sysfs(f"{task}/stack").splitlines())
                key = f"{state} {stack}"
                found[key] = found.get(key, 0) + 1
        except (OSError, IndexError):
            continue
    return "\n".join(f"  {n} x {key}" for key, n in sorted(found.items())) or "  (none left)"


def _daemon_view(d: Pympd) -> dict[str, tuple[str, str]]:
    """dev -> (dm state, checker state) of every path, as the daemon shows them."""
    out = d.cmd("show", "paths", "raw", "format", "%d %m %t %T")
    return {w[0]: (w[2], " ".join(w[3:])) for w in map(str.split, out.splitlines()) if len(w) >= 4}


def _all_active(maps: dict) -> bool:
    sts = dm.statuses()
    try:
        return set(sts) == set(maps) and all(sts[n].path(a.devno).state == sts[n].path(b.devno).state == "A"
                                             for n, (a, b) in maps.items())
    except LookupError:  # a map not yet reloaded with both paths
        return False


@pytest.mark.timeout(600)
def test_hung_portal_fails_no_healthy_path_and_stop_is_prompt(iscsi_bed, write_verify):
    t0 = time.monotonic()
    # The disks appear as at boot: configuration in place and a daemon's socket answering, so udev claims
    # them as they come and no round of change events follows the maps (as test_daemon's 24 LUNs).
    with MultipathState("greedy"), StandInDaemon():
        bed = iscsi_bed(luns=LUNS, size_mb=4)
    luns = [bed.paths(i) for i in range(LUNS)]
    assert all(a.wwid and a.wwid == b.wwid for a, b in luns), "each LUN: one WWID on both portals"
    t_bed = time.monotonic()
    io: list[WriteVerify] = []
    # fast_io_fail_tmo off: the daemon leaves the sessions' recovery_tmo alone (its default, 5, would end the
    # hang after 5 s; a patient initiator is the point here)
    with Pympd(config("greedy", checker_timeout=CHECKER_TIMEOUT, fast_io_fail_tmo="off")) as d:
        try:
            wait_for(lambda: len(d.maps()) == LUNS, 300, f"{LUNS} maps")
            by_wwid = {w: n for n, w in d.maps().items()}
            maps = {by_wwid[a.wwid]: (a, b) for a, b in luns}  # name -> (portal-0 path, portal-1 path)
            settle(300)
            wait_for(lambda: _all_active(maps), 120, "every path of every map active in DM")
            t_maps = time.monotonic()

            bed.hang(0, recovery_tmo=RECOVERY_TMO)
            t_hang = time.monotonic()
            hung = [a.dev for a, _ in maps.values()]
            wait_for(lambda: not _not_blocked(hung), 60, "portal 0's disks blocked (session in recovery)")

            def check_round() -> dict[str, dm.MpathStatus]:
                """Every portal-1 path still active in DM; portal 0 still hanging (its session not failed)."""
                sts = dm.statuses()
                assert set(sts) == set(maps), "a map disappeared"
                gone = [f"{b.dev} ({n})" for n, (_, b) in maps.items() if sts[n].path(b.devno).state != "A"]
                assert not gone, (f"{len(gone)} healthy portal-1 paths failed in DM "
                                  f"{time.monotonic() - t_hang:.0f} s after portal 0 hung: {', '.join(gone)}")
                assert not _not_blocked(hung), "portal 0's disks left the blocked state: the hang is over"
                return sts

            def failed_behind_portal0() -> list[str]:
                sts = check_round()
                return [n for n, (a, _) in maps.items() if sts[n].path(a.devno).state == "F"]

            # The daemon fails portal-0 paths: those whose TUR came back disrupted at once, the others once
            # their check has hung for checker_timeout. Three maps whose portal-0 path is failed carry I/O (a
            # map whose portal-0 path is still active would send part of it into the hang).
            wait_for(lambda: len(failed_behind_portal0()) >= 3, CHECKER_TIMEOUT + 2 * MAX_POLL + 30,
                     "the daemon to fail portal-0 paths")
            t_first = time.monotonic()
            io += [write_verify(f"/dev/mapper/{n}", blocks=64).start() for n in failed_behind_portal0()[:3]]
            # From a polling interval later every thread holds a hung check and the healthy paths' checks
            # queue; the old daemon failed them checker_timeout (+1 s) after they were queued. Watch three
            # times that long.
            while time.monotonic() < t_first + 3 * CHECKER_TIMEOUT:
                check_round()
                time.sleep(1)
            assert all(wv.progress() > 0 for wv in io), "I/O through the portal-1 paths made no progress"
            for wv in io:
                res = wv.stop(timeout=60)
                assert res.ok, res
            # The daemon's own view (its loop still answers): every thread held a hung check, so the run
            # proves something, and it shows the healthy paths active.
            view = _daemon_view(d)
            timed_out = [a.dev for a, _ in maps.values() if view[a.dev][1] == "i/o timeout"]
            assert len(timed_out) >= POOL, (f"only {len(timed_out)} portal-0 checks hung past "
                                            f"checker_timeout: the {POOL} checker threads were not all held")
            assert all(view[b.dev][0] == "active" for _, b in maps.values()), view
            n_failed0 = len(failed_behind_portal0())
            t_io = time.monotonic()

            # The daemon stops while its checker threads are stuck in the kernel, and leaves the maps.
            pid = run(["systemctl", "show", "-p", "MainPID", "--value", UNIT]).strip()
            t = time.monotonic()
            run(["systemctl", "stop", "--no-block", UNIT])
            try:
                wait_for(lambda: _unit_state() not in ("active", "deactivating"), STOP_BOUND,
                         f"{UNIT} to stop")
            except TimeoutError:
                pytest.fail(f"`systemctl stop` still waiting after {STOP_BOUND} s with portal 0 hanging "
                            f"({_unit_state()}); the daemon's threads:\n{_threads(pid)}")
            t_stop = time.monotonic() - t
            assert _unit_state() == "inactive"
            assert set(dm.multipath_maps()) == set(maps), "the daemon's stop removed maps"
            check_round()
        finally:
            bed.restore(0)
            for wv in io:  # after a failure: I/O holding a map open would keep Pympd from removing it
                if wv.running:
                    wv.stop(timeout=60)
        print(f"bed {t_bed - t0:.0f} s, maps {t_maps - t_bed:.0f} s, first portal-0 failure "
              f"{t_first - t_hang:.0f} s after the hang, hang watched {t_io - t_hang:.0f} s, portal-0 paths "
              f"failed by the daemon {n_failed0}/{LUNS} ({len(timed_out)} checks hung), stop {t_stop:.1f} s")
