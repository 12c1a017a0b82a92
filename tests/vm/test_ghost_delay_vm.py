"""ghost_delay for real (issue 19): LIO puts its port group in ALUA standby, so both paths are ghosts (TUR
says "target port in standby state"). A map made of them is announced to udev as not ready (the device-mapper
cookie's flags, which udev's dm rules decode into DM_SUBSYSTEM_UDEV_FLAG2=1 and
DM_UDEV_DISABLE_OTHER_RULES_FLAG=1: no blkid, no by-id links, no LVM scan, not ready for systemd) until an
active path appears or ghost_delay seconds pass. What udev decoded from each of the map's table loads
(`udevadm monitor --udev --property`) is the oracle."""

from __future__ import annotations

import glob
import subprocess
import time

from tests.vm.pympd import Pympd, config
from tests.vm.sysutil import read_sysfs, run, wait_for, write_sysfs

STANDBY, ACTIVE = "2", "0"


def _port_group() -> str:
    gp = glob.glob("/sys/kernel/config/target/core/*/lun0/alua/default_tg_pt_gp")[0]
    # implicit ALUA only: the initiator's ALUA handler cannot make the port active by itself (STPG) when
    # the map's first I/O initializes its path group; only the target's side changes it, as the test does
    write_sysfs(f"{gp}/alua_access_type", "1")
    return gp


def _set(gp: str, state: str, devs: list[str]) -> None:
    write_sysfs(f"{gp}/alua_access_state", state)
    for d in devs:  # the unit attention that announces the change is taken by one command each
        run(["sg_turs", f"/dev/{d}"], check=False)


class UdevEvents:
    """udev's processed events of one block device-mapper device (`udevadm monitor --udev --property`),
    kept from start to stop: the properties udev's dm rules decoded from each event."""

    def __init__(self) -> None:
        argv = ["udevadm", "monitor", "--udev", "--property", "--subsystem-match=block"]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # the monitor's socket is bound before anything it must see happens

    def stop(self, name: str) -> list[dict[str, str]]:
        """The events of map `name` that came from a table load by its daemon (they carry a DM_COOKIE with
        the daemon's udev flags; the kernel's own path-failed events carry none)."""
        time.sleep(2)
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=30)
        events = []
        for block in out.split("\n\n"):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if props.get("DM_NAME") == name and props.get("DM_COOKIE") and props.get("ACTION") == "change":
                events.append(props)
        return events


def _not_ready(props: dict[str, str]) -> bool:
    """The map announced as not ready: upstream's "no paths" flag, and udev's other rules turned off."""
    return (props.get("DM_SUBSYSTEM_UDEV_FLAG2") == "1"
            and props.get("DM_UDEV_DISABLE_OTHER_RULES_FLAG") == "1")


CONF = dict(path_grouping_policy="multibus", hardware_handler='"0"', prio="const")


def _announced_late(loads: list[dict[str, str]]) -> None:
    """The map's first table load announced it not ready, every load until the wait ended too, then one
    announced it ready."""
    ready = [i for i, e in enumerate(loads) if not _not_ready(e)]
    assert ready and ready[0] > 0, [(e.get("SEQNUM"), _not_ready(e)) for e in loads]


def _journal() -> str:
    return run(["journalctl", "-u", "pymultipathd.service", "-o", "cat", "-n", "300", "--no-pager"])


def test_a_map_of_standby_paths_is_not_ready_until_a_path_is_active(iscsi_bed):
    bed = iscsi_bed(luns=1, size_mb=8)
    a, b = bed.paths(0)
    gp = _port_group()
    _set(gp, STANDBY, [a.dev, b.dev])
    try:
        # without ghost_delay: the map is made ready, standby or not
        events = UdevEvents()
        with Pympd(config("greedy", **CONF)) as d:
            name = d.wait_map(a.wwid)
            assert {s for _, s in d.path_states(name).values()} == {"ghost"}
        made = events.stop(name)
        assert made and not _not_ready(made[0]), made
        # ghost_delay 8: made not ready; announced ready once the 8 s are over, the ports still standby
        events = UdevEvents()
        with Pympd(config("greedy", ghost_delay=8, **CONF)) as d:
            name = d.wait_map(a.wwid)
            wait_for(lambda: "no active path within ghost_delay (8 s)" in _journal(), 60, "ghost_delay's end")
            assert {s for _, s in d.path_states(name).values()} == {"ghost"}
        _announced_late(events.stop(name))
        # ghost_delay 600: not ready until the array makes the port group active
        events = UdevEvents()
        with Pympd(config("greedy", ghost_delay=600, **CONF)) as d:
            name = d.wait_map(a.wwid)
            time.sleep(5)
            _set(gp, ACTIVE, [a.dev, b.dev])
            wait_for(lambda: "is an active path" in _journal(), 60, "the map announced ready")
            assert read_sysfs(f"/sys/block/{a.dev}/device/state") == "running"
        _announced_late(events.stop(name))
    finally:
        write_sysfs(f"{gp}/alua_access_state", ACTIVE)
