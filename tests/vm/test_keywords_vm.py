"""Keywords that change how the daemon and its client behave, each proved by what the system shows (issue 19):
max_fds by the kernel's limits of the daemon's process, uxsock_timeout by how long the client waits for a
daemon that does not answer, log_checker_err by the journal while a path stays down."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import time

import pytest

from tests.vm.pympd import CONF, UNIT, Pympd, config
from tests.vm.sysutil import SavedFiles, read_sysfs, run, settle, udev_wwid, wait_for


def _main_pid() -> str:
    return run(["systemctl", "show", "-p", "MainPID", "--value", UNIT]).strip()


def _nofile(pid: str) -> tuple[int, int]:
    limits = read_sysfs(f"/proc/{pid}/limits").splitlines()
    line = next(ln for ln in limits if ln.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def _reconfigure(d: Pympd, conf: str) -> None:
    with open(CONF, "w") as f:
        f.write(conf)
    d.cmd("reconfigure")


def test_max_fds_sets_the_daemons_open_file_limit():
    with Pympd(config("greedy", max_fds=4096)) as d:
        pid = _main_pid()
        assert _nofile(pid) == (4096, 4096)
        _reconfigure(d, config("greedy", max_fds="max"))
        nr_open = int(read_sysfs("/proc/sys/fs/nr_open"))
        assert _nofile(pid) == (nr_open, nr_open)


@pytest.mark.parametrize("ms", [1500, 4000])
def test_the_client_waits_uxsock_timeout_for_a_daemon_that_does_not_answer(ms):
    # a listener that takes connections and never replies, under a name of its own (the daemon's stays
    # untouched); the client finds it through MULTIPATH_SOCKET_NAME
    name = f"/pymp-test/silent-{ms}"
    saved = SavedFiles((CONF,))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.bind("\0" + name)
            silent.listen(8)
            with open(CONF, "w") as f:
                f.write(config("greedy", uxsock_timeout=ms))
            env = {k: v for k, v in os.environ.items() if k != "PYMULTIPATH_CLIENT_TIMEOUT"}
            env["MULTIPATH_SOCKET_NAME"] = "@" + name
            t0 = time.monotonic()
            p = subprocess.run(["pymultipathd", "show", "paths"], capture_output=True, text=True, env=env,
                               timeout=120)
            waited = time.monotonic() - t0
    finally:
        saved.restore()
    assert p.returncode == 1 and "timed out" in p.stderr, p.stderr
    # a behaviour bound, not a benchmark: the wait is the configured one, not the client's 60 s default
    assert ms / 1000 <= waited < ms / 1000 + 10, f"waited {waited:.1f} s with uxsock_timeout {ms}"


def _journal_since(t: float) -> list[str]:
    """The daemon's journal lines from `t` on (the whole second after it: --since takes whole seconds, and
    rounding down would take in lines from before)."""
    return run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat",
                f"--since=@{math.ceil(t)}"]).splitlines()


def test_log_checker_err_always_says_a_down_path_at_each_check_and_once_only_at_first(iscsi_bed):
    bed = iscsi_bed(luns=1, size_mb=8)
    a, _ = bed.paths(0)
    with Pympd(config("greedy", log_checker_err="always")) as d:
        name = d.wait_map(a.wwid)
        bed.cut(0)  # the link watch fails the path at once; its checks then keep finding it down
        wait_for(lambda: d.path_states(name).get(a.dev, ("",))[0] == "failed", 90, f"{a.dev} failed")
        said = f"{a.dev}: still down: "
        # the first checks wait in the kernel until the session gives up (replacement_timeout, 5 s)
        t0 = time.time()
        wait_for(lambda: any(ln.startswith(said) for ln in _journal_since(t0)), 60, "a check finding it down")
        t1 = time.time()
        time.sleep(9)  # polling_interval 2 (pympd.config): four checks or so
        again = [ln for ln in _journal_since(t1) if ln.startswith(said)]
        assert len(again) >= 2, f"a down path's checker message not repeated: {again}"
        _reconfigure(d, config("greedy", log_checker_err="once"))
        t2 = time.time()
        time.sleep(9)
        again = [ln for ln in _journal_since(t2) if ln.startswith(said)]
        assert not again, f"log_checker_err once repeated it: {again}"
        bed.restore(0)


def test_san_path_err_holds_a_flapping_path_out_for_the_recovery_time(iscsi_bed):
    from tests.vm import dm

    bed = iscsi_bed(luns=1, size_mb=8)
    a, _ = bed.paths(0)
    recovery = 20
    conf = config("greedy", san_path_err_threshold=1, san_path_err_forget_rate=100,
                  san_path_err_recovery_time=recovery)
    with Pympd(conf) as d:
        name = d.wait_map(a.wwid)

        def kernel_state() -> str:
            return dm.statuses()[name].path(a.devno).state

        def bounce() -> None:
            bed.cut(0)
            wait_for(lambda: kernel_state() == "F", 90, f"{a.dev} failed")
            bed.restore(0)

        bounce()  # the first failure is within the threshold: back at once
        wait_for(lambda: kernel_state() == "A", 60, f"{a.dev} reinstated after its first failure")
        bounce()  # the second is past it: held out although its checker finds it up
        wait_for(lambda: d.path_states(name).get(a.dev, ("", ""))[1] == "delayed", 60, f"{a.dev} delayed")
        t_held = time.monotonic()
        while time.monotonic() - t_held < recovery - 5:
            assert kernel_state() == "F", f"{a.dev} reinstated while held back"
            time.sleep(1)
        wait_for(lambda: kernel_state() == "A", 60, f"{a.dev} reinstated after san_path_err_recovery_time")


def test_reassign_maps_moves_a_device_built_on_a_path_onto_the_map(iscsi_bed):
    bed = iscsi_bed(luns=1, size_mb=8)
    a, _ = bed.paths(0)
    on_path = "pymp-on-path"  # what LVM makes when it activates a volume on /dev/sdX before the map exists
    with Pympd(config("greedy")) as d:
        name = d.wait_map(a.wwid)
        map_devno = run(["dmsetup", "info", "-c", "--noheadings", "-o", "major,minor", "--separator", ":",
                         name]).strip()
        run(["dmsetup", "create", on_path, "--table", f"0 2048 linear {a.devno} 0"])
        try:
            _reconfigure(d, config("greedy"))  # reassign_maps no (the default): left on the path
            assert run(["dmsetup", "table", on_path]).split()[3] == a.devno
            _reconfigure(d, config("greedy", reassign_maps="yes"))
            assert run(["dmsetup", "table", on_path]).split()[3] == map_devno
            major, minor = map_devno.split(":")
            assert f"({major}, {minor})" in run(["dmsetup", "deps", on_path])
            run(["dd", f"if=/dev/mapper/{on_path}", "of=/dev/null", "bs=4096", "count=16", "iflag=direct"])
            assert f"{on_path} was built on a path of the map" in "\n".join(_journal_since(time.time() - 60))
        finally:
            run(["dmsetup", "remove", "--retry", on_path], check=False)


HIDE_SERIAL = "/run/udev/rules.d/61-pymp-hide-serial.rules"
REVEAL = "/run/pymp-reveal-serial"


def test_retrigger_tries_asks_udev_again_for_a_missing_wwid(iscsi_bed):
    # a rule after udev's own (60-persistent-storage) takes the WWID away, as a udev that timed out on the
    # disk would leave it, until the test says otherwise
    os.makedirs(os.path.dirname(HIDE_SERIAL), exist_ok=True)
    with open(HIDE_SERIAL, "w") as f:
        f.write('ACTION=="add|change", SUBSYSTEM=="block", ENV{DEVTYPE}=="disk", ENV{ID_VENDOR}=="LIO-ORG", '
                f'TEST!="{REVEAL}", ENV{{ID_SERIAL}}=""\n')
    run(["udevadm", "control", "--reload"])
    try:
        bed = iscsi_bed(luns=1, size_mb=8)
        a, _ = bed.paths(0)
        assert a.wwid in (None, ""), f"{a.dev} has a WWID despite the rule: {a.wwid}"
        with Pympd(config("greedy", retrigger_tries=0)) as d:
            time.sleep(8)
            assert d.maps() == {}
            assert not [ln for ln in _journal_since(time.time() - 10) if "change uevent" in ln]
        with Pympd(config("greedy", retrigger_tries=3, retrigger_delay=4)) as d:
            t0 = time.time()
            wait_for(lambda: any(f"{a.dev}: no WWID from udev; change uevent 1 of 3" in ln
                                 for ln in _journal_since(t0 - 5)), 60, "the first retrigger")
            time.sleep(1)  # the uevent is written just after the line is logged; then udev works on it
            settle()
            assert udev_wwid(a.dev) in (None, "") and d.maps() == {}, "the first retrigger gave a WWID"
            open(REVEAL, "w").close()  # udev gives the WWID from the next event on
            wwid = wait_for(lambda: next(iter(d.maps().values()), None), 60, "a map once udev gave the WWID")
            assert wwid.startswith("36001405")
            said = [ln for ln in _journal_since(t0 - 5) if "change uevent" in ln]
            assert any("change uevent 2 of 3" in ln for ln in said), said
    finally:
        for f in (HIDE_SERIAL, REVEAL):
            if os.path.exists(f):
                os.unlink(f)
        run(["udevadm", "control", "--reload"])
