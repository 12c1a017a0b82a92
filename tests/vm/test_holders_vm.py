"""The kernel's own holders of a map, each made for real: the flush report names it with its release command,
explains the map's whole open count (no "[unknown]"), the release commands run exactly as printed free the
map, and `pymultipath -f` then removes it. Plus the last resort, `-f --error-io`, on a map whose writer
hangs on I/O queued with no path. dmsetup, losetup, mdadm, cryptsetup, mkfs.* and the kernel are the
oracles."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.vm import dm
from tests.vm.sysutil import read_sysfs, run, settle, wait_for

NAME = "holdme"
MNT = "/mnt/pymp-holders"
LIO = "/sys/kernel/config/target/core"


def _dm_names() -> list[str]:
    out = run(["dmsetup", "ls"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip() and "No devices" not in line]


def _loops_on(path_prefix: str) -> list[str]:
    out = run(["losetup", "-n", "-O", "NAME,BACK-FILE", "-l"], check=False)
    return [w[0] for w in (line.split() for line in out.splitlines()) if len(w) == 2
            and w[1].startswith(path_prefix)]


@pytest.fixture
def make_map(scsi_debug) -> Iterator:
    """Factory: make_map(luns=1, size_mb=64) -> maps NAME, NAME2, ... (multipath, two paths each) as
    SimpleNamespace(name, node, dm, wwid, paths, sd). What the tests stack on them is torn down after."""
    from pymultipathd.dm import maps, table
    from pymultipathd.dm.ioctl import Control

    made: list[SimpleNamespace] = []
    files: list[str] = []

    def make(luns: int = 1, size_mb: int = 64) -> list[SimpleNamespace]:
        sd = scsi_debug(luns=luns, paths=2, dev_size_mb=size_mb)
        ctl = Control()
        for i, (wwid, paths) in enumerate(sorted((w, ps) for w, ps in sd.by_wwid().items() if w)):
            name = NAME if i == 0 else f"{NAME}{i + 1}"
            size = int(read_sysfs(f"/sys/block/{paths[0].dev}/size"))
            t = table.MultipathTable(size=size, groups=(table.PathGroup(
                paths=tuple(table.PathSpec(p.devno) for p in paths)),))
            maps.create_multipath(ctl, name, wwid, t)
            settle()
            node = f"/dev/mapper/{name}"
            made.append(SimpleNamespace(name=name, node=node, wwid=wwid, paths=paths, sd=sd, ctl=ctl,
                                        dm=os.path.basename(os.path.realpath(node))))
        os.makedirs(MNT, exist_ok=True)
        return made[-luns:]

    make.files = files  # sparse files a test backs a loop with: removed after
    yield make
    # best effort, top down, whatever a failed test left: nothing here may hide the test's own failure
    run(["swapoff", "-a"], check=False)
    run(["umount", "-R", MNT], check=False)
    for loop in _loops_on("/dev/mapper/" + NAME) + _loops_on("/dev/dm-") + _loops_on(MNT) \
            + [lo for f in files for lo in _loops_on(f)]:
        run(["losetup", "-d", loop], check=False)
    for md in os.listdir("/dev/md") if os.path.isdir("/dev/md") else []:
        if md.startswith("pymp"):
            run(["mdadm", "--stop", f"/dev/md/{md}"], check=False)
    for name in sorted(_dm_names(), reverse=True):
        if name.startswith(("pymp-", NAME)):
            run(["dmsetup", "resume", name], check=False)
            run(["dmsetup", "remove", "--retry", name], check=False)
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)
    settle()


def report(name: str = NAME) -> str:
    return run(["pymultipath", "holders", name])


def release_all(text: str) -> list[str]:
    """Run every release command of the report, in the order printed (top-most first), as printed."""
    cmds = [line.split("release:", 1)[1].strip() for line in text.splitlines() if "release:" in line]
    for cmd in cmds:
        run(["sh", "-c", cmd], timeout=120)
    return cmds


def flushed(name: str = NAME) -> None:
    settle()
    res = subprocess.run(["pymultipath", "-f", name], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert name not in dm.multipath_maps()


def check(text: str, *expected: str) -> None:
    """Each expected line in the report, and the map's opens all explained."""
    for e in expected:
        assert e in text, f"{e!r} not in the report:\n{text}"
    assert "[unknown]" not in text, text


