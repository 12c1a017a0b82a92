"""Path prioritizers: a number per path, higher is better; group_by_prio groups on it.

This module is the registry (PRIORITIZERS, choose, priority) and holds the ALUA ones; the vendor ones that
ask the array over SG_IO are in pymultipathd.paths.vendor_prio, those driven by prio_args in
pymultipathd.paths.prio_rules.

const: every path 1. sysfs: the kernel's ALUA access state for the path. alua: the same from the array
itself (REPORT TARGET PORT GROUPS over SG_IO), for kernels without a device handler attached. Values follow
upstream's ALUA scale so mixed hosts group alike: optimized 50, non-optimized 10, lba-dependent 5, standby 1,
else 0, and 80 more for a port group the array marks preferred, unless it is also optimized: an optimized
preferred path then groups with the other optimized ones, as upstream does. prio_args
"exclusive_pref_bit" adds the 80 to optimized preferred paths too, so they form a group of their own.

A prioritizer that cannot tell gives PRIO_UNDEF, as upstream's do; priority() reports any negative value as
PRIO_UNDEF, as upstream treats it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pymultipathd.paths import prio_rules, sgio, sysinfo, vendor_prio
from pymultipathd.sysread import read_bytes

PRIO_UNDEF = -1  # "no priority known": a prioritizer failed, or cannot apply to the path
PRIO_ARGS_MAX = 254  # bytes of prio_args upstream hands a prioritizer (its buffer holds 255 with the NUL)

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


def alua_value(state: str, preferred: bool = False, exclusive: bool = False) -> int:
    """Priority of an ALUA access state; the preferred bonus goes to preferred port groups that are not
    active/optimized, and with `exclusive` (exclusive_pref_bit) to optimized ones as well."""
    bonus = preferred and (state != "active/optimized" or exclusive)
    return ALUA_PRIO.get(state, 0) + (PREFERRED_BONUS if bonus else 0)


EXCLUSIVE_PREF = "exclusive_pref_bit"


def exclusive_pref(args: str) -> bool:
    """Whether prio_args ask for exclusive_pref_bit (alua, sysfs): upstream looks at the first occurrence of
    the word only, and takes it when a blank, a tab or either end of the arguments is on both sides."""
    at = args.find(EXCLUSIVE_PREF)
    if at < 0:
        return False
    after = args[at + len(EXCLUSIVE_PREF) : at + len(EXCLUSIVE_PREF) + 1]
    return after in ("", " ", "\t") and (at == 0 or args[at - 1] in " \t")


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


# (dev, attribute of its SCSI device) -> the attribute's text, "" when there is none
AttributeReader = Callable[[str, str], str]
SYSFS_ATTRIBUTES = ("access_state", "preferred_path")  # what prio_sysfs reads


def prio_sysfs(dev: str, args: str = "", timeout: float = 30.0, *,
               read: AttributeReader | None = None) -> int:
    """The kernel's view (device/access_state, device/preferred_path); PRIO_UNDEF when it keeps none.
    `read`: how the attributes are read (the checker's kept descriptors), by name if not given."""
    read = read or sysinfo.device_attribute
    state = read(dev, "access_state")
    if not state:
        return PRIO_UNDEF
    return alua_value(state, read(dev, "preferred_path") == "1", exclusive_pref(args))


def prio_alua(dev: str, args: str = "", timeout: float = 30.0) -> int:
    """The array's view (RTPG); the kernel's when the path has no port group or the array does not answer
    with one (a project choice: upstream gives PRIO_UNDEF there). PRIO_UNDEF when the device cannot be
    asked at all."""
    group = port_group(read_bytes(os.path.join(sysinfo.block_dir(dev), "device", "vpd_pg83")))
    if group is None:
        return prio_sysfs(dev, args, timeout)
    try:
        fd = sgio.open_path(os.path.join("/dev", dev))
    except OSError:
        return PRIO_UNDEF
    try:
        for _ in range(3):  # the first command after the array changes its ALUA states gets a UNIT ATTENTION
            res = sgio.sg_io(fd, sgio.report_target_port_groups(4096), data_len=4096,
                             timeout_ms=int(timeout * 1000))
            if res.ok or res.sense_key != sgio.UNIT_ATTENTION:
                break
    except OSError:
        return PRIO_UNDEF
    finally:
        os.close(fd)
    found = parse_rtpg(res.data, group) if res.ok else None
    return alua_value(*found, exclusive_pref(args)) if found else prio_sysfs(dev, args, timeout)


def prio_ana(dev: str, args: str = "", timeout: float = 30.0) -> int:
    """NVMe Asymmetric Namespace Access. Paths here are SCSI disks, where upstream's ana fails its NVMe
    Identify and gives -1: the priority is unknown, never a made-up one."""
    return PRIO_UNDEF


PRIORITIZERS: dict[str, Prioritizer] = {
    "const": prio_const,
    "sysfs": prio_sysfs,
    "alua": prio_alua,
    "emc": vendor_prio.prio_emc,
    "ontap": vendor_prio.prio_ontap,
    "rdac": vendor_prio.prio_rdac,
    "hp_sw": vendor_prio.prio_hp_sw,
    "hds": vendor_prio.prio_hds,
    "datacore": vendor_prio.prio_datacore,
    "weightedpath": prio_rules.prio_weightedpath,
    "path_latency": prio_rules.prio_path_latency,
    "iet": prio_rules.prio_iet,
    "random": prio_rules.prio_random,
    "ana": prio_ana,
}


def choose(configured: str | None, detect_prio: bool, access_state: str) -> str:
    """The prioritizer to use: detect_prio picks ALUA (sysfs) when the path reports an access state (the
    path's sysinfo.access_state); otherwise the configured one if it is registered, else const."""
    if detect_prio and access_state:
        return "sysfs"
    return configured if configured is not None and configured in PRIORITIZERS else "const"


def clip_args(args: str) -> str:
    """prio_args as upstream hands them over: the first PRIO_ARGS_MAX bytes."""
    raw = args.encode("utf-8", "surrogateescape")
    return args if len(raw) <= PRIO_ARGS_MAX else raw[:PRIO_ARGS_MAX].decode("utf-8", "surrogateescape")


def priority(name: str, dev: str, args: str = "", timeout: float = 30.0, *,
             read: AttributeReader | None = None) -> int:
    """Priority of the path by prioritizer `name`; PRIO_UNDEF for a name not registered and for any
    negative answer (upstream takes every negative priority for "undefined"). `read`: how the sysfs
    prioritizer reads its attributes (the checker's kept descriptors; by name if not given)."""
    func = PRIORITIZERS.get(name)
    if func is None:
        return PRIO_UNDEF
    if func is prio_sysfs:
        value = prio_sysfs(dev, clip_args(args), timeout, read=read)
    else:
        value = func(dev, clip_args(args), timeout)
    return value if value >= 0 else PRIO_UNDEF
