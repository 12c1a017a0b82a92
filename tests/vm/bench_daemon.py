"""Daemon benchmarks, ours against Debian's multipathd 0.9.4 in the same boot (run by tests/vm/bench.py).

- start-up convergence: N paths (scsi_debug LUNs x 2) are present, as after udev's coldplug at boot; time from
  `systemctl start` to every map present in device mapper (dmsetup, the independent view), for 64/256/512
  paths. The disks are made once per count and both daemons run over the same ones, one after the other.
  As at boot, the daemon's socket listens while udev first sees the disks (the socket unit starts before
  coldplug), so udev's helper has already claimed them when either daemon starts;
- hot-plug convergence: the daemon runs and 64 paths appear at once (a uevent storm); time from the module
  load to every map present. Under TCG the kernel's SCSI scan and udev's own rules dominate this figure;
- failover detection: an iSCSI portal's link is cut; time until the kernel table shows the path failed;
- footprint: the daemon's RSS and CPU seconds per checker interval, with every map of the largest count;
- `show paths` latency at the largest count, idle and while a uevent storm runs (`udevadm trigger` of a
  change event on every path at once), over one connection speaking the shared protocol to either daemon.
Nothing here asserts a time: it measures and returns numbers.
"""

from __future__ import annotations

import contextlib
import re
import time

from pymultipathd.control import client
from pymultipathd.paths import facts
from tests.vm import dm, iscsi, scsidebug, upstream
from tests.vm.bench_udev import MultipathState, StandInDaemon, stats
from tests.vm.pympd import Pympd
from tests.vm.sysutil import run as sh
from tests.vm.sysutil import wait_for

PATH_COUNTS = (64, 256, 512)
INTERVAL = 5  # polling_interval for both daemons (upstream's default)
STEADY_AFTER = 2 * 4 * INTERVAL  # seconds until every check has backed off to max_polling_interval (4 x)


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


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, USER_HZ = 100


def _daemon(which: str, start_timeout: float = 180) -> Pympd | upstream.UpstreamMultipathd:
    """Context manager running one daemon with the shared configuration; maps are removed on exit."""
    if which == "ours":
        return Pympd(_conf(), show_journal=False, start_timeout=start_timeout)
    return upstream.UpstreamMultipathd(config=_conf(), start_timeout=start_timeout)


def _unit(which: str) -> str:
    return "pymultipathd.service" if which == "ours" else "multipathd.service"


def _cpu_per_interval(pid: int) -> float:
    cpu0, w0 = _cpu_s(pid), time.monotonic()
    time.sleep(3 * INTERVAL)
    return round((_cpu_s(pid) - cpu0) / ((time.monotonic() - w0) / INTERVAL), 3)


def _footprint(which: str) -> dict:
    """RSS and CPU per checker interval: over the first three intervals after start-up, and in steady state,
    once every healthy path's checks have backed off to max_polling_interval (both daemons' default: four
    polling intervals), which is what a host with hundreds of paths pays for as long as it runs."""
    pid = _pid(_unit(which))
    first = _cpu_per_interval(pid)
    time.sleep(STEADY_AFTER)
    return {"rss_mib": round(_rss_kib(pid) / 1024, 1), "cpu_s_per_interval": _cpu_per_interval(pid),
            "cpu_s_per_interval_after_start": first}


def _latencies_ms(n: int) -> list[float]:
    with client.connect(timeout=60) as sock:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            reply = client.request(sock, "show paths")
            times.append((time.perf_counter() - t0) * 1000.0)
            if reply.startswith("fail"):
                raise RuntimeError(f"show paths failed: {reply[:200]}")
    return times


def show_paths_latency(n: int = 30) -> dict:
    """`show paths` round trips, idle and during a storm: one change uevent for every sd disk at once. One
    burst is enough: under TCG udev works through a few events a second, so 512 of them keep it and the
    daemon busy for minutes, longer than the samples take (repeated bursts only grew a backlog that took
    longer to drain than the benchmark's time limit)."""
    idle = _latencies_ms(n)
    sh(["udevadm", "trigger", "--action=change", "--subsystem-match=block", "--sysname-match=sd*"])
    try:
        time.sleep(2)  # let the first events reach the daemon
        busy = _latencies_ms(n)
    finally:
        sh(["udevadm", "settle", "--timeout=1200"], check=False, timeout=1300)
    return {"idle": stats(idle), "storm": stats(busy)}


