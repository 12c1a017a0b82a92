"""scsi_debug: many LUNs seen through several SCSI hosts, one WWID per LUN shared by all its paths.

`modprobe scsi_debug add_host=M vpd_use_hostno=0 num_tgts=1 max_luns=N` gives N LUNs x M paths (the device
identification page ignores the host number, so every path of a LUN reports the same WWID). Parameters are
given to plain `modprobe` (`modprobe -a` silently drops them).
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from dataclasses import dataclass, field

from tests.vm import dm
from tests.vm.sysutil import read_sysfs, run, settle, udev_wwid, wait_for, write_sysfs

ADAPTERS = "/sys/bus/pseudo/drivers/scsi_debug/adapter*/host*/target*/*:*:*:*"


@dataclass(frozen=True)
class SdPath:
    dev: str  # "sdc"
    hctl: str  # "2:0:0:3"
    devno: str  # "8:32"
    wwid: str | None  # udev ID_SERIAL, what multipath uses

    @property
    def node(self) -> str:
        return f"/dev/{self.dev}"

    @property
    def lun(self) -> int:
        return int(self.hctl.split(":")[3])


def loaded() -> bool:
    return os.path.isdir("/sys/module/scsi_debug")


@dataclass
class ScsiDebug:
    luns: int
    paths_per_lun: int = 2
    dev_size_mb: int = 8
    params: dict[str, str] = field(default_factory=dict)
    paths: list[SdPath] = field(default_factory=list)

    def load(self, timeout: float = 280) -> None:
        if loaded():
            raise RuntimeError("scsi_debug is already loaded: a previous test left it behind")
        if self.luns > 256:  # more LUNs than the default scan limit of the SCSI midlayer allows
            write_sysfs("/sys/module/scsi_mod/parameters/max_luns", str(max(self.luns, 512)))
        # delay=0: commands complete at once instead of after a jiffy's timer; under TCG that timer made the
        # kernel's scan and udev's inquiries of a few dozen disks take minutes (a parameter may override it)
        opts = {"add_host": self.paths_per_lun, "vpd_use_hostno": 0, "num_tgts": 1, "max_luns": self.luns,
                "dev_size_mb": self.dev_size_mb, "delay": 0, **self.params}
        try:
            run(["modprobe", "scsi_debug", *(f"{k}={v}" for k, v in opts.items())], timeout=timeout)
            want = self.luns * self.paths_per_lun
            wait_for(lambda: len(glob.glob(f"{ADAPTERS}/block/*")) >= want, timeout,
                     f"{want} scsi_debug disks")
            settle(timeout)
            self.paths = self._scan()
        except BaseException:
            self.unload()
            raise

    def _scan(self) -> list[SdPath]:
        found = []
        for blk in sorted(glob.glob(f"{ADAPTERS}/block/*")):
            dev = os.path.basename(blk)
            hctl = blk.split("/")[-3]
            found.append(SdPath(dev, hctl, read_sysfs(f"/sys/block/{dev}/dev"), udev_wwid(dev)))
        return found

    def by_wwid(self) -> dict[str | None, list[SdPath]]:
        groups: dict[str | None, list[SdPath]] = defaultdict(list)
        for p in self.paths:
            groups[p.wwid].append(p)
        return dict(groups)

    def state(self, path: SdPath) -> str:
        return read_sysfs(f"/sys/block/{path.dev}/device/state")

    def offline(self, path: SdPath) -> None:
        write_sysfs(f"/sys/block/{path.dev}/device/state", "offline\n")  # the kernel wants the newline

    def online(self, path: SdPath) -> None:
        write_sysfs(f"/sys/block/{path.dev}/device/state", "running\n")

    def unload(self, timeout: float = 300) -> None:
        if not loaded():
            return
        devs = [os.path.basename(b) for b in glob.glob(f"{ADAPTERS}/block/*")]
        for d in devs:  # an offline disk must run again to be deleted cleanly
            try:
                if read_sysfs(f"/sys/block/{d}/device/state") != "running":
                    write_sysfs(f"/sys/block/{d}/device/state", "running\n")
            except OSError:
                pass
        dm.remove_holders(devs)
        settle(timeout)

        def unloaded() -> bool:
            run(["modprobe", "-r", "scsi_debug"], check=False, timeout=timeout)
            return not loaded()

        wait_for(unloaded, timeout, "scsi_debug to unload", interval=1)
        settle(timeout)
