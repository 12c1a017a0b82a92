import asyncio
import ctypes
import threading

import pytest

from pymultipathd.paths import checkers, sgio
from pymultipathd.paths.checkers import CheckResult, CheckRunner


def _res(ok=False, sense=b"", status=2):
    return sgio.SgResult(ok=ok, status=status, host_status=0, driver_status=0, sense=sense, data=b"")


def _fixed_sense(key, asc=0, ascq=0):
    s = bytearray(18)
    s[0], s[2], s[7], s[12], s[13] = 0x70, key, 10, asc, ascq
    return bytes(s)


def _desc_sense(key, asc=0, ascq=0):
    return bytes([0x72, key, asc, ascq, 0, 0, 0, 0])


def test_sg_io_hdr_layout_matches_x86_64_abi():
    # <scsi/sg.h> on x86-64: 88 bytes, pointers 8-aligned
    assert ctypes.sizeof(sgio.SgIoHdr) == 88
    assert sgio.SgIoHdr.dxferp.offset == 16
    assert sgio.SgIoHdr.usr_ptr.offset == 56
    assert sgio.SgIoHdr.info.offset == 80


@pytest.mark.parametrize("make", [_fixed_sense, _desc_sense])
@pytest.mark.parametrize(
    ("key", "asc", "ascq", "state"),
    [
        (0x06, 0x29, 0x00, checkers.PENDING),   # unit attention (reset)
        (0x02, 0x04, 0x0B, checkers.GHOST),     # ALUA standby
        (0x02, 0x04, 0x0C, checkers.GHOST),     # ALUA unavailable
        (0x02, 0x04, 0x0A, checkers.PENDING),   # ALUA transitioning
        (0x02, 0x3A, 0x00, checkers.DOWN),      # medium not present
        (0x05, 0x25, 0x00, checkers.DOWN),      # LUN not supported
    ],
)
def test_sense_to_state(make, key, asc, ascq, state):
    res = _res(sense=make(key, asc, ascq))
    assert res.sense_key == key
    assert res.asc_ascq == (asc, ascq)
    assert checkers._scsi_state(res, "tur").state == state


def test_ok_and_transport_failure():
    assert checkers._scsi_state(_res(ok=True), "tur").state == checkers.UP
    down = checkers._scsi_state(sgio.SgResult(False, 0, 0x0E, 0, b"", b""), "tur")
    assert down.state == checkers.DOWN and "host 0xe" in down.message


def test_cdbs():
    assert sgio.read10(5, 2) == bytes([0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0])
    assert sgio.report_target_port_groups(1024)[:2] == b"\xa3\x0a"
    assert len(sgio.TEST_UNIT_READY) == 6


def test_checker_on_missing_device_is_down():
    res = asyncio.run(CheckRunner().check("/nonexistent/sdzz", "tur", 1.0))
    assert res.state == checkers.DOWN and "/nonexistent/sdzz" in res.message


def test_directio_reads_a_real_file(tmp_path):
    f = tmp_path / "disk"
    f.write_bytes(b"\0" * 8192)
    res = asyncio.run(CheckRunner().check(str(f), "directio", 2.0))
    assert res == CheckResult(checkers.UP, "directio ok")


def test_hung_check_times_out_and_blocks_only_its_own_path(monkeypatch):
    release = threading.Event()

    def hangs(devnode, timeout):
        release.wait(30)
        return CheckResult(checkers.UP)

    monkeypatch.setitem(checkers.CHECKERS, "hangs", hangs)

    async def scenario():
        runner = CheckRunner(max_threads=4)
        first = await runner.check("/dev/sdx", "hangs", 0.1)
        again = await runner.check("/dev/sdx", "hangs", 0.1)  # still hung: no second thread
        other = await runner.check("/dev/sdy", "none", 0.1)
        release.set()
        runner.close()
        return first, again, other

    first, again, other = asyncio.run(scenario())
    assert first.state == checkers.TIMEOUT
    assert again.state == checkers.PENDING
    assert other.state == checkers.UP


def test_unknown_checker():
    assert asyncio.run(CheckRunner().check("/dev/sda", "nosuch", 1)).state == checkers.DOWN


