import asyncio
import ctypes
import errno
import os
import threading
import time

import pytest

from pymultipathd.paths import checkers, sgio
from pymultipathd.paths.checkers import CheckResult, CheckRunner
from pymultipathd.policy.state import PathCheck
from tests.unit.fakesg import (
    DID_NO_CONNECT,
    DID_TIME_OUT,
    DID_TRANSPORT_DISRUPTED,
    FakeSg,
    check_condition,
    descriptor_sense,
    fixed_sense,
    good,
    host_error,
)


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
        # as upstream's tur: only ALUA standby is ghost; the other ALUA states and the rest fail the path
        (0x06, 0x29, 0x00, checkers.DOWN),      # unit attention (reset), when no retry is left
        (0x02, 0x04, 0x0B, checkers.GHOST),     # ALUA standby
        (0x02, 0x04, 0x0C, checkers.DOWN),      # ALUA unavailable
        (0x02, 0x04, 0x0A, checkers.DOWN),      # ALUA transitioning
        (0x02, 0x3A, 0x00, checkers.DOWN),      # medium not present
        (0x05, 0x25, 0x00, checkers.DOWN),      # LUN not supported
    ],
)
def test_sense_to_state(make, key, asc, ascq, state):
    res = _res(sense=make(key, asc, ascq))
    assert res.sense_key == key
    assert res.asc_ascq == (asc, ascq)
    assert checkers.tur_verdict(res).state == state
    assert checkers.tur_retry(res) == (key == 0x06)


def test_ok_and_transport_failure():
    assert checkers.tur_verdict(_res(ok=True)) == CheckResult(checkers.UP, "tur ok")
    disrupted = sgio.SgResult(False, 0, 0x0E, 0, b"", b"")
    down = checkers.tur_verdict(disrupted)
    assert down.state == checkers.DOWN and "host 0xe" in down.message
    assert checkers.tur_retry(disrupted)  # DID_TRANSPORT_DISRUPTED passes: asked again first
    for final in (0x01, 0x04, 0x05, 0x0F):  # no connect, bad target, abort, transport failfast
        assert not checkers.tur_retry(sgio.SgResult(False, 0, final, 0, b"", b""))


def _in_turn(*answers):
    """One answer, or several given in turn (the last one repeated)."""
    if len(answers) == 1:
        return answers[0]
    left = list(answers)
    return lambda cdb: left.pop(0) if len(left) > 1 else left[0]


def _tur(monkeypatch, *answers, timeout=2.0):
    fake = FakeSg().on(sgio.TEST_UNIT_READY, _in_turn(*answers)).install(monkeypatch)
    return checkers.tur("/dev/sdx", timeout), fake


def test_tur_reservation_conflict_is_up(monkeypatch):
    res, _ = _tur(monkeypatch, sgio.SgResult(False, sgio.RESERVATION_CONFLICT, 0, 0, b"", b""))
    assert res.state == checkers.UP and "reservation conflict" in res.message


def test_tur_retries_unit_attentions_a_bounded_number_of_times(monkeypatch):
    ua = check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x2A, 0x06))  # asymmetric access state changed
    res, fake = _tur(monkeypatch, ua, ua, good())
    assert res.state == checkers.UP and len(fake.calls) == 3
    res, fake = _tur(monkeypatch, ua)
    assert res.state == checkers.DOWN and "sense key 0x6" in res.message and len(fake.calls) == 5
    assert fake.timeouts_ms == [2000] * 5
    res, fake = _tur(monkeypatch, ua, timeout=0.0)  # the check's time is used up: no retry
    assert res.state == checkers.DOWN and len(fake.calls) == 1


def test_tur_retries_passing_host_errors_only(monkeypatch):
    res, fake = _tur(monkeypatch, host_error(DID_TRANSPORT_DISRUPTED), good())
    assert res.state == checkers.UP and len(fake.calls) == 2
    res, fake = _tur(monkeypatch, host_error(DID_NO_CONNECT))
    assert res.state == checkers.DOWN and "host 0x1" in res.message and len(fake.calls) == 1


def test_tur_transport_timeout_is_timeout(monkeypatch):
    res, fake = _tur(monkeypatch, host_error(DID_TIME_OUT))
    assert res.state == checkers.TIMEOUT and "timed out" in res.message and len(fake.calls) == 1


def test_tur_standby_port_is_ghost(monkeypatch):
    res, _ = _tur(monkeypatch, check_condition(descriptor_sense(sgio.NOT_READY, 0x04, 0x0B)))
    assert res.state == checkers.GHOST and "standby" in res.message


def test_tur_without_sg_io_is_unsupported(monkeypatch):
    res, _ = _tur(monkeypatch, OSError(errno.ENOTTY, "Inappropriate ioctl for device"))
    assert res.state == PathCheck.WILD and "not supported by this device" in res.message


def _sector0(monkeypatch, *answers):
    fake = FakeSg().on(b"\x28", _in_turn(*answers)).install(monkeypatch)
    return checkers.readsector0("/dev/sdx", 1.5), fake


