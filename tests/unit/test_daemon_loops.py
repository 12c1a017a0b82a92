"""The daemon's loops survive their faults (issue 17, fault 2): a round of the checker loop that raises is
logged and the next one runs, a path's check that raises is logged with its path and map, and the watchdog
is pinged only while the checker loop completes rounds, so a wedged daemon is restarted by systemd."""

from __future__ import annotations

import asyncio
import logging
import types

from pymultipathd.classify import PathFacts
from pymultipathd.daemon import main
from pymultipathd.policy.state import PathState


def test_the_checker_loop_outlives_a_failing_round_and_a_failing_check(monkeypatch, caplog):
    from pymultipathd.config import load
    from pymultipathd.daemon.core import Core
    from pymultipathd.paths import checkers

    monkeypatch.setattr(main, "TICK", 0.01)
    calls: list[str] = []

    def bug(devnode: str, timeout: float) -> checkers.CheckResult:
        calls.append(devnode)
        raise RuntimeError("checker bug")

    monkeypatch.setitem(checkers.CHECKERS, "bug", bug)
    daemon = main.Daemon(main.parse_args([]))
    core = daemon.core = Core(load.parse_text(""), ctl=None)
    core.state.paths["sdb"] = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(dev="sdb"), checker="bug",
                                        map="mpatha")
    ticks: list[float] = []

    async def policy_tick() -> None:
        ticks.append(0.0)
        if len(ticks) == 1:
            raise KeyError("mpatha")  # e.g. a timed failback on a map removed meanwhile

    core.policy_tick = policy_tick  # type: ignore[method-assign]

    async def scenario() -> None:
        loop_task = asyncio.ensure_future(daemon._checker_loop())
        await asyncio.sleep(0.3)
        loop_task.cancel()

    try:
        with caplog.at_level(logging.ERROR, logger="pymultipathd"):
            asyncio.run(scenario())
    finally:
        core.runner.close()
    # went on after both faults; the failed check left the path due, so it was checked again
    assert len(ticks) > 3 and len(calls) > 1
    assert daemon._progress > 0
    assert "checker loop: this round failed" in caplog.text
    assert "sdb: checking the path (map mpatha) failed" in caplog.text
    assert "RuntimeError: checker bug" in caplog.text


def test_the_watchdog_is_pinged_only_while_the_checker_loop_makes_progress():
    assert main.watchdog_due(now=100.0, progress=95.0, watchdog_s=60.0)
    assert main.watchdog_due(now=100.0, progress=70.0, watchdog_s=60.0)
    assert not main.watchdog_due(now=100.0, progress=69.0, watchdog_s=60.0)  # half the period without a round


def test_a_stop_asked_during_start_up_reaches_the_core():
    daemon = main.Daemon(main.parse_args([]))
    daemon.stop()  # before the core exists: nothing to tell
    core = daemon.core = types.SimpleNamespace(stopped=False)
    core.request_stop = lambda: setattr(core, "stopped", True)
    daemon.stop()
    assert daemon._stop.is_set() and daemon.core.stopped


def test_a_client_that_gives_up_does_not_cancel_the_batch_it_waited_for():
    """Fault 4: a control command waiting for a uevent batch past the client's deadline cancelled the batch;
    a map could then exist in DM that the daemon never learnt about."""
    from pymultipathd.config import load
    from pymultipathd.daemon.core import Core

    async def scenario() -> tuple[bool, bool]:
        core = Core(load.parse_text(""), ctl=None)
        finished = asyncio.Event()

        async def batch() -> None:
            await asyncio.sleep(0.2)  # making a map
            finished.set()

        core._batch_task = asyncio.ensure_future(batch())
        try:
            await asyncio.wait_for(core.settle(), 0.05)  # the command's deadline
        except TimeoutError:
            pass
        work = asyncio.ensure_future(asyncio.sleep(0.2, "done"))
        try:
            await asyncio.wait_for(core.run_internal(work), 0.05)
        except TimeoutError:
            pass
        await asyncio.sleep(0.3)
        return finished.is_set() and not core._batch_task.cancelled(), work.result() == "done"

    assert asyncio.run(scenario()) == (True, True)


