"""Every kind of kernel holder: named, with its release command, its opens counted exactly (no [unknown]
when everything is explained), nested top-most first; and holderscan gathering them from a fake
sysfs/proc/configfs tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pymultipathd import holders as h
from pymultipathd.holders import (
    Backing,
    BlockDev,
    FsDevice,
    LioBackstore,
    Loop,
    Mount,
    NvmetNamespace,
    ScanInfo,
    Snapshot,
    Swap,
    explain,
    find_holders,
)
from pymultipathd.paths import holderscan

MAP = BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=1)
LOOP0 = BlockDev("loop0", "7:0")


def _map(n: int) -> BlockDev:
    return BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=n)


def kinds(hs):
    return [x.kind for x in hs]


def flat(hs):
    for x in hs:
        yield from flat(x.nested)
        yield x


# -- the two cases -------------------------------------------------------------------------------
def test_loop_on_the_map_is_named_with_losetup_and_fully_explained():
    snap = Snapshot(target=MAP, loops=(Loop(LOOP0, Backing("/dev/dm-3", dev_t="253:3")),))
    (loop,) = find_holders(snap)
    assert loop.kind == "loop" and loop.release == "losetup -d /dev/loop0"
    assert "loop device loop0 on /dev/dm-3" in loop.what
    assert "unknown" not in explain(snap, [loop])


def test_swap_on_a_block_device_is_two_opens():
    swap = Swap(Backing("/dev/dm-3", dev_t="253:3"))
    (s,) = find_holders(Snapshot(target=_map(2), swaps=(swap,)))
    assert s.kind == "swap" and s.release == "swapoff /dev/mapper/mpatha"
    hs = find_holders(Snapshot(target=_map(3), swaps=(swap,)))
    assert kinds(hs) == ["swap", "unknown"] and "open count 3, 2 explained" in hs[1].what


def test_swap_file_on_a_mounted_file_system_is_nested_and_opens_nothing_itself():
    snap = Snapshot(target=MAP, mounts=(Mount("253:3", "/srv", "ext4", 1, "systemd", True),),
                    swaps=(Swap(Backing("/srv/swap file", fs="253:3")),))
    (m,) = find_holders(snap)
    assert m.kind == "mount" and kinds(m.nested) == ["swap"]
    assert m.nested[0].release == "swapoff '/srv/swap file'"
    text = explain(snap, [m])
    assert text.index("swapoff") < text.index("umount /srv")


# -- stacked block devices ------------------------------------------------------------------------------
@pytest.mark.parametrize(("top", "kind", "release"), [
    (BlockDev("dm-6", "253:6", "luks-abc", "CRYPT-LUKS2-abc-luks-abc"), "crypt", "cryptsetup close luks-abc"),
    (BlockDev("dm-6", "253:6", "int1", "CRYPT-INTEGRITY-int1"), "integrity", "integritysetup close int1"),
    (BlockDev("dm-6", "253:6", "cache1", "CACHE-x"), "dm", "dmsetup remove cache1"),
    (BlockDev("dm-6", "253:6", "vg-lv", "LVM-abc"), "lvm", "lvchange -an vg/lv"),
    (BlockDev("md127", "9:127"), "md", "mdadm --stop /dev/md127"),
    (BlockDev("bcache0", "252:0"), "bcache", "echo 1 > /sys/block/bcache0/bcache/stop"),
    (BlockDev("drbd1", "147:1"), "drbd", "drbdsetup detach 1"),
])
def test_stacked_devices_each_hold_one_open(top, kind, release):
    (x,) = find_holders(Snapshot(target=MAP, stacked=(("253:3", top),)))
    assert x.kind == kind and x.release == release


def test_suspended_device_on_top_is_resumed_before_anything_above_it():
    lv = BlockDev("dm-5", "253:5", "vg-lv", "LVM-abc", suspended=True)
    snap = Snapshot(target=MAP, stacked=(("253:3", lv),),
                    mounts=(Mount("253:5", "/home", "xfs", 1, "systemd", True),))
    hs = find_holders(snap)
    assert kinds(hs) == ["suspended", "lvm"] and hs[0].release == "dmsetup resume vg-lv"
    text = explain(snap, hs)
    assert text.index("dmsetup resume") < text.index("umount /home") < text.index("lvchange -an vg/lv")


# -- targets -----------------------------------------------------------------------------------------------
def test_lio_backstores_and_nvmet_namespace_each_hold_one_open():
    snap = Snapshot(target=_map(3), lio=(
        LioBackstore("iblock", "iblock_0", "disk1", Backing("/dev/mapper/mpatha", dev_t="253:3")),
        LioBackstore("fileio", "fileio_1", "f1", Backing("/dev/mapper/mpatha", dev_t="253:3")),
    ), nvmet=(NvmetNamespace("nqn.2024-01.io.x:s1", "1", Backing("/dev/mapper/mpatha", dev_t="253:3")),))
    hs = find_holders(snap)
    assert kinds(hs) == ["lio", "lio", "nvmet"]
    assert hs[0].release == "rmdir /sys/kernel/config/target/core/iblock_0/disk1" and "iblock" in hs[0].what
    assert hs[1].release == "rmdir /sys/kernel/config/target/core/fileio_1/f1"
    assert "targetcli /backstores/block delete disk1" in hs[0].note  # when LUNs still export it
    nvmet = "/sys/kernel/config/nvmet/subsystems/nqn.2024-01.io.x:s1/namespaces/1/enable"
    assert hs[2].release == f"echo 0 > {nvmet}"


def test_fileio_on_a_file_pins_the_mount_only():
    snap = Snapshot(target=MAP, mounts=(Mount("253:3", "/srv", "xfs", 1, "systemd", True),),
                    lio=(LioBackstore("fileio", "fileio_0", "img", Backing("/srv/lun.img", fs="253:3")),))
    (m,) = find_holders(snap)
    assert kinds(m.nested) == ["lio"]


# -- file systems holding devices without a mount line naming them -----------------------------------------
def test_single_device_btrfs_is_a_plain_mount():
    snap = Snapshot(target=MAP, mounts=(Mount("btrfs:f00", "/data", "btrfs", 1, "systemd", True),),
                    fs_devices=(FsDevice("253:3", "btrfs-member", "btrfs:f00", "f00", 1),))
    (m,) = find_holders(snap)
    assert m.kind == "mount" and m.release == "umount /data"


def test_btrfs_member_xfs_log_and_rt_ext4_journal():
    mounts = (Mount("btrfs:f00", "/data", "btrfs", 1, "systemd", True),
              Mount("btrfs:f00", "/data", "btrfs", 4242, "sh", False),
              Mount("8:0", "/x", "xfs", 1, "systemd", True), Mount("8:16", "/e", "ext4", 1, "systemd", True))
    snap = Snapshot(target=_map(4), mounts=mounts, fs_devices=(
        FsDevice("253:3", "btrfs-member", "btrfs:f00", "f00", 2),
        FsDevice("253:3", "xfs-logdev", "8:0", "/dev/sda"),
        FsDevice("253:3", "xfs-rtdev", "8:0", "/dev/sda"),
        FsDevice("253:3", "ext4-journal", "8:16", "sdb"),
    ))
    hs = find_holders(snap)
    assert kinds(hs) == ["btrfs-member", "xfs-logdev", "xfs-rtdev", "ext4-journal"]
    assert hs[0].release == "umount /data"  # the copy at the same mount point goes with it (propagation)
    assert hs[1].release == "umount /x" and hs[3].release == "umount /e"


def test_external_journal_thread_is_not_a_lazy_unmount_of_dm():
    assert h.jbd2_device("jbd2/dm-5") == ("dm-5", False)
    assert h.jbd2_device("jbd2/dm-5-8") == ("dm-5", True)
    assert h.fs_thread_device("jbd2/dm-5") is None
    snap = Snapshot(target=BlockDev("dm-5", "253:5", "mpatha", "mpath-x", open_count=1),
                    kernel_threads=("jbd2/dm-5",))
    (j,) = find_holders(snap)
    assert j.kind == "ext4-journal" and "/proc/fs/jbd2/dm-5/info" in j.note


# -- nesting ------------------------------------------------------------------------------------------------
def test_lvm_on_a_loop_on_a_file_on_a_partition_map_nests_top_most_first():
    part = BlockDev("dm-4", "253:4", "mpatha-part1", "part1-mpath-3600a", open_count=1)
    lv = BlockDev("dm-7", "253:7", "vg-lv", "LVM-x")
    snap = Snapshot(target=MAP, partitions=(part,), stacked=(("7:0", lv),),
                    mounts=(Mount("253:4", "/srv", "ext4", 1, "systemd", True),
                            Mount("253:7", "/home", "xfs", 1, "systemd", True)),
                    loops=(Loop(LOOP0, Backing("/srv/disk.img", fs="253:4")),))
    (p,) = find_holders(snap)
    assert p.kind == "partition" and p.release == "dmsetup remove mpatha-part1"
    assert [x.kind for x in flat([p])] == ["mount", "lvm", "loop", "mount", "partition"]
    text = explain(snap, [p])
    order = ["umount /home", "lvchange -an vg/lv", "losetup -d /dev/loop0", "umount /srv", "dmsetup remove"]
    assert [text.index(o) for o in order] == sorted(text.index(o) for o in order)
    assert "unknown" not in text


def test_autoclear_loop_release_tolerates_it_being_gone_already():
    snap = Snapshot(target=MAP, loops=(Loop(LOOP0, Backing("/dev/dm-3", dev_t="253:3"), autoclear=True),),
                    mounts=(Mount("7:0", "/mnt", "ext4", 1, "systemd", True),))
    (lp,) = find_holders(snap)
    assert lp.release == "test ! -e /sys/block/loop0/loop || losetup -d /dev/loop0"
    assert kinds(lp.nested) == ["mount"]


def test_partition_map_open_count_is_explained_too():
    part = BlockDev("dm-4", "253:4", "mpatha-part1", "part1-mpath-3600a", open_count=3)
    snap = Snapshot(target=MAP, partitions=(part,), swaps=(Swap(Backing("/dev/dm-4", dev_t="253:4")),))
    (p,) = find_holders(snap)
    assert kinds(p.nested) == ["swap", "unknown"] and "open count 3, 2 explained" in p.nested[1].what


def test_unknown_says_what_was_checked_and_suggests_a_reboot_last():
    snap = Snapshot(target=_map(1), scan=ScanInfo(3, 412, 2, ("loop devices", "LIO backstores")))
    (u,) = find_holders(snap)
    assert u.kind == "unknown" and "open count 1, 0 explained" in u.what
    lines = u.note.splitlines()
    assert lines[0].startswith("checked: mounts in 3 mount namespace(s), open files of 412 processes")
    assert "loop devices" in lines[0] and "(2 here)" in lines[1]
    assert "dmsetup info -c" in lines[2] and "lsblk -s /dev/mapper/mpatha" in lines[2]
    assert "reboot" in lines[-1] and all("reboot" not in x for x in lines[:-1])
    assert "reboot" not in u.release
    text = explain(snap, [u])
    assert text.rstrip().splitlines()[-1].strip().endswith("a reboot releases it")


def test_every_release_is_one_line():
    snap = Snapshot(target=_map(9), loops=(Loop(LOOP0, Backing("/dev/dm-3", dev_t="253:3")),),
                    swaps=(Swap(Backing("/dev/dm-3", dev_t="253:3")),),
                    stacked=(("253:3", BlockDev("md127", "9:127")),))
    for x in flat(find_holders(snap)):
        assert "\n" not in x.release and x.kind in h.KINDS


# -- holderscan against a fake tree -------------------------------------------------------------------
class FakeSystem:
    def __init__(self, root: Path) -> None:
        self.sys, self.proc = root / "sys", root / "proc"
        (self.sys / "block").mkdir(parents=True)
        (self.sys / "class" / "block").mkdir(parents=True)
        self.proc.mkdir()
        self.swaps = ["Filename Type Size Used Priority"]
        self.mountinfo: list[str] = []
        self.pid(1, "systemd")

    def env(self, mp: pytest.MonkeyPatch) -> None:
        mp.setenv("PYMULTIPATH_SYSFS", str(self.sys))
        mp.setenv("PYMULTIPATH_PROC", str(self.proc))

    def write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    def dev(self, name: str, dev_t: str, dm_name: str = "", uuid: str = "", holders_: tuple[str, ...] = (),
            suspended: bool = False) -> Path:
        base = self.sys / "block" / name
        self.write(base / "dev", dev_t)
        (base / "holders").mkdir(exist_ok=True)
        for x in holders_:
            (base / "holders" / x).touch()
        if dm_name:
            self.write(base / "dm" / "name", dm_name)
            self.write(base / "dm" / "uuid", uuid)
            self.write(base / "dm" / "suspended", "1" if suspended else "0")
        return base

    def pid(self, pid: int, comm: str) -> None:
        base = self.proc / str(pid)
        self.write(base / "comm", comm)
        self.write(base / "ns" / "mnt", "")
        (base / "fd").mkdir(exist_ok=True)

    def finish(self) -> None:
        self.write(self.proc / "swaps", "\n".join(self.swaps))
        self.write(self.proc / "1" / "mountinfo", "\n".join(self.mountinfo))


def test_holderscan_gathers_every_kind(tmp_path, monkeypatch):
    from pymultipathd.paths import holderscan

    fs = FakeSystem(tmp_path)
    fs.dev("dm-3", "253:3", "mpatha", "mpath-3600a", holders_=("dm-4", "dm-5", "dm-6", "md127"))
    fs.dev("dm-4", "253:4", "mpatha-part1", "part1-mpath-3600a")
    fs.dev("dm-5", "253:5", "mpatha-part2", "part2-mpath-3600a")
    fs.dev("dm-6", "253:6", "mpatha-part3", "part3-mpath-3600a")
    fs.dev("dm-8", "253:8", "vg-lv", "LVM-abc", suspended=True)
    fs.dev("md127", "9:127")
    fs.dev("sda", "8:0")
    fs.dev("sdb", "8:16")
    # loop0 on the map itself, loop1 on a file on the btrfs on part1, LVM on loop1
    fs.dev("loop0", "7:0")
    fs.write(fs.sys / "block" / "loop0" / "loop" / "backing_file", "/dev/dm-3")
    fs.write(fs.sys / "block" / "loop0" / "loop" / "autoclear", "0")
    fs.dev("loop1", "7:1", holders_=("dm-8",))
    fs.write(fs.sys / "block" / "loop1" / "loop" / "backing_file", "/data/disk.img")
    fs.write(fs.sys / "block" / "loop1" / "loop" / "autoclear", "1")
    fs.dev("loop2", "7:2")  # not bound: no loop/ directory
    fs.swaps.append("/dev/dm-3                               partition\t1048572\t0\t-2")
    cfg = fs.sys / "kernel" / "config"
    ib = cfg / "target" / "core" / "iblock_0" / "disk1"
    fs.write(ib / "info", "Status: ACTIVATED  Max Queue Depth: 128  SectorSize: 512  HwMaxSectors: 1024\n"
             "        iBlock device: dm-3  UDEV PATH: /dev/mapper/mpatha  readonly: 0\n"
             "        Major: 253 Minor: 3  CLAIMED: IBLOCK")
    fs.write(ib / "udev_path", "/dev/mapper/mpatha")
    fs.write(ib / "enable", "1")
    fs.write(cfg / "target" / "core" / "iblock_0" / "hba_info", "HBA Index: 1 plugin: iblock version: v5")
    fs.write(cfg / "target" / "core" / "rd_mcp_1" / "ram" / "enable", "1")
    ns = cfg / "nvmet" / "subsystems" / "nqn.x" / "namespaces" / "1"
    fs.write(ns / "device_path", "/dev/mapper/mpatha")
    fs.write(ns / "enable", "1")
    off = cfg / "nvmet" / "subsystems" / "nqn.x" / "namespaces" / "2"
    fs.write(off / "device_path", "/dev/mapper/mpatha")
    fs.write(off / "enable", "0")
    # part1: one member of a two-device btrfs; part2: an XFS external log; part3: an ext4 external journal
    fs.write(fs.sys / "fs" / "btrfs" / "f00d" / "devices" / "dm-4", "")
    fs.write(fs.sys / "fs" / "btrfs" / "f00d" / "devices" / "sdb", "")
    fs.mountinfo.append("40 1 0:45 / /data rw,relatime - btrfs /dev/mapper/mpatha-part1 rw,subvol=/")
    fs.mountinfo.append("41 1 8:0 / /x rw shared:6 - xfs /dev/sda rw,logdev=/dev/mapper/mpatha-part2")
    fs.mountinfo.append("42 1 8:16 / /e rw shared:7 - ext4 /dev/sdb rw")
    fs.mountinfo.append("43 1 253:8 / /home rw shared:8 - ext4 /dev/mapper/vg-lv rw")
    fs.write(fs.sys / "fs" / "ext4" / "sdb" / "journal_task", "77")
    fs.pid(77, "jbd2/dm-6")
    fs.finish()
    fs.env(monkeypatch)

    target = BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=9)
    parts = [BlockDev("dm-4", "253:4", "mpatha-part1", "part1-mpath-3600a", open_count=1),
             BlockDev("dm-5", "253:5", "mpatha-part2", "part2-mpath-3600a", open_count=1),
             BlockDev("dm-6", "253:6", "mpatha-part3", "part3-mpath-3600a", open_count=1)]
    snap = holderscan.gather(target, parts, kernel="6.1.0-28-amd64")  # a swap area: two opens
    # the map: 3 partition maps + md + loop0 + swap (2) + iblock + nvmet = 9
    assert [lp.dev.name for lp in snap.loops] == ["loop0", "loop1"]
    assert snap.loops[1].backing.fs == "btrfs:f00d" and snap.loops[1].autoclear
    assert [s.backing.dev_t for s in snap.swaps] == ["253:3"]
    assert [(b.plugin, b.name, b.backing.dev_t) for b in snap.lio] == [("iblock", "disk1", "253:3")]
    assert [(n.nsid, n.backing.dev_t) for n in snap.nvmet] == [("1", "253:3")]
    assert {(f.dev_t, f.role, f.fs) for f in snap.fs_devices} == {
        ("253:4", "btrfs-member", "btrfs:f00d"), ("253:5", "xfs-logdev", "8:0"),
        ("253:6", "ext4-journal", "8:16")}
    assert ("7:1", BlockDev("dm-8", "253:8", "vg-lv", "LVM-abc", suspended=True)) in snap.stacked
    assert snap.scan.mount_namespaces == 1
    hs = find_holders(snap)
    all_kinds = [x.kind for x in flat(hs)]
    assert "unknown" not in all_kinds, explain(snap, hs)
    for k in ("md", "loop", "swap", "lio", "nvmet", "btrfs-member", "xfs-logdev", "ext4-journal", "suspended",
              "lvm", "partition"):
        assert k in all_kinds, (k, explain(snap, hs))
    text = explain(snap, hs)
    order = ["dmsetup resume vg-lv", "umount /home", "lvchange -an vg/lv", "losetup -d /dev/loop1",
             "umount /data", "dmsetup remove mpatha-part1"]
    assert [text.index(o) for o in order] == sorted(text.index(o) for o in order), text


def test_holderscan_matches_a_single_device_btrfs_by_its_source(tmp_path, monkeypatch):
    from pymultipathd.paths import holderscan

    fs = FakeSystem(tmp_path)
    fs.dev("dm-3", "253:3", "mpatha", "mpath-3600a")
    fs.write(fs.sys / "fs" / "btrfs" / "abcd" / "devices" / "dm-3", "")
    fs.mountinfo.append("40 1 0:45 / /srv rw shared:5 - btrfs /dev/mapper/mpatha rw,subvol=/")
    fs.mountinfo.append("41 1 0:45 /snap /snap rw shared:5 - btrfs /dev/mapper/mpatha rw,subvol=/snap")
    fs.finish()
    fs.env(monkeypatch)
    snap = holderscan.gather(BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=1), [])
    hs = find_holders(snap)
    assert kinds(hs) == ["mount", "mount"] and [x.release for x in hs] == ["umount /srv", "umount /snap"]


def test_holderscan_without_any_holder_reports_what_it_checked(tmp_path, monkeypatch):
    from pymultipathd.paths import holderscan

    fs = FakeSystem(tmp_path)
    fs.dev("dm-3", "253:3", "mpatha", "mpath-3600a")
    fs.pid(2, "kthreadd")
    fs.finish()
    fs.env(monkeypatch)
    snap = holderscan.gather(BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=1), [])
    (u,) = find_holders(snap)
    assert u.kind == "unknown" and "LIO backstores" in u.note
    assert "mounts in 1 mount namespace(s), open files of 2 processes" in u.note
    assert "(1 here)" in u.note  # pid 2 has no mountinfo to read


def test_the_fd_scan_asks_no_file_system_but_devfs(tmp_path, monkeypatch):
    """A stat of a file on a dead NFS server never returns, and the daemon runs this scan on its
    device-mapper thread: only fds whose link names a /dev node are stat()ed."""
    proc = tmp_path / "proc"
    fd = proc / "4242" / "fd"
    fd.mkdir(parents=True)
    (proc / "4242" / "comm").write_text("app\n")
    (fd / "3").symlink_to("/nfs/dead/server/file")
    (fd / "4").symlink_to("socket:[123]")
    (fd / "5").symlink_to("/dev/dm-3")
    monkeypatch.setenv("PYMULTIPATH_PROC", str(proc))
    asked = []
    monkeypatch.setattr(holderscan, "_rdev", lambda link: asked.append(os.path.basename(link)) or "253:3")
    monkeypatch.setattr(holderscan, "_unit", lambda pid: "")
    files, _, seen, _ = holderscan._open_files([4242], {"253:3"})
    assert asked == ["5"] and seen == 1 and [f.pid for f in files] == [4242]


@pytest.mark.parametrize("release, opens", [("6.1.0-28-amd64", 2), ("6.9.12", 2), ("6.10.0", 1),
                                            ("6.12.9-amd64", 1), ("7.0", 1), ("weird", 2)])
def test_a_swap_area_holds_two_opens_only_before_linux_6_10(release, opens):
    assert holderscan.swap_opens(release) == opens


def test_a_guest_is_named_to_virsh_by_its_uuid_never_by_a_name_cut_short():
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    target = BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=2)
    snap = Snapshot(target=target, open_files=(
        h.OpenFile("253:3", 7, "qemu", f"qemu-system-x86_64 -name guest=web,,prod -uuid {uuid}", ""),
        h.OpenFile("253:3", 8, "qemu", "qemu-system-x86_64 -name guest=db,debug-threads=on", "")))
    releases = [holder.release for holder in find_holders(snap)]
    assert releases == [f"virsh shutdown {uuid}", "kill 8"]


def test_copies_of_a_host_mount_in_service_namespaces_go_with_the_host_umount():
    """A mount made on the host shows in every service namespace it propagates to (journald, udevd ...):
    one umount on the host releases them all, so the report asks for that one only."""
    fs = Mount("253:3", "/srv", "ext4", 1, "systemd", True)
    copy = Mount("253:3", "/srv", "ext4", 234, "systemd-journal", False)
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=1), mounts=(fs, copy))
    assert [holder.release for holder in find_holders(snap)] == ["umount /srv"]
    alone = Snapshot(target=snap.target, mounts=(copy,))
    assert [holder.release for holder in find_holders(alone)] == ["nsenter -t 234 -m umount /srv"]


def test_a_stacked_device_no_rule_knows_has_a_listed_kind():
    top = BlockDev("zram0", "252:0", "", "")
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=1),
                    stacked=(("253:3", top),))
    (holder,) = find_holders(snap)
    assert holder.kind == "block" and holder.kind in h.KINDS and holder.release.startswith("#")