def test_readsector0_states(monkeypatch):
    res, fake = _sector0(monkeypatch, good(bytes(512)))
    assert res == CheckResult(checkers.UP, "readsector0 ok")
    assert fake.calls == [sgio.read10(0, 1)] and fake.timeouts_ms == [1500]
    ua = check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x29, 0x00))
    res, fake = _sector0(monkeypatch, ua, good(bytes(512)))
    assert res.state == checkers.UP and len(fake.calls) == 2
    res, fake = _sector0(monkeypatch, ua)
    assert res.state == checkers.DOWN and len(fake.calls) == 3
    # a read on a standby port fails: readsector0 has no ghost state (upstream's neither)
    res, _ = _sector0(monkeypatch, check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x0B)))
    assert res.state == checkers.DOWN and "asc/ascq 0x04/0x0b" in res.message


def test_readsector0_without_host_memory_takes_the_path_as_up(monkeypatch):
    res, _ = _sector0(monkeypatch, OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert res.state == checkers.UP


def test_directio_short_read_is_down(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    res = checkers.directio(str(empty), 1.0)
    assert res.state == checkers.DOWN and "short" in res.message


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


def test_a_slow_prioritizer_never_fails_a_healthy_path(monkeypatch):
    """The checker's verdict stands on its own, as upstream's: a prioritizer that sends several commands
    (path_latency, alua) may take longer than one check's timeout; its path is up with the priority it
    read, and one whose prioritizer does not come back at all is up with the priority unknown."""
    from pymultipathd.paths import prio

    release = threading.Event()

    def slow(name, dev, args="", timeout=30.0, read=None):
        if name == "never":
            release.wait(30)
        else:
            time.sleep(1.5)  # past the check's 0.3 + 1 s, within the prioritizer's own budget
        return 42

    monkeypatch.setattr(prio, "priority", slow)
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    runner = CheckRunner()
    try:
        late = asyncio.run(runner.check("/dev/sdb", "fine", 0.3, prio_name="latency"))
        assert (late.state, late.prio) == (checkers.UP, 42)
        monkeypatch.setattr(checkers, "PRIO_TIMEOUTS", 1)
        lost = asyncio.run(runner.check("/dev/sdc", "fine", 0.3, prio_name="never"))
        assert (lost.state, lost.prio) == (checkers.UP, None) and "priority not read" in lost.message
    finally:
        release.set()
        runner.close()


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


@pytest.mark.parametrize("timeout_ms, sent", [(4294968 * 1000, 0xFFFFFFFF), (0, 1), (2500, 2500)])
def test_sg_io_timeout_neither_wraps_nor_becomes_the_kernels_default(monkeypatch, timeout_ms, sent):
    """SG_IO's timeout is a 32-bit count of ms (0: the kernel's default): checker_timeout 4294968 would
    wrap to 704 ms."""
    seen = []
    monkeypatch.setattr(sgio.fcntl, "ioctl", lambda fd, req, hdr: seen.append(hdr.timeout))
    sgio.sg_io(-1, sgio.TEST_UNIT_READY, timeout_ms=timeout_ms)
    assert seen == [sent]


def _pipe_sg(monkeypatch, answer):
    """SG_IO answered by `answer(cdb)`, on descriptors that are the read ends of pipes: one is closed once
    writing to its pipe fails."""
    pipes: list[tuple[int, int]] = []

    def open_path(devnode: str, *, write: bool = False) -> int:
        r, w = os.pipe()
        pipes.append((r, w))
        return r

    monkeypatch.setattr(sgio, "open_path", open_path)
    monkeypatch.setattr(sgio, "sg_io", lambda fd, cdb, data_len=0, timeout_ms=0: answer(cdb))
    return pipes


def _closed(pipe: tuple[int, int]) -> bool:
    try:
        os.write(pipe[1], b"x")
    except BrokenPipeError:
        return True
    return False


def test_tur_opens_a_node_that_is_not_an_sg_node_for_each_check_and_asks_once(monkeypatch):
    """A disk's own node (no sg node, or the sg node held exclusively) is not kept between checks: a command
    through it waits uninterruptibly. Each check opens it and closes it. A bad verdict is the check's word:
    the path is not asked again (a second TUR with what is left of the time could time out, and set off
    SCSI error handling on a struggling path)."""
    answers = [good(), host_error(DID_NO_CONNECT), good()]
    pipes = _pipe_sg(monkeypatch, lambda cdb: answers.pop(0))
    runner = CheckRunner()

    async def scenario() -> list[str]:
        return [(await runner.check("/dev/sdx", "tur", 1.0)).state for _ in range(3)]

    try:
        assert asyncio.run(scenario()) == [checkers.UP, checkers.DOWN, checkers.UP]
        assert answers == [] and len(pipes) == 3
        assert all(_closed(p) for p in pipes)
    finally:
        runner.close()


def _kept_sg(monkeypatch, answer):
    """_pipe_sg whose descriptors pass for sg nodes; also the SG_SET_RESERVED_SIZE calls seen."""
    pipes = _pipe_sg(monkeypatch, answer)
    monkeypatch.setattr(sgio, "_is_sg_node", lambda fd: True)
    cuts: list[int] = []
    real_ioctl = sgio.fcntl.ioctl
    monkeypatch.setattr(sgio.fcntl, "ioctl", lambda fd, req, arg=0: cuts.append(fd) if
                        req == sgio.SG_SET_RESERVED_SIZE else real_ioctl(fd, req, arg))
    return pipes, cuts


def test_tur_keeps_the_sg_node_open_between_checks_until_the_path_is_forgotten(monkeypatch):
    """An sg node is opened once for all the path's checks (its reserve buffer cut once, at the open), and
    closed when the path is forgotten; a path seen again is opened again."""
    pipes, cuts = _kept_sg(monkeypatch, lambda cdb: good())
    runner = CheckRunner()

    async def checks(n: int) -> list[str]:
        return [(await runner.check("/dev/sdx", "tur", 1.0)).state for _ in range(n)]

    try:
        assert asyncio.run(checks(3)) == [checkers.UP] * 3
        assert len(pipes) == 1 and not _closed(pipes[0])
        assert cuts == [pipes[0][0]]
        runner.forget("/dev/sdx")
        assert _closed(pipes[0])
        assert asyncio.run(checks(1)) == [checkers.UP]
        assert len(pipes) == 2 and not _closed(pipes[1])
    finally:
        runner.close()
    assert _closed(pipes[1])  # stopping closes what is kept


def _answers(answers: list):
    def answer(cdb):
        got = answers.pop(0)
        if isinstance(got, OSError):
            raise got
        return got
    return answer


def _tur_checks(n: int) -> list[checkers.CheckResult]:
    """n tur checks of /dev/sdx in a row, on a runner of their own."""
    runner = CheckRunner()

    async def checks() -> list[checkers.CheckResult]:
        return [await runner.check("/dev/sdx", "tur", 1.0) for _ in range(n)]

    try:
        return asyncio.run(checks())
    finally:
        runner.close()


def test_a_kept_sg_node_whose_device_went_is_opened_afresh_for_the_same_check(monkeypatch):
    """A kept descriptor whose device was removed answers ENODEV before anything is sent (its remove event
    not seen yet, or lost in an overflow): it is closed and the name opened again at once, so the check
    answers for the device that has the name now, not "down" for a descriptor's stale device."""
    answers: list = [good(), OSError(errno.ENODEV, "No such device"), good()]
    pipes, _ = _kept_sg(monkeypatch, _answers(answers))
    first, again = _tur_checks(2)
    assert (first.state, again.state) == (checkers.UP, checkers.UP) and answers == []
    assert len(pipes) == 2 and _closed(pipes[0])


def test_a_kept_sg_node_that_fails_otherwise_is_closed_and_the_check_says_why(monkeypatch):
    answers: list = [good(), OSError(errno.EIO, "Input/output error"), good()]
    pipes, _ = _kept_sg(monkeypatch, _answers(answers))
    first, failed, again = _tur_checks(3)
    assert (first.state, failed.state, again.state) == (checkers.UP, checkers.DOWN, checkers.UP)
    assert "Input/output error" in failed.message
    assert len(pipes) == 2 and _closed(pipes[0])


def test_at_most_a_quarter_of_the_open_file_limit_is_kept(monkeypatch):
    pipes, _ = _kept_sg(monkeypatch, lambda cdb: good())
    monkeypatch.setattr(sgio.resource, "getrlimit", lambda which: (12, 4096))
    runner = CheckRunner()

    async def checks() -> list[str]:
        return [(await runner.check(f"/dev/sd{c}", "tur", 1.0)).state for c in "abcde"]

    try:
        assert asyncio.run(checks()) == [checkers.UP] * 5
        assert len(runner._nodes) == 3 and [_closed(p) for p in pipes] == [False] * 3 + [True] * 2
    finally:
        runner.close()


def test_a_kept_sg_node_goes_when_the_paths_checker_no_longer_uses_it(monkeypatch):
    """A reconfigure that gives the path a checker opening the device itself closes the kept node."""
    pipes, _ = _kept_sg(monkeypatch, lambda cdb: good())
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    runner = CheckRunner()

    async def checks() -> list[str]:
        return [(await runner.check("/dev/sdx", c, 1.0)).state for c in ("tur", "fine")]

    try:
        assert asyncio.run(checks()) == [checkers.UP, checkers.UP]
        assert len(pipes) == 1 and _closed(pipes[0]) and len(runner._nodes) == 0
    finally:
        runner.close()


def test_readsector0_uses_the_kept_sg_node_too(monkeypatch):
    pipes, _ = _kept_sg(monkeypatch, lambda cdb: good(bytes(512)))
    monkeypatch.setattr(sgio, "block_size", lambda fd: 512)
    runner = CheckRunner()

    async def checks() -> list[str]:
        return [(await runner.check("/dev/sdx", "readsector0", 1.0)).state for _ in range(2)]

    try:
        assert asyncio.run(checks()) == [checkers.UP, checkers.UP]
        assert len(pipes) == 1
    finally:
        runner.close()


def test_a_kept_node_in_use_is_closed_by_its_user_not_under_it(monkeypatch):
    """drop_all and close while a command is being sent through a kept descriptor leave that descriptor
    open (its number could otherwise go to another open while the command still runs); its user closes it
    at the end, and none is kept from then on."""
    kept = sgio.KeptNodes()
    r, w = os.pipe()
    monkeypatch.setattr(sgio, "open_path", lambda devnode, **kw: r)
    monkeypatch.setattr(sgio, "_is_sg_node", lambda fd: True)

    def send(fd: int, timeout: float) -> bool:
        kept.drop_all()
        kept.close("sdx")
        os.fstat(fd)  # still open
        return True

    assert kept.use("/dev/sdx", send, 1.0) is True
    assert len(kept) == 0 and not kept.keeping
    with pytest.raises(OSError):
        os.fstat(r)
    os.close(w)


def _sg_tree(tmp_path, monkeypatch, sg: str) -> tuple[str, object]:
    """/dev/sdx (a plain file) whose sysfs directory names `sg` as its SCSI generic node; the devnode."""
    from pymultipathd import locations

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path / "sys"))
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    (dev / "sdx").write_text("sd")
    _sg_link(tmp_path, sg)
    return str(dev / "sdx"), dev


