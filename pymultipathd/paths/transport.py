"""Writes a path's transport timeouts and I/O size to sysfs (the values come from
pymultipathd.policy.transport). Every directory is found from the path's own device chain, never from a name
a device or udev supplied, and a value that cannot be written is reported, not raised: a path keeps working
with the kernel's values."""

from __future__ import annotations

import os

from pymultipathd import locations
from pymultipathd.paths.sysinfo import block_dir
from pymultipathd.policy.settings import NoPathRetry
from pymultipathd.policy.transport import Attr, Kind, Transport, writes
from pymultipathd.sysread import device_dir


def kind(dev: str) -> Kind:
    parts = device_dir(block_dir(dev)).split(os.sep)
    if any(p.startswith("session") and p[7:].isdigit() for p in parts):
        return Kind.ISCSI
    if any(p.startswith("rport-") for p in parts):
        return Kind.FC
    if any(p.startswith("end_device-") for p in parts):
        return Kind.SAS
    return Kind.OTHER


def _where(dev: str, attr: Attr) -> str | None:
    if attr is Attr.QUEUE_MAX_SECTORS_KB:
        return os.path.join(block_dir(dev), "queue", "max_sectors_kb")
    cls, name = attr.value.split("/")
    # nearest the device first: under NPIV the chain runs through the physical HBA's host to the virtual
    # port's own host, which is the path's
    for part in reversed(device_dir(block_dir(dev)).split(os.sep)):
        mine = {Attr.SESSION_RECOVERY_TMO: part.startswith("session") and part[7:].isdigit(),
                Attr.RPORT_FAST_IO_FAIL_TMO: part.startswith("rport-"),
                Attr.RPORT_DEV_LOSS_TMO: part.startswith("rport-"),
                Attr.SAS_NEXUS_LOSS_TMO: part.startswith("end_device-"),
                Attr.HOST_EH_DEADLINE: part.startswith("host") and part[4:].isdigit()}[attr]
        if mine:
            return os.path.join(locations.sysfs(), "class", cls, part, name)
    return None


def _current(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def apply(dev: str, values: list[tuple[Attr, str]]) -> list[str]:
    """Write `values` for `dev` (only those that differ); returns what could not be written, and why."""
    problems = []
    for attr, value in values:
        path = _where(dev, attr)
        if path is None:
            if attr is not Attr.HOST_EH_DEADLINE:  # not a SCSI device: nothing to set, nothing wrong
                problems.append(f"{dev}: no {attr.value.split('/')[0]} to set {attr.value.split('/')[1]} on")
            continue
        if _current(path) == value:
            continue
        if attr is Attr.RPORT_FAST_IO_FAIL_TMO and value.isdigit():
            # the transport takes a fast_io_fail_tmo only below the port's dev_loss_tmo: raise that first
            # (its own value follows)
            dev_loss = os.path.join(os.path.dirname(path), "dev_loss_tmo")
            current = _current(dev_loss)
            if current is not None and current.isdigit() and int(value) >= int(current):
                problems += _write(dev, dev_loss, str(int(value) + 1))
        problems += _write(dev, path, value)
    return problems


def _write(dev: str, path: str, value: str) -> list[str]:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        return [f"{dev}: cannot set {path} to {value}: {err.strerror or err}"]
    return []


def match_map(devs: list[str], dm_dev: str) -> list[str]:
    """Blocking: give paths joining the live map `dm_dev` its max_sectors_kb (a path below the map's limit
    would fail its large requests)."""
    limit = _current(os.path.join(block_dir(dm_dev), "queue", "max_sectors_kb"))
    if limit is None or not limit.isdigit():
        return []
    problems = []
    for dev in devs:
        problems += apply(dev, [(Attr.QUEUE_MAX_SECTORS_KB, limit)])
    return problems


def apply_all(devs: list[str], t: Transport, no_path_retry: NoPathRetry,
              polling_interval: float) -> list[str]:
    """Blocking: each path's values for its own kind of transport (see pymultipathd.policy.transport)."""
    problems = []
    for dev in devs:
        problems += apply(dev, writes(t, kind(dev), no_path_retry, polling_interval))
    return problems