def sparse(make_map, size_mb: int) -> str:
    path = f"/var/tmp/pymp-holders-{len(make_map.files)}.img"
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    make_map.files.append(path)
    return path


def losetup(target: str) -> str:
    return run(["losetup", "-f", "--show", target]).strip()


# --- one test per kind --------------------------------------------------------------------------------


def test_loop_device_on_the_map(make_map):
    (m,) = make_map()
    loop = losetup(m.node)
    text = report()
    check(text, "[loop]", f"release: losetup -d {loop}")
    release_all(text)
    flushed()


def test_detached_but_busy_loop_with_a_file_system_mounted_on_it(make_map):
    (m,) = make_map()
    loop = losetup(m.node)
    run(["mkfs.ext4", "-q", loop])
    run(["mount", loop, MNT])
    run(["losetup", "-d", loop])  # autoclear: the loop stays while mounted
    assert os.path.exists(f"/sys/block/{os.path.basename(loop)}/loop")
    text = report()
    check(text, "[loop]", f"umount {MNT}")
    assert text.index(f"umount {MNT}") < text.index("[loop]")  # the mount on top comes first
    release_all(text)
    flushed()


@contextlib.contextmanager
def lio_backstore(kind: str, name: str, control: str) -> Iterator[str]:
    """A LIO backstore made through configfs (as targetcli would), enabled: it opens what `control` names.
    Removed after, whatever the test did."""
    run(["modprobe", {"iblock": "target_core_iblock", "fileio": "target_core_file"}[kind]])
    hba = f"{LIO}/{kind}_77"
    store = f"{hba}/{name}"
    os.makedirs(store)
    try:
        with open(f"{store}/control", "w") as f:
            f.write(control)
        with open(f"{store}/enable", "w") as f:
            f.write("1")
        yield store
    finally:
        for d in (store, hba):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def test_lio_block_backstore_exporting_the_map(make_map):
    (m,) = make_map()
    with lio_backstore("iblock", "pymp_holder", f"udev_path={m.node}") as store:
        text = report()
        check(text, "[lio]", "pymp_holder")
        release_all(text)
        assert not os.path.exists(store)
    flushed()


def test_lio_fileio_backstore_on_a_file_of_the_map(make_map):
    (m,) = make_map()
    run(["mkfs.ext4", "-q", m.node])
    run(["mount", m.node, MNT])
    with open(f"{MNT}/lun.img", "wb") as f:
        f.truncate(8 << 20)
    with lio_backstore("fileio", "pymp_file", f"fd_dev_name={MNT}/lun.img,fd_dev_size={8 << 20}"):
        text = report()
        check(text, "[lio]", "pymp_file", f"umount {MNT}")
        assert text.index("pymp_file") < text.index(f"umount {MNT}")  # the backstore holds the file system
        release_all(text)
    flushed()


def test_md_array_on_the_map(make_map):
    (m,) = make_map()
    run(["mdadm", "--create", "/dev/md/pymp", "--run", "--level=1", "--raid-devices=2", "--metadata=1.2",
         "--assume-clean", m.node, "missing"], timeout=120)
    text = report()
    check(text, "[md]", "mdadm --stop")
    release_all(text)
    run(["mdadm", "--zero-superblock", m.node])  # no array to find on the LUN's paths later
    flushed()


def test_dm_crypt_on_the_map(make_map):
    (m,) = make_map()
    run(["cryptsetup", "open", "--type", "plain", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256",
         "--key-file", "/dev/urandom", "--keyfile-size", "32", m.node, "pymp-crypt"])
    text = report()
    check(text, "[crypt]", "release: cryptsetup close pymp-crypt")
    release_all(text)
    flushed()


def linear_on(m: SimpleNamespace, name: str) -> None:
    sectors = int(read_sysfs(f"/sys/block/{m.dm}/size"))
    run(["dmsetup", "create", name, "--table", f"0 {sectors} linear {m.node} 0"])


def test_stacked_linear_map(make_map):
    (m,) = make_map()
    linear_on(m, "pymp-linear")
    text = report()
    check(text, "[dm]", "release: dmsetup remove pymp-linear")
    release_all(text)
    flushed()


def test_suspended_device_on_top(make_map):
    (m,) = make_map()
    linear_on(m, "pymp-susp")
    run(["dmsetup", "suspend", "pymp-susp"])
    text = report()
    check(text, "[suspended]", "release: dmsetup resume pymp-susp", "dmsetup remove pymp-susp")
    assert text.index("dmsetup resume pymp-susp") < text.index("dmsetup remove pymp-susp")
    release_all(text)
    flushed()


