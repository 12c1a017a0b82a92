"""Marginal paths for real (issue 19): a path whose reads fail now and then while its checker (TUR) keeps
saying it is fine.

The bed: one loop device, seen through two device-mapper devices, a linear one (healthy) and a flakey one
that fails all I/O during its down intervals; each is an iblock LUN of its own LIO target with the same
serial, so the initiator sees one LUN (one WWID) over two iSCSI paths, of which one fails reads at the
target's will. The TUR checker goes through the target only and never sees the trouble, exactly the case
marginal_path_* exists for. The kernel's view (`dmsetup table` / `status`) is the oracle.
"""

from __future__ import annotations

import contextlib
import glob
import json
import mmap
import os
import random
import threading
import time
from collections.abc import Iterator

import pytest

from tests.vm import dm, iscsi, lio, netpath
from tests.vm.pympd import Pympd, config
from tests.vm.sysutil import CommandError, read_sysfs, run, settle, udev_wwid, wait_for

SIZE_MB = 32
BACKING = "/run/pymp-marginal.img"
GOOD, BAD = "pymp-good", "pymp-bad"
TARGETS = (  # (iqn, dm device its LUN reads, portal): portal 0 is the flaky path, portal 1 the healthy one
    ("iqn.2024-01.org.pymultipathd:flaky", BAD, iscsi.Portal(0, "pymp-m0", "192.0.2.11")),
    ("iqn.2024-01.org.pymultipathd:steady", GOOD, iscsi.Portal(1, "pymp-m1", "192.0.2.12")),
)
SECTORS = SIZE_MB * 2048


