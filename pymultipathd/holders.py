"""Who keeps a multipath map open, and how to release each holder (pure: a snapshot in, holders out).

When a flush fails with "map in use", an administrator has to hunt through mounts, other mount namespaces,
lazy unmounts, partition maps, LVM, md, loop devices, SCSI/NVMe targets, swap, processes and VMs by hand.
This module does the hunt on a snapshot of the system (gathered by pymultipathd.paths.holderscan) and returns
each holder with the command that releases it, in the order they must be released (what sits on top first).

Every Holder's `release` is one shell command line that releases that holder when run as printed (`sh -c`);
advice and alternatives go to `note`. Where no single command exists (an unexplained open, a lazy unmount) the
release says so in words.

The open count of the map and of each partition map is explained exactly, holder by holder; the kernel facts
behind the numbers (see _opens_of):
- a file system holds its device open once, however many mounts, namespaces and bind mounts share it;
- a swap area on a block device holds two opens before Linux 6.10: swapon opens the device file
  (mm/swapfile.c, swapon: file_open_name) and claim_swapfile opens it again exclusively; from 6.10 on,
  swapon opens it once, exclusively (Snapshot.swap_opens, set from the running kernel);
- a device-mapper, md or bcache device stacked on it, a loop device backed by it (the loop keeps the
  struct file losetup opened), a LIO iblock/fileio/pscsi backstore (blkdev_get_by_path or filp_open), an
  enabled nvmet namespace (blkdev_get_by_path in nvmet_bdev_ns_enable), a btrfs member, an XFS external log or
  realtime device and an ext4 external journal hold one each;
- a swap file, loop file, fileio or nvmet file on a file system holds no open of the device: it pins the
  file system, so it is nested under the mount and must go before the umount.
"""

from __future__ import annotations

import re
import shlex

from pymultipathd.record import field, record

# Kernel threads a mounted file system keeps per block device, named after it ("xfsaild/dm-3",
# "jbd2/dm-3-8"); alive after a lazy unmount (umount -l) while files on it are still open, when no mount
# table shows the file system any more.
FS_THREAD_PREFIXES = ("xfsaild/", "jbd2/")


def jbd2_device(comm: str) -> tuple[str, bool] | None:
    """(device, internal) for a jbd2 thread: "jbd2/dm-3-8" -> ("dm-3", True): the journal is inode 8 of the
    file system on dm-3 (fs/jbd2 names it "%pg-%lu"); "jbd2/dm-5" -> ("dm-5", False): an external journal
    on dm-5 (jbd2_journal_init_dev names it "%pg", no inode). Only dm names carry a dash of their own
    ("dm-5"), so a trailing "-<digits>" is an inode number unless what is left is the bare "dm"."""
    if not comm.startswith("jbd2/"):
        return None
    name = comm.split("/", 1)[1]
    base, _, inode = name.rpartition("-")
    if inode.isdigit() and base and base != "dm":
        return base, True
    return name, False


def fs_thread_device(comm: str) -> str | None:
    """The block device a file system's own kernel thread serves: "jbd2/dm-3-8" or "xfsaild/dm-3" -> "dm-3".
    An external journal's thread ("jbd2/dm-5") serves the journal device, not a file system on it: None."""
    if comm.startswith("xfsaild/"):
        return comm.split("/", 1)[1]
    j = jbd2_device(comm)
    return j[0] if j and j[1] else None


@record(frozen=True)
class BlockDev:
    name: str             # kernel name, e.g. "dm-3", "loop0", "md127", "loop0p1"
    dev_t: str            # "253:3"
    dm_name: str = ""     # device-mapper name, e.g. "mpatha" or "mpatha-part1"
    dm_uuid: str = ""
    open_count: int = 0   # known for the map and its partition maps only
    suspended: bool = False  # a device-mapper device whose I/O is suspended (dmsetup suspend, a stuck reload)


