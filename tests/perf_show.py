"""Host micro-benchmark of the control socket's show commands (not a test: nothing here asserts a time).

Builds a DaemonState of N maps of two paths each, the way a host with N LUNs over two ports looks to the
daemon (ALUA tables with an active and an enabled group, a status with one path failed now and then), and
times the formatting functions alone and `show ...` round trips to the real ControlServer and command
handlers, served by a child process over a unix socket. Formatting runs on the daemon's event loop, so its
cost is also how long every other event waits behind one `show` command.

    .venv/bin/python -m tests.perf_show                       # the table, N = 32 128 256 512
    .venv/bin/python -m tests.perf_show --maps 256 1024
    .venv/bin/python -m tests.perf_show --baseline HEAD        # and the control code of a commit, interleaved
    .venv/bin/python -m tests.perf_show --profile show_paths --maps 256

Times are the fastest of repeated calls: on a shared machine the median moves with whatever else runs, the
minimum is what the code costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import os
import pstats
import random
import signal
import socket
import subprocess
import time
import types
from collections.abc import Callable, Iterator

from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.control import client, server
from pymultipathd.control import format as fmt
from pymultipathd.daemon import handlers
from pymultipathd.daemon.core import Core
from pymultipathd.dm import table as dmt
from pymultipathd.listen import bind_unix
from pymultipathd.policy.state import DaemonState, MapState, MapStats, PathCheck, PathState
from pymultipathd.record import record

# the daemon's clock as the formatting functions see it: next checks fall before and after it
NOW = 1000.0
CHECKS = (PathCheck.UP, PathCheck.UP, PathCheck.UP, PathCheck.GHOST, PathCheck.DOWN, PathCheck.PENDING,
          PathCheck.UNDEF, PathCheck.SHAKY, PathCheck.TIMEOUT, PathCheck.DELAYED, PathCheck.WILD)


def disk_name(i: int) -> str:
    """sda .. sdz, sdaa .. : the kernel's names for the i-th SCSI disk."""
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(ord("a") + r) + name
    return "sd" + name


def map_name(i: int) -> str:
    return "mpath" + disk_name(i)[2:]


def _path(i: int, lun: int, port: int, wwid: str, mapname: str | None, rng: random.Random) -> PathState:
    dev, dev_t = disk_name(i), f"{8 + i // 16}:{(i % 16) * 16}"
    facts = PathFacts(dev=dev, dev_t=dev_t, wwid=wwid, vendor="LIO-ORG", product=f"disk{lun % 7}",
                      revision="4.0", protocol="scsi:iscsi")
    return PathState(
        dev=dev, dev_t=dev_t, facts=facts, hcil=f"{port + 3}:0:0:{lun}", size=2097152 << (lun % 4),
        serial=f"serial{lun:05d}", prio=50 if port == 0 else 10, chk_state=rng.choice(CHECKS),
        dev_state=rng.choice(("running", "running", "running", "offline")), interval=rng.choice((5.0, 20.0)),
        next_check=NOW + rng.uniform(-3.0, 20.0), map=mapname, failures=rng.randrange(3),
        marginal=rng.random() < 0.05, host_wwpn="0x10000090fa000001" if port else "[undef]")


def _table_and_status(a: PathState, b: PathState, rng: random.Random) -> tuple[dmt.MultipathTable,
                                                                                 dmt.MultipathStatus]:
    table = dmt.parse_multipath_line(
        f"0 {a.size} multipath 1 queue_if_no_path 1 alua 2 1 service-time 0 1 1 {a.dev_t} 1 "
        f"service-time 0 1 1 {b.dev_t} 1")
    fa, fb = ("A" if p.usable else "F" for p in (a, b))
    status = dmt.parse_multipath_status(
        f"2 0 0 0 2 1 {rng.choice('AE')} 0 1 2 {a.dev_t} {fa} 0 0 1 E 0 1 2 {b.dev_t} {fb} 1 0 1")
    return table, status


