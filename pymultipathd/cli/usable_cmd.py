"""`pymultipath -C DEV` and `-U`: does this multipath map have a usable path? (upstream's meanings)

Exit 0 when the map has at least one path the kernel has active whose device runs (SCSI "running", NVMe
"live"), 1 when it has
none, or when DEV is not a multipath map; no I/O is sent. `-C` takes the map by /dev node, name, dm-N or
major:minor; `-U` takes the device udev is handling, from the event's MAJOR and MINOR (udev rules use it to
skip probing a map that would only queue I/O).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pymultipathd import locations, topology
from pymultipathd.dm import maps as dmmaps
from pymultipathd.errors import PymultipathError
from pymultipathd.paths import sysinfo
from pymultipathd.policy.state import MapState
from pymultipathd.sysread import read_text

PROG = "pymultipath"


def _map_name(arg: str) -> str | None:
    """The device-mapper name of the map `arg` designates (None: not a device-mapper device)."""
    name = arg
    if arg.startswith("/"):
        real = os.path.realpath(arg)
        try:
            st = os.stat(real)
            name = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        except OSError:
            name = os.path.basename(real)
    if name.count(":") == 1 and all(p.isdigit() for p in name.split(":")):
        name = topology.dev_of(name) or name
    dm_name = read_text(os.path.join(locations.sysfs(), "block", name, "dm", "name"))
    if dm_name is not None:
        return dm_name.strip()
    return arg if "/" not in arg and ":" not in arg else None


def usable(name: str) -> tuple[bool, str]:
    """Whether map `name` has a usable path, and why (for -v)."""
    from pymultipathd.dm.ioctl import Control

    ctl = Control()
    info = ctl.info(name)
    if not info.uuid.startswith(dmmaps.MPATH_UUID_PREFIX):
        return False, f"{name} is not a multipath map"
    read = topology.read_map(ctl, name)
    m = MapState(name=name, wwid=info.uuid[len(dmmaps.MPATH_UUID_PREFIX):])
    topology.apply_read(m, read)
    if m.status is None:
        return False, f"{name}: no status"
    for g in m.status.groups:
        for p in g.paths:
            dev = topology.dev_of(p.dev)
            # "running" for SCSI, "live" for an NVMe controller
            if p.active and dev is not None and sysinfo.dev_state(dev) in ("running", "live"):
                return True, f"{name}: {dev} ({p.dev}) is usable"
    return False, f"{name}: no usable path"


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if argv[0] == "-U":
        major, minor = env.get("MAJOR", ""), env.get("MINOR", "")
        if not (major.isdigit() and minor.isdigit()):
            print(f"{PROG}: -U needs the udev event's MAJOR and MINOR in the environment", file=sys.stderr)
            return 2
        target = f"{major}:{minor}"
    elif len(argv) == 2:
        target = argv[1]
    else:
        print(f"{PROG}: usage: {PROG} -C DEV | -U", file=sys.stderr)
        return 2
    name = _map_name(target)
    if name is None:
        print(f"{PROG}: {target}: not a device-mapper device", file=sys.stderr)
        return 1
    try:
        ok, why = usable(name)
    except PymultipathError as err:
        print(f"{PROG}: {target}: {err}", file=sys.stderr)
        return 1
    print(why, file=sys.stderr)
    return 0 if ok else 1