WWID = "36001405aaaabbbbccccdddd"


def _core_over_sdb(tmp_path, monkeypatch):
    """A greedy Core whose state holds one LIO path, sdb of WWID; its files under tmp_path, its tables
    stood in for. Made on the test's event loop."""
    from pymultipathd.config import load
    from pymultipathd.daemon.core import Core
    from pymultipathd.policy import plan

    monkeypatch.setenv("PYMULTIPATH_RUNDIR", str(tmp_path / "run"))
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(tmp_path / "wwids"))
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(tmp_path / "bindings"))
    monkeypatch.setattr(plan, "build_table", lambda *a, **k: object())
    core = Core(load.parse_text("defaults {\n find_multipaths greedy\n}\n"),
                ctl=types.SimpleNamespace(list_devices=lambda: []))
    facts = PathFacts(dev="sdb", dev_t="8:16", wwid=WWID, vendor="LIO-ORG", product="disk",
                      properties={"ID_WWN": "0x6001405", "ID_SERIAL": WWID})
    core.state.paths["sdb"] = PathState(dev="sdb", dev_t="8:16", facts=facts)
    return core


def test_two_reconciles_of_one_wwid_make_one_map_and_release_nothing(tmp_path, monkeypatch, caplog):
    """Fault 3: start-up discovery and `add map` (or a batch) reconciled one WWID at once; both tried to
    create its map and the loser marked the WWID failed and released the paths of a map that existed."""
    from pymultipathd.dm import maps as dmmaps
    from pymultipathd.dm.errors import DMError
    from pymultipathd.policy import plan

    monkeypatch.setattr(plan, "needs_reload", lambda *a, **k: False)
    wwid = WWID
    created: list[str] = []

    async def scenario() -> None:
        core = _core_over_sdb(tmp_path, monkeypatch)

        async def dm(fn, *args, **kw):  # the DM thread over a stand-in: creates take a while, one per name
            if fn is dmmaps.add_partition_maps:
                return []
            if fn is not dmmaps.create_multipath:
                return fn(*args, **kw)
            await asyncio.sleep(0.05)
            if args[1] in created:
                raise DMError("create", args[1], 16)  # EBUSY: it exists
            created.append(args[1])

        async def refresh(m) -> None:
            return None

        core.dm, core.refresh_map = dm, refresh
        await asyncio.gather(core.reconcile({wwid}), core.reconcile({wwid}))

    with caplog.at_level(logging.ERROR, logger="pymultipathd"):
        asyncio.run(scenario())
    assert created == [wwid]
    assert "releasing its paths" not in caplog.text and not (tmp_path / "run" / "failed_wwids").exists()


def test_lost_uevents_make_the_daemon_look_at_every_disk_again(tmp_path, monkeypatch, caplog):
    """Fault 7: events dropped by an overflowing netlink socket (ENOBUFS) were never made up for: a path
    that came or went meanwhile stayed unknown, or a dead one stayed in its map's view."""
    import errno

    from pymultipathd.config import load
    from pymultipathd.daemon.core import Core

    (tmp_path / "block" / "sdc").mkdir(parents=True)  # appeared while events were lost
    (tmp_path / "block" / "dm-0").mkdir()
    monkeypatch.setenv("PYMULTIPATH_SYSFS", str(tmp_path))
    seen: list[tuple[str, str]] = []

    class Overflowing:
        def __init__(self) -> None:
            self.calls = 0

        def poll(self, timeout: float) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.ENOBUFS, "No buffer space available")
            return None

    async def scenario() -> None:
        core = Core(load.parse_text(""), ctl=None)
        core.state.paths["sdb"] = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(dev="sdb"))  # gone
        monkeypatch.setattr(core, "on_uevent", lambda action, dev, props=None: seen.append((action, dev)))
        daemon = main.Daemon(main.parse_args([]))
        daemon.core = core
        daemon._on_udev(Overflowing())

    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        asyncio.run(scenario())
    assert seen == [("remove", "sdb"), ("change", "sdc")]
    assert "uevents were lost (netlink receive buffer full); re-read all 1 disks" in caplog.text


