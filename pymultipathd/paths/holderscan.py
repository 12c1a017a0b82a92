"""Gather the holders snapshot of a map from the live system: DM, sysfs and every process's /proc entries.

Reads only; never opens the map itself (a queueing map with no path would block the reader).
"""

from __future__ import annotations

import os
import stat

from pymultipathd import holders, locations
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm import table as dmt
from pymultipathd.dm.ioctl import Control
from pymultipathd.sysread import read_attr as _read


def _blockdev(kernel_name: str) -> holders.BlockDev:
    base = os.path.join(locations.sysfs(), "block", kernel_name)
    return holders.BlockDev(name=kernel_name, dev_t=_read(os.path.join(base, "dev")),
                            dm_name=_read(os.path.join(base, "dm", "name")),
                            dm_uuid=_read(os.path.join(base, "dm", "uuid")))


def _stacked(dev: holders.BlockDev, depth: int = 0) -> list[tuple[str, holders.BlockDev]]:
    """(held dev_t, device on top) for everything stacked on dev, recursively (LVM on a partition ...)."""
    out: list[tuple[str, holders.BlockDev]] = []
    hdir = os.path.join(locations.sysfs(), "block", dev.name, "holders")
    try:
        names = sorted(os.listdir(hdir))
    except OSError:
        return out
    for name in names:
        top = _blockdev(name)
        out.append((dev.dev_t, top))
        if depth < 8:
            out += _stacked(top, depth + 1)
    return out


def _pids() -> list[int]:
    return [int(p) for p in os.listdir(locations.proc()) if p.isdigit()]


def _ns_inode(pid: int) -> int | None:
    try:
        return os.stat(os.path.join(locations.proc(), str(pid), "ns", "mnt")).st_ino
    except OSError:
        return None


def _mounts(dev_ts: set[str]) -> list[holders.Mount]:
    """Mounts of these devices in every mount namespace (one process per namespace is read)."""
    proc = locations.proc()
    init_ns = _ns_inode(1)
    seen: set[int] = set()
    out: list[holders.Mount] = []
    for pid in _pids():
        ns = _ns_inode(pid)
        if ns is None or ns in seen:
            continue
        seen.add(ns)
        text = _read(os.path.join(proc, str(pid), "mountinfo"))
        comm = _read(os.path.join(proc, str(pid), "comm"))
        for line in text.splitlines():
            left, _, right = line.partition(" - ")
            f = left.split()
            if len(f) >= 5 and f[2] in dev_ts:
                out.append(holders.Mount(f[2], f[4].replace("\\040", " "), right.split()[0] if right else "?",
                                         pid, comm, ns == init_ns))
    return out


def _rdev(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _swaps(dev_ts: set[str]) -> list[str]:
    lines = _read(os.path.join(locations.proc(), "swaps")).splitlines()[1:]
    found = [_rdev(line.split()[0]) for line in lines if line.split()]
    return [d for d in found if d in dev_ts]


def _unit(pid: int) -> str:
    for line in _read(os.path.join(locations.proc(), str(pid), "cgroup")).splitlines():
        path = line.rsplit(":", 1)[-1]
        leaf = path.rsplit("/", 1)[-1]
        if leaf.endswith((".service", ".scope")):
            return leaf
    return ""


def _open_files(dev_ts: set[str]) -> tuple[list[holders.OpenFile], list[str]]:
    """Processes with one of these block devices open, and the comm of every file-system kernel thread."""
    proc = locations.proc()
    files: list[holders.OpenFile] = []
    threads: list[str] = []
    me = os.getpid()
    for pid in _pids():
        if pid == me:
            continue
        base = os.path.join(proc, str(pid))
        comm = _read(os.path.join(base, "comm"))
        if comm.startswith(holders.FS_THREAD_PREFIXES):
            threads.append(comm)
        try:
            fds = os.listdir(os.path.join(base, "fd"))
        except OSError:
            continue
        for fd in fds:
            rdev = _rdev(os.path.join(base, "fd", fd))
            if rdev in dev_ts:
                cmdline = _read(os.path.join(base, "cmdline")).replace("\0", " ").strip()
                files.append(holders.OpenFile(rdev, pid, comm, cmdline, _unit(pid)))
    return files, threads


def snapshot(ctl: Control, name: str) -> holders.Snapshot:
    info = ctl.info(name)
    target = holders.BlockDev(f"dm-{info.minor}", info.devno, info.name, info.uuid, info.open_count)
    parts = []
    for d in dmmaps.partition_maps(ctl, name):
        pinfo = ctl.info(d.name)
        parts.append(holders.BlockDev(f"dm-{pinfo.minor}", pinfo.devno, pinfo.name, pinfo.uuid,
                                      pinfo.open_count))
    part_devs = {p.dev_t for p in parts}
    stacked = []
    for dev in (target, *parts):  # partition maps are holders of the map too, but reported as partitions
        stacked += [(held, top) for held, top in _stacked(dev) if top.dev_t not in part_devs]
    dev_ts = {target.dev_t, *(p.dev_t for p in parts), *(top.dev_t for _, top in stacked)}
    files, threads = _open_files(dev_ts)
    queueing, usable = False, 0
    tables = [t for t in ctl.table(name) if t.target == "multipath"]
    status = [t for t in ctl.status(name, noflush=True) if t.target == "multipath"]
    if tables:
        queueing = dmt.parse_multipath_params(tables[0].params, tables[0].length).features.queue_if_no_path
    if status:
        usable = dmt.parse_multipath_status(status[0].params).active_paths()
    return holders.Snapshot(target=target, partitions=tuple(parts), stacked=tuple(stacked),
                            mounts=tuple(_mounts(dev_ts)), swaps=tuple(_swaps(dev_ts)),
                            open_files=tuple(files), kernel_threads=tuple(threads), queueing=queueing,
                            usable_paths=usable)