def _sg_link(tmp_path, sg: str) -> None:
    import shutil

    gen = tmp_path / "sys" / "block" / "sdx" / "device" / "scsi_generic"
    shutil.rmtree(gen, ignore_errors=True)
    (gen / sg).mkdir(parents=True)
    (tmp_path / "dev" / sg).write_text(sg)


def _read_node(fd: int) -> str:
    try:
        return os.pread(fd, 16, 0).decode()
    finally:
        os.close(fd)


def test_the_sg_nodes_name_is_kept_and_followed_when_the_device_changes(tmp_path, monkeypatch):
    """The sg node's lookup (a listdir in sysfs) is done once per path; the name is checked against the
    disk's sysfs directory at each open, so another device that took the disk's name (with another sg node)
    is opened through its own node, and the name is dropped when the path is forgotten."""
    devnode, dev = _sg_tree(tmp_path, monkeypatch, "sg3")
    lookups: list[str] = []
    real = sgio.generic_node
    monkeypatch.setattr(sgio, "generic_node", lambda d: (lookups.append(d), real(d))[1])
    monkeypatch.setattr(sgio, "_sg_nodes", {})
    assert _read_node(sgio.open_path(devnode)) == "sg3"
    assert _read_node(sgio.open_path(devnode)) == "sg3"
    assert len(lookups) == 1  # the name was kept
    _sg_link(tmp_path, "sg7")  # the device was replaced under the same name: another sg node
    assert _read_node(sgio.open_path(devnode)) == "sg7" and len(lookups) == 2
    os.unlink(dev / "sg7")  # the node cannot be opened: looked up again (and the disk's own node used)
    assert _read_node(sgio.open_path(devnode)) == "sd" and len(lookups) == 3
    _sg_link(tmp_path, "sg7")
    assert _read_node(sgio.open_path(devnode)) == "sg7"
    checkers.forget_path(devnode)  # the path is removed
    assert sgio._sg_nodes == {}


