"""`pymultipath -a|-w DEV|WWID` and `pymultipath -W`: edit the wwids file as upstream's multipath does.

DEV is a kernel name ("sdb") or a device path ("/dev/sdb", "/dev/disk/by-id/..."); its WWID is the
uid_attribute property (ID_SERIAL unless configured otherwise) in the udev database, found through the
device's major:minor in sysfs. A multipath map (dm-N, or /dev/mapper/NAME) gives the WWID in its uuid. An
argument that names no block device is taken as the WWID itself.
"""

from __future__ import annotations

import os
import re
import stat
import sys

from pymultipathd import locations, store
from pymultipathd.errors import PymultipathError
from pymultipathd.sysread import read_text as _read

PROG = "pymultipath"
DEFAULT_UID_ATTRIBUTE = "ID_SERIAL"


class WwidLookupError(PymultipathError):
    """The argument names a device whose WWID cannot be found; the message says which and why."""


def _block_dir(name: str) -> str:
    return os.path.join(locations.sysfs(), "class", "block", name)


def udev_properties(dev_t: str) -> dict[str, str] | None:
    """The E: properties of the udev database entry of block device `dev_t` ("8:16"); None if none."""
    text = _read(os.path.join(locations.udev_db(), f"b{dev_t}"))
    if text is None:
        return None
    props = {}
    for line in text.splitlines():
        if line.startswith("E:") and "=" in line:
            key, value = line[2:].split("=", 1)
            props[key] = value
    return props


def _uid_attribute(name: str) -> str:
    """uid_attribute for device `name` from the configuration (multipaths > overrides > devices >
    defaults); ID_SERIAL while the configuration core is not installed."""
    try:
        from pymultipathd.config.load import ConfigError, load_config
    except ModuleNotFoundError as e:
        if e.name != "pymultipathd.config.load":
            raise  # the configuration core is there but broken: say so, do not guess
        return DEFAULT_UID_ATTRIBUTE
    vendor = _read(os.path.join(_block_dir(name), "device", "vendor"))
    if vendor is None and name.startswith("nvme"):
        vendor = "NVME"  # upstream's vendor string for NVMe namespaces
    product = _read(os.path.join(_block_dir(name), "device", "model"))
    try:
        value = load_config().resolve("uid_attribute", vendor=vendor, product=product)
    except ConfigError as e:  # names file:line
        raise WwidLookupError(f"cannot read the configuration: {e}") from e
    return str(value) if value else DEFAULT_UID_ATTRIBUTE


def _device_name(arg: str) -> str | None:
    """Kernel name of the block device `arg` designates, or None if it designates none (a WWID).

    Raises WwidLookupError for a path that is no known block device: a WWID never starts with "/"."""
    if arg.startswith("/"):
        real = os.path.realpath(arg)
        name = os.path.basename(real)
        if not os.path.isdir(_block_dir(name)):
            # a node whose name differs from the kernel's (e.g. /dev/mapper/NAME without udev's symlinks):
            # go through its major:minor
            try:
                st = os.stat(real)
            except OSError:
                st = None
            if st is not None and stat.S_ISBLK(st.st_mode):
                dev_t = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
                name = os.path.basename(
                    os.path.realpath(os.path.join(locations.sysfs(), "dev", "block", dev_t))
                )
        if not os.path.isdir(_block_dir(name)):
            raise WwidLookupError(f"device {arg} not found in {os.path.dirname(_block_dir(name))}")
        return name
    if "/" in arg or arg in (".", ".."):
        return None  # not a kernel name; add_wwid will judge it as a WWID
    return arg if os.path.isdir(_block_dir(arg)) else None


def wwid_of(arg: str) -> str:
    """The WWID `arg` stands for (see the module docstring). Raises WwidLookupError naming the device."""
    name = _device_name(arg)
    if name is None:
        return arg
    base = _block_dir(name)
    if os.path.exists(os.path.join(base, "partition")):
        raise WwidLookupError(f"{arg} is a partition; give the whole disk")
    uuid = _read(os.path.join(base, "dm", "uuid"))
    if uuid is not None:
        if uuid.startswith("mpath-") and len(uuid) > len("mpath-"):
            return uuid[len("mpath-") :]
        raise WwidLookupError(f"{arg} is a device-mapper device but not a multipath map (uuid {uuid!r})")
    dev_t = _read(os.path.join(base, "dev"))
    if not dev_t:
        raise WwidLookupError(f"cannot read the major:minor of {arg} from {base}/dev")
    attr = _uid_attribute(name)
    db = os.path.join(locations.udev_db(), f"b{dev_t}")
    props = udev_properties(dev_t)
    if props is None:
        raise WwidLookupError(f"cannot find the WWID of {arg}: no udev database entry {db}")
    wwid = props.get(attr, "").strip()
    if not wwid:
        raise WwidLookupError(f"cannot find the WWID of {arg}: {attr} is not set in {db}")
    return wwid


def current_map_wwids() -> list[str]:
    """WWIDs of the multipath maps that exist now (uuid "mpath-<wwid>" in /sys/block/dm-*/dm/uuid)."""
    block = os.path.join(locations.sysfs(), "block")
    try:
        names = [n for n in os.listdir(block) if re.fullmatch(r"dm-\d+", n)]
    except FileNotFoundError:
        return []
    wwids = []
    for name in sorted(names, key=lambda n: int(n[3:])):
        uuid = _read(os.path.join(block, name, "dm", "uuid")) or ""
        if uuid.startswith("mpath-") and len(uuid) > len("mpath-"):
            wwids.append(uuid[len("mpath-") :])
    return wwids


def _fail(msg: str) -> int:
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    flag, args = (argv[0], argv[1:]) if argv else ("", [])
    expected = 0 if flag == "-W" else 1
    if flag not in ("-a", "-w", "-W") or len(args) != expected:
        return _fail("usage: pymultipath -a DEV|WWID | -w DEV|WWID | -W") + 1
    path = locations.wwids_file()
    try:
        if flag == "-W":
            store.replace_wwids(current_map_wwids(), path)
            print("successfully reset wwids")
            return 0
        wwid = wwid_of(args[0])
        if flag == "-a":
            if not store.add_wwid(wwid, path):
                print(f"{PROG}: wwid '{wwid}' was already in {path}", file=sys.stderr)
            print(f"wwid '{wwid}' added")
        else:
            if not store.remove_wwid(wwid, path):
                print(f"{PROG}: wwid '{wwid}' was not in {path}", file=sys.stderr)
            print(f"wwid '{wwid}' removed")
        return 0
    except (WwidLookupError, store.StoreError, ValueError) as e:
        return _fail(str(e))
