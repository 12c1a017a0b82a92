"""Daemon benchmarks, ours against Debian's multipathd 0.9.4 in the same boot (run by tests/vm/bench.py).

scale(counts): for each count of paths (scsi_debug LUNs x 2), both daemons in turn over the same disks:
- start-up convergence: the paths are present, as after udev's coldplug at boot; time from `systemctl
  start` to every map present in device mapper (dmsetup, the independent view). As at boot, the daemon's
  socket listens while udev first sees the disks (the socket unit starts before coldplug), so udev's
  helper has already claimed them when either daemon starts;
- footprint: RSS, and CPU seconds per checker interval over the first three intervals and in steady state;
- `show paths`, `show maps` and `show topology` round trips, idle and while a uevent storm runs (`udevadm
  trigger` of a change event on every path at once), over one connection speaking the shared protocol;
- at one count, our daemon's profile (py-spy) in steady state and during a storm.
events(): hot-plug convergence (the daemon runs and the paths appear at once; under TCG the kernel's SCSI
scan and udev's own rules dominate), failover detection (an iSCSI portal's link is cut), and path-down
detection with the links up (the LUN is unmapped from the target: checkers only).
Nothing here asserts a time: it measures and returns numbers.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from pymultipathd.control import client
from pymultipathd.paths import facts
from tests.vm import dm, iscsi, scsidebug, upstream
from tests.vm.bench_udev import MultipathState, StandInDaemon, stats
from tests.vm.pympd import Pympd
from tests.vm.sysutil import run as sh
from tests.vm.sysutil import wait_for, write_sysfs

PATH_COUNTS = (64, 256, 512, 1024)
HOTPLUG_COUNTS = (64, 256)
T = TypeVar("T")
INTERVAL = 5  # polling_interval for both daemons (upstream's default)
MAX_POLLING = 4 * INTERVAL  # max_polling_interval: both daemons' default, 4 x polling_interval
STEADY_AFTER = 2 * MAX_POLLING  # seconds until every check has backed off to max_polling_interval (4 x)


def _conf(extra: str = "") -> str:
    # the same configuration text for both daemons
    return ("defaults {\n\tfind_multipaths greedy\n\tuser_friendly_names yes\n"
            f"\tpolling_interval {INTERVAL}\n{extra}}}\nblacklist {{\n\tdevnode \"^vd[a-z]\"\n}}\n")


def _pid(unit: str) -> int:
    return int(sh(["systemctl", "show", "-p", "MainPID", "--value", unit]).strip())


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks (USER_HZ = 100) of the whole process, its ended threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def _daemon(which: str, start_timeout: float = 180) -> Pympd | upstream.UpstreamMultipathd:
    """Context manager running one daemon with the shared configuration; maps are removed on exit."""
    if which == "ours":
        return Pympd(_conf(), show_journal=False, start_timeout=start_timeout, stop_timeout=STOP_TIMEOUT)
    return upstream.UpstreamMultipathd(config=_conf(), start_timeout=start_timeout, stop_timeout=STOP_TIMEOUT)


# `systemctl stop` of our daemon over 1024 paths once took more than 120 s (2026-12-07, cause not found):
# a slow stop is a result to report, not a reason to lose the rows measured before it
STOP_TIMEOUT = 900


STOP_SLOW = 30  # a stop slower than this has the daemon's threads recorded while it waits


def _stop(which: str) -> dict:
    """Seconds from `systemctl stop` of the daemon's service until systemd has it stopped; a slow stop also
    gives where each of the daemon's threads was (py-spy's stacks, the kernel's wait channels) and systemd's
    view of the job, to tell a busy daemon from a busy systemd."""
    pid = _pid(_unit(which))
    t0 = time.monotonic()
    stop = subprocess.Popen(["systemctl", "stop", _unit(which)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        stop.wait(STOP_SLOW)
        result: dict = {}
    except subprocess.TimeoutExpired:
        result = {"stalled": _stall_report(pid, which)}
    try:
        _, err = stop.communicate(timeout=max(1.0, STOP_TIMEOUT - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        stop.kill()
        raise RuntimeError(f"`systemctl stop {_unit(which)}` still waiting after {STOP_TIMEOUT} s") from None
    if stop.returncode:
        raise RuntimeError(f"`systemctl stop {_unit(which)}` failed: {err.strip()}")
    return {"stop_s": round(time.monotonic() - t0, 2), **result}


def _stall_report(pid: int, which: str) -> dict:
    def out(argv: list[str]) -> str:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return (p.stdout + p.stderr)[-4000:]

    wchan = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        with contextlib.suppress(OSError), open(f"{task}/wchan") as f:
            wchan[os.path.basename(task)] = f.read().strip() or "running"
    report = {"wchan": wchan, "jobs": out(["systemctl", "list-jobs", "--no-pager"]),
              "state": out(["systemctl", "show", "-p", "ActiveState,SubState,MainPID", _unit(which)])}
    if which == "ours":
        report["stacks"] = out([PY_SPY, "dump", "--pid", str(pid), "--nonblocking"])
    print(f"  stop slower than {STOP_SLOW} s: {json.dumps(report, indent=1)}", flush=True)
    return report


def _unit(which: str) -> str:
    return "pymultipathd.service" if which == "ours" else "multipathd.service"


def _thread_cpu(pid: int) -> dict[str, int]:
    """Nanoseconds on a CPU of the process's live threads (schedstat), summed by the kernel's thread name
    less a trailing number (a pool's threads as one: checker_0, checker_1 -> checker). Our daemon names
    its threads (pymultipathd/threadname.py); upstream's all carry the process's name. Not the threads'
    utime and stime: those are whole ticks each, and a pool of threads with a few milliseconds apiece
    loses most of its time to the rounding."""
    runtime: dict[str, int] = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/comm") as f:
                comm = f.read().strip()
            with open(f"{task}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
        name = re.sub(r"[_-]?\d+$", "", comm) or comm
        runtime[name] = runtime.get(name, 0) + ns
    return runtime


def _cpu_per_interval(pid: int, intervals: int = 3) -> tuple[float, dict]:
    """CPU seconds per checker interval over `intervals` intervals, and how they split: the process's user
    and system time (system: the kernel's work for it, SCSI commands and ioctls), and each thread's share.
    Threads that ended in the window are in the total only, as "(ended)"."""
    ticks0, threads0, w0 = _cpu_ticks(pid), _thread_cpu(pid), time.monotonic()
    time.sleep(intervals * INTERVAL)
    ticks1, threads1 = _cpu_ticks(pid), _thread_cpu(pid)
    intervals = (time.monotonic() - w0) / INTERVAL
    user, system = ((b - a) / 100.0 / intervals for a, b in zip(ticks0, ticks1, strict=True))
    threads = {name: round(max(0, ns - threads0.get(name, 0)) / 1e9 / intervals, 3)
               for name, ns in threads1.items()}
    ended = round(user + system - sum(threads.values()), 3)
    if ended > 0.01:  # beyond the ticks' rounding
        threads["(ended)"] = ended
    split = {"user": round(user, 3), "system": round(system, 3),
             "threads": {k: v for k, v in threads.items() if v > 0}}
    return round(user + system, 3), split


def _footprint(which: str) -> dict:
    """RSS and CPU per checker interval: over the first three intervals after start-up, and in steady state
    (over one max_polling_interval), once every healthy path's checks have backed off to
    max_polling_interval (both daemons' default: four polling intervals), which is what a host with
    hundreds of paths pays for as long as it runs."""
    pid = _pid(_unit(which))
    first, first_split = _cpu_per_interval(pid)
    time.sleep(STEADY_AFTER)
    # One whole max_polling_interval: paths found together are checked together, so once backed off every
    # path's check falls in the same second of each 20 s; a shorter window holds that round or misses it
    # (15 s windows read 0.02 and 0.053 s per interval for the same daemon and paths).
    steady, steady_split = _cpu_per_interval(pid, MAX_POLLING // INTERVAL)
    return {"rss_mib": round(_rss_kib(pid) / 1024, 1), "cpu_s_per_interval": steady,
            "cpu_s_per_interval_after_start": first,
            "cpu_by_thread": {"first intervals": first_split, "steady": steady_split}}


SHOW = ("show paths", "show maps", "show topology")


def _latencies_ms(command: str, n: int) -> list[float]:
    with client.connect(timeout=60) as sock:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            reply = client.request(sock, command)
            times.append((time.perf_counter() - t0) * 1000.0)
            if reply.startswith("fail"):
                raise RuntimeError(f"{command} failed: {reply[:200]}")
    return times


def _storm() -> None:
    """One change uevent for every sd disk at once. One burst is enough: under TCG udev works through a few
    events a second, so hundreds of them keep it and the daemon busy for minutes, longer than the samples
    take (repeated bursts only grew a backlog that took longer to drain than the benchmark's time limit)."""
    # `udevadm trigger` writes every disk's uevent file itself: over a minute for 1024 disks under TCG
    sh(["udevadm", "trigger", "--action=change", "--subsystem-match=block", "--sysname-match=sd*"],
       timeout=900)
    time.sleep(2)  # let the first events reach the daemon


def _drain() -> None:
    sh(["udevadm", "settle", "--timeout=1800"], check=False, timeout=1900)


def show_latency(n: int = 20, storm: bool = True) -> dict:
    """Round trips of `show paths`, `show maps` and `show topology` over one connection each, idle and
    (with `storm`) during a storm; the three commands take turns, so each sees the same stage of it."""
    idle = {c: _latencies_ms(c, n) for c in SHOW}
    if not storm:
        return {c: {"idle": stats(idle[c])} for c in SHOW}
    _storm()
    busy: dict[str, list[float]] = {c: [] for c in SHOW}
    try:
        for _ in range(n // 5):
            for c in SHOW:
                busy[c] += _latencies_ms(c, 5)
    finally:
        _drain()
    return {c: {"idle": stats(idle[c]), "storm": stats(busy[c])} for c in SHOW}


PROFILE_S = 30  # seconds of samples per profile
PY_SPY = "/opt/pymp/bin/py-spy"


class Sampler:
    """py-spy sampling one process (the thread holding the GIL, 50 a second, never pausing it) until stop(),
    folded into its busiest functions: by own samples (where the CPU went) and by samples in which the
    function was on the stack (what it cost with its callees). start_unit() waits for a unit's main process
    to exist first, so a start-up can be sampled from its first seconds."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._raw = f"/tmp/pyspy-{time.monotonic_ns()}.txt"
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self, pid: int) -> Sampler:
        self._t0 = time.monotonic()
        # --gil --idle: a sample is the thread holding the GIL, whatever the scheduler says of it. py-spy's
        # default keeps only threads the kernel shows running, and on a one-CPU guest the daemon is never
        # running while py-spy itself is: a steady state at 5 % CPU gave 0 samples in 30 s.
        self._proc = subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--rate", "50", "--nonblocking",
                                       "--gil", "--idle", "--format", "raw", "--output", self._raw],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def start_unit(self, unit: str, within: float = 60) -> Sampler:
        def wait_then_start() -> None:
            end = time.monotonic() + within
            while time.monotonic() < end:
                with contextlib.suppress(Exception):
                    pid = _pid(unit)
                    if pid:
                        self.start(pid)
                        return
                time.sleep(0.05)

        self._thread = threading.Thread(target=wait_then_start, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict:
        if self._thread is not None:
            self._thread.join()
        if self._proc is None:
            return {"error": "the process to sample did not appear"}
        seconds = round(time.monotonic() - self._t0)
        self._proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            _, err = self._proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return {"error": "py-spy did not stop"}
        try:
            with open(self._raw) as f:
                return {"seconds": seconds, **fold(f)}
        except OSError as e:
            return {"error": f"py-spy wrote nothing ({e}): {err.decode(errors='replace')[-300:]}"}
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._raw)


def fold(lines: Iterable[str], top: int = 15) -> dict:
    """py-spy's raw output ("frame;frame;... count" per line) -> samples and the busiest functions."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame(x) for x in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for fr in set(frames):
            total[fr] = total.get(fr, 0) + n

    def ranked(d: dict[str, int]) -> list[list]:
        best = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [[k, v, round(100.0 * v / max(samples, 1), 1)] for k, v in best]

    return {"samples": samples, "own": ranked(own), "total": ranked(total)}


def _profile(pid: int, seconds: int = PROFILE_S) -> dict:
    sampler = Sampler().start(pid)
    time.sleep(seconds)
    return sampler.stop()


def _frame(frame: str) -> str:
    """"func (/opt/.../pymultipathd/daemon/core.py:123)" -> "func (daemon/core.py)": lines vary by sample."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/pymultipathd/", "/site-packages/", "/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def profiles(storm: bool = True) -> dict:
    """Our daemon's busiest functions in steady state and during a storm (after the measured samples, so
    the sampler's own CPU does not weigh on them)."""
    pid = _pid(_unit("ours"))
    steady = _profile(pid)
    if not storm:
        return {"steady": steady}
    _storm()
    try:
        storm = _profile(pid)
    finally:
        _drain()
    return {"steady": steady, "storm": storm}


def _made_once() -> dict:
    """Map creates and reloads since our daemon started (`show status`): paths that are all there at start
    must give one create per map and no reload (the VM suite checks this at 24 LUNs, this at every count)."""
    status = client.send("show status", timeout=120)
    return {k: int(v) for k, v in re.findall(r"map (creates|reloads): (\d+)", status)}


def made_once_errors(rows: list[dict]) -> list[str]:
    """Our start-up over N paths of N/2 LUNs must create each map once and reload none."""
    return [f"start-up {r['paths']} paths: {r.get('creates')} maps created and {r.get('reloads')} reloaded, "
            f"want {r['paths'] // 2} and 0" for r in rows
            if r["daemon"] == "ours" and "seconds" in r
            and (r.get("creates"), r.get("reloads")) != (r["paths"] // 2, 0)]


def _claimed(dev_t: str) -> bool:
    return (facts.udev_properties(dev_t) or {}).get("DM_MULTIPATH_DEVICE_PATH") == "1"


def _phase(row: dict, what: str, fn: Callable[[], object]) -> None:
    """One measurement after the start-up; one that fails is noted in the row, and the others go on."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported in the results
        row.setdefault("errors", []).append(f"{row['daemon']} at {row['paths']} paths, {what}: {e!r}")
        print(f"  {what} FAILED: {e!r}", flush=True)


def startup(paths: int, *, profile: bool = False, storm: bool = True) -> list[dict]:
    """Both daemons in turn over the same `paths` disks: start to every map present, then the footprint and
    the show commands' round trips (with `storm`, during one too); with `profile`, our daemon's busiest
    functions after those."""
    luns = paths // 2
    sd = scsidebug.ScsiDebug(luns, 2, 4)
    t0 = time.monotonic()
    # The boot state while udev first sees the disks: the configuration in place and the control socket
    # listening, as the socket unit's does from early boot. udev's helper then sees a daemon and claims the
    # paths, so neither daemon starts by re-announcing every path. The stand-in answers the helper as a
    # running pymultipathd does (the same classifier), so making the disks costs no Python start per disk.
    with MultipathState("greedy"), StandInDaemon(answering=True):
        sd.load(timeout=3600)
    claimed = sum(_claimed(p.devno) for p in sd.paths)
    print(f"  {paths} scsi_debug paths ready in {time.monotonic() - t0:.0f} s, {claimed} claimed by udev",
          flush=True)
    rows: list[dict] = []
    try:
        for which in ("ours", "theirs"):
            row: dict = {"daemon": which, "paths": paths, "claimed_at_start": claimed}
            try:
                _measure(row, which, luns, profile=profile, storm=storm)
            except Exception as e:  # noqa: BLE001 - one daemon's failure must not lose the other's rows
                row.setdefault("errors", []).append(f"{which} at {paths} paths: {e!r}")
                print(f"  {which} at {paths} paths FAILED: {e!r}", flush=True)
            rows.append(row)  # without "seconds" (no start-up) it carries only its errors
        if profile and rows:  # last: the sampler's own CPU must not weigh on the measured start-up
            _phase(rows[0], "start-up profile",
                   lambda: rows[0].setdefault("profile", {}).update(startup_profiles(luns)))
    finally:
        dm.remove_multipath_maps()
        sd.unload(timeout=3600)
    return rows


def _measure(row: dict, which: str, luns: int, *, profile: bool, storm: bool) -> None:
    """One daemon's start-up over the disks there, then (each noted in `row` as it is known, so a time limit
    or a failure keeps what came before) its footprint, show round trips, profile and stop."""
    t0 = time.monotonic()
    with _daemon(which, start_timeout=1800):
        wait_for(lambda: len(dm.multipath_maps()) >= luns, 1800, f"{luns} maps from {which}")
        row["seconds"] = round(time.monotonic() - t0, 2)
        if which == "ours":
            row.update(_made_once())
        print(f"  start-up {row}", flush=True)  # as soon as known: a time limit may end the rest
        _phase(row, "footprint", lambda: row.update(_footprint(which)))
        print(f"  footprint {row}", flush=True)
        _phase(row, "show", lambda: row.__setitem__("show", show_latency(storm=storm)))
        print(f"  show {row.get('show')}", flush=True)
        if profile and which == "ours":
            _phase(row, "profile", lambda: row.__setitem__("profile", profiles(storm)))
            print(f"  profile {row.get('profile')}", flush=True)
        _phase(row, "stop", lambda: row.update(_stop(which)))
        print(f"  stop {row.get('stop_s')} s", flush=True)


def startup_profiles(luns: int) -> dict:
    """Our daemon sampled from its first seconds until every map exists (the maps of the runs before were
    removed when those daemons stopped), then over the first three checker intervals after it: the window
    of the footprint's "CPU first intervals", where udev works through the new maps' events."""
    sampler = Sampler().start_unit(_unit("ours"))
    with _daemon("ours", start_timeout=1800):
        try:
            wait_for(lambda: len(dm.multipath_maps()) >= luns, 1800, f"{luns} maps, sampled")
        finally:
            started = sampler.stop()
        first = _profile(_pid(_unit("ours")), 3 * INTERVAL)
    return {"start-up": started, "first intervals": first}


def hotplug(which: str, paths: int) -> dict:
    """Each daemon with its own udev rule (ours: the front asking our daemon; Debian's: `multipath -u`), as
    each is installed: udev's work per disk is part of the time."""
    luns = paths // 2
    sd = scsidebug.ScsiDebug(luns, 2, 4)
    rules = upstream.UpstreamRules() if which == "theirs" else contextlib.nullcontext()
    try:
        with rules, _daemon(which):
            t0 = time.monotonic()
            sd.load(timeout=1800)
            wait_for(lambda: len(dm.multipath_maps()) >= luns, 1800, f"{luns} maps from {which}")
            seconds = time.monotonic() - t0
    finally:
        dm.remove_multipath_maps()
        if scsidebug.loaded():
            sd.unload(timeout=1800)
    return {"daemon": which, "paths": paths, "seconds": round(seconds, 2)}


def link_cut(which: str) -> dict:
    """A portal's link is cut: both daemons may learn it from the network (ours follows link state over
    netlink) or from their checker."""
    bed = iscsi.IscsiBed(luns=1, size_mb=64)
    bed.setup()
    try:
        with _daemon(which):
            wait_for(lambda: len(dm.multipath_maps()) == 1, 120, f"the map from {which}")
            name = dm.multipath_maps()[0]
            cut = bed.paths(0)[0]
            time.sleep(INTERVAL + 1)  # steady state: both daemons have checked every path once
            t0 = time.monotonic()
            bed.cut(0)
            wait_for(lambda: dm.status(name).path(cut.devno).state == "F", 120, "the path to be failed")
            seconds = time.monotonic() - t0
            bed.restore(0)
    finally:
        bed.teardown()
    return {"seconds": round(seconds, 2)}


PATHDOWN_ROUNDS = 4


def path_down() -> dict:
    """The storage behind the target goes away while every link stays up: the LUN's target port group turns
    ALUA "unavailable" (as a controller that lost its back end reports it). No I/O runs, so only a checker
    can see it: TUR then answers NOT READY, 04/0C. (Unmapping the LUN from the portal group is no test: the
    session keeps its cached mapping and TURs go on succeeding.) Seconds from the change until the kernel
    table shows a path failed; the daemons take turns, `PATHDOWN_ROUNDS` each, on one iSCSI bed. Where in
    its polling interval a checker is when the change comes decides most of each figure (up to
    max_polling_interval, 20 s, for both): each round starts at a random point of it, and the mean of the
    rounds is what compares."""
    bed = iscsi.IscsiBed(luns=1, size_mb=64)
    bed.setup()
    result: dict = {"ours": [], "theirs": []}
    try:
        group = glob.glob("/sys/kernel/config/target/core/*/lun0/alua/default_tg_pt_gp")[0]
        for _ in range(PATHDOWN_ROUNDS):
            for which in ("ours", "theirs"):
                result[which].append(_pathdown_round(which, f"{group}/alua_access_state"))
                print(f"  path down {which}: {result[which][-1]} s", flush=True)
    finally:
        bed.teardown()
    return {w: {"rounds": r, "median_s": statistics.median(r) if r else None,
                "mean_s": round(statistics.mean(r), 2) if r else None} for w, r in result.items()}


def _pathdown_round(which: str, state_file: str) -> float:
    with _daemon(which):
        wait_for(lambda: len(dm.multipath_maps()) == 1, 120, f"the map from {which}")
        name = dm.multipath_maps()[0]
        wait_for(lambda: _states(name) == ["A", "A"], 120, "both paths active")
        # The checks backed off, as on a host that runs for days; then a random point of their interval, or
        # each round would catch both daemons at the same phase and measure only when each happened to start.
        time.sleep(STEADY_AFTER + random.uniform(0, MAX_POLLING))
        t0 = time.monotonic()
        write_sysfs(state_file, "3")  # unavailable
        try:
            wait_for(lambda: "F" in _states(name), 120, "a path to be failed")
            seconds = round(time.monotonic() - t0, 2)
        finally:
            write_sysfs(state_file, "0")  # active/optimized
        wait_for(lambda: _states(name) == ["A", "A"], 180, "both paths back")
    return seconds


def _states(name: str) -> list[str]:
    return [p.state for _, paths in dm.status(name).groups for p in paths]


def _try(errors: list[str], what: str, fn: Callable[[], T]) -> T | None:
    """One failed measurement (a timeout at 1024 paths under TCG, say) must not lose the others."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - reported in the results
        errors.append(f"{what}: {e!r}")
        print(f"  {what} FAILED: {e!r}", flush=True)
        return None


def scale(path_counts: tuple[int, ...] = PATH_COUNTS, profile_at: int | None = None, *,
          storm: bool = True) -> dict:
    """Start-up, footprint and show commands at each count; our profile at `profile_at`; `storm`: also
    during a uevent storm (minutes of udev's work per storm at 1024 paths under TCG)."""
    results: dict = {"startup": [], "errors": []}
    errors = results["errors"]
    for n in path_counts:
        rows = _try(errors, f"start-up {n} paths",
                    lambda n=n: startup(n, profile=n == profile_at, storm=storm))
        if rows:
            errors += made_once_errors(rows) + [e for r in rows for e in r.pop("errors", [])]
            results["startup"] += [r for r in rows if "seconds" in r]
    return results


def events(hotplug_paths: tuple[int, ...] = HOTPLUG_COUNTS, *, failover: bool = True,
           pathdown: bool = True) -> dict:
    """Hot-plug convergence, failover on a link cut, path down with the links up."""
    results: dict = {"hotplug": [], "failover": {}, "errors": []}
    errors = results["errors"]
    for n in hotplug_paths:
        for which in ("ours", "theirs"):
            r = _try(errors, f"hot-plug {n} paths {which}", lambda which=which, n=n: hotplug(which, n))
            if r:
                results["hotplug"].append(r)
                print(f"  hot-plug {r}", flush=True)
    for which in ("ours", "theirs") if failover else ():
        r = _try(errors, f"failover {which}", lambda which=which: link_cut(which))
        if r:
            results["failover"][which] = r
            print(f"  failover {which}: {r}", flush=True)
    down = _try(errors, "path down", path_down) if pathdown else None
    if down:
        results["pathdown"] = down
    return results


def run() -> dict:
    return {**scale(), **events()}
