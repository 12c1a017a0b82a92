"""LIO iSCSI target configured through configfs directly (targetcli takes 13-15 s per call under TCG).

One target IQN, one TPG, rd_mcp (RAM) LUNs, any number of portals in that TPG: an initiator logged in through
each portal sees every LUN once per portal, with one WWID per LUN (derived from vpd_unit_serial). A LUN may
instead read and write a block device of the guest (iblock, with an iblock_N hba): two targets whose LUNs have
one serial and devices over the same storage are one LUN with two paths that can fail apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tests.vm.sysutil import read_sysfs, run, write_sysfs

CONFIGFS = "/sys/kernel/config"
CORE = f"{CONFIGFS}/target/core"
ISCSI = f"{CONFIGFS}/target/iscsi"
PAGE = 4096


@dataclass(frozen=True)
class Lun:
    name: str
    size_mb: int
    serial: str  # hex digits: the WWN (and so the WWID) is made from them
    udev_path: str = ""  # iblock: the block device behind the LUN (its size is the device's)


@dataclass
class LioTarget:
    iqn: str
    portals: list[tuple[str, int]]
    luns: list[Lun]
    hba: str = "rd_mcp_7"
    _made: list[str] = field(default_factory=list)  # configfs paths in creation order, removed in reverse

    @property
    def tpg(self) -> str:
        return f"{ISCSI}/{self.iqn}/tpgt_1"

    def _mkdir(self, path: str) -> None:
        os.mkdir(path)
        self._made.append(path)

    def create(self) -> None:
        run(["modprobe", "target_core_mod"])
        run(["modprobe", "iscsi_target_mod"])
        if not os.path.isdir(f"{CONFIGFS}/target"):
            raise RuntimeError(f"LIO configfs not available at {CONFIGFS}/target")
        # LIO records persistent-reservation state under its dbroot (/etc/target) after every PR OUT, and
        # answers NOT READY (logical unit communication failure) when it cannot; targetcli's package makes it
        os.makedirs(f"{read_sysfs(f'{CONFIGFS}/target/dbroot')}/pr", exist_ok=True)
        if not os.path.isdir(ISCSI):  # the fabric registers when its directory is made
            self._mkdir(ISCSI)
        self._mkdir(f"{CORE}/{self.hba}")
        for lun in self.luns:
            store = f"{CORE}/{self.hba}/{lun.name}"
            self._mkdir(store)
            if lun.udev_path:
                write_sysfs(f"{store}/control", f"udev_path={lun.udev_path}")
                write_sysfs(f"{store}/udev_path", lun.udev_path)
            else:
                write_sysfs(f"{store}/control", f"rd_pages={lun.size_mb * 1024 * 1024 // PAGE}")
            write_sysfs(f"{store}/wwn/vpd_unit_serial", lun.serial)
            write_sysfs(f"{store}/enable", "1")
        self._mkdir(f"{ISCSI}/{self.iqn}")
        self._mkdir(self.tpg)
        for i, lun in enumerate(self.luns):
            lundir = f"{self.tpg}/lun/lun_{i}"
            self._mkdir(lundir)
            link = f"{lundir}/{lun.name}"
            os.symlink(f"{CORE}/{self.hba}/{lun.name}", link)
            self._made.append(link)
        for ip, port in self.portals:
            self._mkdir(f"{self.tpg}/np/{ip}:{port}")
        # open access for any initiator, no CHAP: the guest has no network device, nothing else can reach it
        for attr, value in (("authentication", "0"), ("generate_node_acls", "1"),
                            ("cache_dynamic_acls", "1"), ("demo_mode_write_protect", "0")):
            write_sysfs(f"{self.tpg}/attrib/{attr}", value)
        write_sysfs(f"{self.tpg}/enable", "1")
        self._made.append("enable")

    def destroy(self) -> None:
        """Remove everything create() made, newest first; safe to call on a half-made target."""
        errors = []
        for path in reversed(self._made):
            try:
                if path == "enable":
                    write_sysfs(f"{self.tpg}/enable", "0")
                elif os.path.islink(path):
                    os.unlink(path)
                else:
                    os.rmdir(path)
            except OSError as e:
                errors.append(f"{path}: {e}")
        self._made.clear()
        run(["modprobe", "-r", "iscsi_target_mod", "target_core_mod"], check=False)
        if errors:
            raise RuntimeError("LIO teardown left configfs entries: " + "; ".join(errors))


def leftovers() -> list[str]:
    """configfs objects that exist now (a clean guest has none)."""
    found = []
    for base in (ISCSI, CORE):
        if os.path.isdir(base):
            for name in os.listdir(base):
                if name.startswith(("iqn.", "rd_mcp", "fileio", "iblock")):
                    found.append(f"{base}/{name}")
    return found
