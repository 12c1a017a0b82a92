"""`make demo`: pymultipathd at work on a two-path iSCSI LUN, inside the test VM (the harness boots it).

The daemon runs from its real systemd unit. It classifies the two paths, assembles the map, fails a path cut
under write-verify I/O, reinstates it when it returns; then the flush explains who holds the map and removes
it once free. Exit code 0 only if I/O saw zero errors and zero mismatches throughout.
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.vm import dm, iscsi  # the checkout is on the guest venv's sys.path (guest.py setup)
from tests.vm.pympd import Pympd, config
from tests.vm.sysutil import wait_for
from tests.vm.writeverify import WriteVerify

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"\n[{time.monotonic() - T0:6.1f} s] == {text}", flush=True)


def show(argv: list[str]) -> str:
    print(f"   $ {' '.join(argv)}", flush=True)
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).rstrip()
    for line in text.splitlines():
        print(f"     {line}", flush=True)
    return text


def main() -> int:
    bed = iscsi.IscsiBed(luns=1, size_mb=64)
    # As at boot: the daemon first (its unit is ordered before iscsi.service), then the storage appears.
    conf = config("smart", user_friendly_names="yes", no_path_retry="queue", find_multipaths_timeout=10)
    try:
        with Pympd(conf, show_journal=False) as d:
            say("pymultipathd started from units/pymultipathd.service, find_multipaths smart")
            show(["systemctl", "status", "--no-pager", "--lines=0", "pymultipathd.service"])
            say("Setting up an iSCSI target (LIO) with one 64 MiB LUN on two portals, each on its own link")
            bed.setup()
            return demo(bed, d)
    finally:
        say("Cleaning up: daemon stopped, sessions logged out, target and links deleted")
        bed.teardown()


def demo(bed: iscsi.IscsiBed, d: Pympd) -> int:
    paths = bed.paths(0)
    say("The initiator logged in through both portals: two SCSI disks, one WWID")
    for p in paths:
        print(f"     /dev/{p.dev} ({p.devno}) via {p.portal.target} on {p.portal.ifname}: WWID {p.wwid}")
    say("The first path waited as 'maybe' until its sibling appeared; the daemon assembled the map")
    name = d.wait_map(paths[0].wwid)
    say("Why is this disk a multipath path? The udev helper and the daemon share one classifier:")
    show(["pymultipath", "-u", paths[0].dev, "--explain"])
    say(f"The map {name}, as the daemon shows it (Debian's `multipathd` client would print the same)")
    show(["pymultipathd", "show", "topology"])

    say("Starting write-verify I/O on the map (checksummed 4 KiB blocks, O_DIRECT)")
    wv = WriteVerify(f"/dev/mapper/{name}", blocks=256).start()
    wait_for(lambda: wv.progress() > 256, 60, "I/O to start")
    print(f"     {wv.progress()} blocks written so far, {len(wv.result.errors)} errors")

    cut, keep = paths
    say(f"Cutting path {cut.dev}: link {cut.portal.ifname} down, address {cut.portal.address} removed")
    bed.cut(cut.portal.index)
    t_cut = time.monotonic()
    wait_for(lambda: dm.status(name).path(cut.devno).state == "F", 120, f"{cut.dev} to be failed")
    print(f"     {cut.dev} failed in the map {time.monotonic() - t_cut:.1f} s after the cut")
    show(["journalctl", "-u", "pymultipathd", "-n", "3", "--no-pager", "-o", "cat"])
    show(["pymultipathd", "show", "paths"])
    done = wv.progress()
    wait_for(lambda: wv.progress() > done + 512, 120, "I/O to continue on the other path")
    print(f"     I/O continues on {keep.dev}: {wv.progress()} blocks written, "
          f"{len(wv.result.errors)} errors, {len(wv.result.mismatches)} mismatches")

    say(f"Restoring the link of {cut.dev}; the daemon's checker reinstates the path by itself")
    bed.restore(cut.portal.index)
    t_back = time.monotonic()
    wait_for(lambda: dm.status(name).path(cut.devno).state == "A", 60, f"{cut.dev} to be reinstated")
    print(f"     reinstated {time.monotonic() - t_back:.1f} s after the iSCSI session logged in again")
    show(["pymultipathd", "show", "topology"])
    done = wv.progress()
    wait_for(lambda: wv.progress() > done + 512, 120, "I/O over both paths")

    say("Trying to flush the map while the I/O runs: the flush refuses and says who holds it")
    show(["pymultipath", "-f", name])
    say("Stopping I/O and verifying every block once more")
    res = wv.stop()
    print(f"     {res}")
    say("Now nothing holds the map: the flush removes it")
    flushed = "flushed" in show(["pymultipath", "-f", name])
    ok = res.ok and flushed
    say("RESULT: " + ("failover, failback and flush with zero I/O errors" if ok else "FAILED (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
