"""Stopping the daemon while a uevent batch is being applied: the map in the making is finished, the rest of
the batch is left for the next start, and nothing is reported as a failed assembly."""

import asyncio
import logging

from pymultipathd.config import load
from pymultipathd.daemon.core import Core


def test_close_during_a_batch_finishes_the_current_map_and_stops(caplog):
    async def scenario() -> list[str]:
        core = Core(load.parse_text(""), ctl=None)
        made: list[str] = []
        first_started = asyncio.Event()

        async def make(wwid: str, claimed: tuple) -> None:
            made.append(wwid)
            first_started.set()
            await asyncio.sleep(0.05)  # DM work in flight when the stop comes

        core._assemble = make
        core._batch_task = asyncio.ensure_future(core.reconcile(["3600a", "3600b", "3600c"]))
        await first_started.wait()
        await core.close()
        assert core._batch_task.done() and core._batch_task.exception() is None
        core._queue("3600d")  # a uevent arriving during the stop starts no new batch
        assert core._batch_handle is None and not core._pending
        return made

    with caplog.at_level(logging.INFO, logger="pymultipathd"):
        assert asyncio.run(scenario()) == ["3600a"]
    assert "2 WWIDs of this batch left to the next start" in caplog.text
    assert "assembling the map failed" not in caplog.text