class FlakyBed:
    def __init__(self) -> None:
        self.loop = ""
        self.targets: list[lio.LioTarget] = []
        self.serial = f"{random.getrandbits(64):016x}"

    def setup(self) -> None:
        with open(BACKING, "wb") as f:
            f.truncate(SIZE_MB * 1024 * 1024)
        self.loop = run(["losetup", "--find", "--show", BACKING]).strip()
        for name in (GOOD, BAD):
            run(["dmsetup", "create", name, "--table", f"0 {SECTORS} linear {self.loop} 0"])
        for n, (iqn, store, portal) in enumerate(TARGETS):
            netpath.add_dummy(portal.ifname, portal.address)
            t = lio.LioTarget(iqn, [(portal.address, iscsi.PORT)],
                              [lio.Lun(f"m{n}", SIZE_MB, self.serial, udev_path=f"/dev/mapper/{store}")],
                              hba=f"iblock_{40 + n}")
            self.targets.append(t)
            t.create()
        run(["systemctl", "start", "iscsid.service"])
        for iqn, _, portal in TARGETS:
            iscsi._iscsiadm("-m", "node", "-o", "new", "-T", iqn, "-p", portal.target)
            for name, value in iscsi.NODE_SETTINGS.items():
                iscsi._iscsiadm("-m", "node", "-T", iqn, "-p", portal.target, "-o", "update", "-n", name,
                                "-v", value)
            iscsi._iscsiadm("-m", "node", "-T", iqn, "-p", portal.target, "--login")
        wait_for(lambda: all(self._dev(p) for _, _, p in TARGETS), 60, "a disk behind each target")
        settle(120)

    def _dev(self, portal: iscsi.Portal) -> str | None:
        s = iscsi._session_for(portal)
        for blk in glob.glob(f"{s}/device/target*/*:*:*:0/block/*") if s else []:
            return os.path.basename(blk)
        return None

    def paths(self) -> tuple[str, str]:
        """(flaky, healthy) device names."""
        flaky, healthy = (self._dev(p) for _, _, p in TARGETS)
        assert flaky and healthy
        return flaky, healthy

    def flaky(self, up: int = 1, down: int = 1) -> None:
        """The flaky target's storage fails every I/O `down` seconds out of every `up + down`."""
        run(["dmsetup", "reload", BAD, "--table", f"0 {SECTORS} flakey {self.loop} 0 {up} {down}"])
        run(["dmsetup", "resume", BAD])

    def heal(self) -> None:
        run(["dmsetup", "reload", BAD, "--table", f"0 {SECTORS} linear {self.loop} 0"])
        run(["dmsetup", "resume", BAD])

    def teardown(self) -> None:
        errors: list[str] = []
        with contextlib.suppress(Exception):
            self.heal()
        with contextlib.suppress(Exception):
            dm.remove_holders([d for d in (self._dev(p) for _, _, p in TARGETS) if d])
        for iqn, _, _ in TARGETS:
            iscsi._iscsiadm("-m", "node", "-T", iqn, "--logout", check=False)
            iscsi._iscsiadm("-m", "node", "-T", iqn, "-o", "delete", check=False)
        for t in reversed(self.targets):
            try:
                t.destroy()
            except RuntimeError as e:
                errors.append(str(e))
        for _, _, portal in TARGETS:
            netpath.remove_link(portal.ifname)
        for name in (BAD, GOOD):
            run(["dmsetup", "remove", "--retry", name], check=False)
        if self.loop:
            run(["losetup", "-d", self.loop], check=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(BACKING)
        settle()
        if errors:
            raise RuntimeError("flaky bed teardown: " + "; ".join(errors))


@pytest.fixture
def flaky_bed() -> Iterator[FlakyBed]:
    bed = FlakyBed()
    try:
        bed.setup()
        yield bed
    finally:
        bed.teardown()


class Reader:
    """Direct 4 KiB reads at random offsets through the map, back to back, from a thread: the application
    whose I/O makes the kernel fail the flaky path. Every read must succeed (the map retries on the other
    path)."""

    def __init__(self, node: str) -> None:
        self.node, self.reads, self.errors = node, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fd = os.open(self.node, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        try:
            while not self._stop.is_set():
                try:
                    os.preadv(fd, [buf], random.randrange(SECTORS // 8) * 4096)
                    self.reads += 1
                except OSError as e:
                    self.errors.append(str(e))
                self._stop.wait(0.02)
        finally:
            os.close(fd)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _journal(since: float) -> str:
    return run(["journalctl", "-u", "pymultipathd.service", "--no-pager", "-o", "cat",
                f"--since=@{int(since)}"])


def _table_groups(name: str) -> list[list[str]]:
    """The map's path groups as the kernel's table lists them (major:minor per group)."""
    words = run(["dmsetup", "table", name]).split()
    i = 3
    i += 1 + int(words[i])                      # features
    i += 1 + int(words[i])                      # hardware handler
    ngroups = int(words[i])
    i += 2                                      # the group count and the initial group
    groups = []
    for _ in range(ngroups):
        i += 1                                  # selector name
        i += 1 + int(words[i])                  # selector args
        npaths, nargs = int(words[i]), int(words[i + 1])
        i += 2
        devs = []
        for _ in range(npaths):
            devs.append(words[i])
            i += 1 + nargs
        groups.append(devs)
    return groups


MARGINAL = dict(marginal_path_double_failed_time=60, marginal_path_err_sample_time=120,
                marginal_path_err_rate_threshold=50, marginal_path_err_recheck_gap_time=3600)


def test_a_path_failing_reads_is_held_out_after_its_io_error_check(flaky_bed):
    flaky, healthy = flaky_bed.paths()
    wwid = udev_wwid(flaky)
    assert wwid and wwid == udev_wwid(healthy)
    flaky_t, healthy_t = (read_sysfs(f"/sys/block/{d}/dev") for d in (flaky, healthy))
    t0 = time.time()
    with Pympd(config("greedy", path_grouping_policy="multibus", **MARGINAL)) as d:
        name = d.wait_map(wwid)
        assert dm.status(name).path(flaky_t).state == "A"
        with Reader(f"/dev/mapper/{name}") as reader:
            flaky_bed.flaky(up=1, down=1)
            wait_for(lambda: "not reinstated in" in _journal(t0), 90, "the flaky path to become suspect")
            suspect_at = time.time()
            # from now on the kernel never has it active again: sampled, then judged marginal
            verdict = ""
            while not verdict and time.time() - suspect_at < 200:
                st = dm.status(name)
                assert st.path(flaky_t).state == "F", "a suspect path was reinstated"
                verdict = next((ln for ln in _journal(t0).splitlines() if "I/O error check:" in ln), "")
                time.sleep(2)
            assert "marginal, kept out of" in verdict, verdict or "no I/O error check result in 200 s"
            assert d.path_states(name)[flaky][1] == "delayed"
            assert dm.status(name).path(healthy_t).state == "A"
        assert not reader.errors, reader.errors[:5]
        assert reader.reads > 100
        log = _journal(t0)
        assert "failed by the kernel" in log and f"{flaky}: I/O error check for 120 s" in log
        # the first failure alone was forgiven: the path was reinstated between the two
        assert log.index("path up, reinstated") < log.index("not reinstated in")
        reads, errors = _counts(verdict)
        assert reads > 100 and errors * 1000 / reads > 50, verdict
        # healed, it still waits out the recheck gap; a reconfigure without marginal_path_* lets it back
        flaky_bed.heal()
        time.sleep(6)
        assert dm.status(name).path(flaky_t).state == "F"
        with open("/etc/multipath.conf", "w") as f:
            f.write(config("greedy", path_grouping_policy="multibus"))
        d.cmd("reconfigure")
        wait_for(lambda: dm.status(name).path(flaky_t).state == "A", 30, "the path back after reconfigure")


def _counts(line: str) -> tuple[int, int]:
    """(reads, errors) from the daemon's "I/O error check: E of R reads failed" line."""
    errors, reads = line.split("I/O error check: ")[1].split(" reads")[0].split(" of ")
    return int(reads), int(errors)


def test_with_marginal_pathgroups_the_flaky_path_serves_last_in_a_group_of_its_own(flaky_bed):
    flaky, healthy = flaky_bed.paths()
    wwid = udev_wwid(flaky)
    flaky_t, healthy_t = (read_sysfs(f"/sys/block/{d}/dev") for d in (flaky, healthy))
    t0 = time.time()
    conf = config("greedy", path_grouping_policy="multibus", marginal_pathgroups="on", **MARGINAL)
    with Pympd(conf) as d:
        name = d.wait_map(wwid)
        assert len(_table_groups(name)) == 1
        with Reader(f"/dev/mapper/{name}") as reader:
            flaky_bed.flaky(up=1, down=1)
            wait_for(lambda: _table_groups(name) == [[healthy_t], [flaky_t]], 120,
                     "the flaky path moved to a group of its own, last")
            assert "moved to a path group of its own" in _journal(t0)
            flaky_bed.heal()
            wait_for(lambda: dm.status(name).path(flaky_t).state == "A", 30, "the marginal path active")
        assert not reader.errors, reader.errors[:5]
        st = dm.status(name)
        assert st.group_in_use() == 1  # I/O goes to the healthy group; the marginal one waits
        doc = json.loads(d.cmd("show", "map", name, "json"))
        groups = doc["map"]["path_groups"]
        assert [g["marginal_st"] for g in groups] == ["normal", "marginal"]
        assert d.cmd("show", "paths", "raw", "format", "%d %M").split().count("marginal") == 1


def test_setmarginal_moves_a_path_into_the_marginal_group_and_back(iscsi_bed):
    bed = iscsi_bed(luns=1, size_mb=8)
    a, b = bed.paths(0)
    with Pympd(config("greedy", path_grouping_policy="multibus")) as d:
        name = d.wait_map(a.wwid)
        with pytest.raises(CommandError) as refused:
            d.cmd("setmarginal", "path", a.dev)
        assert "marginal_pathgroups is not on" in refused.value.out
        assert len(_table_groups(name)) == 1
        with open("/etc/multipath.conf", "w") as f:
            f.write(config("greedy", path_grouping_policy="multibus", marginal_pathgroups="on"))
        d.cmd("reconfigure")
        d.cmd("setmarginal", "path", a.dev)
        assert _table_groups(name) == [[b.devno], [a.devno]]
        out = d.cmd("show", "paths", "raw", "format", "%d %M")
        assert f"{a.dev} marginal" in out and f"{b.dev} normal" in out
        d.cmd("unsetmarginal", "map", name)
        assert len(_table_groups(name)) == 1 and sorted(_table_groups(name)[0]) == sorted([a.devno, b.devno])
