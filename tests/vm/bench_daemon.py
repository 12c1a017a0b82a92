"""Daemon benchmarks, ours against Debian's multipathd 0.9.4 in the same boot (run by tests/vm/bench.py).

- convergence: scsi_debug LUNs x 2 paths appear while the daemon runs; time from the module load to every
  map present (dmsetup, the independent view), for several path counts;
- failover detection: an iSCSI portal's link is cut; time until the kernel table shows the path failed;
- footprint: the daemon's RSS and CPU seconds per checker interval with the largest path count.
Nothing here asserts a time: it measures and returns numbers.
"""

from __future__ import annotations

import time

from tests.vm import dm, iscsi, scsidebug, upstream
from tests.vm.pympd import Pympd
from tests.vm.sysutil import run as sh
from tests.vm.sysutil import wait_for

PATH_COUNTS = (64, 256, 512)
INTERVAL = 5  # polling_interval for both daemons (upstream's default)


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


def _daemon(which: str) -> Pympd | upstream.UpstreamMultipathd:
    """Context manager running one daemon with the shared configuration; maps are removed on exit."""
    return Pympd(_conf()) if which == "ours" else upstream.UpstreamMultipathd(config=_conf())


def _unit(which: str) -> str:
    return "pymultipathd.service" if which == "ours" else "multipathd.service"


def convergence(which: str, paths: int) -> dict:
    luns = paths // 2
    sd = scsidebug.ScsiDebug(luns, 2, 4, {})
    try:
        with _daemon(which):
            t0 = time.monotonic()
            sd.load()
            wait_for(lambda: len(dm.multipath_maps()) >= luns, 900, f"{luns} maps from {which}")
            seconds = time.monotonic() - t0
            pid = _pid(_unit(which))
            cpu0, w0 = _cpu_s(pid), time.monotonic()
            time.sleep(2 * INTERVAL)
            cpu_per_interval = (_cpu_s(pid) - cpu0) / ((time.monotonic() - w0) / INTERVAL)
            rss = _rss_kib(pid)
    finally:
        for name in dm.multipath_maps():
            dm.remove(name)
        if scsidebug.loaded():
            sd.unload()
    return {"paths": paths, "seconds": round(seconds, 2), "rss_mib": round(rss / 1024, 1),
            "cpu_s_per_interval": round(cpu_per_interval, 3)}


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


def run_all(path_counts: tuple[int, ...] = PATH_COUNTS) -> dict:
    results: dict = {"convergence": [], "failover": {}}
    for n in path_counts:
        for which in ("ours", "theirs"):
            r = convergence(which, n)
            r["daemon"] = which
            results["convergence"].append(r)
            print(f"convergence {which} {n} paths: {r}", flush=True)
    for which in ("ours", "theirs"):
        results["failover"][which] = failover(which)
        print(f"failover {which}: {results['failover'][which]}", flush=True)
    return results


def run() -> dict:
    return run_all()
