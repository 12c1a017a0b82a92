"""`make demo`: a two-path iSCSI LUN, a multipath map over it, a path cut under I/O and restored.

Runs inside the test VM (the harness boots it). The map is built with dmsetup for now; it switches to the
project's daemon as that lands. Exit code 0 only if I/O saw zero errors and zero mismatches throughout.
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.vm import dm, iscsi  # the checkout is on the guest venv's sys.path (guest.py setup)
from tests.vm.sysutil import wait_for
from tests.vm.writeverify import WriteVerify

MAP = "mpatha"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"\n[{time.monotonic() - T0:6.1f} s] == {text}", flush=True)


def show(argv: list[str]) -> None:
    print(f"   $ {' '.join(argv)}", flush=True)
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in (out.stdout + out.stderr).rstrip().splitlines():
        print(f"     {line}", flush=True)


def paths_line(paths: list[iscsi.Path]) -> None:
    st = dm.status(MAP)
    for p in paths:
        state = {"A": "active", "F": "FAILED"}[st.path(p.devno).state]
        print(f"     {p.dev:5} {p.devno:6} via {p.portal.target:16} {state}", flush=True)


def main() -> int:
    bed = iscsi.IscsiBed(luns=1, size_mb=64)
    say("Setting up an iSCSI target (LIO) with one 64 MiB LUN on two portals, each on its own link")
    bed.setup()
    try:
        return demo(bed)
    finally:
        say("Cleaning up: map removed, sessions logged out, target and links deleted")
        bed.teardown()


def demo(bed: iscsi.IscsiBed) -> int:
    paths = bed.paths(0)
    say("The initiator logged in through both portals: two SCSI disks, one WWID")
    for p in paths:
        print(f"     /dev/{p.dev} ({p.devno}) via {p.portal.target} on {p.portal.ifname}: WWID {p.wwid}")
    show(["iscsiadm", "-m", "session"])

    say(f"Building the multipath map {MAP} over both paths (dmsetup; queue_if_no_path off)")
    table = dm.multipath_table(bed.size_sectors(), [p.devno for p in paths])
    print(f"     table: {table}")
    node = dm.create(MAP, table)
    show(["dmsetup", "status", MAP])
    show(["lsblk", "-s", "-o", "NAME,MAJ:MIN,SIZE,TYPE", node])
    paths_line(paths)

    say("Starting write-verify I/O on the map (checksummed 4 KiB blocks, O_DIRECT)")
    wv = WriteVerify(node, blocks=256).start()
    wait_for(lambda: wv.progress() > 256, 60, "I/O to start")
    print(f"     {wv.progress()} blocks written so far, {len(wv.result.errors)} errors")

    cut, keep = paths
    say(f"Cutting path {cut.dev}: link {cut.portal.ifname} down, address {cut.portal.address} removed")
    bed.cut(cut.portal.index)
    t_cut = time.monotonic()
    wait_for(lambda: dm.status(MAP).path(cut.devno).state == "F", 120, f"the kernel to fail {cut.dev}")
    print(f"     the kernel failed the path {time.monotonic() - t_cut:.1f} s after the cut "
          "(iSCSI noop-out 2 s + replacement_timeout 5 s)")
    show(["dmsetup", "status", MAP])
    paths_line(paths)
    done = wv.progress()
    wait_for(lambda: wv.progress() > done + 512, 120, "I/O to continue on the other path")
    print(f"     I/O continues on {keep.dev}: {wv.progress()} blocks written, "
          f"{len(wv.result.errors)} errors, {len(wv.result.mismatches)} mismatches")

    say(f"Restoring the link of {cut.dev}; waiting for the iSCSI session to log in again")
    bed.restore(cut.portal.index)
    show(["iscsiadm", "-m", "session"])
    say(f"Reinstating {cut.dev} in the map")
    show(["dmsetup", "message", MAP, "0", "reinstate_path", cut.devno])
    paths_line(paths)
    done = wv.progress()
    wait_for(lambda: wv.progress() > done + 512, 120, "I/O over both paths")

    say("Stopping I/O and verifying every block once more")
    res = wv.stop()
    print(f"     {res}")
    ok = res.ok and all(dm.status(MAP).path(p.devno).state == "A" for p in paths)
    say("RESULT: " + ("failover and restore with zero I/O errors" if ok else "FAILED (see above)"))
    dm.remove(MAP)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
