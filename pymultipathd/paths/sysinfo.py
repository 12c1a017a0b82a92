"""Per-path details from sysfs that the daemon needs beyond classification: H:C:T:L, size, device state,
target node name, ALUA access state. Every reader returns a neutral value when the file is missing, because
paths disappear under our feet and a vanished path is handled by its remove uevent, not by an exception here.
"""

from __future__ import annotations

import glob
import os

from pymultipathd import locations
from pymultipathd.sysread import device_dir
from pymultipathd.sysread import read_attr as _read


def block_dir(dev: str) -> str:
    return os.path.join(locations.sysfs(), "block", dev)


def hcil(dev: str) -> str:
    """SCSI host:channel:target:lun, e.g. "6:0:0:1"; "#:#:#:#" for a non-SCSI device, as upstream prints."""
    target = device_dir(block_dir(dev))
    name = os.path.basename(target)
    return name if name.count(":") == 3 else "#:#:#:#"


def size_sectors(dev: str) -> int:
    try:
        return int(_read(os.path.join(block_dir(dev), "size")) or 0)
    except ValueError:
        return 0


def dev_state(dev: str) -> str:
    """SCSI device state (running, offline, blocked, transport-offline); "running" for non-SCSI devices."""
    return _read(os.path.join(block_dir(dev), "device", "state")) or "running"


def target_node_name(dev: str) -> str:
    """The storage controller port a path goes through: iSCSI target IQN + portal, or FC target WWNN."""
    devpath = device_dir(block_dir(dev))
    parts = devpath.split(os.sep)
    for i, part in enumerate(parts):
        if part.startswith("session") and part[7:].isdigit():
            base = os.sep.join(parts[: i + 1])
            sess = glob.glob(os.path.join(base, "iscsi_session", part))
            if sess:
                return _read(os.path.join(sess[0], "targetname"))
        if part.startswith("rport-"):
            base = os.sep.join(parts[: i + 1])
            nodes = glob.glob(os.path.join(base, "fc_remote_ports", "*", "node_name"))
            if nodes:
                return _read(nodes[0])
    return ""


def command_timeout(dev: str, default: float = 30.0) -> float:
    """The SCSI layer's command timeout of the device in seconds (device/timeout), `default` if none."""
    try:
        value = float(_read(os.path.join(block_dir(dev), "device", "timeout")) or default)
    except ValueError:
        return default
    return value if value > 0 else default


def access_state(dev: str) -> str:
    """The kernel's ALUA access state of the path, e.g. "active/optimized"; "" if it keeps none."""
    return _read(os.path.join(block_dir(dev), "device", "access_state"))


def preferred_path(dev: str) -> bool:
    return _read(os.path.join(block_dir(dev), "device", "preferred_path")) == "1"


def vpd_serial(dev: str) -> str:
    raw = _read(os.path.join(block_dir(dev), "device", "vpd_pg80"))
    return "".join(c for c in raw if c.isprintable()).strip()


def trigger_uevent(dev: str, action: str) -> bool:
    """Ask the kernel to re-send a uevent (so udev reruns its rules); False if the device is gone."""
    try:
        with open(os.path.join(block_dir(dev), "uevent"), "w") as f:
            f.write(action)
        return True
    except OSError:
        return False


def iscsi_portal(dev: str) -> str | None:
    """Target portal address of an iSCSI path (from its session's connection), None for other transports."""
    devpath = device_dir(block_dir(dev))
    for part in devpath.split(os.sep):
        if part.startswith("session") and part[7:].isdigit():
            conn = os.path.join(locations.sysfs(), "class", "iscsi_connection", f"connection{part[7:]}:0")
            return _read(os.path.join(conn, "persistent_address")) or _read(os.path.join(conn, "address")) \
                or None
    return None
