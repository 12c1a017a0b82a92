"""Host micro-benchmark of the path checks: CPU seconds per round of checks of every path.

Not a test (tests/unit never asserts times): run it by hand, before and after a change to the checker path.

    .venv/bin/python -m tests.perf_checks                     # N = 256 and 1024, every mode
    .venv/bin/python -m tests.perf_checks --paths 256 --mode loop --profile

Modes:
  runner  CheckRunner.check of every path at once (asyncio.gather), as the start-up checks do;
  loop    the daemon's checker loop (Daemon._checker_loop) over a real Core with every path due: the
          runner, the device state read, the policy (decide.path_checked), one policy tick.
Checkers:
  const   a fake checker that answers "up" at once (the loop's and the hand-off's cost alone);
  tur     the real tur checker, its SG_IO ioctl answered GOOD at once by a stub, on files standing for the
          device nodes (the thread side's Python cost: the sg node's lookup, open, header, buffers, close);
  kept    the same with the files taken for sg nodes, so the runner keeps each open (sgio.KeptNodes), as
          the daemon does for tur on real sg nodes.

"loop CPU" is the event loop thread's own CPU time during the round (time.thread_time there), "total" the
process's (time.process_time: the checker threads too); "switches" the process's context switches in the
round (getrusage), which cost far more under emulation than on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.daemon import core as core_mod
from pymultipathd.daemon import main
from pymultipathd.dm import table as dmt
from pymultipathd.paths import checkers, sgio
from pymultipathd.policy.state import MapState, PathCheck, PathState

PATHS_PER_MAP = 4
UP = checkers.CheckResult(PathCheck.UP, "perf ok")


def _switches() -> int:
    """Context switches of the process so far (voluntary and not): each costs much more under emulation."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_nvcsw + ru.ru_nivcsw


def _const(devnode: str, timeout: float) -> checkers.CheckResult:
    return UP


def _stub_ioctl(fd: int, request: int, arg: Any = 0, mutate: bool = True) -> Any:
    """SG_IO answered GOOD at once: the header is left as the caller filled it (status 0, info 0)."""
    return 0


def _sysfs_tree(root: str, devs: list[str]) -> None:
    """block/<dev>/device/state and the disk's sg node for every path, as the daemon and tur find them."""
    for i, dev in enumerate(devs):
        d = os.path.join(root, "block", dev, "device")
        os.makedirs(os.path.join(d, "scsi_generic", f"sg{i}"), exist_ok=True)
        with open(os.path.join(d, "state"), "w") as f:
            f.write("running\n")


def _dev_nodes(root: str, devs: list[str]) -> None:
    """Plain files standing for /dev/<dev> and its /dev/sgN (opened, never written: SG_IO is stubbed)."""
    os.makedirs(root, exist_ok=True)
    for i, dev in enumerate(devs):
        for name in (dev, f"sg{i}"):
            open(os.path.join(root, name), "w").close()


def _dev_names(n: int) -> list[str]:
    return [f"perf{i}" for i in range(n)]


def _install(checker: str, root: str, devs: list[str]) -> Callable[[], None]:
    """Register the "perf" checker; the undo."""
    os.environ["PYMULTIPATH_SYSFS"] = os.path.join(root, "sys")
    _sysfs_tree(os.path.join(root, "sys"), devs)
    saved_ioctl, saved_open, saved_is_sg = sgio.fcntl.ioctl, sgio.open_path, sgio._is_sg_node
    if checker == "const":
        checkers.CHECKERS["perf"] = _const
    else:
        # the real tur and the real open_path (the sg node looked up in sysfs), on files standing for the
        # device nodes: /dev/perfN is opened as <root>/dev/perfN
        _dev_nodes(os.path.join(root, "dev"), devs)

        def open_path(devnode: str, *, write: bool = False) -> int:
            return saved_open(os.path.join(root, "dev", os.path.basename(devnode)), write=write)

        sgio.fcntl.ioctl = _stub_ioctl  # type: ignore[assignment]
        sgio.open_path = open_path  # type: ignore[assignment]
        checkers.CHECKERS["perf"] = checkers.tur
        if checker == "kept":
            checkers.ON_DESCRIPTOR["perf"] = checkers.tur_fd
            sgio._is_sg_node = lambda fd: True  # type: ignore[assignment]

    def undo() -> None:
        sgio.fcntl.ioctl = saved_ioctl  # type: ignore[assignment]
        sgio.open_path = saved_open  # type: ignore[assignment]
        sgio._is_sg_node = saved_is_sg  # type: ignore[assignment]
        checkers.CHECKERS.pop("perf", None)
        checkers.ON_DESCRIPTOR.pop("perf", None)
    return undo


# --- mode runner ------------------------------------------------------------------------------------------

async def _runner_rounds(n: int, rounds: int,
                         prof: cProfile.Profile | None) -> list[tuple[float, float, int]]:
    runner = checkers.CheckRunner()
    nodes = [f"/dev/{d}" for d in _dev_names(n)]
    out = []
    try:
        for r in range(rounds + 1):
            t0, c0, s0 = time.thread_time(), time.process_time(), _switches()
            if prof is not None and r:
                prof.enable()
            res = await asyncio.gather(*(runner.check(d, "perf", 30.0) for d in nodes))
            if prof is not None and r:
                prof.disable()
            t1, c1, s1 = time.thread_time(), time.process_time(), _switches()
            assert all(x.state is PathCheck.UP for x in res), {x.message for x in res}
            if r:  # the first round starts the pool's threads
                out.append((t1 - t0, c1 - c0, s1 - s0))
    finally:
        runner.close()
    return out


