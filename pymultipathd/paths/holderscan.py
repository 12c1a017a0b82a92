"""Gather the holders snapshot of a map from the live system: DM, sysfs, configfs and every process's /proc.

Reads only, and never opens the map or any other block device: a read of a queueing map with no path blocks
forever. Device nodes and files are at most stat()ed (which opens nothing). Every directory listing and every
loop is bounded (/proc has thousands of pids; sysfs and configfs are walked by name, never followed blindly).

What is read, all under locations.sysfs() / locations.proc():
- <sysfs>/block/<dev>/{dev,holders/,dm/{name,uuid,suspended}}, kernel partitions (<disk>/<disk>p1/partition);
- <sysfs>/block/loop*/loop/{backing_file,autoclear};
- <sysfs>/kernel/config/target/core/<plugin>_<n>/<name>/{info,udev_path,enable} (LIO backstores);
- <sysfs>/kernel/config/nvmet/subsystems/<nqn>/namespaces/<nsid>/{device_path,enable};
- <sysfs>/fs/btrfs/<fsid>/devices/, <sysfs>/fs/ext4/<dev>/journal_task;
- <proc>/swaps, <proc>/<pid>/{mountinfo,ns/mnt,comm,cmdline,cgroup,fd/}.
"""

from __future__ import annotations

import os
import re
import stat

from pymultipathd import holders, locations
from pymultipathd.dm import maps as dmmaps
from pymultipathd.dm import table as dmt
from pymultipathd.dm.ioctl import Control
from pymultipathd.sysread import read_attr as _read
from pymultipathd.sysread import read_text as _read_text

MAX_LIST = 4096          # entries read from one directory
MAX_PIDS = 1 << 17       # processes looked at
MAX_FDS = 1 << 16        # descriptors looked at per process
MAX_DEVICES = 512        # devices in the closure of what sits on the map
MAX_MOUNT_LINES = 1 << 17


def _listdir(path: str, limit: int = MAX_LIST) -> list[str]:
    try:
        with os.scandir(path) as it:
            names = []
            for e in it:
                names.append(e.name)
                if len(names) >= limit:
                    break
    except OSError:
        return []
    return sorted(names)


def _configfs() -> str:
    """configfs is mounted at /sys/kernel/config, so it follows the sysfs location in test trees too."""
    return os.path.join(locations.sysfs(), "kernel", "config")


class _Devices:
    """Kernel block device names <-> dev_t and device-mapper names, read from sysfs on demand (cached)."""

    def __init__(self) -> None:
        self._by_name: dict[str, holders.BlockDev | None] = {}
        self._dm_names: dict[str, str] | None = None

    def _dir(self, name: str) -> str | None:
        sysfs = locations.sysfs()
        for base in (os.path.join(sysfs, "block", name), os.path.join(sysfs, "class", "block", name)):
            if os.path.isdir(base):
                return base
        return None

    def get(self, name: str) -> holders.BlockDev | None:
        if name not in self._by_name:
            base = self._dir(name) if name and "/" not in name and name not in (".", "..") else None
            dev_t = _read(os.path.join(base, "dev")) if base else ""
            self._by_name[name] = holders.BlockDev(
                name=name, dev_t=dev_t, dm_name=_read(os.path.join(base, "dm", "name")),
                dm_uuid=_read(os.path.join(base, "dm", "uuid")),
                suspended=_read(os.path.join(base, "dm", "suspended")) == "1") if base and dev_t else None
        return self._by_name[name]

    def by_dm_name(self, dm_name: str) -> holders.BlockDev | None:
        if self._dm_names is None:
            sysfs = locations.sysfs()
            self._dm_names = {}
            for name in _listdir(os.path.join(sysfs, "block")):
                if name.startswith("dm-"):
                    n = _read(os.path.join(sysfs, "block", name, "dm", "name"))
                    if n:
                        self._dm_names[n] = name
        kname = self._dm_names.get(dm_name)
        return self.get(kname) if kname else None

    def by_path(self, path: str) -> holders.BlockDev | None:
        """The block device a /dev path names, by name through sysfs (no stat of a /dev a test tree lacks)."""
        if path.startswith("/dev/mapper/"):
            return self.by_dm_name(path.removeprefix("/dev/mapper/"))
        if path.startswith("/dev/") and path.count("/") == 2:
            return self.get(path.removeprefix("/dev/"))
        return None

    def holders_of(self, dev: holders.BlockDev) -> list[holders.BlockDev]:
        base = self._dir(dev.name)
        if not base:
            return []
        return [d for d in (self.get(n) for n in _listdir(os.path.join(base, "holders"))) if d]

    def partitions_of(self, dev: holders.BlockDev) -> list[holders.BlockDev]:
        """Kernel partitions (loop0p1, md127p1); device-mapper partitions are maps of their own (stacked)."""
        base = self._dir(dev.name)
        if not base or dev.name.startswith("dm-"):
            return []
        out = []
        for n in _listdir(os.path.join(base)):
            if n.startswith(dev.name) and os.path.exists(os.path.join(base, n, "partition")):
                d = self.get(n)
                if d:
                    out.append(d)
        return out


