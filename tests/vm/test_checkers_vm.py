"""Checkers and prioritizers against real targets, judged by Debian's own multipath-tools 0.9.4.

One map is made with dmsetup (uuid mpath-<wwid>: both list only such maps), one path per path group, so the
group's priority that `-ll` prints is its path's priority. For each checker/prioritizer pair, Debian's
`multipath -ll` and `pymultipath -ll` read the same /etc/multipath.conf (an overrides section, which beats
the built-in table) and run the same checker and prioritizer once on every path: their verdicts (ready,
ghost, faulty, ...) and priorities must be the same.

The bed's states:
  - LIO over iSCSI, with the LUN's target port group put in each ALUA access state through configfs
    (active/optimized, active/non-optimized, standby, unavailable): the kernel's ALUA handler is attached,
    so the sysfs prioritizer reads real access states, and the target answers TEST UNIT READY with NOT READY
    and the standby or unavailable ASC in those states.
  - scsi_debug with three hosts: its ALUA port group state follows the host number (0 optimized,
    1 non-optimized, 2 standby, host number modulo 3), no ALUA handler attached; then one path set offline,
    and one whose logical unit is stopped (NOT READY to TEST UNIT READY and reads).
Vendor checkers (rdac, emc_clariion, hp_sw) on targets without their vendor pages must agree too (rdac and
emc_clariion: "checker not supported", undef, the path left as it is).
"""

from __future__ import annotations

import glob
import re
import subprocess

import pytest

from tests.vm.sysutil import SavedFiles, read_sysfs, run, settle, udev_wwid, wait_for, write_sysfs

CONF = "/etc/multipath.conf"
# (path_checker, prio, extra overrides)
PAIRS = [
    ("tur", "alua", ""),
    ("tur", "sysfs", ""),
    ("readsector0", "const", ""),
    ("directio", "alua", "\tprio_args exclusive_pref_bit\n"),
    ("hp_sw", "hp_sw", ""),
    ("rdac", "rdac", ""),
    ("emc_clariion", "emc", ""),
    ("tur", "weightedpath", '\tprio_args "hbtl [0-9]+:0:0:0 7"\n'),
]
ALUA_STATES = {"0": "active/optimized", "1": "active/non-optimized", "2": "standby", "3": "unavailable"}
MAP = "pymp-chk"


def _conf(checker: str, prio: str, extra: str) -> str:
    return ("defaults {\n\tuser_friendly_names no\n}\nblacklist {\n\tdevnode \"^vd[a-z]\"\n}\n"
            f"overrides {{\n\tpath_checker {checker}\n\tprio {prio}\n\tdetect_prio no\n"
            f"\tdetect_checker no\n{extra}}}\n")


def _create_map(dev: str, sectors: int, devnos: list[str]) -> None:
    """The map, one path per group, with the uuid multipath tools list (mpath-<wwid>)."""
    groups = " ".join(f"round-robin 0 1 1 {d} 1" for d in devnos)
    subprocess.run(["dmsetup", "create", MAP, "--uuid", f"mpath-{udev_wwid(dev)}", "--table",
                    f"0 {sectors} multipath 0 0 {len(devnos)} 1 {groups}"], check=True)


def parse_ll(text: str) -> dict[str, tuple[str, int | None]]:
    """dev -> (checker word, priority of its group) from `multipath -ll` style output."""
    found: dict[str, tuple[str, int | None]] = {}
    prio: int | None = None
    for line in text.splitlines():
        g = re.search(r"policy=.* prio=(-?\d+)", line)
        if g:
            prio = int(g.group(1))
            continue
        p = re.search(r"[|`]- (\d+:\d+:\d+:\d+) (\S+) +\d+:\d+ +(.*)$", line)
        if p:
            words = p.group(3).split()
            found[p.group(2)] = (" ".join(words[1:-1]), prio)  # between the dm state and the device state
    return found


def _both(devs: list[str]) -> tuple[dict, dict, str]:
    ours = run(["pymultipath", "-ll", MAP], check=False, timeout=120)
    theirs = subprocess.run(["multipath", "-ll", MAP], capture_output=True, text=True, timeout=120).stdout
    return parse_ll(ours), parse_ll(theirs), f"--- pymultipath -ll\n{ours}--- multipath -ll\n{theirs}"


def _compare(devs: list[str], label: str) -> list[str]:
    problems = []
    for checker, prio, extra in PAIRS:
        with open(CONF, "w") as f:
            f.write(_conf(checker, prio, extra))
        ours, theirs, shown = _both(devs)
        if set(theirs) != set(devs):
            problems.append(f"{label} {checker}/{prio}: upstream listed {sorted(theirs)}, "
                            f"not {devs}\n{shown}")
            continue
        for dev in devs:
            if ours.get(dev) != theirs[dev]:
                problems.append(f"{label} {checker}/{prio} {dev}: ours {ours.get(dev)} upstream {theirs[dev]}"
                                f"\n{shown}")
    return problems


