"""Path prioritizers: a number per path, higher is better; group_by_prio groups on it.

const: every path 1. sysfs: the kernel's ALUA access state for the path. alua: the same from the array
itself (REPORT TARGET PORT GROUPS over SG_IO), for kernels without a device handler attached. Values follow
upstream's ALUA scale so mixed hosts group alike: optimized 50, non-optimized 10, standby 1, else 0, and 80
more for a port group the array marks preferred.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pymultipathd.paths import sgio, sysinfo
from pymultipathd.sysread import read_bytes

ALUA_PRIO = {
    "active/optimized": 50,
    "active/non-optimized": 10,
    "lba-dependent": 5,
    "standby": 1,
}
PREFERRED_BONUS = 80
# RTPG's asymmetric access state codes -> the names the kernel uses in sysfs
_AAS = {0: "active/optimized", 1: "active/non-optimized", 2: "standby", 3: "unavailable",
        4: "lba-dependent", 0xE: "offline", 0xF: "transitioning"}


def alua_value(state: str, preferred: bool = False) -> int:
    return ALUA_PRIO.get(state, 0) + (PREFERRED_BONUS if preferred else 0)


def parse_rtpg(data: bytes, group_id: int) -> tuple[str, bool] | None:
    """(access state, preferred) of port group `group_id` in a REPORT TARGET PORT GROUPS reply."""
    if len(data) < 4:
        return None
    end = min(len(data), 4 + int.from_bytes(data[:4], "big"))
    pos = 4
    while pos + 8 <= end:
        desc = data[pos : pos + 8]
        count = desc[7]
        if int.from_bytes(desc[2:4], "big") == group_id:
            return _AAS.get(desc[0] & 0x0F, "unknown"), bool(desc[0] & 0x80)
        pos += 8 + 4 * count
    return None


def port_group(vpd83: bytes) -> int | None:
    """Target port group id from a device identification VPD page (designator type 5), if present."""
    vpd = vpd83
    pos = 4
    while pos + 4 <= len(vpd):
        dtype, length = vpd[pos + 1] & 0x0F, vpd[pos + 3]
        if dtype == 0x5 and length >= 4:  # target port group designator
            return int.from_bytes(vpd[pos + 6 : pos + 8], "big")
        pos += 4 + length
    return None


# A prioritizer: (disk name such as "sdb", prio_args as configured or "", seconds each command may take)
# -> priority. It runs on a checker thread: it may block on the device, never longer than the timeout per
# command.
Prioritizer = Callable[[str, str, float], int]


def prio_const(dev: str, args: str = "", timeout: float = 30.0) -> int:
    return 1


def prio_sysfs(dev: str, args: str = "", timeout: float = 30.0) -> int:
    return alua_value(sysinfo.access_state(dev), sysinfo.preferred_path(dev))


def prio_alua(dev: str, args: str = "", timeout: float = 30.0) -> int:
    group = port_group(read_bytes(os.path.join(sysinfo.block_dir(dev), "device", "vpd_pg83")))
    if group is None:
        return prio_sysfs(dev)
    try:
        fd = sgio.open_path(os.path.join("/dev", dev))
    except OSError:
        return 0
    try:
        for _ in range(3):  # the first command after the array changes its ALUA states gets a UNIT ATTENTION
            res = sgio.sg_io(fd, sgio.report_target_port_groups(4096), data_len=4096,
                             timeout_ms=int(timeout * 1000))
            if res.ok or res.sense_key != sgio.UNIT_ATTENTION:
                break
    except OSError:
        return 0
    finally:
        os.close(fd)
    found = parse_rtpg(res.data, group) if res.ok else None
    return alua_value(*found) if found else prio_sysfs(dev)


PRIORITIZERS: dict[str, Prioritizer] = {"const": prio_const, "sysfs": prio_sysfs, "alua": prio_alua}


def choose(configured: str | None, detect_prio: bool, dev: str) -> str:
    """The prioritizer to use: detect_prio picks ALUA when the path reports an access state."""
    if detect_prio and sysinfo.access_state(dev):
        return "sysfs"
    return configured if configured in PRIORITIZERS else "const"


def priority(name: str, dev: str, args: str = "", timeout: float = 30.0) -> int:
    return PRIORITIZERS.get(name, prio_const)(dev, args, timeout)
