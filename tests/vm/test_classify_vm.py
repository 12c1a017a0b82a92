"""The classifier against the real system: udev rules, `pymultipath -u`, systemd timers, scsi_debug, iSCSI,
and Debian's `multipath -u` 0.9.4 as the reference (issue 5).

The daemon is not running here: a stand-in listener on its abstract socket (bench_udev.StandInDaemon) makes
`-u` see a running daemon, as upstream's `-u` would, without anything assembling maps; with it runs the
daemon's helper service, which answers our `-u` as a running pymultipathd does (pymultipathd.udevlink).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.vm import bench_udev
from tests.vm.bench_udev import FRONT, OURS, UPSTREAM, MultipathState, StandInDaemon, device_path_value
from tests.vm.sysutil import CommandError, read_sysfs, run, settle, wait_for, write_sysfs

pytestmark = pytest.mark.vm

RULES = "/etc/udev/rules.d/62-pymultipath.rules"
MNT = "/run/pymp-classify-mnt"


# --- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture
def stand_in_daemon() -> Iterator[StandInDaemon]:
    with StandInDaemon() as d:
        yield d


@pytest.fixture
def mp_state() -> Iterator[Callable[..., MultipathState]]:
    """Factory: mp_state(mode, timeout=None, wwids=[]) writes /etc/multipath.conf (+ wwids); all restored,
    wait files removed and wait timers stopped after the test. Request it BEFORE the device fixtures so
    the devices go first."""
    made: list[MultipathState] = []

    def make(mode: str, timeout: int | None = None, wwids: list[str] | None = None) -> MultipathState:
        st = MultipathState(mode, timeout, list(wwids or []))
        st.__enter__()
        made.append(st)
        return st

    yield make
    for st in reversed(made):
        st.__exit__(None, None, None)


# --- helpers --------------------------------------------------------------------------------------------

def props(dev: str) -> dict[str, str]:
    """The udev database entry of /dev/DEV."""
    out = run(["udevadm", "info", "--query=property", f"--name=/dev/{dev}"])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def state_of(dev: str) -> str:
    """What the rules made of a disk: "claimed", "waiting" (smart maybe) or "free" (left to the system),
    checked for consistency between the properties the rules set."""
    p = props(dev)
    dmp, ready = p.get("DM_MULTIPATH_DEVICE_PATH"), p.get("SYSTEMD_READY")
    wait = p.get("FIND_MULTIPATHS_WAIT_UNTIL")
    if dmp == "1" and ready == "0":
        if p.get("ID_FS_TYPE") == "mpath_member":
            return "claimed"
        if wait and wait != "0":
            return "waiting"
        raise AssertionError(f"{dev}: DM_MULTIPATH_DEVICE_PATH=1 but neither mpath_member nor a wait: {p}")
    if dmp == "0" and ready != "0":
        return "free"
    raise AssertionError(f"{dev}: unexpected udev state {dmp=} {ready=} {wait=}: {p}")


def trigger(*devs: str) -> None:
    run(["udevadm", "trigger", "--action=change", *(f"/dev/{d}" for d in devs)])
    settle()


def delete_disk(dev: str) -> None:
    write_sysfs(f"/sys/block/{dev}/device/delete", "1")
    wait_for(lambda: not os.path.exists(f"/sys/block/{dev}"), 60, f"{dev} to go away")


def rescan(hctl: str) -> str:
    """Scan one H:C:T:L back in (a fresh "add" uevent); return its new block device name."""
    host, chan, tgt, lun = hctl.split(":")
    write_sysfs(f"/sys/class/scsi_host/host{host}/scan", f"{chan} {tgt} {lun}")
    blk = wait_for(lambda: glob.glob(f"/sys/class/scsi_device/{hctl}/device/block/*"), 60,
                   f"SCSI device {hctl} to come back")
    settle()
    return os.path.basename(blk[0])


def timer_active(dev: str) -> bool:
    unit = f"cancel-multipath-wait-{dev}.timer"
    return run(["systemctl", "is-active", unit], check=False).strip() in ("active", "activating")


def device_unit_active(dev: str) -> bool:
    """systemd's view: SYSTEMD_READY=0 keeps dev-DEV.device inactive (nothing mounts or activates it)."""
    return run(["systemctl", "is-active", f"dev-{dev}.device"], check=False).strip() == "active"


def wait_device_unit(dev: str, active: bool) -> None:
    """systemd reads udev's events on its own schedule: wait for its device unit to match."""
    wait_for(lambda: device_unit_active(dev) == active, 60,
             f"dev-{dev}.device to be {'active' if active else 'inactive'}")