def test_a_kept_sg_nodes_name_still_falls_back_when_the_node_is_held_exclusively(tmp_path, monkeypatch):
    devnode, dev = _sg_tree(tmp_path, monkeypatch, "sg3")
    monkeypatch.setattr(sgio, "_sg_nodes", {devnode: str(dev / "sg3")})
    real = os.open

    def busy(path, flags, *a):
        if path.endswith("sg3"):
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(path, flags, *a)

    monkeypatch.setattr(sgio.os, "open", busy)
    assert _read_node(sgio.open_path(devnode)) == "sd"


def test_out_of_descriptors_never_fails_a_path(monkeypatch, caplog):
    """EMFILE (the daemon's max_fds) or ENFILE (the host's) when a check opens the path says nothing of the
    path: the check is "pending" (the path's state stands), with one warning naming the limit."""
    opened: list[str] = []

    def no_fds(dev: str, t: float) -> checkers.CheckResult:
        opened.append(dev)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setitem(checkers.CHECKERS, "nofds", no_fds)
    runner = CheckRunner()
    try:
        first = asyncio.run(runner.check("/dev/sdx", "nofds", 1.0))
        second = asyncio.run(runner.check("/dev/sdy", "nofds", 1.0))
    finally:
        runner.close()
    assert first.state == second.state == checkers.PENDING
    assert "Too many open files" in first.message and "open-file limit" in first.message
    assert len(opened) == 3  # tried once more after the kept descriptors were let go, then no more
    warnings = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
    assert len(warnings) == 1 and "open-file limit" in warnings[0].getMessage()


def test_out_of_descriptors_lets_the_kept_ones_go_first(tmp_path, monkeypatch):
    """The device state attributes kept open are closed, and kept no more, before the check is tried again."""
    from pymultipathd import locations

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    for d in ("sdx", "sdy"):
        attr = tmp_path / "block" / d / "device" / "state"
        attr.parent.mkdir(parents=True)
        attr.write_text("running\n")
    fail = [False]

    def check(dev: str, t: float) -> checkers.CheckResult:
        if fail[0]:
            fail[0] = False
            raise OSError(errno.EMFILE, "Too many open files")
        return checkers.CheckResult(checkers.UP, "ok")

    monkeypatch.setitem(checkers.CHECKERS, "tight", check)
    runner = CheckRunner()

    async def scenario() -> list[checkers.CheckResult]:
        out = [await runner.check("/dev/sdx", "tight", 1.0, dev_state=True)]
        kept.update(runner._states._fds)
        fail[0] = True
        out.append(await runner.check("/dev/sdy", "tight", 1.0, dev_state=True))
        return out

    kept: dict[str, int] = {}
    try:
        first, second = asyncio.run(scenario())
        assert list(kept) == ["sdx"] and runner._states._fds == {}  # sdx's was closed, sdy's not kept
        assert not runner._states.keeping
        with pytest.raises(OSError):
            os.fstat(kept["sdx"])
    finally:
        runner.close()
    assert (first.state, second.state) == (checkers.UP, checkers.UP)
    assert second.dev_state == "running" and second.message == "ok"


