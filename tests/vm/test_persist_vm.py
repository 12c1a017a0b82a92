"""Persistent reservations on a multipath map, against LIO's SPC-3 implementation (issue 23).

One LUN over the bed's two portals: two paths, two I_T nexuses (one initiator name, an ISID per session).
sg_persist through the paths is the independent oracle throughout; Debian's mpathpersist 0.9.4 prints the
same PR IN replies as ours (fence agents parse that text). In order:
1. pympathpersist registers the map's key through both paths; the daemon's prflag is set.
2. A path that comes back, and a path that joins the map, get the key from the daemon (each had lost its
   registration out of band, through sg_persist on that path alone).
3. A reservation through the map.
4. A fence: a second initiator identity in the guest (another iSCSI iface and initiator name, standing
   for another cluster node) registers and PREEMPT AND ABORTs our key. Our writes then fail with a
   reservation conflict through the map and through each path, nothing written after the fence reaches the
   LUN (read back through the other host's own path), and a path that comes back is not registered again:
   the daemon sees its key gone and clears prflag.
5. ALL_TG_PT registration (pympathpersist -Y), and CLEAR.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from tests.vm.iscsi import OtherHost
from tests.vm.pympd import Pympd
from tests.vm.sysutil import CommandError, read_sysfs, run, settle, wait_for, write_sysfs

KEY, OTHER_KEY = "0x123abc", "0xfe0ce"
BLOCKS = 64   # 4 KiB blocks written and compared
WE_RO = "5"   # Write Exclusive, registrants only


def conf(wwid: str, other_dev: str) -> str:
    # the other host's disk is another node's view of the LUN: never part of this host's map
    return f"""\
defaults {{
	find_multipaths greedy
	polling_interval 2
	max_polling_interval 4
}}
blacklist {{
	devnode "^vd[a-z]"
	devnode "^{other_dev}$"
}}
multipaths {{
	multipath {{
		wwid {wwid}
		reservation_key {KEY}
	}}
}}
"""


def sg_persist(dev: str, *args: str) -> str:
    """sg_persist through one path. A UNIT ATTENTION (exit status 6) is the target telling this nexus once
    that another changed the registrations ("reservations preempted", "registrations released"): asked
    again, as upstream's library does, not taken for an answer."""
    for _ in range(4):
        try:
            return run(["sg_persist", "-n", *args, f"/dev/{dev}"], timeout=30)
        except CommandError as err:
            if err.code != 6:
                raise
    return run(["sg_persist", "-n", *args, f"/dev/{dev}"], timeout=30)


def registrations(dev: str) -> list[dict[str, object]]:
    """READ FULL STATUS through `dev`, by sg_persist: one entry per registered I_T nexus."""
    out = sg_persist(dev, "--in", "--read-full-status")
    regs = []
    for block in re.split(r"\n\s*Key=", "\n" + out)[1:]:
        key = "0x" + block.split()[0].removeprefix("0x")
        initiator = re.search(r"port id: (\S+)|iSCSI name: (\S+)", block)
        regs.append({"key": key, "holder": "Reservation holder" in block,
                     "all_tg_pt": "All target ports bit set" in block,
                     "initiator": next(g for g in initiator.groups() if g) if initiator else "?"})
    return regs


def our_keys(dev: str) -> list[dict[str, object]]:
    return [r for r in registrations(dev) if r["key"] == KEY]


def pmp(*args: str, check: bool = True) -> str:
    return run(["pympathpersist", *args], check=check, timeout=120)