_STOP_DURING_DISCOVERY = r'''
import asyncio, os, signal, sys, types
from pymultipathd.daemon import core as core_mod, main

class FakeControl:  # device mapper with no maps (the host kernel has none)
    def list_devices(self): return []
    def arm_poll(self): pass
    def fileno(self): return os.open("/dev/null", os.O_RDONLY)

async def discover(self):
    # a start-up discovery that takes a while (hundreds of paths); a stop and a reload come meanwhile
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.3)
    self.discovered = True

main.Control = FakeControl
core_mod.Core.discover = discover
sys.exit(main.run(["-s", "--no-linkwatch"]))
'''


def test_a_stop_and_a_reload_during_start_up_discovery_end_it_cleanly(tmp_path):
    """Fault 6: SIGTERM or SIGHUP during start-up discovery killed the daemon on the spot (the handlers came
    after discovery), which could leave an empty DM device behind. Now discovery ends, the daemon says so
    and exits 0; the SIGHUP waits for discovery to be over (and the stop comes first)."""
    import os
    import subprocess
    import sys

    (tmp_path / "conf").write_text("defaults {\n find_multipaths greedy\n}\n")
    env = dict(os.environ, PYMULTIPATH_CONF=str(tmp_path / "conf"), PYMULTIPATH_CONFDIR=str(tmp_path / "d"),
               PYMULTIPATH_RUNDIR=str(tmp_path / "run"), MULTIPATH_SOCKET_NAME=str(tmp_path / "ctl"),
               PYMULTIPATH_SOCKET_PATH=str(tmp_path / "ctl2"),
               PYMULTIPATH_HELPER_SOCKET=str(tmp_path / "helper" / "sock"),
               PYMULTIPATH_WWIDS=str(tmp_path / "wwids"), PYMULTIPATH_BINDINGS=str(tmp_path / "bindings"))
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_PID", "LISTEN_FDS", "JOURNAL_STREAM"):
        env.pop(var, None)
    res = subprocess.run([sys.executable, "-c", _STOP_DURING_DISCOVERY], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "SIGHUP during start-up: reconfiguring once discovery is over" in res.stderr
    assert "stopped during start-up discovery; maps made so far stay in place" in res.stderr


def test_a_map_that_cannot_be_made_releases_its_paths_and_what_their_checks_kept(tmp_path, monkeypatch,
                                                                                   caplog):
    from pymultipathd.daemon import core as core_mod
    from pymultipathd.dm import maps as dmmaps
    from pymultipathd.dm.errors import DMError

    triggered: list[tuple[str, str]] = []
    monkeypatch.setattr(core_mod.sysinfo, "trigger_uevent",
                        lambda dev, action: triggered.append((dev, action)))
    forgotten: list[str] = []

    async def scenario() -> None:
        core = _core_over_sdb(tmp_path, monkeypatch)
        core.runner.forget = forgotten.append

        async def dm(fn, *args, **kw):
            if fn is dmmaps.create_multipath:
                raise DMError("create", args[1], 22)
            return fn(*args, **kw)

        core.dm = dm
        await core.reconcile({WWID})

    with caplog.at_level(logging.ERROR, logger="pymultipathd"):
        asyncio.run(scenario())
    assert "releasing its paths" in caplog.text
    assert forgotten == ["/dev/sdb"] and triggered == [("sdb", "add")]


def test_a_reconfigure_lets_the_checkers_keep_descriptors_again(monkeypatch):
    """Descriptors kept per path are let go when the daemon reaches its open-file limit; a reconfigure (the
    way max_fds is raised) lets them be kept again."""
    from pymultipathd.config import load
    from pymultipathd.daemon.core import Core

    daemon = main.Daemon(main.parse_args([]))
    core = daemon.core = Core(load.parse_text(""), ctl=None)
    monkeypatch.setattr(main, "load_config", lambda **kw: load.parse_text(""))
    monkeypatch.setattr(main, "sources_signature", lambda: ())
    monkeypatch.setattr(main.limits, "apply_max_fds", lambda value: 4096)
    assert core.runner._drop_kept()
    try:
        assert not core.runner._nodes.keeping
        assert asyncio.run(daemon.reconfigure()) is None
        assert core.runner._nodes.keeping and core.runner._states.keeping
    finally:
        core.runner.close()
