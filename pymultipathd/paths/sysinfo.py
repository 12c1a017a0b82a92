"""Per-path details from sysfs that the daemon needs beyond classification: H:C:T:L, size, device state,
target node name, ALUA access state. Every reader returns a neutral value when the file is missing, because
paths disappear under our feet and a vanished path is handled by its remove uevent, not by an exception here.
"""

from __future__ import annotations

import errno
import glob
import os
import re

from pymultipathd import locations
from pymultipathd.sysread import close_quietly, device_dir, pread_page, read_page
from pymultipathd.sysread import read_attr as _read


def block_dir(dev: str) -> str:
    return os.path.join(locations.sysfs(), "block", dev)


def device_path(dev: str) -> str:
    """The real sysfs directory of the disk's device (/sys/devices/.../H:C:T:L for a SCSI disk). The
    readers below that take it (`devpath`) find it themselves when not given; a caller reading several
    passes it to each, as resolving the links costs two readlink calls (100 us under emulation)."""
    return device_dir(block_dir(dev))


def hcil(dev: str, devpath: str | None = None) -> str:
    """SCSI host:channel:target:lun, e.g. "6:0:0:1"; "#:#:#:#" for a non-SCSI device, as upstream prints."""
    target = devpath or device_path(dev)
    name = os.path.basename(target)
    return name if name.count(":") == 3 else "#:#:#:#"


def size_sectors(dev: str) -> int:
    try:
        return int(_read(os.path.join(block_dir(dev), "size")) or 0)
    except ValueError:
        return 0


def _attr_path(dev: str, attribute: str) -> str:
    return f"{locations.sysfs()}/block/{dev}/device/{attribute}"


def dev_state(dev: str) -> str:
    """SCSI device state (running, offline, blocked, transport-offline); "running" for non-SCSI devices."""
    return read_page(_attr_path(dev, "state")) or "running"


