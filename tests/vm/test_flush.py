"""`pymultipath -f` against real holders: each kind is created for real, reported with its release command,
released, and then the flush succeeds. A map in use is never removed."""

from __future__ import annotations

import os
import subprocess
import time
from types import SimpleNamespace

import pytest

from tests.vm import dm
from tests.vm.sysutil import read_sysfs, run, settle, wait_for

NAME = "flushme"
MNT = "/mnt/pymp-flush"


def _flush(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pymultipath", "-f", NAME, *extra], capture_output=True, text=True, timeout=120)


def _exists() -> bool:
    return NAME in dm.multipath_maps()


@pytest.fixture
def mpath(scsi_debug):
    from pymultipathd.dm import maps, table
    from pymultipathd.dm.ioctl import Control

    sd = scsi_debug(luns=1, paths=2, dev_size_mb=64)
    ((wwid, paths),) = [(w, ps) for w, ps in sd.by_wwid().items() if w]
    size = int(read_sysfs(f"/sys/block/{paths[0].dev}/size"))
    t = table.MultipathTable(size=size, groups=(table.PathGroup(paths=tuple(table.PathSpec(p.devno)
                                                                            for p in paths)),))
    ctl = Control()
    maps.create_multipath(ctl, NAME, wwid, t)
    settle()
    os.makedirs(MNT, exist_ok=True)
    yield SimpleNamespace(wwid=wwid, paths=paths, sd=sd, ctl=ctl, node=f"/dev/mapper/{NAME}",
                          dm=os.path.basename(os.path.realpath(f"/dev/mapper/{NAME}")))
    run(["umount", "-l", MNT], check=False)
    for name in sorted(dm.multipath_maps() + _dm_names(), reverse=True):
        if name.startswith(NAME):
            run(["dmsetup", "remove", "--retry", name], check=False)
    settle()


def _dm_names() -> list[str]:
    out = run(["dmsetup", "ls"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip() and "No devices" not in line]


def test_free_map_is_flushed(mpath):
    res = _flush()
    assert res.returncode == 0, res.stderr
    assert f"{NAME}: flushed" in res.stdout
    assert not _exists()


def test_mounted_filesystem_is_reported_and_map_kept(mpath):
    run(["mkfs.ext4", "-q", mpath.node])
    run(["mount", mpath.node, MNT])
    res = _flush()
    assert res.returncode == 1 and _exists()
    assert "[mount] ext4 file system mounted on /mnt/pymp-flush" in res.stderr
    assert f"release: umount {MNT}" in res.stderr
    run(["umount", MNT])
    assert _flush().returncode == 0 and not _exists()


def test_mount_in_another_namespace_and_process_holding_the_device(mpath):
    run(["mkfs.ext4", "-q", mpath.node])
    ns = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f"mount {mpath.node} {MNT} && echo mounted && exec sleep 120"],
                          stdout=subprocess.PIPE, text=True)
    code = (f"import os,time; fd=os.open('{mpath.node}', os.O_RDONLY); print('open', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert ns.stdout.readline().strip() == "mounted"
        assert holder.stdout.readline().strip() == "open"
        assert MNT not in run(["findmnt", "-rn", "-o", "TARGET"], check=False)  # invisible to the host
        res = _flush()
        assert res.returncode == 1 and _exists()
        assert "[namespace-mount]" in res.stderr and f"nsenter -t {ns.pid} -m umount {MNT}" in res.stderr
        assert f"[process] process {holder.pid} (python3)" in res.stderr  # ", unit ..." may follow
        assert f"kill {holder.pid}" in res.stderr
    finally:
        ns.kill()
        holder.kill()
        ns.wait()
        holder.wait()
    wait_for(lambda: _flush().returncode == 0, 30, "the flush to succeed once both holders are gone")
    assert not _exists()


def test_lazy_unmount_with_open_file_is_found_through_its_kernel_thread(mpath):
    run(["mkfs.ext4", "-q", mpath.node])
    run(["mount", mpath.node, MNT])
    run(["sh", "-c", f"echo data > {MNT}/file"])
    keeper = subprocess.Popen(["sh", "-c", f"exec 3<{MNT}/file; echo held; exec sleep 120"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert keeper.stdout.readline().strip() == "held"
        run(["umount", "-l", MNT])
        res = _flush()
        assert res.returncode == 1 and _exists()
        assert "[lazy-unmount]" in res.stderr and f"jbd2/{mpath.dm}-8" in res.stderr
    finally:
        keeper.kill()
        keeper.wait()
    wait_for(lambda: _flush().returncode == 0, 30, "the flush once the last file is closed")


def test_partition_with_lvm_on_top_nests_and_releases_in_order(mpath):
    from pymultipathd.dm import maps

    run(["sfdisk", "-q", mpath.node], input="label: gpt\n,\n")
    maps.add_partition_maps(mpath.ctl, NAME)
    settle()
    part = f"/dev/mapper/{NAME}-part1"
    assert os.path.exists(part)
    run(["pvcreate", "-q", "-y", part])
    run(["vgcreate", "-q", "pympvg", part])
    run(["lvcreate", "-q", "-y", "-L", "8M", "-n", "lv1", "pympvg"])
    try:
        res = _flush()
        assert res.returncode == 1 and _exists()
        err = res.stderr
        assert "[partition] partition map flushme-part1" in err
        assert "[lvm] LVM logical volume pympvg/lv1" in err and "lvchange -an pympvg/lv1" in err
        assert err.index("lvchange -an") < err.index("[partition]")  # top-most first
    finally:
        run(["lvchange", "-an", "pympvg/lv1"], check=False)
        run(["vgremove", "-q", "-f", "pympvg"], check=False)
        run(["pvremove", "-q", "-y", part], check=False)
    res = _flush()
    assert res.returncode == 0, res.stderr
    assert not _exists() and not os.path.exists(part)


def test_queued_io_with_no_path_is_reported_and_deferred_remove_waits(mpath):
    mpath.ctl.message(NAME, "queue_if_no_path")
    for p in mpath.paths:
        mpath.sd.offline(p)
    dm.message(NAME, f"fail_path {mpath.paths[0].devno}")
    dm.message(NAME, f"fail_path {mpath.paths[1].devno}")
    writer = subprocess.Popen(["dd", "if=/dev/zero", f"of={mpath.node}", "bs=4k", "count=1", "oflag=direct"],
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert writer.poll() is None  # queued
        res = subprocess.run(["pymultipath", "holders", NAME], capture_output=True, text=True, timeout=60)
        assert "[queued-io]" in res.stdout and "DATA LOSS" in res.stdout
        assert f"disablequeueing map {NAME}" in res.stdout
        assert f"[process] process {writer.pid} (dd)" in res.stdout
        assert _flush().returncode == 1 and _exists()  # dd still holds it
        # the administrator gives up the queued write (as the seed article describes), then flushes
        dm.message(NAME, "fail_if_no_path")
        writer.communicate(timeout=60)
        assert writer.returncode != 0
    finally:
        if writer.poll() is None:
            writer.kill()
        for p in mpath.paths:
            mpath.sd.online(p)
    assert _flush().returncode == 0 and not _exists()


def test_remove_retries_waits_for_a_holder_that_lets_go(mpath):
    """remove_retries: a map held by a process that closes it a few seconds later is removed by one
    `pymultipath -f` once the holder is gone (the kernel refuses to remove an open map, so the flush can only
    succeed after it); without it the flush reports the holder at once and keeps the map."""
    import sys

    from tests.vm.sysutil import SavedFiles

    saved = SavedFiles(("/etc/multipath.conf",))
    hold = ("import os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); print('open', flush=True); "
            "time.sleep(4)")
    holder = subprocess.Popen([sys.executable, "-c", hold, mpath.node], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with open("/etc/multipath.conf", "w") as f:
            f.write("defaults {\n\tremove_retries 0\n}\n")
        res = _flush()
        assert res.returncode == 1 and _exists() and str(holder.pid) in res.stdout + res.stderr, res
        with open("/etc/multipath.conf", "w") as f:
            f.write("defaults {\n\tremove_retries 30\n}\n")
        res = _flush()
        assert res.returncode == 0 and not _exists(), res
        assert "looking again" in res.stderr and f"{NAME}: flushed" in res.stdout, res
    finally:
        holder.kill()
        holder.wait()
        saved.restore()
