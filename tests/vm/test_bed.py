"""Smoke tests that prove the VM bed is real: iSCSI over two portals, dm-multipath failover, scsi_debug at
scale, and Debian's multipathd as the comparison."""

from __future__ import annotations

import os

import pytest

from tests.vm import dm
from tests.vm.sysutil import wait_for

pytestmark = pytest.mark.vm

# seconds for the kernel to fail a cut path (replacement_timeout 5 s plus noop-outs, slower under TCG)
FAIL_WAIT = 90


def test_two_iscsi_paths_show_one_wwid(iscsi_bed):
    bed = iscsi_bed()
    a, b = bed.paths(0)
    assert a.dev != b.dev
    assert a.wwid and a.wwid == b.wwid
    assert a.wwid.startswith("36001405")  # LIO's NAA prefix: the WWID comes from the target, not the host


def test_two_luns_have_distinct_wwids(iscsi_bed):
    bed = iscsi_bed(luns=2)
    wwids = {p.wwid for lun in (0, 1) for p in bed.paths(lun)}
    assert len(wwids) == 2


def test_dmsetup_map_over_two_paths_passes_write_verify(iscsi_bed, multipath_map, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    node = multipath_map("pymp_bed", [p.devno for p in paths], bed.size_sectors())
    res = write_verify(node).run(passes=2)
    assert res.ok, str(res)
    st = dm.status("pymp_bed")
    assert [st.path(p.devno).state for p in paths] == ["A", "A"]


def test_write_verify_reports_corruption(iscsi_bed, write_verify):
    """The checker itself can fail: a block rewritten behind its back through the other path is caught."""
    bed = iscsi_bed()
    a, b = bed.paths(0)
    wv = write_verify(a.node, blocks=16)
    assert wv.run().ok
    fd = os.open(b.node, os.O_WRONLY | os.O_DIRECT)
    try:
        import mmap

        buf = mmap.mmap(-1, 4096)
        buf.write(b"\xa5" * 4096)
        os.pwritev(fd, [buf], 5 * 4096)
    finally:
        os.close(fd)
    res = wv.verify_only()
    assert res.mismatches == ["block 5: bad magic or checksum"]
    assert not res.errors


def _wait_failed(name: str, devno: str) -> None:
    wait_for(lambda: dm.status(name).path(devno).state == "F", FAIL_WAIT,
             f"the kernel to fail path {devno} of {name}")


def test_cut_path_keeps_io_clean_and_reinstate_works(iscsi_bed, multipath_map, write_verify):
    bed = iscsi_bed()
    a, b = bed.paths(0)
    node = multipath_map("pymp_failover", [a.devno, b.devno], bed.size_sectors())

    # cut portal 0 while I/O runs: dm-multipath fails the path by itself and retries on the other one
    wv = write_verify(node).start()
    wait_for(lambda: wv.progress() > 64, 60, "write-verify to get going")
    bed.cut(0)
    _wait_failed("pymp_failover", a.devno)
    done = wv.progress()
    wait_for(lambda: wv.progress() > done + 256, 120, "I/O to continue on the remaining path")
    res = wv.stop()
    assert res.ok, str(res)
    assert dm.status("pymp_failover").path(b.devno).state == "A"

    # restore the link: the session logs in again and the path can be reinstated
    bed.restore(0)
    dm.message("pymp_failover", f"reinstate_path {a.devno}")
    assert dm.status("pymp_failover").path(a.devno).state == "A"

    # the restored path really carries I/O: now cut the other one
    wv2 = write_verify(node).start()
    wait_for(lambda: wv2.progress() > 64, 60, "write-verify to get going again")
    bed.cut(1)
    _wait_failed("pymp_failover", b.devno)
    done = wv2.progress()
    wait_for(lambda: wv2.progress() > done + 256, 120, "I/O to continue on the restored path")
    res2 = wv2.stop()
    assert res2.ok, str(res2)
    bed.restore(1)


def test_scsi_debug_luns_times_paths_share_wwids(scsi_debug):
    sd = scsi_debug(luns=8, paths=2)
    groups = sd.by_wwid()
    assert len(sd.paths) == 16
    assert None not in groups
    assert len(groups) == 8
    assert all(len(paths) == 2 for paths in groups.values())
    assert all(len({p.hctl.split(":")[0] for p in paths}) == 2 for paths in groups.values())  # two hosts

    path = sd.paths[0]
    sd.offline(path)
    assert sd.state(path) == "offline"
    sd.online(path)
    assert sd.state(path) == "running"


def test_upstream_multipathd_greedy_creates_map(scsi_debug, upstream_multipathd):
    sd = scsi_debug(luns=1, paths=2)
    (wwid,) = sd.by_wwid()
    name = upstream_multipathd.wait_map(wwid)
    topology = upstream_multipathd.show("show", "topology")
    assert all(p.dev in topology for p in sd.paths), topology
    st = dm.status(name)
    assert sorted(p.devno for _, paths in st.groups for p in paths) == sorted(p.devno for p in sd.paths)