def test_out_of_descriptors_lets_the_kept_sg_nodes_go(monkeypatch):
    """A check that cannot open its path for want of descriptors closes the sg nodes kept for other paths,
    and the path's check goes through with the descriptor that freed (none is kept from then on)."""
    pipes, _ = _kept_sg(monkeypatch, lambda cdb: good())
    pipe_open = sgio.open_path
    short = [False]

    def open_path(devnode: str, *, write: bool = False) -> int:
        if short[0]:
            short[0] = False
            raise OSError(errno.EMFILE, "Too many open files")
        return pipe_open(devnode, write=write)

    monkeypatch.setattr(sgio, "open_path", open_path)
    runner = CheckRunner()

    async def scenario() -> list[str]:
        out = [(await runner.check("/dev/sdx", "tur", 1.0)).state]
        short[0] = True
        out.append((await runner.check("/dev/sdy", "tur", 1.0)).state)
        out.append((await runner.check("/dev/sdy", "tur", 1.0)).state)
        return out

    try:
        assert asyncio.run(scenario()) == [checkers.UP] * 3
        assert _closed(pipes[0])  # sdx's kept node went
        assert not runner._nodes.keeping and len(runner._nodes) == 0
        assert _closed(pipes[-1])  # sdy's last check closed its node
        runner.keep_again()  # a reconfigure (max_fds raised): nodes are kept again
        assert asyncio.run(runner.check("/dev/sdx", "tur", 1.0)).state == checkers.UP
        assert runner._nodes.keeping and len(runner._nodes) == 1 and not _closed(pipes[-1])
    finally:
        runner.close()


def test_a_prioritizer_out_of_descriptors_lets_the_kept_ones_go_and_warns(monkeypatch, caplog):
    """EMFILE from a prioritizer is the daemon's limit, not the path's: the path keeps its last priority,
    the descriptors kept per path are let go, and one warning names the limit; after a reconfigure
    (keep_again) they are kept again and a new shortage warns again."""
    from pymultipathd.paths import prio

    def short(name, dev, args, timeout, read=None):
        raise OSError(errno.EMFILE, "Too many open files")

    pipes, _ = _kept_sg(monkeypatch, lambda cdb: good())
    monkeypatch.setattr(prio, "priority", short)
    runner = CheckRunner()
    try:
        res = asyncio.run(runner.check("/dev/sdx", "tur", 1.0, prio_name="alua"))
        assert (res.state, res.prio) == (checkers.UP, None)
        assert not runner._nodes.keeping and len(runner._nodes) == 0 and _closed(pipes[-1])
        runner.keep_again()
        assert runner._nodes.keeping and runner._states.keeping
        asyncio.run(runner.check("/dev/sdx", "tur", 1.0, prio_name="alua"))
    finally:
        runner.close()
    warnings = [r for r in caplog.records if "out of file descriptors" in r.getMessage()]
    assert len(warnings) == 2 and "open-file limit" in warnings[0].getMessage()


def test_kept_device_states_let_go_when_descriptors_run_out(tmp_path, monkeypatch):
    from pymultipathd import locations
    from pymultipathd.paths import sysinfo

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    for d in ("sda", "sdb"):
        attr = tmp_path / "block" / d / "device" / "state"
        attr.parent.mkdir(parents=True)
        attr.write_text("offline\n")
    states = sysinfo.KeptStates()
    assert states.read("sda") == "offline" and len(states._fds) == 1
    real, failed = os.open, []

    def emfile_once(path, flags, *a):
        if not failed:
            failed.append(path)
            raise OSError(errno.EMFILE, "Too many open files")
        return real(path, flags, *a)

    monkeypatch.setattr(sysinfo.os, "open", emfile_once)
    assert states.read("sdb") == "offline"  # read after the kept ones were closed: never a made-up state
    assert failed and states._fds == {} and not states.keeping
    assert states.read("sda") == "offline" and states._fds == {}


def test_a_removed_paths_kept_state_is_closed_once_its_check_in_flight_ends(tmp_path, monkeypatch):
    from pymultipathd import locations

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    attr = tmp_path / "block" / "sdx" / "device" / "state"
    attr.parent.mkdir(parents=True)
    attr.write_text("running\n")
    release = threading.Event()
    monkeypatch.setitem(checkers.CHECKERS, "slow", lambda dev, t: release.wait(10) and checkers.CheckResult(
        checkers.UP, "ok"))
    monkeypatch.setattr(sgio, "_sg_nodes", {"/dev/sdx": "/dev/sg9"})
    runner = CheckRunner()

    async def scenario() -> None:
        release.set()
        await runner.check("/dev/sdx", "slow", 5.0, dev_state=True)
        release.clear()
        running = asyncio.ensure_future(runner.check("/dev/sdx", "slow", 5.0, dev_state=True))
        await asyncio.sleep(0.05)
        runner.forget("/dev/sdx")  # the path is removed while its thread still reads through the descriptor
        assert "sdx" in runner._states._fds
        release.set()
        await running
        await asyncio.sleep(0)  # the loop saw the check end

    try:
        asyncio.run(scenario())
        assert runner._states._fds == {} and sgio._sg_nodes == {}
    finally:
        release.set()
        runner.close()