def build_state(n_maps: int, seed: int = 1, orphans: int = 0) -> DaemonState:
    """N maps of two paths each (and `orphans` paths in no map), reproducibly random from `seed`."""
    rng = random.Random(seed)
    st = DaemonState(started=1.0)
    for lun in range(n_maps):
        name, wwid = map_name(lun), f"36001405{lun:024x}"
        a = _path(2 * lun, lun, 0, wwid, name, rng)
        b = _path(2 * lun + 1, lun, 1, wwid, name, rng)
        st.paths[a.dev], st.paths[b.dev] = a, b
        m = MapState(name=name, wwid=wwid, dm_dev=f"dm-{lun}", dev_t=f"253:{lun}", vendor="LIO-ORG",
                     product=a.facts.product or "", revision="4.0", open_count=rng.randrange(2),
                     action=rng.choice(("", "create", "reload")),
                     stats=MapStats(path_faults=rng.randrange(5), map_loads=rng.randrange(1, 4)))
        m.table, m.status = _table_and_status(a, b, rng)
        if rng.random() < 0.1:
            m.queueing_since, m.retry_ticks = NOW - rng.uniform(0, 100), rng.randrange(1, 12)
        st.set_paths(m, [a.dev, b.dev])
        st.maps[name] = m
    for k in range(orphans):
        p = _path(2 * n_maps + k, 4096 + k, k % 2, f"36001405{4096 + k:024x}", None, rng)
        st.paths[p.dev] = p
    return st


def _daemon(state: DaemonState) -> types.SimpleNamespace:
    """What the handlers of `show` commands read of the daemon: its core (state, settings)."""
    core = Core(load.parse_text(""), ctl=None)  # type: ignore[arg-type]
    core.state = state
    return types.SimpleNamespace(core=core, initramfs_warnings=[])


def calls(state: DaemonState, settings_of: fmt.SettingsOf, fmt: types.ModuleType = fmt
          ) -> dict[str, Callable[[], str]]:
    """The formatting behind each command, called as the handlers call it (of `fmt`: format.py, or a
    baseline's)."""
    return {
        "show_paths": lambda: fmt.show_paths(state, now=NOW),
        "show_maps": lambda: fmt.show_maps(state, settings_of=settings_of, now=NOW),
        "maps_status": lambda: fmt.show_maps(state, "%n %F %Q %N %t %o", settings_of=settings_of, now=NOW),
        "topology": lambda: fmt.topology_all(state),
        "maps_json": lambda: fmt.maps_json(state, settings_of=settings_of, now=NOW),
    }


ROUND_TRIPS = {"rt_show_paths": "show paths", "rt_show_maps": "show maps", "rt_topology": "show topology",
               "rt_maps_json": "show maps json"}


def best_ms(fn: Callable[[], object], budget: float = 0.2, least: int = 5) -> float:
    """The fastest of repeated calls (ms), for about `budget` seconds and at least `least` calls."""
    best = float("inf")
    end = time.perf_counter() + budget
    count = 0
    while count < least or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        count += 1
    return best * 1000.0


@record(frozen=True)
class Variant:
    """The code under test: the formatting module, and the control server's (with its grammar)."""

    name: str
    format: types.ModuleType
    server: types.ModuleType


CURRENT = Variant("now", fmt, server)