def _tur(dev: str) -> None:
    subprocess.run(["sg_turs", f"/dev/{dev}"], capture_output=True, timeout=60)


@pytest.fixture
def saved_conf():
    saved = SavedFiles((CONF,))
    yield
    saved.restore()


def test_lio_alua_states_checked_and_prioritized_as_upstream(iscsi_bed, saved_conf):
    bed = iscsi_bed(luns=1)
    paths = bed.paths(0)
    devs = [p.dev for p in paths]
    gp = glob.glob("/sys/kernel/config/target/core/*/lun0/alua/default_tg_pt_gp")[0]
    _create_map(devs[0], bed.size_sectors(), [p.devno for p in paths])
    problems = []
    try:
        settle()
        # the kernel's ALUA handler, as a map with hardware_handler "1 alua" would attach it: sysfs's
        # access_state (the sysfs prioritizer's source) exists only with it
        run(["modprobe", "scsi_dh_alua"])
        for d in devs:
            if read_sysfs(f"/sys/block/{d}/device/dh_state") != "alua":
                write_sysfs(f"/sys/block/{d}/device/dh_state", "alua")
        for code, state in ALUA_STATES.items():
            write_sysfs(f"{gp}/alua_access_state", code)
            for dev in devs:  # the unit attention that announces the change, then the handler's update
                _tur(dev)
            wait_for(lambda s=state: all(read_sysfs(f"/sys/block/{d}/device/access_state") == s
                                         for d in devs),
                     60, f"the kernel's ALUA handler to see {state}")
            problems += _compare(devs, f"LIO {state}:")
    finally:
        write_sysfs(f"{gp}/alua_access_state", "0")
        run(["dmsetup", "remove", MAP], check=False)
    assert not problems, "\n\n".join(problems)


def test_scsi_debug_port_groups_and_an_offline_path_as_upstream(scsi_debug, saved_conf):
    sd = scsi_debug(luns=1, paths=3)
    devs = [p.dev for p in sd.paths]
    states = {p.dev: int(p.hctl.split(":")[0]) % 3 for p in sd.paths}
    assert sorted(states.values()) == [0, 1, 2], f"three hosts in a row give each ALUA state once: {states}"
    sectors = int(read_sysfs(f"/sys/block/{devs[0]}/size"))
    _create_map(devs[0], sectors, [p.devno for p in sd.paths])
    problems = []
    try:
        settle()
        problems += _compare(devs, "scsi_debug:")
        # a path names the map that holds it: /dev/sdX and major:minor in both tools; upstream reads a bare
        # kernel name as a map name (and lists nothing), ours as the path too
        for arg in (f"/dev/{devs[1]}", sd.paths[2].devno):
            ours = parse_ll(run(["pymultipath", "-ll", arg], timeout=120))
            theirs = parse_ll(subprocess.run(["multipath", "-ll", arg], capture_output=True, text=True,
                                             timeout=120).stdout)
            if not set(ours) == set(theirs) == set(devs):
                problems.append(f"-ll {arg}: ours listed {sorted(ours)}, upstream {sorted(theirs)}")
        if set(parse_ll(run(["pymultipath", "-ll", devs[0]], timeout=120))) != set(devs):
            problems.append(f"-ll {devs[0]}: ours did not list the map that holds {devs[0]}")
        standby = next(p for p in sd.paths if states[p.dev] == 2)
        sd.offline(standby)
        problems += _compare(devs, "scsi_debug with one path offline:")
        with open(CONF, "w") as f:  # and the verdict ours reports for the offline path is "down"
            f.write(_conf("tur", "const", ""))
        assert parse_ll(run(["pymultipath", "-ll", MAP], timeout=120))[standby.dev][0] == "faulty"
        sd.online(standby)
        # a stopped logical unit (START STOP UNIT, stop): NOT READY, initializing command required (04/02)
        # to TEST UNIT READY and to reads, on that path only; hp_sw takes it for a passive controller
        stopped = next(p for p in sd.paths if states[p.dev] == 1)
        run(["sg_start", "--stop", f"/dev/{stopped.dev}"])
        try:
            tur = subprocess.run(["sg_turs", f"/dev/{stopped.dev}"], capture_output=True, text=True,
                                 timeout=60)
            assert tur.returncode != 0, f"sg_start --stop left {stopped.dev} ready: {tur.stdout}{tur.stderr}"
            problems += _compare(devs, "scsi_debug with one logical unit stopped (not ready):")
        finally:
            run(["sg_start", "--start", f"/dev/{stopped.dev}"])
    finally:
        run(["dmsetup", "remove", MAP], check=False)
    assert not problems, "\n\n".join(problems)
