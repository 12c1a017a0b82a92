"""Fixtures of the VM tier (tests/vm/README.md documents them). Runs only inside the test VM."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

MARKER = "/etc/pymp-vm"


def pytest_configure(config: pytest.Config) -> None:
    if not os.path.exists(MARKER):
        raise pytest.UsageError("tests/vm run inside the test VM only: use `make check-vm` "
                                "(python -m tests.vm.harness test)")


# imported after the guard: these need the guest's packages (pyroute2) and real devices
from tests.vm import dm, iscsi, lio, netpath, scsidebug, upstream  # noqa: E402
from tests.vm.sysutil import run  # noqa: E402
from tests.vm.writeverify import WriteVerify  # noqa: E402


@pytest.fixture
def iscsi_bed() -> Iterator[Callable[..., iscsi.IscsiBed]]:
    """Factory: iscsi_bed(luns=1, size_mb=64) -> a set-up two-portal IscsiBed; torn down after the test."""
    beds: list[iscsi.IscsiBed] = []

    def make(luns: int = 1, size_mb: int = 64) -> iscsi.IscsiBed:
        bed = iscsi.IscsiBed(luns=luns, size_mb=size_mb)
        bed.setup()
        beds.append(bed)
        return bed

    yield make
    for bed in reversed(beds):
        bed.teardown()


@pytest.fixture
def scsi_debug() -> Iterator[Callable[..., scsidebug.ScsiDebug]]:
    """Factory: scsi_debug(luns=N, paths=M, dev_size_mb=8, **params) -> loaded ScsiDebug; unloaded after."""
    made: list[scsidebug.ScsiDebug] = []

    def make(luns: int, paths: int = 2, dev_size_mb: int = 8, **params: str) -> scsidebug.ScsiDebug:
        sd = scsidebug.ScsiDebug(luns, paths, dev_size_mb, {k: str(v) for k, v in params.items()})
        sd.load()
        made.append(sd)
        return sd

    yield make
    for sd in made:
        sd.unload()


@pytest.fixture
def multipath_map() -> Iterator[Callable[..., str]]:
    """Factory: multipath_map(name, devnos, sectors, queue_if_no_path=False) -> /dev/mapper/NAME (dmsetup)."""
    names: list[str] = []

    def make(name: str, devnos: list[str], sectors: int, queue_if_no_path: bool = False) -> str:
        node = dm.create(name, dm.multipath_table(sectors, devnos, queue_if_no_path=queue_if_no_path))
        names.append(name)
        return node

    yield make
    for name in reversed(names):
        if name in dm.multipath_maps():
            dm.remove(name)


@pytest.fixture
def write_verify() -> Iterator[Callable[..., WriteVerify]]:
    """Factory: write_verify(device, blocks=256) -> WriteVerify; background runs are stopped after."""
    made: list[WriteVerify] = []

    def make(device: str, blocks: int = 256) -> WriteVerify:
        wv = WriteVerify(device, blocks)
        made.append(wv)
        return wv

    yield make
    for wv in made:
        if wv.running:
            wv.stop()


@pytest.fixture
def upstream_multipathd() -> Iterator[upstream.UpstreamMultipathd]:
    """Debian's multipathd started with find_multipaths greedy; stopped, maps flushed and masked after."""
    mp = upstream.UpstreamMultipathd().start()
    yield mp
    mp.stop()


def leftovers() -> list[str]:
    found = [f"multipath map {n}" for n in dm.multipath_maps()]
    found += [f"iSCSI session {os.path.basename(s)}" for s in iscsi.session_dirs()]
    found += [f"LIO {p}" for p in lio.leftovers()]
    found += [f"link {n}" for n in netpath.links_with_prefix(iscsi.LINK_PREFIX)]
    found += [f"packets to {a} dropped" for a in netpath.dropped()]
    if scsidebug.loaded():
        found.append("scsi_debug module loaded")
    for unit in ("multipathd.service", "pymultipathd.service"):
        if run(["systemctl", "is-active", unit], check=False).strip() in ("active", "activating"):
            found.append(f"{unit} running")
    return found


@pytest.fixture(autouse=True)
def leaves_nothing_behind() -> Iterator[None]:
    """Every test starts clean and must leave the guest clean (checked after the fixtures' teardown)."""
    before = leftovers()
    if before:
        pytest.fail("the guest is not clean before the test: " + ", ".join(before))
    yield
    after = leftovers()
    if after:
        pytest.fail("left behind after the test: " + ", ".join(after))