# modes -> (two-path LUN, single-path LUN) as the rules must leave them; strict has LUN 0 in the wwids file
EXPECT = {
    "strict": ("claimed", "free"),
    "greedy": ("claimed", "claimed"),
    "off": ("claimed", "claimed"),
    "on": ("claimed", "free"),
}


# --- the rules file -------------------------------------------------------------------------------------

_RULE_ERROR = re.compile(r"^(/\S+\.rules):(\d+)\s+(.*)$")


def rule_errors(output: str, rules_file: str) -> list[str]:
    """Lines `udevadm test` logs against a line of `rules_file` (systemd 252 has no `udevadm verify`)."""
    return [m.group(0) for m in map(_RULE_ERROR.match, output.splitlines()) if m and m.group(1) == rules_file]


def udevadm_test(dev: str) -> str:
    """`udevadm test` of an add event for DEV: rules parsed, IMPORT{program} run, RUN only listed."""
    p = subprocess.run(["udevadm", "test", "--action=add", f"/sys/class/block/{dev}"], capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def test_rules_file_parses_without_errors(mp_state, stand_in_daemon, scsi_debug):
    mp_state("greedy")
    sd = scsi_debug(luns=1, paths=1)
    dev = sd.paths[0].dev
    out = udevadm_test(dev)
    assert rule_errors(out, RULES) == [], out
    # the test run reached our helper (the compiled front, as installed) and acted on its answer
    assert f"{FRONT} -u {dev}" in out, out
    assert "DM_MULTIPATH_DEVICE_PATH=1" in out, out
    assert "ID_FS_TYPE=mpath_member" in out, out

    # the check above can fail: a broken rule file next to ours is reported, line and all
    broken = "/etc/udev/rules.d/99-pymp-broken-selftest.rules"
    with open(broken, "w") as f:
        f.write('SUBSYSTEM=="block", ENV{FOO}=="x", BOGUSKEY="1"\n')
    try:
        out = udevadm_test(dev)
    finally:
        os.unlink(broken)
    assert rule_errors(out, broken), out


# --- modes with scsi_debug and iSCSI ---------------------------------------------------------------------

def _single_path_by_delete(paths: list) -> str:
    """Delete all but the first path of a LUN and re-classify the one left; return its name."""
    keep, *gone = paths
    for p in gone:
        delete_disk(p.dev)
    settle()
    trigger(keep.dev)
    return keep.dev


@pytest.mark.parametrize("mode", sorted(EXPECT))
def test_modes_scsi_debug(mode, mp_state, stand_in_daemon, scsi_debug):
    st = mp_state(mode, timeout=5)
    sd = scsi_debug(luns=2, paths=2)
    groups = sd.by_wwid()
    two = [p for p in sd.paths if p.lun == 0]
    one = [p for p in sd.paths if p.lun == 1]
    assert len(groups) == 2 and len(two) == 2 and len(one) == 2
    if mode == "strict":
        st.write_wwids([two[0].wwid])
    # On "add" the first path of a LUN may not see its sibling yet (mode on: left free). The daemon sends
    # "change" to the paths of the map it makes; the stand-in makes no map, so send it here.
    trigger(*(p.dev for p in sd.paths))
    single = _single_path_by_delete(one)
    want_two, want_one = EXPECT[mode]
    assert {p.dev: state_of(p.dev) for p in two} == {p.dev: want_two for p in two}
    assert state_of(single) == want_one
    # systemd's view follows: the free disk's device unit comes up, a claimed one's stays down
    wait_device_unit(single, want_one == "free")
    assert not device_unit_active(two[0].dev)
    # udev's rule runs got their answers from the daemon's helper service, not from deciding alone
    assert stand_in_daemon.service.answered >= len(sd.paths) and stand_in_daemon.service.declined == 0


@pytest.mark.parametrize("mode", sorted(EXPECT))
def test_modes_iscsi(mode, mp_state, stand_in_daemon, iscsi_bed):
    st = mp_state(mode, timeout=5)
    bed = iscsi_bed(luns=2)
    two, one = bed.paths(0), bed.paths(1)
    if mode == "strict":
        st.write_wwids([two[0].wwid])
    trigger(*(p.dev for p in two + one))  # as the daemon would after making the map (see above)
    single = _single_path_by_delete(one)
    want_two, want_one = EXPECT[mode]
    assert {p.dev: state_of(p.dev) for p in two} == {p.dev: want_two for p in two}
    assert state_of(single) == want_one


def test_without_daemon_nothing_is_claimed(mp_state, scsi_debug):
    """Rule daemon_not_running: with no listener on the socket every disk is left to the system."""
    mp_state("greedy")
    sd = scsi_debug(luns=1, paths=2)
    assert {p.dev: state_of(p.dev) for p in sd.paths} == {p.dev: "free" for p in sd.paths}


# --- smart mode: the wait, its timer and its two endings --------------------------------------------------

def _fresh_single(sd, lun: int, keep=None) -> str:
    """LUN `lun` gone from every host, then scanned back on one host only (`keep`'s, default the first): one
    path, fresh "add"."""
    paths = [p for p in sd.paths if p.lun == lun]
    for p in paths:
        delete_disk(p.dev)
    settle()
    return rescan((keep or paths[0]).hctl)


def test_smart_single_path_waits_then_is_released_and_mountable(mp_state, stand_in_daemon, scsi_debug):
    mp_state("smart", timeout=15)  # short, yet surely longer than a rescan and settle under a busy TCG guest
    sd = scsi_debug(luns=2, paths=2)
    lun1 = [p for p in sd.paths if p.lun == 1]
    # scsi_debug keeps some paths in ALUA standby (which ones depends on host numbers, so on earlier tests):
    # make the file system through a path that takes writes, and keep that path for the mount below
    good = None
    for p in lun1:
        try:
            run(["mkfs.ext4", "-q", "-F", p.node], timeout=120)
        except CommandError:
            continue
        good = p
        break
    assert good is not None, f"no path of LUN 1 accepts writes: {lun1}"
    # the two-path LUN ends claimed (once its first path's wait is over at the latest)
    two = [p.dev for p in sd.paths if p.lun == 0]
    wait_for(lambda: all(state_of(d) == "claimed" for d in two), 60, f"{two} to be claimed")

    dev = _fresh_single(sd, 1, keep=good)
    assert state_of(dev) == "waiting"
    assert timer_active(dev)
    assert not device_unit_active(dev)
    # the timer fires, udev runs the helper again, the wait is over: released to the system
    wait_for(lambda: props(dev).get("DM_MULTIPATH_DEVICE_PATH") == "0", 120, f"{dev} to be released")
    settle()
    assert state_of(dev) == "free"
    assert props(dev).get("ID_FS_TYPE") == "ext4"
    wait_device_unit(dev, True)
    # systemd mounts it (systemd-mount waits for the device unit, which SYSTEMD_READY=0 would hold back)
    os.makedirs(MNT, exist_ok=True)
    try:
        run(["systemd-mount", "--no-ask-password", f"/dev/{dev}", MNT], timeout=120)
        assert os.path.ismount(MNT)
        assert read_sysfs(f"/sys/block/{dev}/dev") in run(["findmnt", "-n", "-o", "MAJ:MIN", MNT])
    finally:
        run(["systemd-umount", MNT], check=False, timeout=120)
        wait_for(lambda: not os.path.ismount(MNT), 60, f"{MNT} to be unmounted")
        os.rmdir(MNT)
    # a later event keeps it released (rule `released`), even though the wait file is gone
    trigger(dev)
    assert state_of(dev) == "free"


def test_smart_second_path_inside_the_wait_claims_both(mp_state, stand_in_daemon, scsi_debug):
    # a long wait so the second path surely arrives inside it; nothing here waits for it to run out
    mp_state("smart", timeout=600)
    sd = scsi_debug(luns=2, paths=2)
    lun1 = [p for p in sd.paths if p.lun == 1]
    for p in lun1:
        delete_disk(p.dev)
    settle()
    first = rescan(lun1[0].hctl)
    assert state_of(first) == "waiting"
    assert timer_active(first)
    assert device_path_value(OURS, first) == "2"

    second = rescan(lun1[1].hctl)
    assert state_of(second) == "claimed"
    # the daemon would now make the map and send "change" to its paths; the stand-in does not, so do it
    trigger(first)
    assert state_of(first) == "claimed"
    # claimed: the rules stopped the wait's timer
    wait_for(lambda: not timer_active(first), 30, f"cancel-multipath-wait-{first}.timer to stop")


WAIT_ACTION_RULES = "/etc/udev/rules.d/61-pymp-wait-action.rules"
VG = "pympvg"


def _lvm(*args: str, dev: str, check: bool = True) -> str:
    """An LVM command restricted to one disk: both paths of a LUN carry the same PV, so without --devices
    LVM sees duplicates (and would pick either)."""
    return run(["lvm", *args, "--devices", f"/dev/{dev}"], timeout=120, check=check)


def test_smart_release_by_add_event_autoactivates_lvm(mp_state, stand_in_daemon, scsi_debug):
    """With the wait action set to "add" by a local rule, the released path's VG is autoactivated by LVM's own
    udev rules (they act on "add" events only), which is why upstream uses "add" there."""
    mp_state("smart", timeout=15)
    with open(WAIT_ACTION_RULES, "w") as f:
        f.write('SUBSYSTEM=="block", KERNEL=="sd*", ENV{.PYMULTIPATH_WAIT_ACTION}="add"\n')
    run(["udevadm", "control", "--reload"])
    sd = scsi_debug(luns=2, paths=2)
    good = None
    try:
        for p in (p for p in sd.paths if p.lun == 1):  # a path that takes writes (see ALUA standby above)
            try:
                _lvm("pvcreate", "-q", "-y", "-ff", p.node, dev=p.dev)
            except CommandError:
                continue
            good = p
            break
        assert good is not None, "no path of LUN 1 accepts writes"
        _lvm("vgcreate", "-q", VG, good.node, dev=good.dev)
        _lvm("lvcreate", "-q", "-y", "-n", "lv", "-l", "100%FREE", VG, dev=good.dev)
        _lvm("vgchange", "-q", "-an", VG, dev=good.dev)
        # forget that this VG was activated once in this boot, or autoactivation would skip it
        for f in glob.glob(f"/run/lvm/vgs_online/{VG}") + glob.glob("/run/lvm/pvs_online/*"):
            os.unlink(f)

        dev = _fresh_single(sd, 1, keep=good)
        assert state_of(dev) == "waiting"
        assert not os.path.exists(f"/dev/{VG}/lv")
        unit = f"cancel-multipath-wait-{dev}.service"
        exec_start = run(["systemctl", "show", "-p", "ExecStart", unit])
        assert "--action=add" in exec_start, exec_start
        wait_for(lambda: props(dev).get("DM_MULTIPATH_DEVICE_PATH") == "0", 120, f"{dev} to be released")
        settle()
        assert state_of(dev) == "free"
        assert props(dev).get("ID_FS_TYPE") == "LVM2_member"
        wait_for(lambda: os.path.exists(f"/dev/{VG}/lv"), 120, f"LVM to autoactivate {VG} on {dev}")
        _lvm("vgchange", "-q", "-an", VG, dev=dev)
    finally:
        os.unlink(WAIT_ACTION_RULES)
        run(["udevadm", "control", "--reload"])
        run(["dmsetup", "remove", "--retry", f"{VG}-lv"], check=False, timeout=60)


# --- differential against Debian's multipath -u ------------------------------------------------------------

def _disks() -> list[str]:
    return sorted(os.path.basename(d) for d in glob.glob("/sys/block/sd*")) + ["vda"]


def _compare(devs: list[str]) -> dict[str, tuple[str, str]]:
    """dev -> (ours, upstream's) DM_MULTIPATH_DEVICE_PATH, both asked about the same device in a row."""
    return {d: (device_path_value(OURS, d), device_path_value(UPSTREAM, d)) for d in devs}


@pytest.mark.parametrize("mode", ["strict", "greedy", "smart"])
def test_differential_against_multipath_u(mode, mp_state, stand_in_daemon, scsi_debug):
    st = mp_state(mode, timeout=600)
    sd = scsi_debug(luns=3, paths=2)
    lun0 = [p for p in sd.paths if p.lun == 0]
    if mode == "strict":
        st.write_wwids([lun0[0].wwid])
        trigger(*(p.dev for p in sd.paths))
    # LUN 2 with one path, added fresh: in smart mode it waits (600 s: still waiting while we compare)
    single = _fresh_single(sd, 2)
    devs = _disks()
    got = _compare(devs)
    assert {d: o for d, (o, _) in got.items()} == {d: u for d, (_, u) in got.items()}, got
    # the comparison means something: the modes give different answers on these disks
    expect_single = {"strict": "0", "greedy": "1", "smart": "2"}[mode]
    assert got[single][0] == expect_single, got
    assert got["vda"] == ("0", "0")
    if mode == "smart":
        # the same after the wait ran out (deadline moved into the past for both)
        wait_file = f"{bench_udev.TIMER_DIR}/{read_sysfs(f'/sys/block/{single}/dev')}"
        past = time.time() - 1
        os.utime(wait_file, (past, past))
        after = _compare([single])
        assert after[single] == ("0", "0"), after


@pytest.mark.parametrize("mode", ["on", "off"])
def test_documented_differences_on_off(mode, mp_state, stand_in_daemon, scsi_debug):
    """docs/classification.md: upstream's -u claims neither on nor off paths outside the wwids file (it acts
    like strict), while its daemon does; ours claims the two-path LUN in on and every path in off."""
    mp_state(mode, timeout=5)
    sd = scsi_debug(luns=2, paths=2)
    single = _single_path_by_delete([p for p in sd.paths if p.lun == 1])
    two = [p.dev for p in sd.paths if p.lun == 0]
    got = _compare([*two, single])
    assert all(got[d] == ("1", "0") for d in two), got
    assert got[single] == ({"on": "0", "off": "1"}[mode], "0"), got