# --- mode loop --------------------------------------------------------------------------------------------

def _core(n: int) -> core_mod.Core:
    core = core_mod.Core(load.parse_text(""), ctl=None)
    devs = _dev_names(n)
    for i, dev in enumerate(devs):
        p = PathState(dev=dev, dev_t=f"8:{i}", facts=PathFacts(dev=dev, dev_t=f"8:{i}", wwid=f"3600{i // 4}"),
                      checker="perf", chk_state=PathCheck.UP, scsi_timeout=30.0, prio=1)  # prio const
        core.state.paths[dev] = p
    for k in range(0, n, PATHS_PER_MAP):
        members = devs[k:k + PATHS_PER_MAP]
        ps = [core.state.paths[d] for d in members]
        name = f"mpath{k // PATHS_PER_MAP}"
        m = MapState(name=name, wwid=f"3600{k // PATHS_PER_MAP}")
        group = dmt.PathGroup(tuple(dmt.PathSpec(p.dev_t) for p in ps))
        m.table = dmt.MultipathTable(size=8, groups=(group,))
        m.status = dmt.MultipathStatus(groups=(dmt.GroupStatus("A", tuple(dmt.PathStatus(p.dev_t, True, 0)
                                                                           for p in ps)),))
        core.state.maps[name] = m
        core.state.set_paths(m, members)
        for p in ps:
            p.map = name
    return core


async def _loop_rounds(n: int, rounds: int, prof: cProfile.Profile | None) -> list[tuple[float, float, int]]:
    core = _core(n)
    daemon = main.Daemon(main.parse_args([]))
    daemon.core = core
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    count = [0]
    real = core_mod.decide.path_checked

    def counting(*args: Any, **kw: Any) -> Any:  # the round is over when every path's verdict is in
        count[0] += 1
        if count[0] >= n:
            done.set()
        return real(*args, **kw)

    core_mod.decide.path_checked = counting  # type: ignore[assignment]
    task = asyncio.ensure_future(daemon._checker_loop())
    out = []
    try:
        await asyncio.sleep(main.TICK * 1.5)  # its first tick: nothing due yet
        for r in range(rounds + 1):
            count[0] = 0
            done.clear()
            for p in core.state.paths.values():
                p.next_check, p.interval = 0.0, 5.0
            t0, c0, s0 = time.thread_time(), time.process_time(), _switches()
            if prof is not None and r:
                prof.enable()
            await asyncio.wait_for(done.wait(), 60)
            while any(p.next_check <= 0.0 for p in core.state.paths.values()):
                await asyncio.sleep(0)  # the last verdicts are being applied
            if prof is not None and r:
                prof.disable()
            t1, c1, s1 = time.thread_time(), time.process_time(), _switches()
            assert all(p.chk_state is PathCheck.UP for p in core.state.paths.values())
            if r:
                out.append((t1 - t0, c1 - c0, s1 - s0))
            # the next round starts after the loop's next tick: ticks without due paths are not measured
            await asyncio.sleep(main.TICK * 1.1 - (loop.time() % main.TICK) * 0)
    finally:
        task.cancel()
        core_mod.decide.path_checked = real  # type: ignore[assignment]
        await core.close()
    return out


MODES = {"runner": _runner_rounds, "loop": _loop_rounds}


def run(mode: str, checker: str, n: int, rounds: int, profile: bool) -> list[tuple[float, float, int]]:
    # CPU time of the loop thread: a wait for the GIL (the checker threads run meanwhile) is not its cost
    prof = cProfile.Profile(time.thread_time) if profile else None
    with tempfile.TemporaryDirectory() as root:
        undo = _install(checker, root, _dev_names(n))
        try:
            out = asyncio.run(MODES[mode](n, rounds, prof))
        finally:
            undo()
    if prof is not None:
        st = pstats.Stats(prof, stream=sys.stdout)
        st.sort_stats("tottime").print_stats(25)
    return out


def main_(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--mode", choices=[*MODES, "all"], default="all")
    ap.add_argument("--checker", choices=["const", "tur", "kept", "all"], default="all")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tick", type=float, default=0.3, help="the checker loop's tick in mode loop (seconds)")
    ap.add_argument("--profile", action="store_true", help="cProfile of the event loop thread's rounds")
    opts = ap.parse_args(argv)
    main.TICK = opts.tick
    modes = list(MODES) if opts.mode == "all" else [opts.mode]
    kinds = ["const", "tur", "kept"] if opts.checker == "all" else [opts.checker]
    print(f"{'mode':7} {'checker':7} {'paths':>6} {'loop CPU/round':>15} {'total CPU/round':>16} "
          f"{'us/check loop':>14} {'us/check total':>15} {'switches/round':>15}")
    for mode in modes:
        for kind in kinds:
            for n in opts.paths:
                rows = run(mode, kind, n, opts.rounds, opts.profile)
                lp = statistics.median(r[0] for r in rows)
                tot = statistics.median(r[1] for r in rows)
                sw = statistics.median(r[2] for r in rows)
                print(f"{mode:7} {kind:7} {n:6d} {lp * 1e3:12.1f} ms {tot * 1e3:13.1f} ms "
                      f"{lp / n * 1e6:14.1f} {tot / n * 1e6:15.1f} {sw:15.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