def _start_fails_once(monkeypatch, when=lambda t: True) -> list[str]:
    """threading.Thread.start raises as when the system has no thread to give, once (for a thread `when`
    picks); the names of the threads it refused."""
    real, refused = threading.Thread.start, []

    def start(self: threading.Thread) -> None:
        if not refused and when(self):
            refused.append(self.name)
            raise RuntimeError("can't start new thread")
        real(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    return refused


def test_a_check_whose_own_thread_cannot_start_leaves_the_path_checkable(monkeypatch, caplog):
    """Hung checks hold half the pool (a dead fabric): each check gets a thread of its own. One the system
    will not start is answered "pending" and lets the path go, so the path is checked at a later round, not
    "still running" for ever."""
    release, runner = _dead_fabric(monkeypatch)

    async def scenario() -> tuple[checkers.CheckResult, checkers.CheckResult]:
        hung = await runner.check("/dev/hung0", "hang", 0.1)
        assert hung.state == checkers.TIMEOUT and runner._stuck == {"/dev/hung0"}
        refused = _start_fails_once(monkeypatch)
        first = await runner.check("/dev/sdx", "fine", 0.2)
        assert refused == ["checker-own"] and "/dev/sdx" not in runner._inflight
        return first, await runner.check("/dev/sdx", "fine", 0.2)

    try:
        first, second = asyncio.run(scenario())
    finally:
        release.set()
        runner.close()
    assert first == checkers.NO_NEW_THREAD and first.state == checkers.PENDING
    assert second.state == checkers.UP
    assert "cannot start a checker thread" in caplog.text


def test_a_queued_check_whose_own_thread_cannot_start_is_answered_and_let_go(monkeypatch):
    """A check that waited its grace for the pool (held by a hung check) and then finds no thread of its
    own is answered "pending"; no pool thread runs it later, and the path's next check runs."""
    monkeypatch.setattr(checkers, "QUEUE_GRACE", 0.05)
    release, runner = _dead_fabric(monkeypatch)
    runner._max_threads = 1

    async def scenario() -> tuple[checkers.CheckResult, checkers.CheckResult]:
        hung = asyncio.ensure_future(runner.check("/dev/hung0", "hang", 5.0))
        await asyncio.sleep(0.02)
        refused = _start_fails_once(monkeypatch)
        first = await asyncio.wait_for(runner.check("/dev/sdx", "fine", 5.0), 2)
        assert refused == ["checker-own"] and "/dev/sdx" not in runner._inflight
        second = await asyncio.wait_for(runner.check("/dev/sdx", "fine", 5.0), 2)
        release.set()
        await hung
        return first, second

    try:
        first, second = asyncio.run(scenario())
    finally:
        release.set()
        runner.close()
    assert first == checkers.NO_NEW_THREAD
    assert second.state == checkers.UP


def test_a_pool_thread_that_cannot_start_is_not_counted(monkeypatch):
    """The pool could not grow: the check waits its grace and runs on a thread of its own; the pool grows
    at a later check."""
    monkeypatch.setattr(checkers, "QUEUE_GRACE", 0.05)
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    refused = _start_fails_once(monkeypatch)
    runner = CheckRunner()

    async def scenario() -> tuple[str, str]:
        first = await asyncio.wait_for(runner.check("/dev/sdx", "fine", 5.0), 2)
        assert refused == ["checker_0"] and runner._threads == 0
        return first.state, (await runner.check("/dev/sdy", "fine", 5.0)).state

    try:
        assert asyncio.run(scenario()) == (checkers.UP, checkers.UP)
        assert runner._threads == 1
    finally:
        runner.close()


@pytest.mark.parametrize("length", [0, 5, 256, 300])
def test_sg_io_refuses_a_command_its_buffer_cannot_hold(monkeypatch, length):
    monkeypatch.setattr(sgio.fcntl, "ioctl", lambda fd, req, hdr: pytest.fail("sent"))
    with pytest.raises(ValueError):
        sgio.sg_io(-1, bytes(length))


async def _later(what) -> None:
    await asyncio.sleep(0.05)
    what()


def test_a_round_of_results_wakes_the_loop_once(monkeypatch):
    """Results that threads return while the loop is busy wake it once; it takes them in bounded batches
    (other work runs in between), and each is answered once."""
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    runner = CheckRunner()
    drains = []
    real = runner._drain
    runner._drain = lambda: (drains.append(len(runner._finished)), real())  # type: ignore[method-assign]
    heard: list[tuple[str, str]] = []

    async def scenario() -> None:
        for i in range(200):
            assert runner.submit(f"/dev/sd{i}", "fine", 1.0, lambda dev, res: heard.append((dev, res.state)),
                                 f"sd{i}") is None
        deadline = time.monotonic() + 10
        while len(runner._finished) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)  # the loop is busy: the threads' results wait for it
        await asyncio.sleep(0.05)

    try:
        asyncio.run(scenario())
    finally:
        runner.close()
    assert drains == [200, 200 - checkers.DRAIN_BATCH, 200 - 2 * checkers.DRAIN_BATCH,
                      200 - 3 * checkers.DRAIN_BATCH]
    assert sorted(heard) == sorted((f"sd{i}", checkers.UP) for i in range(200))
    assert runner._inflight == {}


def test_a_checker_that_raises_hands_its_error_to_the_caller(monkeypatch):
    def bug(dev: str, t: float) -> checkers.CheckResult:
        raise RuntimeError("checker bug")

    monkeypatch.setitem(checkers.CHECKERS, "bug", bug)
    runner = CheckRunner()
    try:
        with pytest.raises(RuntimeError, match="checker bug"):
            asyncio.run(runner.check("/dev/sdx", "bug", 1.0))
        assert runner._inflight == {}  # and the path can be checked again
    finally:
        runner.close()