def test_btrfs_member_that_no_mount_names(make_map):
    (m,) = make_map(size_mb=128)  # btrfs wants 114 MiB a device
    loop = losetup(sparse(make_map, 256))
    run(["mkfs.btrfs", "-q", "-f", "-m", "single", "-d", "single", loop, m.node], timeout=120)
    run(["mount", loop, MNT])  # mounted through the other member: no mount line names the map
    text = report()
    check(text, "btrfs", f"umount {MNT}")
    release_all(text)
    run(["wipefs", "-q", "-a", m.node])  # btrfs' udev rule would otherwise find the member again
    flushed()


def test_xfs_external_log_on_the_map(make_map):
    (m,) = make_map(size_mb=128)  # an XFS log is at least 64 MiB
    loop = losetup(sparse(make_map, 512))  # and its data device at least 300 MiB
    run(["mkfs.xfs", "-q", "-f", "-l", f"logdev={m.node},size=64m", loop], timeout=120)
    run(["mount", "-o", f"logdev={m.node}", loop, MNT])
    text = report()
    check(text, "log", f"umount {MNT}")
    release_all(text)
    flushed()


def test_ext4_external_journal_on_the_map(make_map):
    (m,) = make_map()
    loop = losetup(sparse(make_map, 64))
    run(["mke2fs", "-q", "-O", "journal_dev", "-b", "4096", m.node])
    run(["mkfs.ext4", "-q", "-b", "4096", "-J", f"device={m.node}", loop])
    run(["mount", loop, MNT])
    text = report()
    check(text, "journal", f"umount {MNT}")
    release_all(text)
    flushed()


def test_swap_area_on_the_map_counts_both_its_opens(make_map):
    (m,) = make_map()
    run(["mkswap", "-q", m.node])
    run(["swapon", m.node])
    text = report()
    check(text, "[swap]", "swapoff")
    assert "open count 2" in text, text
    release_all(text)
    flushed()


def test_swap_file_on_a_file_system_of_the_map(make_map):
    (m,) = make_map()
    run(["mkfs.ext4", "-q", m.node])
    run(["mount", m.node, MNT])
    run(["dd", "if=/dev/zero", f"of={MNT}/swapfile", "bs=1M", "count=8", "status=none"])
    os.chmod(f"{MNT}/swapfile", 0o600)
    run(["mkswap", "-q", f"{MNT}/swapfile"])
    run(["swapon", f"{MNT}/swapfile"])
    text = report()
    check(text, "[swap]", f"swapoff {MNT}/swapfile", f"umount {MNT}")
    assert text.index("swapoff") < text.index(f"umount {MNT}")
    release_all(text)
    flushed()


# --- the last resort -----------------------------------------------------------------------------------


def test_error_io_fails_the_stuck_writer_and_removes_only_that_map(make_map):
    m, bystander = make_map(luns=2)
    before = run(["dmsetup", "table", bystander.name])
    m.ctl.message(m.name, "queue_if_no_path")
    for p in m.paths:
        m.sd.offline(p)
        dm.message(m.name, f"fail_path {p.devno}")
    writer = subprocess.Popen(["dd", "if=/dev/zero", f"of={m.node}", "bs=4k", "count=1", "oflag=direct"],
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: f"process {writer.pid} (dd)" in report(), 30, "dd to open the map")
        assert "[queued-io]" in report() and writer.poll() is None
        refused = subprocess.run(["pymultipath", "-f", m.name, "--error-io"], capture_output=True, text=True,
                                 timeout=60, stdin=subprocess.DEVNULL)
        assert refused.returncode == 1 and "add --yes" in refused.stderr and writer.poll() is None
        res = subprocess.run(["pymultipath", "-f", m.name, "--error-io", "--yes"], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "those writes are LOST" in res.stderr and f"process {writer.pid} (dd)" in res.stderr
        _, err = writer.communicate(timeout=60)
        assert writer.returncode != 0 and "Input/output error" in err, err
        wait_for(lambda: m.name not in _dm_names(), 60, "the map to go once dd let go")
    finally:
        if writer.poll() is None:
            writer.kill()
        for p in m.paths:
            m.sd.online(p)
    assert bystander.name in dm.multipath_maps()
    assert run(["dmsetup", "table", bystander.name]) == before  # nothing else touched
    flushed(bystander.name)