def _dev_t(st_dev: int) -> str:
    return f"{os.major(st_dev)}:{os.minor(st_dev)}"


def _unescape(s: str) -> str:
    """Octal escapes of /proc/swaps and mountinfo ("\\040" for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


class _Raw:
    """Everything read once, before working out what sits on the map."""

    def __init__(self) -> None:
        self.devs = _Devices()
        self.mounts: list[tuple[holders.Mount, str, str]] = []  # (mount, source, super options)
        self.namespaces = 0
        self.unreadable = 0
        self.btrfs_anon: dict[str, str] = {}   # anonymous dev_t of a btrfs mount -> "btrfs:<fsid>"
        self.pids = _pids()
        self._read_mounts()

    def _read_mounts(self) -> None:
        """Mounts in every mount namespace (one process per namespace is read)."""
        proc = locations.proc()
        init_ns = _ns_inode(1)
        seen: set[int] = set()
        lines = 0
        for pid in self.pids:
            ns = _ns_inode(pid)
            if ns is None:
                continue
            if ns in seen:
                continue
            text = _read_text(os.path.join(proc, str(pid), "mountinfo"))
            if text is None:  # gone, or not ours to read: that namespace's mounts stay unseen
                self.unreadable += 1
                continue
            seen.add(ns)
            comm = _read(os.path.join(proc, str(pid), "comm"))
            for line in text.splitlines():
                lines += 1
                if lines > MAX_MOUNT_LINES:
                    break
                left, _, right = line.partition(" - ")
                f, r = left.split(), right.split()
                if len(f) < 5 or len(r) < 2:
                    continue
                m = holders.Mount(f[2], _unescape(f[4]), r[0], pid, comm, ns == init_ns)
                self.mounts.append((m, _unescape(r[1]), r[2] if len(r) > 2 else ""))
        self.namespaces = len(seen)

    def backing(self, path: str) -> holders.Backing:
        """A path a kernel user was given: the block device it holds, or the file system its file is on."""
        clean = path.removesuffix(" (deleted)")
        dev = self.devs.by_path(clean)
        if dev:
            return holders.Backing(path, dev_t=dev.dev_t)
        home = self._mount_of(clean)
        if home is not None and home.fstype.split(".")[0] in NETWORK_FS:
            return holders.Backing(path, fs=home.dev_t)  # not on the map, and a stat there may never return
        try:
            st = os.stat(clean)  # a stat opens nothing; the file is held open by its user, so it is cached
        except OSError:
            st = None
        if st is not None and stat.S_ISBLK(st.st_mode):
            return holders.Backing(path, dev_t=_dev_t(st.st_rdev))
        if st is not None:
            fs = _dev_t(st.st_dev)
            fs = self.btrfs_anon.get(fs, fs)
            if any(m.dev_t == fs for m, _, _ in self.mounts):
                return holders.Backing(path, fs=fs)
        # a btrfs subvolume has its own st_dev, a deleted file none: the host mount whose path holds it
        best = home
        return holders.Backing(path, fs=best.dev_t if best else "")

    def _mount_of(self, path: str) -> holders.Mount | None:
        """The host mount whose mount point is the longest prefix of `path` (no file system is asked)."""
        best: holders.Mount | None = None
        for m, _, _ in self.mounts:
            mp = m.mountpoint.rstrip("/") + "/"
            longer = best is None or len(mp) > len(best.mountpoint)
            if m.init_ns and (path + "/").startswith(mp) and longer:
                best = m
        return best


# File systems whose files a stat may wait on forever (a dead server): never asked, and never on a map.
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "fuse", "fuseblk",
                        "afs", "ncpfs", "lustre", "gfs2", "ocfs2", "davfs"})


def _pids() -> list[int]:
    out = []
    for p in _listdir(locations.proc(), MAX_PIDS + 64):
        if p.isdigit():
            out.append(int(p))
    return sorted(out)[:MAX_PIDS]


def _ns_inode(pid: int) -> int | None:
    try:
        return os.stat(os.path.join(locations.proc(), str(pid), "ns", "mnt")).st_ino
    except OSError:
        return None


def _loops(raw: _Raw) -> list[holders.Loop]:
    sysfs = locations.sysfs()
    out = []
    for name in _listdir(os.path.join(sysfs, "block")):
        if not name.startswith("loop"):
            continue
        base = os.path.join(sysfs, "block", name, "loop")
        path = _read(os.path.join(base, "backing_file"))
        dev = raw.devs.get(name)
        if path and dev:  # no loop/ directory or no backing file: not bound
            out.append(holders.Loop(dev, raw.backing(path), _read(os.path.join(base, "autoclear")) == "1"))
    return out


def _lio(raw: _Raw) -> list[holders.LioBackstore]:
    """LIO backstores: iblock shows the device it opened in `info` ("Major: 253 Minor: 3"), fileio its file
    ("File: /path"), pscsi its udev_path. Only configured ones (enable = 1) hold anything."""
    core = os.path.join(_configfs(), "target", "core")
    out = []
    for hba in _listdir(core):
        plugin = hba.rsplit("_", 1)[0]
        if plugin not in ("iblock", "fileio", "pscsi"):
            continue
        for name in _listdir(os.path.join(core, hba)):
            base = os.path.join(core, hba, name)
            if not os.path.isdir(base) or name.startswith("hba_"):
                continue
            if _read(os.path.join(base, "enable")) not in ("1", ""):
                continue
            info = _read(os.path.join(base, "info"))
            udev = _read(os.path.join(base, "udev_path"))
            m = re.search(r"Major: (\d+) Minor: (\d+)", info)
            if plugin == "iblock" and m and m.group(1) != "0":
                backing = holders.Backing(udev or name, dev_t=f"{m.group(1)}:{m.group(2)}")
            else:
                f = re.search(r"File: (.*?)  Size: ", info) if plugin == "fileio" else None
                path = f.group(1) if f else udev
                if not path:
                    continue
                backing = raw.backing(path)
            out.append(holders.LioBackstore(plugin, hba, name, backing))
    return out


def _nvmet(raw: _Raw) -> list[holders.NvmetNamespace]:
    subs = os.path.join(_configfs(), "nvmet", "subsystems")
    out = []
    for nqn in _listdir(subs):
        nsdir = os.path.join(subs, nqn, "namespaces")
        for nsid in _listdir(nsdir):
            base = os.path.join(nsdir, nsid)
            path = _read(os.path.join(base, "device_path"))
            if path and _read(os.path.join(base, "enable")) == "1":
                out.append(holders.NvmetNamespace(nqn, nsid, raw.backing(path)))
    return out


def _swaps(raw: _Raw) -> list[holders.Swap]:
    out = []
    for line in _read(os.path.join(locations.proc(), "swaps")).splitlines()[1:]:
        f = line.split()
        if f:
            out.append(holders.Swap(raw.backing(_unescape(f[0]))))
    return out


def _btrfs(raw: _Raw) -> list[tuple[str, list[holders.BlockDev]]]:
    """(fsid, member devices) of every btrfs file system the kernel has mounted."""
    root = os.path.join(locations.sysfs(), "fs", "btrfs")
    out = []
    for fsid in _listdir(root):
        devdir = os.path.join(root, fsid, "devices")
        if os.path.isdir(devdir):  # not "features" and the like
            out.append((fsid, [d for d in (raw.devs.get(n) for n in _listdir(devdir)) if d]))
    return out


def _ext4_journals(raw: _Raw) -> list[tuple[str, str]]:
    """(journal device name, file system device name) for ext4 file systems with an external journal: the
    journal thread's name (/sys/fs/ext4/<dev>/journal_task is its pid) is "jbd2/<journal device>", with no
    "-<inode>" suffix when the journal is on a device of its own."""
    root = os.path.join(locations.sysfs(), "fs", "ext4")
    out = []
    for fsdev in _listdir(root):
        pid = _read(os.path.join(root, fsdev, "journal_task"))
        if not pid.isdigit():
            continue
        j = holders.jbd2_device(_read(os.path.join(locations.proc(), pid, "comm")))
        if j and not j[1]:
            out.append((j[0], fsdev))
    return out


def _unit(pid: int) -> str:
    for line in _read(os.path.join(locations.proc(), str(pid), "cgroup")).splitlines():
        path = line.rsplit(":", 1)[-1]
        leaf = path.rsplit("/", 1)[-1]
        if leaf.endswith((".service", ".scope")):
            return leaf
    return ""


def _rdev(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return _dev_t(st.st_rdev)


def _open_files(pids: list[int], dev_ts: set[str]) -> tuple[list[holders.OpenFile], list[str], int, int]:
    """Processes with one of these block devices open, the comm of every file-system kernel thread, how many
    processes were looked at and how many of them could not be read."""
    proc = locations.proc()
    files: list[holders.OpenFile] = []
    threads: list[str] = []
    me = os.getpid()
    seen = unreadable = 0
    for pid in pids:
        if pid == me:
            continue
        base = os.path.join(proc, str(pid))
        comm = _read(os.path.join(base, "comm"))
        if comm.startswith(holders.FS_THREAD_PREFIXES):
            threads.append(comm)
        try:
            fds = _listdir_strict(os.path.join(base, "fd"))
        except FileNotFoundError:
            continue  # gone, or a kernel thread's view
        except OSError:
            unreadable += 1
            continue
        seen += 1
        for fd in fds:
            link = os.path.join(base, "fd", fd)
            try:
                # readlink asks no file system; a stat of a file on a dead NFS server would never return.
                # Only device nodes (under /dev, as the process sees it) are stat()ed, through the fd link.
                if not os.readlink(link).startswith("/dev/"):
                    continue
            except OSError:
                continue
            rdev = _rdev(link)
            if rdev in dev_ts:
                cmdline = _read(os.path.join(base, "cmdline")).replace("\0", " ").strip()
                files.append(holders.OpenFile(rdev, pid, comm, cmdline, _unit(pid)))
    return files, threads, seen, unreadable


def _listdir_strict(path: str) -> list[str]:
    names = os.listdir(path)
    return names[:MAX_FDS]


class _Closure:
    """Everything that sits on the map, however indirectly: devices stacked on it (holders/), kernel
    partitions of those, loop devices backed by any of them or by a file on a file system on any of them, and
    the file systems (mounted, btrfs members, XFS log/rt devices, ext4 journals) on any of them."""

    def __init__(self, raw: _Raw, roots: list[holders.BlockDev], skip: set[str]) -> None:
        self.raw = raw
        self.devs: dict[str, holders.BlockDev] = {d.dev_t: d for d in roots}
        self.stacked: list[tuple[str, holders.BlockDev]] = []
        self.kparts: list[tuple[str, holders.BlockDev]] = []
        self.fs: set[str] = set()
        self.fs_devices: list[holders.FsDevice] = []
        self._skip = skip  # partition maps: holders of the map, reported as partitions
        self._done: set[str] = set()

    def run(self, loops: list[holders.Loop], btrfs: list[tuple[str, list[holders.BlockDev]]],
            journals: list[tuple[str, str]]) -> None:
        for _ in range(64):  # each round adds what sits on the last; bounded against any loop
            pending = [d for t, d in self.devs.items() if t not in self._done]
            for d in pending:
                self._done.add(d.dev_t)
                self._device(d, btrfs, journals)
            grew = False
            for lp in loops:
                on = lp.backing.dev_t in self.devs or lp.backing.fs in self.fs
                if lp.dev.dev_t not in self.devs and on:
                    self.devs[lp.dev.dev_t] = lp.dev
                    grew = True
            if not grew and all(t in self._done for t in self.devs):
                return
            if len(self.devs) > MAX_DEVICES:
                return

    def _device(self, d: holders.BlockDev, btrfs: list[tuple[str, list[holders.BlockDev]]],
                journals: list[tuple[str, str]]) -> None:
        raw = self.raw
        for top in raw.devs.holders_of(d):
            if top.dev_t in self._skip:
                continue
            self.stacked.append((d.dev_t, top))
            self.devs.setdefault(top.dev_t, top)
        for part in raw.devs.partitions_of(d):
            self.kparts.append((d.dev_t, part))
            self.devs.setdefault(part.dev_t, part)
        if any(m.dev_t == d.dev_t for m, _, _ in raw.mounts):
            self.fs.add(d.dev_t)
        for fsid, members in btrfs:
            if any(mb.dev_t == d.dev_t for mb in members):
                key = f"btrfs:{fsid}"
                member_ts = {mb.dev_t for mb in members}
                mounted = False
                for i, (m, source, opts) in enumerate(raw.mounts):
                    if m.fstype == "btrfs" and m.dev_t not in ("", key):
                        src = raw.devs.by_path(source)
                        src_t = src.dev_t if src else (_rdev(source) or "")
                        if src_t in member_ts:
                            raw.btrfs_anon[m.dev_t] = key
                            keyed = holders.Mount(key, m.mountpoint, m.fstype, m.pid, m.comm, m.init_ns)
                            raw.mounts[i] = (keyed, source, opts)
                    mounted = mounted or raw.mounts[i][0].dev_t == key
                self.fs.add(key)
                self.fs_devices.append(holders.FsDevice(d.dev_t, "btrfs-member", key if mounted else "", fsid,
                                                        len(members)))
        for m, source, opts in raw.mounts:
            if m.fstype != "xfs":
                continue
            for opt in opts.split(","):
                key, _, value = opt.partition("=")
                if key in ("logdev", "rtdev") and value:
                    dev = raw.devs.by_path(value)
                    if (dev.dev_t if dev else _rdev(value)) == d.dev_t:
                        fd = holders.FsDevice(d.dev_t, f"xfs-{key}", m.dev_t, source)
                        if fd not in self.fs_devices:
                            self.fs_devices.append(fd)
                            self.fs.add(m.dev_t)
        for jname, fsname in journals:
            if jname == d.name:
                fsdev = raw.devs.get(fsname)
                fs = fsdev.dev_t if fsdev else ""
                self.fs_devices.append(holders.FsDevice(d.dev_t, "ext4-journal", fs, fsname))
                if fs:
                    self.fs.add(fs)


def gather(target: holders.BlockDev, parts: list[holders.BlockDev], *, queueing: bool = False,
           usable_paths: int = 0, kernel: str | None = None) -> holders.Snapshot:
    """The snapshot for a map whose DM facts (open counts) are known: everything else from sysfs and /proc.
    `kernel`: the release whose open-count rules apply (default: the running kernel's)."""
    raw = _Raw()
    loops = _loops(raw)
    part_ts = {p.dev_t for p in parts}
    closure = _Closure(raw, [target, *parts], part_ts)
    closure.run(loops, _btrfs(raw), _ext4_journals(raw))
    # loops whose backing file is on a btrfs were resolved before btrfs mounts got their key: resolve again
    if raw.btrfs_anon:
        loops = [holders.Loop(lp.dev, raw.backing(lp.backing.path), lp.autoclear) for lp in loops]
        closure.run(loops, [], [])
    devs, fs = closure.devs, closure.fs

    def relevant(b: holders.Backing) -> bool:
        return b.dev_t in devs or (b.fs != "" and b.fs in fs)

    dev_ts = set(devs)
    files, threads, seen, unreadable = _open_files(raw.pids, dev_ts)
    wanted = {m.dev_t for m, _, _ in raw.mounts if m.dev_t in dev_ts or m.dev_t in fs}
    checked = ("sysfs holders (device-mapper, md, bcache, drbd)", "loop devices", "LIO backstores",
               "nvmet namespaces", "/proc/swaps", "btrfs, XFS log/realtime and ext4 journal devices")
    return holders.Snapshot(
        target=target, partitions=tuple(parts), stacked=tuple(closure.stacked),
        kernel_partitions=tuple(closure.kparts),
        mounts=tuple(m for m, _, _ in raw.mounts if m.dev_t in wanted),
        swaps=tuple(s for s in _swaps(raw) if relevant(s.backing)),
        loops=tuple(lp for lp in loops if relevant(lp.backing)),
        lio=tuple(b for b in _lio(raw) if relevant(b.backing)),
        nvmet=tuple(n for n in _nvmet(raw) if relevant(n.backing)),
        fs_devices=tuple(closure.fs_devices), open_files=tuple(files), kernel_threads=tuple(threads),
        queueing=queueing, usable_paths=usable_paths, swap_opens=swap_opens(kernel or os.uname().release),
        scan=holders.ScanInfo(raw.namespaces, seen, unreadable + raw.unreadable, checked))


def swap_opens(release: str) -> int:
    """Opens a swap area holds on its block device: two before Linux 6.10 (swapon opened the device file,
    then claimed the device again), one since swapon opens it exclusively once."""
    nums = re.match(r"(\d+)\.(\d+)", release)
    return 1 if nums and (int(nums[1]), int(nums[2])) >= (6, 10) else 2


def snapshot(ctl: Control, name: str) -> holders.Snapshot:
    target, parts, queueing, usable = dm_state(ctl, name)
    return gather(target, parts, queueing=queueing, usable_paths=usable)


def unscanned(target: holders.BlockDev, parts: list[holders.BlockDev], queueing: bool, usable: int,
              scan: holders.ScanInfo | None = None) -> holders.Snapshot:
    """A snapshot of device mapper's facts alone: nothing scanned (not needed, or it did not finish)."""
    return holders.Snapshot(target=target, partitions=tuple(parts), queueing=queueing, usable_paths=usable,
                            scan=scan or holders.ScanInfo())


def held(target: holders.BlockDev, parts: list[holders.BlockDev]) -> bool:
    """Whether anything but its own partition maps has the map, or a partition map, open (DM's counts)."""
    return target.open_count > len(parts) or any(p.open_count for p in parts)


def dm_state(ctl: Control, name: str) -> tuple[holders.BlockDev, list[holders.BlockDev], bool, int]:
    """(the map, its partition maps, queueing, usable paths) from device mapper alone: cheap, and enough to
    tell whether the scan of the whole system is needed at all."""
    info = ctl.info(name)
    sysfs_dev = _Devices()
    target = holders.BlockDev(f"dm-{info.minor}", info.devno, info.name, info.uuid, info.open_count)
    parts = []
    for d in dmmaps.partition_maps(ctl, name):
        pinfo = ctl.info(d.name)
        known = sysfs_dev.get(f"dm-{pinfo.minor}")
        parts.append(holders.BlockDev(f"dm-{pinfo.minor}", pinfo.devno, pinfo.name, pinfo.uuid,
                                      pinfo.open_count, suspended=bool(known and known.suspended)))
    queueing, usable = False, 0
    tables = [t for t in ctl.table(name) if t.target == "multipath"]
    status = [t for t in ctl.status(name, noflush=True) if t.target == "multipath"]
    if tables:
        queueing = dmt.parse_multipath_params(tables[0].params, tables[0].length).features.queue_if_no_path
    if status:
        usable = dmt.parse_multipath_status(status[0].params).active_paths()
    return target, parts, queueing, usable