def test_a_caller_that_gives_up_leaves_the_check_to_end_on_its_own(monkeypatch):
    release = threading.Event()
    monkeypatch.setitem(checkers.CHECKERS, "slow", lambda dev, t: release.wait(10) and checkers.CheckResult(
        checkers.UP, "ok"))
    runner = CheckRunner()

    async def scenario() -> tuple[str, str]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(runner.check("/dev/sdx", "slow", 5.0), 0.05)
        pending = (await runner.check("/dev/sdx", "slow", 5.0)).state  # one check in flight per path
        release.set()
        while "/dev/sdx" in runner._inflight:
            await asyncio.sleep(0.01)
        return pending, (await runner.check("/dev/sdx", "slow", 5.0)).state

    try:
        assert asyncio.run(scenario()) == (checkers.PENDING, checkers.UP)
    finally:
        release.set()
        runner.close()


def test_the_device_state_is_read_with_the_check_when_asked(monkeypatch):
    from pymultipathd.paths import sysinfo

    seen: list[str] = []

    def read(self: sysinfo.KeptStates, dev: str) -> str:
        seen.append(threading.current_thread().name)
        return "blocked"

    monkeypatch.setattr(sysinfo.KeptStates, "read", read)
    runner = CheckRunner()
    try:
        assert asyncio.run(runner.check("/dev/sdx", "none", 1.0)).dev_state is None
        res = asyncio.run(runner.check("/dev/sdx", "none", 1.0, dev_state=True))
    finally:
        runner.close()
    assert (res.state, res.dev_state) == (checkers.UP, "blocked")
    assert len(seen) == 1 and seen[0].startswith("checker")


def test_sg_io_reuses_its_buffers_and_keeps_nothing_of_the_last_reply(monkeypatch):
    replies = []

    def ioctl(fd: int, req: int, hdr: sgio.SgIoHdr) -> int:
        cdb = ctypes.string_at(hdr.cmdp, hdr.cmd_len)
        replies.append((cdb, hdr.status, hdr.sb_len_wr, hdr.dxfer_len))
        if cdb[0] == 0x12:  # INQUIRY: 5 bytes of data, the rest of the allocation left (resid)
            ctypes.memmove(hdr.dxferp, b"ABCDE", 5)
            hdr.resid = hdr.dxfer_len - 5
        elif cdb == sgio.read10(0, 1):  # a CHECK CONDITION with sense data
            ctypes.memmove(hdr.sbp, fixed_sense(sgio.NOT_READY, 0x04, 0x0B), 18)
            hdr.status, hdr.sb_len_wr, hdr.info = sgio.CHECK_CONDITION, 18, 1
        return 0

    monkeypatch.setattr(sgio.fcntl, "ioctl", ioctl)
    failed = sgio.sg_io(-1, sgio.read10(0, 1))
    assert (failed.ok, failed.sense_key, failed.asc_ascq) == (False, sgio.NOT_READY, (0x04, 0x0B))
    assert sgio.sg_io(-1, sgio.TEST_UNIT_READY) is sgio.GOOD_NO_DATA  # nothing of the failed reply is left
    inq = sgio.sg_io(-1, sgio.inquiry(0x83, 64), data_len=64)
    assert (inq.ok, inq.data) == (True, b"ABCDE")
    assert [(c, s, n) for c, s, n, _ in replies] == [(sgio.read10(0, 1), 0, 0), (sgio.TEST_UNIT_READY, 0, 0),
                                                     (sgio.inquiry(0x83, 64), 0, 0)]
    assert [d for *_, d in replies] == [0, 0, 64]


def test_sg_io_buffers_are_each_threads_own(monkeypatch):
    seen: dict[str, int] = {}

    def ioctl(fd: int, req: int, hdr: sgio.SgIoHdr) -> int:
        seen[threading.current_thread().name] = hdr.sbp
        return 0

    monkeypatch.setattr(sgio.fcntl, "ioctl", ioctl)
    sgio.sg_io(-1, sgio.TEST_UNIT_READY)
    t = threading.Thread(target=sgio.sg_io, args=(-1, sgio.TEST_UNIT_READY), name="other")
    t.start()
    t.join()
    assert len(set(seen.values())) == 2


def test_kept_device_states_follow_a_device_that_took_the_name(tmp_path, monkeypatch):
    """The state attribute stays open between reads; one whose read fails (its device was removed, sysfs
    says ENODEV) is opened again by name, so the device now behind the name is read."""
    from pymultipathd import locations
    from pymultipathd.paths import sysinfo

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    attr = tmp_path / "block" / "sdz" / "device" / "state"
    attr.parent.mkdir(parents=True)
    attr.write_text("running\n")
    states = sysinfo.KeptStates()
    assert states.read("sdz") == "running"
    attr.write_text("blocked\n")
    assert states.read("sdz") == "blocked"  # read afresh through the same descriptor
    new = tmp_path / "new"
    new.write_text("offline\n")
    os.replace(new, attr)  # another device behind the name
    real = sysinfo.pread_page
    failed: list[int] = []
    monkeypatch.setattr(sysinfo, "pread_page", lambda fd: failed.append(fd) if not failed else real(fd))
    assert states.read("sdz") == "offline" and len(failed) == 1
    assert states.read("nosuch") == "running"  # no SCSI device: as sysinfo.dev_state
    states.close_all()
    assert states._fds == {}


