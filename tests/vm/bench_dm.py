"""Benchmark (not a test): create+load+resume+remove of N multipath maps, the layer vs dmsetup, same boot.

Both sides build the same tables over the two usable paths of one scsi_debug LUN (device-mapper lets many
maps share a path device), with uuids outside "mpath-" so the system's kpartx rule stays out of both runs.
dmsetup waits for udev on every call (semaphore cookie); the layer does not (flags-only cookie), so each
side's create and remove phase is also timed up to a `udevadm settle`, which makes the two comparable: both
end with udev done. Called by the bench harness: `run() -> dict`; prints a table.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable

from pymultipathd.dm import maps
from pymultipathd.dm.ioctl import Control
from pymultipathd.dm.table import MultipathTable, PathGroup, PathSpec
from tests.vm import sysutil
from tests.vm.scsidebug import ScsiDebug
from tests.vm.sysutil import settle

PREFIX = "pympbench"


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(n: int = 256) -> dict:
    # Three hosts: scsi_debug (vpd_use_hostno=0) puts one path in three in ALUA standby; leave it out so
    # udev's probes of the new maps do not fail paths.
    sd = ScsiDebug(1, 3, 8)
    sd.load()
    try:
        paths = [p for p in sd.paths if _usable(p.node)]
        sectors = 8 * 2048
        table = MultipathTable(sectors, (PathGroup(tuple(PathSpec(p.devno) for p in paths), "round-robin"),))
        line = table.line()
        names = [f"{PREFIX}{i:04d}" for i in range(n)]
        wwid = paths[0].wwid or "bench"
        results: dict[str, dict[str, float]] = {}

        with Control() as ctl:
            def layer_create() -> None:
                for i, name in enumerate(names):
                    maps.create_map(ctl, name, f"bench-{wwid}-{i}", [line])

            def layer_remove() -> None:
                for name in names:
                    maps.remove_map(ctl, name, retries=50)

            c = _timed(layer_create)
            cs = c + _timed(settle)
            r = _timed(layer_remove)
            rs = r + _timed(settle)
            results["pymultipathd.dm"] = {"create": c, "create+settle": cs, "remove": r, "remove+settle": rs}

        def dmsetup_create() -> None:
            for i, name in enumerate(names):
                _sh(["dmsetup", "create", name, "--uuid", f"bench-{wwid}-{i}", "--table", line])

        def dmsetup_remove() -> None:
            for name in names:
                _sh(["dmsetup", "remove", "--retry", name])

        c = _timed(dmsetup_create)
        cs = c + _timed(settle)
        r = _timed(dmsetup_remove)
        rs = r + _timed(settle)
        results["dmsetup"] = {"create": c, "create+settle": cs, "remove": r, "remove+settle": rs}
    finally:
        for name in run_ls():
            _sh(["dmsetup", "remove", "--retry", name])
        sd.unload()

    out = {"maps": n, "seconds": results,
           "ms_per_map": {tool: {k: v * 1000 / n for k, v in r.items()} for tool, r in results.items()}}
    ours, theirs = results["pymultipathd.dm"], results["dmsetup"]
    out["ratio_vs_dmsetup"] = {k: ours[k] / theirs[k] for k in ours if theirs[k]}
    _print_table(out)
    return out


def _usable(node: str) -> bool:
    try:
        fd = os.open(node, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return False
    buf = mmap.mmap(-1, 4096)
    try:
        return os.preadv(fd, [buf], 0) == 4096
    except OSError:
        return False
    finally:
        os.close(fd)


def _sh(argv: list[str]) -> str:
    return sysutil.run(argv, timeout=300)


def run_ls() -> list[str]:
    out = sysutil.run(["dmsetup", "ls"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def _print_table(out: dict) -> None:
    cols = ["create", "create+settle", "remove", "remove+settle"]
    print(f"device-mapper map lifecycle, {out['maps']} maps, ms per map")
    print(f"{'tool':<18}" + "".join(f"{c:>16}" for c in cols))
    for tool, row in out["ms_per_map"].items():
        print(f"{tool:<18}" + "".join(f"{row[c]:>16.2f}" for c in cols))
    print(f"{'ratio (ours/them)':<18}" + "".join(f"{out['ratio_vs_dmsetup'][c]:>16.2f}" for c in cols))


if __name__ == "__main__":
    run()