def _made_once() -> dict:
    """Map creates and reloads since our daemon started (`show status`): paths that are all there at start
    must give one create per map and no reload (the VM suite checks this at 24 LUNs, this at every count)."""
    status = client.send("show status", timeout=120)
    return {k: int(v) for k, v in re.findall(r"map (creates|reloads): (\d+)", status)}


def made_once_errors(rows: list[dict]) -> list[str]:
    """Our start-up over N paths of N/2 LUNs must create each map once and reload none."""
    return [f"start-up {r['paths']} paths: {r.get('creates')} maps created and {r.get('reloads')} reloaded, "
            f"want {r['paths'] // 2} and 0" for r in rows
            if r["daemon"] == "ours" and (r.get("creates"), r.get("reloads")) != (r["paths"] // 2, 0)]


def _claimed(dev_t: str) -> bool:
    return (facts.udev_properties(dev_t) or {}).get("DM_MULTIPATH_DEVICE_PATH") == "1"


def startup(paths: int, footprint: bool) -> list[dict]:
    """Both daemons in turn over the same `paths` disks: start to every map present."""
    luns = paths // 2
    sd = scsidebug.ScsiDebug(luns, 2, 4)
    t0 = time.monotonic()
    # The boot state while udev first sees the disks: the configuration in place and the control socket
    # listening, as the socket unit's does from early boot. udev's helper then sees a daemon and claims the
    # paths, so neither daemon starts by re-announcing every path.
    with MultipathState("greedy"), StandInDaemon(answering=False):
        sd.load(timeout=1800)
    claimed = sum(_claimed(p.devno) for p in sd.paths)
    print(f"  {paths} scsi_debug paths ready in {time.monotonic() - t0:.0f} s, {claimed} claimed by udev",
          flush=True)
    rows = []
    try:
        for which in ("ours", "theirs"):
            row: dict = {"daemon": which, "paths": paths, "claimed_at_start": claimed}
            t0 = time.monotonic()
            with _daemon(which, start_timeout=1800):
                wait_for(lambda: len(dm.multipath_maps()) >= luns, 1800, f"{luns} maps from {which}")
                row["seconds"] = round(time.monotonic() - t0, 2)
                if which == "ours":
                    row.update(_made_once())
                rows.append(row)
                print(f"  start-up {row}", flush=True)  # as soon as known: a time limit may end the rest
                if footprint:
                    row.update(_footprint(which))
                    print(f"  footprint {row}", flush=True)
                    row["show_paths"] = show_paths_latency()
                    print(f"  show paths {row['show_paths']}", flush=True)
    finally:
        dm.remove_multipath_maps()
        sd.unload(timeout=1800)
    return rows


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


def failover(which: str) -> dict:
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


def run_all(path_counts: tuple[int, ...] = PATH_COUNTS, hotplug_paths: int = 64) -> dict:
    results: dict = {"startup": [], "hotplug": [], "failover": {}}
    # one failed measurement (a timeout at 512 paths under TCG, say) must not lose the others
    errors = results["errors"] = []
    for n in path_counts:
        try:
            rows = startup(n, footprint=n == max(path_counts))
        except Exception as e:  # noqa: BLE001 - reported in the results
            errors.append(f"start-up {n} paths: {e!r}")
            continue
        results["startup"] += rows
        errors += made_once_errors(rows)
    for which in ("ours", "theirs"):
        try:
            r = hotplug(which, hotplug_paths)
        except Exception as e:  # noqa: BLE001
            errors.append(f"hot-plug {which}: {e!r}")
            continue
        results["hotplug"].append(r)
        print(f"  hot-plug {r}", flush=True)
    for which in ("ours", "theirs"):
        try:
            results["failover"][which] = failover(which)
        except Exception as e:  # noqa: BLE001
            errors.append(f"failover {which}: {e!r}")
            continue
        print(f"  failover {which}: {results['failover'][which]}", flush=True)
    return results


def run() -> dict:
    return run_all()
