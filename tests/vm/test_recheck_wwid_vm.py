"""recheck_wwid: a path that comes back with another logical unit behind it is never reinstated (issue 19).

Two LUNs over the bed's two portals, two maps. Both portals fail; meanwhile the target maps LUN 1's
storage at LUN 0's address (configfs, as an array administrator remapping a volume would). When portal 1
returns, its path at LUN 0's address answers its checker (the device is fine) but is another LUN: with
recheck_wwid the daemon reads page 83h, refuses to reinstate it in LUN 0's map and takes it out of that
map. sg_inq is the independent witness of what the device is, dmsetup of what the map does. The control:
with recheck_wwid off, portal 0's path at the same address is reinstated into LUN 0's map, serving LUN 1's
data under LUN 0's name; so the test can fail.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.vm import dm, lio
from tests.vm.pympd import CONF, Pympd, config
from tests.vm.sysutil import run, settle, wait_for

DOWN_FOR = 90


def _export(bed, at: int, store: str) -> None:
    """Make the backstore `store` the LUN at address `at` of the bed's TPG."""
    lundir = f"{bed.target.tpg}/lun/lun_{at}"
    for entry in os.listdir(lundir):
        if os.path.islink(f"{lundir}/{entry}"):
            os.unlink(f"{lundir}/{entry}")
    os.symlink(f"{lio.CORE}/{bed.target.hba}/{store}", f"{lundir}/{store}")


def _state(name: str, devno: str) -> str | None:
    try:
        return dm.statuses()[name].path(devno).state
    except LookupError:  # the map is gone, or the path is no longer in its table
        return None


def _journal(since: float) -> str:
    return run(["journalctl", "-u", "pymultipathd.service", "--no-pager", "-o", "cat",
                f"--since=@{int(since)}"])


@pytest.mark.timeout(900)
def test_a_path_with_another_lun_behind_it_is_not_reinstated(iscsi_bed):
    bed = iscsi_bed(luns=2, size_mb=8)
    (a0, b0), (a1, b1) = bed.paths(0), bed.paths(1)
    assert a0.wwid != a1.wwid
    stores = [lun.name for lun in bed.target.luns]
    conf = config("greedy", recheck_wwid="yes", no_path_retry="fail")
    try:
        with Pympd(conf) as d:
            m0, m1 = d.wait_map(a0.wwid), d.wait_map(a1.wwid)
            t0 = time.time()
            bed.cut(0)
            bed.cut(1)
            for name, p in ((m0, a0), (m0, b0), (m1, a1), (m1, b1)):
                wait_for(lambda n=name, p=p: _state(n, p.devno) == "F", DOWN_FOR, f"{p.dev} failed in {name}")
            _export(bed, 0, stores[1])  # LUN 1's storage at LUN 0's address

            bed.restore(1)
            wait_for(lambda: _state(m1, b1.devno) == "A", DOWN_FOR, f"{b1.dev} reinstated in {m1}")
            wait_for(lambda: "WWID changed" in _journal(t0), 60, f"the daemon to see {b0.dev}'s new identity")
            page = run(["sg_inq", "-p", "0x83", b0.node])
            assert a1.wwid[1:] in page.lower(), f"sg_inq does not show LUN 1's NAA behind {b0.dev}:\n{page}"
            seen = set()
            for _ in range(20):  # ten seconds of the kernel's view: never active in LUN 0's map
                seen.add(_state(m0, b0.devno))
                time.sleep(0.5)
            assert "A" not in seen, f"{b0.dev}, now LUN 1's storage, was reinstated in {m0}"
            wait_for(lambda: _state(m0, b0.devno) is None, 60, f"{b0.dev} taken out of {m0}'s table")

            # the control: without recheck_wwid, portal 0's path is reinstated, LUN 1 under LUN 0's name
            with open(CONF, "w") as f:
                f.write(config("greedy", recheck_wwid="no", no_path_retry="fail"))
            d.cmd("reconfigure")
            bed.restore(0)
            wait_for(lambda: _state(m0, a0.devno) == "A", DOWN_FOR,
                     f"{a0.dev} reinstated in {m0} without recheck_wwid (the control)")
    finally:
        _export(bed, 0, stores[0])
        settle()
