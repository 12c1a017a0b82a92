"""A two-portal iSCSI bed inside the guest: LIO target, open-iscsi initiator, one dummy link per portal.

    bed = IscsiBed(luns=1); bed.setup()
    bed.paths(0)        -> [Path(portal 0), Path(portal 1)] of LUN 0, same WWID
    bed.cut(0); bed.restore(0)   network-level failure of portal 0 (link down/up via netlink)
    bed.hang(0); bed.restore(0)  portal 0 stops answering (packets dropped), its session waits in recovery
    bed.teardown()      sessions logged out, node records deleted, target and links removed
"""

from __future__ import annotations

import glob
import os
import uuid
from dataclasses import dataclass, field

from tests.vm import dm, lio, netpath
from tests.vm.sysutil import read_sysfs, run, settle, udev_wwid, wait_for, write_sysfs

IQN = "iqn.2024-01.org.pymultipathd:bed"
PORT = 3260
LINK_PREFIX = "pymp-p"
# Short timeouts so a cut path fails in seconds, not minutes (DESIGN.md: measured under TCG).
NODE_SETTINGS = {
    "node.session.timeo.replacement_timeout": "5",
    "node.conn[0].timeo.noop_out_interval": "2",
    "node.conn[0].timeo.noop_out_timeout": "2",
    "node.conn[0].timeo.login_timeout": "5",
    "node.session.initial_login_retry_max": "2",
}


@dataclass(frozen=True)
class Portal:
    index: int
    ifname: str
    address: str

    @property
    def target(self) -> str:
        return f"{self.address}:{PORT}"


@dataclass(frozen=True)
class Path:
    portal: Portal
    lun: int
    dev: str  # e.g. "sdb"
    devno: str  # "8:16"
    wwid: str | None

    @property
    def node(self) -> str:
        return f"/dev/{self.dev}"


def _iscsiadm(*args: str, check: bool = True) -> str:
    return run(["iscsiadm", *args], check=check, timeout=60)


def session_dirs() -> list[str]:
    return sorted(glob.glob("/sys/class/iscsi_session/session*"))


def _session_for(portal: Portal) -> str | None:
    """sysfs session directory of the bed's own initiator whose connection goes to this portal's address."""
    for s in session_dirs():
        try:
            if read_sysfs(f"{s}/initiatorname") == OtherHost.NAME:
                continue
        except OSError:
            pass
        for conn in glob.glob(f"{s}/device/connection*/iscsi_connection/connection*"):
            try:
                if read_sysfs(f"{conn}/persistent_address") == portal.address:
                    return s
            except OSError:
                continue
    return None