def same_in_output(mapdev: str, *actions: str) -> None:
    """Our PR IN output is Debian mpathpersist's, byte for byte, but for the capabilities' type mask, which
    0.9.4 prints as all 0 (its bit tests are in the wrong byte order): ours is sg_persist's there."""
    for a in actions:
        ours = pmp("--in", a, mapdev)
        theirs = run(["mpathpersist", "--in", a, mapdev], timeout=60)
        if a == "--report-capabilities":
            mask = "    Support indicated in Type mask:\n"
            ours, ours_mask = ours.split(mask)
            theirs = theirs.split(mask)[0]
            dev = os.path.basename(os.path.realpath(mapdev))
            slave = sorted(os.listdir(f"/sys/block/{dev}/slaves"))[0]
            sg = run(["sg_persist", "-n", "--in", a, f"/dev/{slave}"], timeout=30).split(mask)[1]
            assert ours_mask == sg, f"type mask: ours\n{ours_mask}\nsg_persist's\n{sg}"
        assert ours == theirs, f"mpathpersist --in {a}: ours\n{ours}\nDebian's\n{theirs}"


def blocks_digest(dev: str) -> str:
    """SHA-256 of the first BLOCKS blocks, read with O_DIRECT (past every cache)."""
    import mmap

    buf = mmap.mmap(-1, 4096)
    h = hashlib.sha256()
    fd = os.open(f"/dev/{dev}", os.O_RDONLY | os.O_DIRECT)
    try:
        for i in range(BLOCKS):
            os.preadv(fd, [buf], i * 4096)
            h.update(buf[:])
    finally:
        os.close(fd)
    return h.hexdigest()