@record(frozen=True)
class Mount:
    dev_t: str            # as mountinfo shows it; "btrfs:<fsid>" for btrfs (its dev_t is an anonymous 0:NN)
    mountpoint: str
    fstype: str
    pid: int              # a process in the mount namespace
    comm: str
    init_ns: bool         # the host's own mount namespace


@record(frozen=True)
class OpenFile:
    dev_t: str
    pid: int
    comm: str
    cmdline: str
    unit: str = ""        # systemd unit of the process, if any


@record(frozen=True)
class Backing:
    """What a kernel user (loop, swap, LIO, nvmet) was given: a block device, or a file on a file system."""
    path: str             # as the kernel shows it (/proc/swaps, backing_file, configfs)
    dev_t: str = ""       # the block device it holds open, when the path is one
    fs: str = ""          # else the file system the file is on (a Mount.dev_t); "" when not found


@record(frozen=True)
class Loop:
    dev: BlockDev         # the loop device itself, e.g. loop0 7:0
    backing: Backing
    autoclear: bool = False  # goes when its last user closes it (mount -o loop, or losetup -d while busy)


@record(frozen=True)
class LioBackstore:
    plugin: str           # configfs plugin: "iblock", "fileio" or "pscsi"
    hba: str              # configfs HBA directory, e.g. "iblock_0"
    name: str             # backstore name (targetcli's)
    backing: Backing


@record(frozen=True)
class NvmetNamespace:
    subsystem: str        # NQN
    nsid: str
    backing: Backing      # device_path; only enabled namespaces are recorded


@record(frozen=True)
class Swap:
    backing: Backing


@record(frozen=True)
class FsDevice:
    """A device a file system holds without a mount table line naming it (or, for btrfs, at all)."""
    dev_t: str            # the device held
    role: str             # "btrfs-member", "xfs-logdev", "xfs-rtdev", "ext4-journal"
    fs: str = ""          # the file system (a Mount.dev_t); "" when it is mounted nowhere visible
    fs_name: str = ""     # btrfs fsid, or the data device of an XFS / ext4 file system
    members: int = 1      # btrfs: how many devices the file system has


@record(frozen=True)
class ScanInfo:
    """What the scan looked at, for the report on opens it could not explain."""
    mount_namespaces: int = 0
    processes: int = 0
    unreadable_processes: int = 0  # whose fd/ or mountinfo could not be read
    checked: tuple[str, ...] = ()  # the other sources read, in words


@record(frozen=True)
class Snapshot:
    target: BlockDev                              # the multipath map
    partitions: tuple[BlockDev, ...] = ()         # its partition maps
    stacked: tuple[tuple[str, BlockDev], ...] = ()  # (dev_t held, device on top) from sysfs holders/
    kernel_partitions: tuple[tuple[str, BlockDev], ...] = ()  # (disk dev_t, partition): loop0p1, md127p1
    mounts: tuple[Mount, ...] = ()
    swaps: tuple[Swap, ...] = ()
    loops: tuple[Loop, ...] = ()
    lio: tuple[LioBackstore, ...] = ()
    nvmet: tuple[NvmetNamespace, ...] = ()
    fs_devices: tuple[FsDevice, ...] = ()
    open_files: tuple[OpenFile, ...] = ()
    kernel_threads: tuple[str, ...] = ()          # comm of kernel threads
    queueing: bool = False                        # the map queues I/O (queue_if_no_path)
    usable_paths: int = 0
    swap_opens: int = 2                           # opens of a swap area on a block device: 1 from Linux 6.10
    scan: ScanInfo = field(default_factory=ScanInfo)


@record(frozen=True)
class Holder:
    kind: str        # see KINDS
    on: str          # the device it holds, e.g. "mpatha" or "mpatha-part1"
    what: str        # who, in words
    release: str     # one shell command line that releases it (or, where there is none, says so)
    data_loss: bool = False
    nested: tuple[Holder, ...] = field(default_factory=tuple)
    note: str = ""   # advice, alternatives, what to do so it does not come back


