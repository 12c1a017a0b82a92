"""Who keeps a multipath map open, and how to release each holder (pure: a snapshot in, holders out).

When a flush fails with "map in use", an administrator has to hunt through mounts, other mount namespaces,
lazy unmounts, partition maps, LVM, processes and VMs by hand. This module does the hunt on a snapshot of the
system (gathered by pymultipathd.paths.holderscan) and returns each holder with the command that releases it,
in the order they must be released (what sits on top first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kernel threads a mounted file system keeps per block device, named after it ("xfsaild/dm-3",
# "jbd2/dm-3-8"); alive after a lazy unmount (umount -l) while files on it are still open, when no mount
# table shows the file system any more.
FS_THREAD_PREFIXES = ("xfsaild/", "jbd2/")


def fs_thread_device(comm: str) -> str | None:
    """The block device a file-system kernel thread serves: "jbd2/dm-3-8" -> "dm-3"."""
    if not comm.startswith(FS_THREAD_PREFIXES):
        return None
    name = comm.split("/", 1)[1]
    if comm.startswith("jbd2/"):  # jbd2/<dev>-<journal inode>
        base, _, inode = name.rpartition("-")
        return base if inode.isdigit() and base else name
    return name


@dataclass(frozen=True)
class BlockDev:
    name: str             # kernel name, e.g. "dm-3"
    dev_t: str            # "253:3"
    dm_name: str = ""     # device-mapper name, e.g. "mpatha" or "mpatha-part1"
    dm_uuid: str = ""
    open_count: int = 0


@dataclass(frozen=True)
class Mount:
    dev_t: str
    mountpoint: str
    fstype: str
    pid: int              # a process in the mount namespace
    comm: str
    init_ns: bool         # the host's own mount namespace


@dataclass(frozen=True)
class OpenFile:
    dev_t: str
    pid: int
    comm: str
    cmdline: str
    unit: str = ""        # systemd unit of the process, if any


@dataclass(frozen=True)
class Snapshot:
    target: BlockDev                              # the multipath map
    partitions: tuple[BlockDev, ...] = ()         # its partition maps
    stacked: tuple[tuple[str, BlockDev], ...] = ()  # (dev_t held, dm device on top of it): LVM, crypt, ...
    mounts: tuple[Mount, ...] = ()
    swaps: tuple[str, ...] = ()                   # dev_t of active swap areas
    open_files: tuple[OpenFile, ...] = ()
    kernel_threads: tuple[str, ...] = ()          # comm of kernel threads
    queueing: bool = False                        # the map queues I/O (queue_if_no_path)
    usable_paths: int = 0


@dataclass(frozen=True)
class Holder:
    kind: str        # mount, namespace-mount, lazy-unmount, swap, partition, lvm, dm, process, vm, queued-io,
    #                  unknown
    on: str          # the device it holds, e.g. "mpatha" or "mpatha-part1"
    what: str        # who, in words
    release: str     # the command (or step) that releases it
    data_loss: bool = False
    nested: tuple[Holder, ...] = field(default_factory=tuple)


def _label(dev: BlockDev) -> str:
    return dev.dm_name or dev.name


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


def _holders_of(dev: BlockDev, snap: Snapshot, depth: int = 0) -> list[Holder]:
    out: list[Holder] = []
    label = _label(dev)
    for held, top in snap.stacked:
        if held != dev.dev_t:
            continue
        nested = tuple(_holders_of(top, snap, depth + 1)) if depth < 8 else ()
        lv = _lvm_name(top)
        if lv:
            out.append(Holder("lvm", label, f"LVM logical volume {lv} ({top.name})",
                              f"lvchange -an {lv}", nested=nested))
        else:
            out.append(Holder("dm", label, f"device-mapper device {top.dm_name} ({top.name}, uuid "
                              f"{top.dm_uuid or 'none'})", f"dmsetup remove {top.dm_name}", nested=nested))
    seen_mounts = set()
    for m in snap.mounts:
        if m.dev_t != dev.dev_t or (m.mountpoint, m.init_ns) in seen_mounts:
            continue
        seen_mounts.add((m.mountpoint, m.init_ns))
        if m.init_ns:
            out.append(Holder("mount", label, f"{m.fstype} file system mounted on {m.mountpoint}",
                              f"umount {m.mountpoint} (and remove it from /etc/fstab if listed there)"))
        else:
            out.append(Holder("namespace-mount", label,
                              f"{m.fstype} file system mounted on {m.mountpoint} in the mount namespace of "
                              f"process {m.pid} ({m.comm}), e.g. a container",
                              f"stop that container, or: nsenter -t {m.pid} -m umount {m.mountpoint}"))
    if dev.dev_t in snap.swaps:
        out.append(Holder("swap", label, "active swap area", f"swapoff /dev/{dev.name}"))
    for f in snap.open_files:
        if f.dev_t != dev.dev_t:
            continue
        who = f"process {f.pid} ({f.comm})" + (f", unit {f.unit}" if f.unit else "")
        if _is_vm(f):
            out.append(Holder("vm", label, f"virtual machine {who} has the device open",
                              "shut the guest down or detach the disk (virsh detach-disk ...); see "
                              "/var/log/libvirt/qemu/ for which guest uses it"))
        else:
            stop = f"kill {f.pid}"
            if f.unit.endswith(".service"):
                stop += f" (or stop the service it belongs to: systemctl stop {f.unit})"
            out.append(Holder("process", label, f"{who} has the device open", stop))
    mounted = any(m.dev_t == dev.dev_t for m in snap.mounts)
    if not mounted:
        for t in snap.kernel_threads:
            if fs_thread_device(t) == dev.name:
                out.append(Holder("lazy-unmount", label,
                                  f"a file system on it is still active (kernel thread {t}) but mounted "
                                  "nowhere: lazily unmounted (umount -l) with files still open, or mounted "
                                  "in a namespace whose processes are gone",
                                  f"find and stop the processes with files open on it: "
                                  f"lsof /dev/{dev.name}; grep -l {dev.name} /proc/*/mountinfo"))
                break
    return out


def find_holders(snap: Snapshot) -> list[Holder]:
    """Every holder of the map and its partitions, top-most first, plus queued I/O and unexplained opens."""
    out: list[Holder] = []
    for part in snap.partitions:
        nested = tuple(_holders_of(part, snap))
        if part.open_count or nested:
            out.append(Holder("partition", _label(snap.target),
                              f"partition map {part.dm_name} ({part.name}) is open",
                              "release its holders below; then the flush removes it "
                              f"(or kpartx -d /dev/mapper/{_label(snap.target)})", nested=nested))
    out += _holders_of(snap.target, snap)
    if snap.queueing and snap.usable_paths == 0:
        out.append(Holder("queued-io", _label(snap.target),
                          "I/O is queued (queue_if_no_path) and no path is left: writers to it hang",
                          "bring a path back, or give up the queued writes: "
                          f"pymultipathd disablequeueing map {_label(snap.target)}", data_loss=True))
    explained = _count_opens(out, snap)
    if snap.target.open_count > explained:
        out.append(Holder("unknown", _label(snap.target),
                          f"open count {snap.target.open_count}, {explained} explained: something in the "
                          "kernel or a process this scan cannot see (another PID namespace) holds it",
                          "check `dmsetup info -c` and `lsblk -s`; a kernel holder may need a reboot"))
    return out


def _count_opens(holders: list[Holder], snap: Snapshot) -> int:
    """How many opens of the map the snapshot explains: one per partition map and per device stacked on it,
    one for a file system however many mounts (namespaces, binds) share it, one per swap and open file."""
    t = snap.target.dev_t
    fs = any(m.dev_t == t for m in snap.mounts) or any(
        h.kind == "lazy-unmount" and h.on == _label(snap.target) for h in holders)
    return (len(snap.partitions) + sum(1 for held, _ in snap.stacked if held == t) + int(fs)
            + int(t in snap.swaps) + sum(1 for f in snap.open_files if f.dev_t == t))


def explain(snap: Snapshot, holders: list[Holder]) -> str:
    """The administrator's report: what holds the map and what to run, in release order."""
    if not holders:
        return f"{_label(snap.target)}: not in use\n"
    lines = [f"{_label(snap.target)} ({snap.target.name}) is in use (open count {snap.target.open_count}). "
             "Release these holders, top-most first, then flush again:"]

    def emit(h: Holder, indent: str) -> None:
        for n in h.nested:
            emit(n, indent + "  ")
        lines.append(f"{indent}- [{h.kind}] {h.what}")
        loss = "   (DATA LOSS: queued writes fail)" if h.data_loss else ""
        lines.append(f"{indent}    release: {h.release}{loss}")

    for h in holders:
        emit(h, "  ")
    return "\n".join(lines) + "\n"