def write_blocks(node: str, fill: bytes) -> list[str]:
    """Write the first BLOCKS blocks with O_DIRECT; the errors met (one per block at most)."""
    import mmap

    buf = mmap.mmap(-1, 4096)
    buf.write(fill * (4096 // len(fill)))
    errors = []
    fd = os.open(node, os.O_WRONLY | os.O_DIRECT)
    try:
        for i in range(BLOCKS):
            try:
                os.pwritev(fd, [buf], i * 4096)
            except OSError as err:
                errors.append(f"block {i}: {err}")
    finally:
        os.close(fd)
    return errors


def path_state(d: Pympd, name: str, dev: str) -> str:
    return " ".join(d.path_states(name).get(dev, ("?", "?")))


def bounce(bed, d: Pympd, name: str, portal: int, dev: str) -> None:
    """Portal `portal` fails and comes back; wait until the daemon failed and reinstated `dev`."""
    bed.cut(portal)
    wait_for(lambda: d.path_states(name).get(dev, ("",))[0] == "failed", 90, f"{dev} failed by the daemon")
    bed.restore(portal)
    wait_for(lambda: d.path_states(name).get(dev, ("",))[0] == "active", 90, f"{dev} reinstated")


@pytest.mark.timeout(900)
def test_reservations_through_every_path_and_a_fence(iscsi_bed):
    bed = iscsi_bed(luns=1, size_mb=16)
    a, b = bed.paths(0)
    assert a.wwid and a.wwid == b.wwid
    with OtherHost(bed, portal=0) as other, Pympd(conf(a.wwid, other.dev)) as d:
        name = d.wait_map(a.wwid)
        mapdev = f"/dev/mapper/{name}"
        assert sorted(d.path_states(name)) == sorted([a.dev, b.dev]), "the other host's disk joined the map"
        assert d.cmd("getprstatus", "map", name).strip() == "0"
        assert d.cmd("getprkey", "map", name).strip() == KEY

        # 1. registration through every path; the daemon learns it
        out = pmp("--out", "--register", f"--param-sark={KEY}", mapdev)
        regs = our_keys(a.dev)
        assert len(regs) == 2 and len({r["initiator"] for r in regs}) == 2, registrations(a.dev)
        assert our_keys(b.dev) == regs, "both paths see the same registrations"
        assert d.cmd("getprstatus", "map", name).strip() == "1", out
        same_in_output(mapdev, "--read-keys", "--read-reservation", "--read-full-status",
                       "--report-capabilities")

        # a key that is not the map's is refused before anything is sent
        with pytest.raises(CommandError) as refused:
            pmp("--out", "--register-ignore", "--param-sark=0xbad", mapdev)
        assert refused.value.code == 1 and "doesn't match" in refused.value.err
        assert len(our_keys(a.dev)) == 2

        # 2a. a path that comes back is registered again by the daemon
        sg_persist(b.dev, "--out", "--register", f"--param-rk={KEY}", "--param-sark=0")
        assert len(our_keys(a.dev)) == 1, "sg_persist unregistered the nexus of one path"
        bounce(bed, d, name, 1, b.dev)
        wait_for(lambda: len(our_keys(a.dev)) == 2, 60, "the daemon to register the returning path")

        # 2b. a path that joins the map (a new SCSI device) is registered by the daemon
        sg_persist(b.dev, "--out", "--register", f"--param-rk={KEY}", "--param-sark=0")
        host = os.path.basename(os.path.realpath(f"/sys/block/{b.dev}/device")).split(":")[0]
        write_sysfs(f"/sys/block/{b.dev}/device/delete", "1")
        wait_for(lambda: b.dev not in d.path_states(name), 60, f"{b.dev} gone from the map")
        assert len(our_keys(a.dev)) == 1
        write_sysfs(f"/sys/class/scsi_host/host{host}/scan", "- - -")
        settle()
        b = bed.paths(0)[1]
        wait_for(lambda: d.path_states(name).get(b.dev, ("",))[0] == "active", 90, f"{b.dev} joined the map")
        wait_for(lambda: len(our_keys(a.dev)) == 2, 60, "the daemon to register the new path")

        # 3. a reservation through the map
        pmp("--out", "--reserve", f"--param-rk={KEY}", f"--prout-type={WE_RO}", mapdev)
        holders = [r for r in registrations(a.dev) if r["holder"]]
        assert len(holders) == 1 and holders[0]["key"] == KEY
        assert "Reservation follows" in pmp("--in", "--read-reservation", mapdev)
        same_in_output(mapdev, "--read-reservation", "--read-full-status")
        assert not write_blocks(mapdev, b"before-fence"), "the holder writes"
        before = blocks_digest(other.dev)

        # 4. the other host fences us off
        sg_persist(other.dev, "--out", "--register", f"--param-sark={OTHER_KEY}")
        sg_persist(other.dev, "--out", "--preempt-abort", f"--param-rk={OTHER_KEY}", f"--param-sark={KEY}",
                   f"--prout-type={WE_RO}")
        assert [r["key"] for r in registrations(other.dev)] == [OTHER_KEY]
        failed = write_blocks(mapdev, b"after-fence!")
        assert len(failed) == BLOCKS, f"writes through the map after the fence: {BLOCKS - len(failed)} passed"
        for p in (a, b):
            failed = write_blocks(p.node, b"after-fence!")
            assert len(failed) == BLOCKS, f"{p.dev}: {BLOCKS - len(failed)} writes passed after the fence"
        assert blocks_digest(other.dev) == before, "data written after the fence reached the LUN"
        # a returning path must not bring the fenced key back
        bounce(bed, d, name, 1, b.dev)
        wait_for(lambda: d.cmd("getprstatus", "map", name).strip() == "0", 60,
                 "the daemon to see its key gone and clear prflag")
        assert not our_keys(other.dev), "a fenced host registered itself again"
        same_in_output(mapdev, "--read-keys", "--read-full-status")
        sg_persist(other.dev, "--out", "--clear", f"--param-rk={OTHER_KEY}")

        # 5. ALL_TG_PT, then CLEAR through the map
        pmp("--out", "--register", "--param-alltgpt", f"--param-sark={KEY}", mapdev)
        regs = our_keys(a.dev)
        assert regs and all(r["all_tg_pt"] for r in regs), registrations(a.dev)
        assert d.cmd("getprstatus", "map", name).strip() == "1"
        pmp("--out", "--clear", f"--param-rk={KEY}", mapdev)
        assert registrations(a.dev) == []
        assert d.cmd("getprstatus", "map", name).strip() == "0"
        assert read_sysfs(f"/sys/block/{a.dev}/device/state") == "running"