KINDS = ("partition", "mount", "namespace-mount", "lazy-unmount", "lvm", "crypt", "integrity", "dm", "md",
         "bcache", "drbd", "loop", "lio", "nvmet", "swap", "btrfs-member", "xfs-logdev", "xfs-rtdev",
         "ext4-journal", "suspended", "process", "vm", "queued-io", "unknown",
         "block")  # "block": a device in holders/ that no rule knows

_MAX_DEPTH = 12
_q = shlex.quote


def _label(dev: BlockDev) -> str:
    return dev.dm_name or dev.name


def _node(dev: BlockDev) -> str:
    """The device node an administrator knows: /dev/mapper/NAME for device-mapper, else /dev/<kernel name>."""
    return f"/dev/mapper/{dev.dm_name}" if dev.dm_name else f"/dev/{dev.name}"


def _lvm_name(dev: BlockDev) -> str | None:
    """vg/lv from an LVM device-mapper name ("vg-lv", with "--" standing for a dash inside a name)."""
    if not dev.dm_uuid.startswith("LVM-"):
        return None
    name, parts, i = dev.dm_name, [], 0
    cur = ""
    while i < len(name):
        if name[i] == "-":
            if i + 1 < len(name) and name[i + 1] == "-":
                cur += "-"
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += name[i]
        i += 1
    parts.append(cur)
    return f"{parts[0]}/{'-'.join(parts[1:])}" if len(parts) >= 2 else dev.dm_name


def _is_vm(f: OpenFile) -> bool:
    return f.comm.startswith(("qemu", "kvm")) or "qemu-system" in f.cmdline


def _libvirt_name(cmdline: str) -> str:
    """How to name the guest to virsh: the -uuid qemu was given, or "". Not the -name: libvirt doubles
    commas in it and it may hold spaces, and the cmdline's arguments arrive joined by spaces, so a name cut
    short could be another guest's."""
    m = re.search(r"(?:^|\s)-uuid\s+([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})(?:\s|$)", cmdline)
    return m.group(1) if m else ""