class KeptAttribute:
    """One sysfs attribute of each path's SCSI device (device/<attribute>), read after every check through a
    descriptor kept open (sysfs makes the text afresh at every read). Opening it by name walks a dozen
    directories behind two links: 460 us under emulation, against 12 us for a read of the kept descriptor.
    A descriptor whose read fails (its device was removed: sysfs answers ENODEV) is closed and the attribute
    opened again by name, so a device that took the name is read, never the one that left: a kept
    descriptor never reads another device's attribute.

    Each kept descriptor counts against the daemon's open-file limit (one per path). When the limit is
    reached (EMFILE, ENFILE) `drop_all` closes every one and the attribute is opened for each read from then
    on: the descriptors a check needs come first. One caller per dev at a time (CheckRunner: one check per
    path)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute
        self._fds: dict[str, int] = {}
        self.keeping = True  # False once descriptors ran out: each read opens and closes the attribute

    def read(self, dev: str) -> str | None:
        """The attribute's text, stripped; None if the device has no such attribute (or is gone)."""
        fd = self._fds.pop(dev, None)
        if fd is not None:
            text = pread_page(fd)
            if text is not None:
                self._put(dev, fd)
                return text
            close_quietly(fd)
        try:
            fd = os.open(_attr_path(dev, self.attribute), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            if err.errno not in (errno.EMFILE, errno.ENFILE) or not self.keeping:
                return None
            self.drop_all()
            return self.read(dev)  # once more, keeping none
        text = pread_page(fd)
        if text is None:
            close_quietly(fd)
            return None
        self._put(dev, fd)
        return text

    def _put(self, dev: str, fd: int) -> None:
        if self.keeping:
            self._fds[dev] = fd
        else:
            close_quietly(fd)

    def drop_all(self) -> None:
        """Out of descriptors: close every kept one, and keep none from now on."""
        self.keeping = False
        self.close_all()

    def resume(self) -> None:
        """Keep descriptors again after drop_all (a reconfigure may have raised the limit)."""
        self.keeping = True

    def close(self, dev: str) -> None:
        fd = self._fds.pop(dev, None)
        if fd is not None:
            close_quietly(fd)

    def close_all(self) -> None:
        for dev in list(self._fds):
            self.close(dev)


class KeptStates(KeptAttribute):
    """dev_state of paths read after every check, through kept descriptors (KeptAttribute)."""

    def __init__(self) -> None:
        super().__init__("state")

    def read(self, dev: str) -> str:
        return super().read(dev) or "running"  # no SCSI device behind the name, as dev_state says


def target_node_name(dev: str, devpath: str | None = None) -> str:
    """The storage controller port a path goes through: iSCSI target IQN + portal, or FC target WWNN."""
    devpath = devpath or device_path(dev)
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


def dh_state(dev: str) -> str:
    """The device handler the kernel attached to the SCSI device ("alua", "emc", ...), "" if none."""
    state = _read(os.path.join(block_dir(dev), "device", "dh_state"))
    return "" if state in ("", "detached") else state


def device_attribute(dev: str, attribute: str) -> str:
    """An attribute of the path's SCSI device (device/<attribute>), stripped; "" if there is none."""
    return _read(_attr_path(dev, attribute))


def access_state(dev: str) -> str:
    """The kernel's ALUA access state of the path, e.g. "active/optimized"; "" if it keeps none."""
    return device_attribute(dev, "access_state")


def rescan_device(dev: str) -> bool:
    """Have the kernel read the SCSI device's identity and capacity again (its cached VPD pages included),
    then tell udev; False if the device is gone. Blocking: the rescan sends commands to the device."""
    try:
        with open(os.path.join(block_dir(dev), "device", "rescan"), "w") as f:
            f.write("1")
    except OSError:
        return False
    return trigger_uevent(dev, "change")


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
    devpath = device_path(dev)
    for part in devpath.split(os.sep):
        if part.startswith("session") and part[7:].isdigit():
            conn = os.path.join(locations.sysfs(), "class", "iscsi_connection", f"connection{part[7:]}:0")
            return _read(os.path.join(conn, "persistent_address")) or _read(os.path.join(conn, "address")) \
                or None
    return None


# identities of a path (prioritizers' rules, group_by_serial)


def dev_t(dev: str) -> str:
    """The disk's "major:minor"; "" once it is gone."""
    return _read(os.path.join(block_dir(dev), "dev"))


UNIT_SERIAL_MAX = 127  # bytes upstream keeps of a unit serial number (its buffer holds 128 with the NUL)


def unit_serial(dev: str) -> str:
    """The unit serial number from the VPD page 80h the kernel keeps in sysfs (`device/vpd_pg80`), as
    upstream stores it for a path (show paths %z): the page's serial field, blanks at either end removed,
    cut at a NUL and at UNIT_SERIAL_MAX bytes. "" when there is no such page. Undecodable bytes are kept
    (surrogateescape), so a regex sees what glibc would."""
    from pymultipathd.sysread import read_bytes

    raw = read_bytes(os.path.join(block_dir(dev), "device", "vpd_pg80"))
    if len(raw) < 4 or raw[1] != 0x80:
        return ""
    length = min(int.from_bytes(raw[2:4], "big"), 128)  # upstream never takes more than 128 bytes
    field = raw[4 : 4 + length].strip(b" ")
    field = field.split(b"\0", 1)[0][:UNIT_SERIAL_MAX]
    return field.decode("utf-8", "surrogateescape")


def fc_names_shown(dev: str, devpath: str | None = None) -> tuple[str, str, str]:
    """(host WWNN, host WWPN, target WWPN) as show paths prints them: "[undef]" for a path that is not Fibre
    Channel, "[unknown]" for a name that cannot be read."""
    fc = fc_port_names(dev, devpath)
    if fc is None:
        return ("[undef]",) * 3
    return tuple(n or "[unknown]" for n in fc)  # type: ignore[return-value]


_PCI = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def host_adapter(dev: str, devpath: str | None = None) -> str | None:
    """The initiator a path leaves through (show paths %a): the IP address of an iSCSI session's host,
    else the PCI address of the SCSI host's adapter; None when neither is known."""
    from pymultipathd.sysread import read_text

    devpath = devpath or device_path(dev)
    parts = devpath.split(os.sep)
    hosts = [p for p in parts if p.startswith("host") and p[4:].isdigit()]
    if not hosts:
        return None
    if any(p.startswith("session") for p in parts):
        return read_text(os.path.join(locations.sysfs(), "class", "iscsi_host", hosts[-1], "ipaddress")) \
            or None
    pci = [p for p in parts[:parts.index(hosts[-1])] if _PCI.fullmatch(p)]
    return pci[-1] if pci else None


def fc_port_names(dev: str, devpath: str | None = None) -> tuple[str | None, str | None, str | None] | None:
    """(host WWNN, host WWPN, target WWPN) of a Fibre Channel path, from the fc_host of its SCSI host and
    the fc_remote_port it goes through; an element is None when its attribute cannot be read. None for a
    path that is not Fibre Channel (no rport in its device chain)."""
    from pymultipathd.sysread import read_text

    devpath = devpath or device_path(dev)
    parts = devpath.split(os.sep)
    rports = [p for p in parts if p.startswith("rport-")]
    if not rports:
        return None
    host = os.path.basename(devpath).split(":", 1)[0]
    classes = os.path.join(locations.sysfs(), "class")
    host_dir = os.path.join(classes, "fc_host", f"host{host}")
    rport_dir = os.path.join(classes, "fc_remote_ports", rports[-1])
    return (read_text(os.path.join(host_dir, "node_name")), read_text(os.path.join(host_dir, "port_name")),
            read_text(os.path.join(rport_dir, "port_name")))