@dataclass
class IscsiBed:
    luns: int = 1
    size_mb: int = 64
    portals: list[Portal] = field(default_factory=lambda: [
        Portal(0, f"{LINK_PREFIX}0", "192.0.2.1"), Portal(1, f"{LINK_PREFIX}1", "192.0.2.2")])
    target: lio.LioTarget | None = None
    serials: list[str] = field(default_factory=list)

    def setup(self) -> None:
        try:
            for p in self.portals:
                netpath.add_dummy(p.ifname, p.address)
            self.serials = [uuid.uuid4().hex[:16] for _ in range(self.luns)]
            self.target = lio.LioTarget(
                IQN, [(p.address, PORT) for p in self.portals],
                [lio.Lun(f"lun{i}", self.size_mb, s) for i, s in enumerate(self.serials)])
            self.target.create()
            run(["systemctl", "start", "iscsid.service"])
            for p in self.portals:
                _iscsiadm("-m", "node", "-o", "new", "-T", IQN, "-p", p.target)
                for name, value in NODE_SETTINGS.items():
                    _iscsiadm("-m", "node", "-T", IQN, "-p", p.target, "-o", "update",
                              "-n", name, "-v", value)
            for p in self.portals:
                _iscsiadm("-m", "node", "-T", IQN, "-p", p.target, "--login")
            wait_for(lambda: all(len(self._devs(p)) == self.luns for p in self.portals), 60,
                     f"{self.luns} SCSI disks behind each of {len(self.portals)} iSCSI sessions")
            settle(120 + 2 * len(self.portals) * self.luns)  # udev takes about a second per disk under TCG
        except BaseException:
            self.teardown()
            raise

    def _devs(self, portal: Portal) -> dict[int, str]:
        """LUN number -> block device name for the session through this portal."""
        s = _session_for(portal)
        if not s:
            return {}
        found = {}
        for blk in glob.glob(f"{s}/device/target*/*:*:*:*/block/*"):
            lun = int(blk.split("/")[-3].split(":")[-1])
            found[lun] = os.path.basename(blk)
        return found

    def paths(self, lun: int = 0) -> list[Path]:
        out = []
        for p in self.portals:
            dev = self._devs(p).get(lun)
            if dev is None:
                raise LookupError(f"no disk for LUN {lun} behind portal {p.target}")
            devno = read_sysfs(f"/sys/block/{dev}/dev")
            out.append(Path(p, lun, dev, devno, udev_wwid(dev)))
        return out

    def size_sectors(self) -> int:
        return self.size_mb * 1024 * 1024 // 512

    def cut(self, portal: int) -> None:
        """Fail one path at the network level: link down and address removed (netlink, not sysfs)."""
        p = self.portals[portal]
        netpath.cut(p.ifname, p.address)

    def hang(self, portal: int, recovery_tmo: int = 600) -> None:
        """A dead fabric with a patient initiator: the portal's packets are dropped (nothing changes on the
        host's links or addresses, see netpath.drop) and its session waits `recovery_tmo` seconds in recovery
        before it fails its disks. Meanwhile they are "blocked": every command to them, a checker's TUR
        included, waits (libiscsi keeps resetting the timer of commands of a session in recovery), so their
        own SCSI timeouts never end it. Noop-outs (2+2 s) only start that recovery a few seconds after the
        cut. restore() undoes it."""
        p = self.portals[portal]
        s = _session_for(p)
        if not s:
            raise LookupError(f"no iSCSI session through {p.target}")
        write_sysfs(f"{s}/recovery_tmo", str(recovery_tmo))  # this session only, until logout
        netpath.drop(p.address)

    def restore(self, portal: int, timeout: float = 90) -> None:
        """Bring the link back (or stop dropping its packets) and wait until the session through it is logged
        in and its disks run again, with the bed's recovery timeout."""
        p = self.portals[portal]
        netpath.undrop(p.address)
        netpath.restore(p.ifname, p.address)
        wait_for(lambda: self.session_state(portal) == "LOGGED_IN", timeout,
                 f"iSCSI session through {p.target} to log in again")
        wait_for(lambda: all(read_sysfs(f"/sys/block/{d}/device/state") == "running"
                             for d in self._devs(p).values()), timeout, f"disks behind {p.target} to run")
        s = _session_for(p)
        tmo = NODE_SETTINGS["node.session.timeo.replacement_timeout"]
        if s and read_sysfs(f"{s}/recovery_tmo") != tmo:  # hang() changed it
            write_sysfs(f"{s}/recovery_tmo", tmo)

    def session_state(self, portal: int) -> str | None:
        s = _session_for(self.portals[portal])
        return read_sysfs(f"{s}/state") if s else None

    def teardown(self) -> None:
        """Leave nothing behind: maps over our disks, sessions, node records, target, links."""
        errors: list[str] = []
        devs = [d for p in self.portals for d in self._devs(p).values()]
        try:
            dm.remove_holders(devs)
        except Exception as e:  # keep tearing down; report at the end
            errors.append(str(e))
        for p in self.portals:  # a cut link or a hung portal would make logout wait for timeouts
            try:
                netpath.undrop(p.address)
            except Exception as e:
                errors.append(str(e))
            if p.ifname in netpath.links_with_prefix(LINK_PREFIX):
                netpath.restore(p.ifname, p.address)
        _iscsiadm("-m", "node", "-T", IQN, "--logout", check=False)
        _iscsiadm("-m", "node", "-T", IQN, "-o", "delete", check=False)
        if any(_session_for(p) for p in self.portals):
            errors.append("iSCSI sessions still present after logout")
        if self.target:
            try:
                self.target.destroy()
            except RuntimeError as e:
                errors.append(str(e))
            self.target = None
        for p in self.portals:
            netpath.remove_link(p.ifname)
        settle()
        if errors:
            raise RuntimeError("iSCSI bed teardown: " + "; ".join(errors))


class OtherHost:
    """A second initiator identity in the same guest, standing for another cluster node: its own open-iscsi
    iface with its own initiator name, logged in through one portal of the bed. The target sees a separate
    I_T nexus (another initiator port), so SCSI-3 reservations tell the two hosts apart.

        with OtherHost(bed, portal=0) as other:
            other.dev    # "sdd": the LUN as the other host sees it
    """

    IFACE = "pymp-other"
    NAME = "iqn.2024-01.org.pymultipathd:other-host"

    def __init__(self, bed: IscsiBed, portal: int = 0, lun: int = 0) -> None:
        self.bed, self.portal, self.lun = bed, bed.portals[portal], lun
        self.dev = ""

    def _session(self) -> str | None:
        for s in session_dirs():
            try:
                if read_sysfs(f"{s}/initiatorname") == self.NAME:
                    return s
            except OSError:
                continue
        return None

    def _disk(self) -> str | None:
        s = self._session()
        for blk in glob.glob(f"{s}/device/target*/*:*:*:{self.lun}/block/*") if s else []:
            return os.path.basename(blk)
        return None

    def __enter__(self) -> OtherHost:
        before = {d for p in self.bed.portals for d in self.bed._devs(p).values()}
        _iscsiadm("-m", "iface", "-I", self.IFACE, "-o", "new")
        try:
            _iscsiadm("-m", "iface", "-I", self.IFACE, "-o", "update", "-n", "iface.initiatorname",
                      "-v", self.NAME)
            _iscsiadm("-m", "node", "-o", "new", "-T", IQN, "-p", self.portal.target, "-I", self.IFACE)
            for name, value in NODE_SETTINGS.items():
                _iscsiadm("-m", "node", "-T", IQN, "-p", self.portal.target, "-I", self.IFACE, "-o", "update",
                          "-n", name, "-v", value)
            _iscsiadm("-m", "node", "-T", IQN, "-p", self.portal.target, "-I", self.IFACE, "--login")
            self.dev = wait_for(self._disk, 60, f"the other host's disk through {self.portal.target}")
            settle(60)
            if self.dev in before:
                raise RuntimeError(f"{self.dev} belongs to the bed's own sessions")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _iscsiadm("-m", "node", "-T", IQN, "-p", self.portal.target, "-I", self.IFACE, "--logout",
                  check=False)
        _iscsiadm("-m", "node", "-T", IQN, "-p", self.portal.target, "-I", self.IFACE, "-o", "delete",
                  check=False)
        _iscsiadm("-m", "iface", "-I", self.IFACE, "-o", "delete", check=False)
        settle()