class _Walk:
    """One pass over the snapshot: holders of a device, recursively, each device and file system visited once
    (a loop on a file on a file system that is mounted twice is one holder, nested under the first mount)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.seen_devs: set[str] = set()
        self.seen_fs: set[str] = set()

    def device(self, dev: BlockDev, depth: int = 0) -> list[Holder]:
        if dev.dev_t in self.seen_devs or depth > _MAX_DEPTH:
            return []
        self.seen_devs.add(dev.dev_t)
        snap, label, out = self.snap, _label(dev), []
        for held, top in snap.stacked:
            if held == dev.dev_t:
                out += self._stacked(label, top, depth)
        for disk, part in snap.kernel_partitions:
            if disk == dev.dev_t:
                out += self.device(part, depth + 1)
        out += self._file_system_of(dev, depth)
        for fd in snap.fs_devices:
            if fd.dev_t == dev.dev_t and not (fd.role == "btrfs-member" and fd.members == 1 and fd.fs):
                out.append(self._fs_device(label, fd, depth))
        if not any(fd.dev_t == dev.dev_t and fd.role == "ext4-journal" for fd in snap.fs_devices):
            for t in snap.kernel_threads:
                if jbd2_device(t) == (dev.name, False):
                    out.append(Holder(
                        "ext4-journal", label, f"external journal (kernel thread {t}) of an ext4 file system "
                        "that is mounted nowhere visible: lazily unmounted with files still open, or mounted "
                        "in a namespace whose processes are gone", "# no single command: stop the processes "
                        "with files open on that file system (see note)",
                        note="find them with: grep -l jbd2 /proc/*/mountinfo; lsof | grep deleted; "
                             f"cat /proc/fs/jbd2/{dev.name}/info"))
                    break
        for sw in snap.swaps:
            if sw.backing.dev_t == dev.dev_t:
                out.append(self._swap(label, sw, _node(dev) if dev.dm_name else sw.backing.path))
        for lp in snap.loops:
            if lp.backing.dev_t == dev.dev_t:
                out.append(self._loop(label, lp, depth))
        for bs in snap.lio:
            if bs.backing.dev_t == dev.dev_t:
                out.append(self._lio(label, bs))
        for ns in snap.nvmet:
            if ns.backing.dev_t == dev.dev_t:
                out.append(self._nvmet(label, ns))
        for f in snap.open_files:
            if f.dev_t == dev.dev_t:
                out.append(self._process(label, f))
        return out

    # -- stacked block devices (sysfs holders/) ---------------------------------------------------------
    def _stacked(self, label: str, top: BlockDev, depth: int) -> list[Holder]:
        out: list[Holder] = []
        if top.suspended:  # its I/O hangs until resumed: every release above it (umount, kill) would hang too
            out.append(Holder("suspended", label, f"device-mapper device {top.dm_name} ({top.name}) on it is "
                              "suspended: I/O to it waits, so nothing above it can be released",
                              f"dmsetup resume {_q(top.dm_name)}",
                              note="resume it first; if it was suspended for a table reload in progress "
                                   "(pvmove, lvconvert), let that tool finish instead"))
        nested = tuple(self.device(top, depth + 1))
        uuid, name = top.dm_uuid, top.dm_name
        if top.name.startswith("dm-"):
            lv = _lvm_name(top)
            if lv:
                out.append(Holder("lvm", label, f"LVM logical volume {lv} ({top.name})",
                                  f"lvchange -an {_q(lv)}",
                                  nested=nested,
                                  note="a hidden LVM sub-volume (_tdata, _corig, _rimage...) goes with the "
                                       "logical volume that uses it" if "_" in lv.split("/", 1)[-1] else ""))
            elif uuid.startswith("CRYPT-INTEGRITY-"):
                out.append(Holder("integrity", label, f"dm-integrity device {name} ({top.name})",
                                  f"integritysetup close {_q(name)}", nested=nested))
            elif uuid.startswith(("CRYPT-LUKS", "CRYPT-PLAIN-", "CRYPT-TCRYPT-", "CRYPT-BITLK-")):
                out.append(Holder("crypt", label,
                                  f"dm-crypt device {name} ({top.name}, {uuid.split('-')[1]})",
                                  f"cryptsetup close {_q(name)}", nested=nested,
                                  note="remove it from /etc/crypttab if it is opened at boot"))
            else:
                out.append(Holder("dm", label, f"device-mapper device {name} ({top.name}, uuid "
                                  f"{uuid or 'none'})", f"dmsetup remove {_q(name)}", nested=nested,
                                  note=_dm_note(uuid)))
        elif top.name.startswith("md"):
            out.append(Holder("md", label, f"md RAID array {top.name} has it as a member",
                              f"mdadm --stop /dev/{top.name}", nested=nested,
                              note="to keep it from being assembled again: mdadm --zero-superblock on the "
                                   "member, or drop the array from mdadm.conf"))
        elif top.name.startswith("bcache"):
            out.append(Holder("bcache", label, f"bcache device {top.name} uses it (backing or cache device)",
                              f"echo 1 > /sys/block/{top.name}/bcache/stop", nested=nested,
                              note=f"if {label} is the cache device of a cache set used by several bcache "
                                   "devices, stop the set instead: echo 1 > /sys/fs/bcache/<set uuid>/stop"))
        elif top.name.startswith("drbd"):
            minor = top.name.removeprefix("drbd")
            out.append(Holder("drbd", label, f"DRBD device {top.name} uses it as its backing disk",
                              f"drbdsetup detach {minor}", nested=nested,
                              note="detaching leaves this node diskless (I/O goes to the peer); or take the "
                                   "whole resource down: drbdadm down <resource>"))
        else:
            out.append(Holder("dm" if top.dm_name else "block", label,
                              f"block device {top.name} is stacked on it",
                              f"# no single command known for {top.name}: see /sys/block/{top.name}",
                              nested=nested))
        return out

    # -- file systems ------------------------------------------------------------------------------------
    def _fs_users(self, fs: str, depth: int) -> list[Holder]:
        """What pins a file system through a file on it: loops, swap files, LIO fileio, nvmet file
        namespaces. They must go before the umount (it fails with EBUSY while they hold the file)."""
        if not fs or fs in self.seen_fs:
            return []
        self.seen_fs.add(fs)
        snap, out = self.snap, []
        on = "file system"
        for sw in snap.swaps:
            if sw.backing.fs == fs:
                out.append(self._swap(on, sw, sw.backing.path))
        for lp in snap.loops:
            if lp.backing.fs == fs:
                out.append(self._loop(on, lp, depth))
        for bs in snap.lio:
            if bs.backing.fs == fs:
                out.append(self._lio(on, bs))
        for ns in snap.nvmet:
            if ns.backing.fs == fs:
                out.append(self._nvmet(on, ns))
        return out

    def _mounts(self, fs: str) -> list[Mount]:
        seen, out = set(), []
        for m in self.snap.mounts:
            if m.dev_t == fs and (m.mountpoint, m.init_ns, m.pid if not m.init_ns else 0) not in seen:
                seen.add((m.mountpoint, m.init_ns, m.pid if not m.init_ns else 0))
                out.append(m)
        # one namespace per container: a mount seen through two processes of one namespace is reported once.
        # A copy at the host's own mount point in another namespace (a service with private mounts) arrived
        # by propagation and goes with the host's umount; if one does not (a private copy), the next flush
        # names it. A container's own mount elsewhere is listed with its nsenter.
        host = {m.mountpoint for m in out if m.init_ns}
        return [m for m in out if m.init_ns or m.mountpoint not in host]

    def _file_system_of(self, dev: BlockDev, depth: int) -> list[Holder]:
        label, out = _label(dev), []
        keys = [dev.dev_t] + [fd.fs for fd in self.snap.fs_devices if fd.dev_t == dev.dev_t
                              and fd.role == "btrfs-member" and fd.members == 1 and fd.fs]
        for fs in keys:
            mounts = self._mounts(fs)
            users = tuple(self._fs_users(fs, depth + 1)) if mounts else ()
            for i, m in enumerate(mounts):
                out.append(self._mount(label, m, users if i == 0 else ()))
        if not any(m.dev_t == dev.dev_t for m in self.snap.mounts):
            for t in self.snap.kernel_threads:
                if fs_thread_device(t) == dev.name:
                    out.append(Holder(
                        "lazy-unmount", label,
                        f"a file system on it is still active (kernel thread {t}) but mounted nowhere: "
                        "lazily unmounted (umount -l) with files still open, or mounted in a namespace whose "
                        "processes are gone", "# no single command: stop the processes that still have files "
                        "open on it (see note)",
                        nested=tuple(self._fs_users(dev.dev_t, depth + 1)),
                        note=f"find them with: lsof {_node(dev)}; grep -l {dev.name} /proc/*/mountinfo"))
                    break
        return out

    def _mount(self, label: str, m: Mount, nested: tuple[Holder, ...]) -> Holder:
        if m.init_ns:
            return Holder("mount", label, f"{m.fstype} file system mounted on {m.mountpoint}",
                          f"umount {_q(m.mountpoint)}", nested=nested,
                          note=f"if umount says busy: fuser -vm {_q(m.mountpoint)}; remove it from "
                               "/etc/fstab (or its systemd mount unit) if it is mounted at boot")
        return Holder("namespace-mount", label,
                      f"{m.fstype} file system mounted on {m.mountpoint} in the mount namespace of process "
                      f"{m.pid} ({m.comm}), e.g. a container",
                      f"nsenter -t {m.pid} -m umount {_q(m.mountpoint)}", nested=nested,
                      note="or stop that container")

    def _umount_all(self, fs: str) -> str:
        cmds = []
        for m in self._mounts(fs):
            cmds.append(f"umount {_q(m.mountpoint)}" if m.init_ns
                        else f"nsenter -t {m.pid} -m umount {_q(m.mountpoint)}")
        return " && ".join(cmds)

    def _fs_device(self, label: str, fd: FsDevice, depth: int) -> Holder:
        mounts = self._mounts(fd.fs) if fd.fs else []
        where = ", ".join(m.mountpoint if m.init_ns else f"{m.mountpoint} (namespace of process {m.pid})"
                          for m in mounts)
        role = {"btrfs-member": f"member of the {fd.members}-device btrfs file system {fd.fs_name}",
                "xfs-logdev": f"external log of the XFS file system on {fd.fs_name}",
                "xfs-rtdev": f"realtime device of the XFS file system on {fd.fs_name}",
                "ext4-journal": f"external journal of the ext4 file system on {fd.fs_name}",
                }.get(fd.role, fd.role)
        if mounts:
            return Holder(fd.role, label, f"{role}, mounted on {where}", self._umount_all(fd.fs),
                          nested=tuple(self._fs_users(fd.fs, depth + 1)),
                          note="the file system holds this device until its last mount is gone; if umount "
                               "says busy: fuser -vm on the mount point")
        return Holder(fd.role, label, f"{role}, mounted nowhere visible: lazily unmounted with files still "
                      "open, or mounted in a namespace whose processes are gone",
                      "# no single command: stop the processes with files open on that file system",
                      note="find them with: lsof | grep deleted; grep -l " + (fd.fs_name or "DEV")
                           + " /proc/*/mountinfo")

    # -- kernel users configured from user space ----------------------------------------------------------
    def _swap(self, label: str, sw: Swap, path: str) -> Holder:
        kind = "swap file" if sw.backing.fs else "swap area"
        return Holder("swap", label, f"active {kind} {sw.backing.path}", f"swapoff {_q(path)}",
                      note="swapoff needs enough free memory for what is swapped out; remove it from "
                           "/etc/fstab (or its systemd swap unit) if it is enabled at boot")

    def _loop(self, label: str, lp: Loop, depth: int) -> Holder:
        nested = tuple(self.device(lp.dev, depth + 1))
        node = f"/dev/{lp.dev.name}"
        if lp.autoclear:
            # detached already, or detaches when its last user goes: losetup -d would fail once it has
            return Holder("loop", label, f"loop device {lp.dev.name} on {lp.backing.path} (autoclear: it "
                          "goes by itself when its users above are released)",
                          f"test ! -e /sys/block/{lp.dev.name}/loop || losetup -d {node}", nested=nested)
        return Holder("loop", label, f"loop device {lp.dev.name} on {lp.backing.path}", f"losetup -d {node}",
                      nested=nested,
                      note="set up again at boot by a unit or script that runs losetup, if any")

    def _lio(self, label: str, bs: LioBackstore) -> Holder:
        # configfs itself, not targetcli: that needs a system D-Bus, which a host in trouble (or an
        # initramfs) may not have. The kernel refuses the rmdir (EBUSY) while a LUN still exports it.
        tc = {"iblock": "block", "fileio": "fileio", "pscsi": "pscsi"}.get(bs.plugin, bs.plugin)
        path = f"/sys/kernel/config/target/core/{bs.hba}/{bs.name}"
        return Holder("lio", label, f"LIO SCSI target {bs.plugin} backstore {bs.name} ({bs.hba}) on "
                      f"{bs.backing.path}: exported to initiators", f"rmdir {_q(path)}",
                      note=f"if LUNs still export it (rmdir says busy): targetcli /backstores/{tc} delete "
                           f"{_q(bs.name)} removes them too (initiators lose the disk); run `targetcli "
                           "saveconfig` after, or target.service restores it at boot")

    def _nvmet(self, label: str, ns: NvmetNamespace) -> Holder:
        path = f"/sys/kernel/config/nvmet/subsystems/{ns.subsystem}/namespaces/{ns.nsid}/enable"
        return Holder("nvmet", label, f"NVMe-oF target namespace {ns.nsid} of subsystem {ns.subsystem} on "
                      f"{ns.backing.path}: exported to hosts", f"echo 0 > {_q(path)}",
                      note="disabling closes the device; the namespace stays configured (remove it with "
                           "nvmetcli, or rmdir its directory) and nvmetcli restore enables it again at boot")

    def _process(self, label: str, f: OpenFile) -> Holder:
        who = f"process {f.pid} ({f.comm})" + (f", unit {f.unit}" if f.unit else "")
        if _is_vm(f):
            guest = _libvirt_name(f.cmdline)
            return Holder("vm", label, f"virtual machine {who} has the device open",
                          f"virsh shutdown {_q(guest)}" if guest else f"kill {f.pid}",
                          note="a guest shutdown takes a while; or detach the disk: virsh detach-disk "
                               "<guest> <target>; see /var/log/libvirt/qemu/ for which guest uses it")
        return Holder("process", label, f"{who} has the device open", f"kill {f.pid}",
                      note=f"or stop the service it belongs to: systemctl stop {f.unit}"
                      if f.unit.endswith(".service") else "")


def _dm_note(uuid: str) -> str:
    if uuid.startswith("CRYPT-VERITY-"):
        return "a dm-verity device: veritysetup close does the same"
    if uuid.startswith("VDO-"):
        return "a VDO volume: vdo stop --name=<name> does the same and keeps its configuration"
    if uuid.startswith("stratis-"):
        return "managed by stratisd: stop the pool with stratis pool stop"
    if uuid.startswith("part"):
        return "a partition map (kpartx) of the device below"
    return ""


def _opens_of(dev: BlockDev, snap: Snapshot, is_target: bool) -> int:
    """How many opens of dev (the map or a partition map) the snapshot explains; see the module docstring."""
    t = dev.dev_t
    n = len(snap.partitions) if is_target else 0
    n += len({top.dev_t for held, top in snap.stacked if held == t})
    fs = any(m.dev_t == t for m in snap.mounts) or any(fs_thread_device(k) == dev.name
                                                       for k in snap.kernel_threads)
    n += int(fs)
    n += sum(1 for fd in snap.fs_devices if fd.dev_t == t)
    if not any(fd.dev_t == t and fd.role == "ext4-journal" for fd in snap.fs_devices):
        n += int(any(jbd2_device(k) == (dev.name, False) for k in snap.kernel_threads))
    n += snap.swap_opens * sum(1 for sw in snap.swaps if sw.backing.dev_t == t)
    n += sum(1 for lp in snap.loops if lp.backing.dev_t == t)
    n += sum(1 for bs in snap.lio if bs.backing.dev_t == t)
    n += sum(1 for ns in snap.nvmet if ns.backing.dev_t == t)
    n += sum(1 for f in snap.open_files if f.dev_t == t)
    return n


def _unknown(dev: BlockDev, explained: int, snap: Snapshot) -> Holder:
    s = snap.scan
    checked = [f"mounts in {s.mount_namespaces} mount namespace(s)", f"open files of {s.processes} processes",
               *s.checked]
    blind = [f"processes in other PID namespaces, or whose /proc entries could not be read "
             f"({s.unreadable_processes} here)",
             "kernel users that leave no trace in sysfs, configfs or /proc (a DRBD backing disk, an "
             "out-of-tree driver, a file held by a kernel module)",
             "references a file system keeps internally after a lazy unmount"]
    node = _node(dev)
    note = "\n".join([
        "checked: " + ", ".join(checked),
        "not visible to this scan: " + "; ".join(blind),
        f"look further with: dmsetup info -c; lsblk -s {node}; lsof {node}; fuser -vm {node}; "
        f"grep -l ' {dev.dev_t} ' /proc/*/mountinfo",
        "only if none of these finds the holder: a reboot releases it",
    ])
    missing = dev.open_count - explained
    return Holder("unknown", _label(dev),
                  f"open count {dev.open_count}, {explained} explained: {missing} open(s) by a holder this "
                  "scan cannot see", "# no single command: find the holder first (see note)", note=note)


def find_holders(snap: Snapshot) -> list[Holder]:
    """Every holder of the map and its partitions, top-most first, plus queued I/O and unexplained opens."""
    walk = _Walk(snap)
    out: list[Holder] = []
    label = _label(snap.target)
    for part in snap.partitions:
        nested = walk.device(part)
        explained = _opens_of(part, snap, False)
        if part.open_count > explained:
            nested.append(_unknown(part, explained, snap))
        if part.open_count or nested:
            if part.suspended:
                out.append(Holder("suspended", label, f"partition map {part.dm_name} ({part.name}) is "
                                  "suspended: I/O to it waits", f"dmsetup resume {_q(part.dm_name)}"))
            out.append(Holder("partition", label, f"partition map {part.dm_name} ({part.name}) is open",
                              f"dmsetup remove {_q(part.dm_name)}", nested=tuple(nested),
                              note="release its holders first; the flush removes partition maps nobody "
                                   "holds by itself"))
    out += walk.device(snap.target)
    if snap.queueing and snap.usable_paths == 0:
        # first: while I/O waits, the releases below it hang too (umount syncs, a writer in D state
        # ignores kill)
        out.insert(0, Holder("queued-io", label,
                             "I/O is queued (queue_if_no_path) and no path is left: writers to it hang",
                             f"pymultipathd disablequeueing map {_q(label)}", data_loss=True,
                             note="or bring a path back; giving up fails the queued writes"))
    explained = _opens_of(snap.target, snap, True)
    if snap.target.open_count > explained:
        out.append(_unknown(snap.target, explained, snap))
    return out


def printable(text: str) -> str:
    """Mount points, process names and file names are chosen by others (a user can mount on a directory
    named with a newline): control characters are shown escaped, as mountinfo does, so no one can add a
    forged line, least of all a forged `release:`, to the report."""
    return "".join(c if c.isprintable() or c == " " else f"\\{ord(c):03o}" for c in text)


def explain(snap: Snapshot, holders: list[Holder]) -> str:
    """The administrator's report: what holds the map and what to run, in release order."""
    if not holders:
        return f"{_label(snap.target)}: not in use\n"
    lines = [f"{printable(_label(snap.target))} ({snap.target.name}) is in use (open count "
             f"{snap.target.open_count}). Release these holders, top-most first, then flush again:"]
    done: set[str] = set()

    def emit(h: Holder, indent: str) -> None:
        for n in h.nested:
            emit(n, indent + "  ")
        lines.append(f"{indent}- [{h.kind}] {printable(h.what)}")
        loss = "   (DATA LOSS: queued writes fail)" if h.data_loss else ""
        release = h.release
        if printable(release) != release:  # a name someone chose holds control characters: no command
            release = "# not printed: a name in it holds control characters (see the line above)"
        elif release in done:  # one file system or device reached twice: its release ran above
            release = f"true  # done above: {release}"
        elif not release.startswith("#"):
            done.add(release)
        lines.append(f"{indent}    release: {release}{loss}")
        for i, text in enumerate(h.note.splitlines()):
            lines.append(f"{indent}    {'note: ' if i == 0 else '      '}{printable(text)}")

    for h in holders:
        emit(h, "  ")
    return "\n".join(lines) + "\n"
