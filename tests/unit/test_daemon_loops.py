"""The daemon's loops survive their faults (issue 17, fault 2): a round of the checker loop that raises is
logged and the next one runs, a path's check that raises is logged with its path and map, and the watchdog
is pinged only while the checker loop completes rounds, so a wedged daemon is restarted by systemd."""

from __future__ import annotations

import asyncio
import logging
import types

from pymultipathd.classify import PathFacts
from pymultipathd.daemon import main
from pymultipathd.daemon.state import PathState


class FlakyCore:
    """Stands in for Core: one due path whose check raises, and a policy tick that raises once."""

    def __init__(self) -> None:
        self.ticks = 0
        self.checks = 0
        path = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(dev="sdb"))
        path.map, path.next_check = "mpatha", 0.0
        self.state = types.SimpleNamespace(paths={"sdb": path})

    async def policy_tick(self) -> None:
        self.ticks += 1
        if self.ticks == 1:
            raise KeyError("mpatha")  # e.g. a timed failback on a map removed meanwhile

    async def check_and_apply(self, p: PathState) -> None:
        self.checks += 1
        p.next_check = 1e18
        raise RuntimeError("checker bug")


def test_the_checker_loop_outlives_a_failing_round_and_a_failing_check(monkeypatch, caplog):
    monkeypatch.setattr(main, "TICK", 0.01)
    daemon = main.Daemon(main.parse_args([]))
    daemon.core = FlakyCore()

    async def scenario() -> None:
        loop_task = asyncio.ensure_future(daemon._checker_loop())
        await asyncio.sleep(0.3)
        loop_task.cancel()

    with caplog.at_level(logging.ERROR, logger="pymultipathd"):
        asyncio.run(scenario())
    assert daemon.core.ticks > 3 and daemon.core.checks == 1  # went on after both faults
    assert daemon._progress > 0
    assert "checker loop: this round failed" in caplog.text
    assert "sdb: checking the path (map mpatha) failed" in caplog.text


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