def test_closing_answers_the_checks_still_queued(monkeypatch):
    """A stop drops the checks no thread has taken: their callers hear "pending" at once rather than wait
    for an answer that will not come; a check asked afterwards is not started."""
    release, ran = threading.Event(), []

    def hang(dev: str, t: float) -> checkers.CheckResult:
        ran.append(dev)
        release.wait(10)
        return checkers.CheckResult(checkers.UP, "ok")

    monkeypatch.setitem(checkers.CHECKERS, "hang", hang)
    runner = CheckRunner(max_threads=1)

    async def scenario() -> tuple[str, str, str]:
        first = asyncio.ensure_future(runner.check("/dev/sdx", "hang", 5.0))
        queued = asyncio.ensure_future(runner.check("/dev/sdy", "hang", 5.0))
        await asyncio.sleep(0.05)
        runner.close()
        late = await runner.check("/dev/sdz", "hang", 5.0)
        res = await queued
        release.set()
        return res.message, late.message, (await first).state

    try:
        queued, late, first = asyncio.run(scenario())
    finally:
        release.set()
    assert queued == late == "checks stopped (the daemon is stopping)"
    assert first == checkers.UP and ran == ["/dev/sdx"]


def test_the_sysfs_prioritizer_reads_through_descriptors_kept_per_path(tmp_path, monkeypatch):
    """detect_prio's prioritizer on ALUA paths reads two attributes at every check: through descriptors kept
    open like the device state's, read afresh each time, and closed when the path is forgotten."""
    from pymultipathd import locations

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    device = tmp_path / "block" / "sdx" / "device"
    device.mkdir(parents=True)
    (device / "access_state").write_text("active/optimized\n")
    (device / "preferred_path").write_text("0\n")
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    monkeypatch.setattr(sgio, "_sg_nodes", {})
    opened: list[str] = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    runner = CheckRunner()

    async def scenario() -> list[int | None]:
        prios = [(await runner.check("/dev/sdx", "fine", 5.0, "sysfs")).prio]
        (device / "access_state").write_text("standby\n")
        (device / "preferred_path").write_text("1\n")
        prios.append((await runner.check("/dev/sdx", "fine", 5.0, "sysfs")).prio)
        runner.forget("/dev/sdx")
        return prios

    try:
        assert asyncio.run(scenario()) == [50, 81]  # the second read saw the new values
        assert sorted(os.path.basename(p) for p in opened) == ["access_state", "preferred_path"]  # once each
        assert all(kept._fds == {} for kept in runner._alua.values())
    finally:
        runner.close()


def test_a_missing_attribute_reads_as_none_and_keeps_nothing(tmp_path, monkeypatch):
    from pymultipathd import locations
    from pymultipathd.paths import sysinfo

    monkeypatch.setattr(locations, "sysfs", lambda: str(tmp_path))
    kept = sysinfo.KeptAttribute("access_state")
    assert kept.read("sdq") is None and kept._fds == {}


def test_a_burst_of_quick_checks_runs_on_the_eager_threads_only(monkeypatch):
    """A round of hundreds of healthy paths is submitted at once; each check takes milliseconds, so the
    first few threads keep up. Starting a thread per queued check (up to the limit) cost the loop a start
    each and the round its context switches."""
    monkeypatch.setattr(checkers, "GROW_AFTER", 30.0)  # the backlog is gone long before this
    monkeypatch.setitem(checkers.CHECKERS, "fine", lambda dev, t: checkers.CheckResult(checkers.UP, "ok"))
    runner = CheckRunner(max_threads=32)

    async def burst() -> list[checkers.CheckResult]:
        return await asyncio.gather(*(runner.check(f"/dev/sd{i}", "fine", 5.0) for i in range(256)))

    try:
        results = asyncio.run(burst())
    finally:
        runner.close()
    assert all(r.state == checkers.UP for r in results)
    assert 1 <= runner._threads <= checkers.EAGER_THREADS


def test_a_backlog_that_lasts_grows_the_pool(monkeypatch):
    """Hung devices hold the eager threads: the checks queued behind them get more pool threads, each
    GROW_AFTER while the backlog lasts, up to max_threads and no further."""
    monkeypatch.setattr(checkers, "GROW_AFTER", 0.02)
    release = threading.Event()
    monkeypatch.setitem(checkers.CHECKERS, "hang", lambda dev, t: release.wait(30) and checkers.CheckResult(
        checkers.UP, "late"))
    limit = 3 * checkers.EAGER_THREADS + 1  # the pool doubles twice, then stops one thread further
    runner = CheckRunner(max_threads=limit)

    async def scenario() -> tuple[int, int, int]:
        for i in range(limit + 5):
            runner.submit(f"/dev/sd{i}", "hang", 20.0, lambda token, outcome: None, None)
        eager = runner._threads
        deadline = time.monotonic() + 10
        while runner._busy < limit and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # several more looks at the backlog: the limit holds
        return eager, runner._busy, runner._threads

    try:
        eager, busy, threads = asyncio.run(scenario())
    finally:
        release.set()
        runner.close()
    assert eager == checkers.EAGER_THREADS
    assert busy == threads == limit