def test_priority_is_read_with_a_usable_check_only(tmp_path):
    f = tmp_path / "disk"
    f.write_bytes(b"\0" * 8192)
    up = asyncio.run(CheckRunner().check(str(f), "none", 1.0, prio_name="const"))
    assert (up.state, up.prio) == (checkers.UP, 1)
    down = asyncio.run(CheckRunner().check("/nonexistent/sdzz", "tur", 1.0, prio_name="const"))
    assert down.state == checkers.DOWN and down.prio is None
    assert asyncio.run(CheckRunner().check(str(f), "none", 1.0)).prio is None  # not asked for


def _dead_fabric(monkeypatch) -> tuple[threading.Event, CheckRunner]:
    """Checkers "hang" (until the event is set) and "fine", and a runner of two threads."""
    release = threading.Event()
    monkeypatch.setitem(checkers.CHECKERS, "hang", lambda dev, t: release.wait(30) and checkers.CheckResult(
        checkers.DOWN, "hung"))
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    return release, checkers.CheckRunner(max_threads=2)


def test_a_healthy_path_queued_behind_hung_checks_is_pending_never_timed_out(monkeypatch):
    """A dead fabric: checks of hung paths hold every checker thread for their whole timeout. A healthy
    path's check still waiting for a thread must not be reported as a timeout: the daemon would fail a path
    that works (40 healthy paths were failed this way in the VM, issue 17)."""
    release, runner = _dead_fabric(monkeypatch)

    async def scenario() -> list[str]:
        hung = [runner.check(f"/dev/hung{i}", "hang", 0.3) for i in range(2)]
        results = await asyncio.gather(*hung, runner.check("/dev/healthy", "fine", 0.3))
        release.set()
        again = await runner.check("/dev/healthy", "fine", 0.3)
        while again.state == checkers.PENDING:  # its first check may still be queued: it runs once freed
            await asyncio.sleep(0.05)
            again = await runner.check("/dev/healthy", "fine", 0.3)
        return [r.state for r in results] + [again.state]

    try:
        # the healthy check left the held pool's queue and ran on a thread of its own: checked, not timed out
        assert asyncio.run(scenario()) == [checkers.TIMEOUT, checkers.TIMEOUT, checkers.UP, checkers.UP]
    finally:
        release.set()
        runner.close()


def test_healthy_paths_are_still_checked_while_hung_checks_hold_the_pool(monkeypatch):
    """A dead fabric with more hung paths than checker threads: once hung checks hold half the pool, the
    other paths' checks get threads of their own, so a healthy path is checked (and one that died meanwhile
    is found) instead of being pending for as long as the fabric stays dead."""
    release, runner = _dead_fabric(monkeypatch)

    async def scenario() -> list[str]:
        hung = await asyncio.gather(*(runner.check(f"/dev/hung{i}", "hang", 0.2) for i in range(2)))
        healthy = await asyncio.gather(*(runner.check(f"/dev/ok{i}", "fine", 0.2) for i in range(3)))
        return [r.state for r in hung] + [r.state for r in healthy]

    try:
        assert asyncio.run(scenario()) == [checkers.TIMEOUT] * 2 + [checkers.UP] * 3
    finally:
        release.set()
        runner.close()


def test_checks_queued_in_the_same_round_as_hung_ones_are_still_checked(monkeypatch):
    """The checker loop submits every due path at once: healthy paths queued behind hung ones leave the
    queue after a grace and run on threads of their own, and a hung check whose caller gave up while it was
    queued is still counted as stuck (its next check notices), so overflow mode follows."""
    release, runner = _dead_fabric(monkeypatch)

    async def scenario() -> tuple[list[str], list[str], int]:
        names = ["hung0", "ok0", "hung1", "ok1", "hung2", "ok2"]
        first = await asyncio.gather(*(runner.check(f"/dev/{n}", "hang" if n.startswith("hung") else "fine",
                                                    0.2) for n in names))
        await asyncio.sleep(0.3)
        again = await asyncio.gather(*(runner.check(f"/dev/{n}", "hang" if n.startswith("hung") else "fine",
                                                    0.2) for n in names))
        return [r.state for r in first], [r.state for r in again], len(runner._stuck)

    try:
        first, again, stuck = asyncio.run(scenario())
    finally:
        release.set()
        runner.close()
    assert [s for n, s in zip(["h", "o"] * 3, first, strict=True) if n == "o"] == [checkers.UP] * 3
    assert checkers.TIMEOUT not in [s for n, s in zip(["h", "o"] * 3, first, strict=True) if n == "o"]
    assert [s for n, s in zip(["h", "o"] * 3, again, strict=True) if n == "o"] == [checkers.UP] * 3
    assert stuck == 3  # every hung check counted, also one that started after its caller gave up