def _module_at(rev: str, path: str, name: str) -> types.ModuleType:
    """A module of the repository as of git revision `rev`, as a module of its own (imports are today's)."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout
    mod = types.ModuleType(name)
    exec(compile(source, f"{rev}:{path}", "exec"), mod.__dict__)  # noqa: S102 (the repository's own code)
    return mod


def load_baseline(rev: str) -> Variant:
    """format.py, server.py and grammar.py as of `rev` (the rest, handlers included, is today's)."""
    fmt_then = _module_at(rev, "pymultipathd/control/format.py", "format_baseline")
    server_then = _module_at(rev, "pymultipathd/control/server.py", "server_baseline")
    server_then.__dict__["grammar"] = _module_at(rev, "pymultipathd/control/grammar.py", "grammar_baseline")
    return Variant(rev, fmt_then, server_then)


@contextlib.contextmanager
def serving(state: DaemonState, variant: Variant = CURRENT) -> Iterator[str]:
    """The control server and command handlers of `variant` over `state`, in a child process: a client
    and server in one process would take turns at the GIL, which adds to the round trip, and upstream's
    client and daemon are two processes too."""
    name = f"@pymultipathd-perf-{os.getpid()}-{next(_names)}"
    sock = bind_unix(name)  # before the fork: the parent may connect at once
    pid = os.fork()
    if pid == 0:  # the server: until the parent ends it
        try:
            _serve_forever(state, variant, sock)
        finally:
            os._exit(0)
    sock.close()
    try:
        yield name
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _serve_forever(state: DaemonState, variant: Variant, sock: socket.socket) -> None:
    handlers.fmt = variant.format
    daemon = _daemon(state)
    # the daemon's own dispatch; a server from before plain handlers (no start_answer) awaits every reply
    plain = hasattr(variant.server.ControlServer, "start_answer")
    srv = variant.server.ControlServer(  # type: ignore[arg-type]
        (lambda cmd: handlers.answer(daemon, cmd)) if plain else (lambda cmd: handlers.dispatch(daemon, cmd)))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(srv.start([sock]))
    loop.run_forever()


_names = itertools.count()


def measure(n_maps: int, variants: list[Variant], rounds: int = 3) -> list[dict[str, float]]:
    """A row of timings per variant, their runs interleaved so that the machine's load at the time weighs
    on all alike."""
    state = build_state(n_maps)
    settings_of = _daemon(state).core.settings_of
    rows: list[dict[str, float]] = [{} for _ in variants]
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(client.connect(stack.enter_context(serving(state, v))))
                 for v in variants]
        for _ in range(rounds):
            for row, v, sock in zip(rows, variants, socks, strict=True):
                for key, fn in calls(state, settings_of, v.format).items():
                    row[key] = min(row.get(key, float("inf")), best_ms(fn))
                for key, command in ROUND_TRIPS.items():
                    ms = best_ms(lambda c=command, s=sock: client.request(s, c))  # type: ignore[misc]
                    row[key] = min(row.get(key, float("inf")), ms)
    return rows


def profile(what: str, n_maps: int, seconds: float = 2.0) -> None:
    state = build_state(n_maps)
    fn = calls(state, _daemon(state).core.settings_of)[what]
    prof = cProfile.Profile()
    end = time.perf_counter() + seconds
    prof.enable()
    while time.perf_counter() < end:
        fn()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def print_table(rows: dict[int, list[dict[str, float]]], baseline: str | None) -> None:
    """One line per call, a column per N: the time, or the baseline's, ours and the speed-up."""
    width = 10 if baseline is None else 26
    print("fastest ms per call; N maps x 2 paths" + (f"; {baseline} -> now (speed-up)" if baseline else ""))
    print(f"{'call':<16}" + "".join(f"{f'N={n}':>{width}}" for n in rows))
    for key in next(iter(rows.values()))[0]:
        cells = [f"{r[0][key]:.3f}" if baseline is None else
                 f"{r[0][key]:.3f} -> {r[1][key]:.3f} ({r[0][key] / r[1][key]:.1f}x)" for r in rows.values()]
        print(f"{key:<16}" + "".join(f"{c:>{width}}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, nargs="+", default=[32, 128, 256, 512])
    ap.add_argument("--baseline", metavar="REV",
                    help="also time format.py, server.py and grammar.py of this git revision")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest counts")
    ap.add_argument("--profile", metavar="CALL", help="cProfile one call instead: " + ", ".join(
        calls(DaemonState(), lambda m: None).keys()))  # type: ignore[arg-type,return-value]
    args = ap.parse_args()
    if args.profile:
        for n in args.maps:
            profile(args.profile, n)
        return
    variants = [CURRENT] if args.baseline is None else [load_baseline(args.baseline), CURRENT]
    print_table({n: measure(n, variants, args.rounds) for n in args.maps}, args.baseline)

if __name__ == "__main__":
    main()
