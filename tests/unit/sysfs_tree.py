"""A fake sysfs + udev database + /proc + /run tree under a directory, for the facts layer and `-u` tests.

Plain files in the layouts the kernel and udev use; the code under test finds them through the env
overrides of pymultipathd.locations (and PYMULTIPATH_PROC).
"""

from __future__ import annotations

import os
from pathlib import Path


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys = root / "sys"
        self.db = root / "udev"
        self.proc = root / "proc"
        self.run = root / "run"
        for d in (self.sys / "block", self.sys / "class" / "block", self.db, self.proc / "self", self.run):
            d.mkdir(parents=True, exist_ok=True)
        (self.proc / "self" / "mountinfo").write_text("")
        (self.proc / "swaps").write_text("Filename Type Size Used Priority\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PYMULTIPATH_SYSFS": str(self.sys), "PYMULTIPATH_UDEV_DB": str(self.db),
            "PYMULTIPATH_PROC": str(self.proc), "PYMULTIPATH_RUNDIR": str(self.run),
            "PYMULTIPATH_WWIDS": str(self.root / "wwids"),
            "PYMULTIPATH_CONF": str(self.root / "multipath.conf"),
            "PYMULTIPATH_CONFDIR": str(self.root / "conf.d"),
            "MULTIPATH_SOCKET_NAME": f"@/pymp-test/{os.getpid()}/{self.root.name}",
            "PYMULTIPATH_HELPER_SOCKET": f"@/pymp-test-helper/{os.getpid()}/{self.root.name}",
        }
        env.update(extra)
        return env

    def install(self, monkeypatch) -> Tree:
        """Point the code under test at this tree for the rest of the test."""
        for k, v in self.env().items():
            monkeypatch.setenv(k, v)
        return self

    def disk(self, name: str, dev_t: str, wwid: str | None = None, *, vendor: str = "LIO-ORG",
             model: str = "disk0", transport: str = "session3", initialized: bool = True,
             props: dict[str, str] | None = None) -> Path:
        real = self.sys / "devices" / "platform" / "host3" / transport / "target3:0:0" / "3:0:0:1"
        real.mkdir(parents=True, exist_ok=True)
        base = self.sys / "block" / name
        base.mkdir()
        (base / "device").symlink_to(real)
        (real / "vendor").write_text(vendor + "\n")
        (real / "model").write_text(model + "\n")
        (base / "dev").write_text(dev_t + "\n")
        (base / "holders").mkdir()
        (base / "uevent").write_text(f"DEVTYPE=disk\nDEVNAME={name}\n")
        (self.sys / "class" / "block" / name).symlink_to(base)
        if initialized:
            p = {"ID_WWN": "0x6001405"} | ({"ID_SERIAL": wwid} if wwid else {}) | (props or {})
            self.udev(dev_t, p)
        return base

    def partition(self, disk: str, name: str, dev_t: str) -> Path:
        part = self.sys / "block" / disk / name
        part.mkdir()
        (part / "partition").write_text("1\n")
        (part / "dev").write_text(dev_t + "\n")
        (part / "holders").mkdir()
        (part / "uevent").write_text(f"DEVTYPE=partition\nDEVNAME={name}\n")
        (self.sys / "class" / "block" / name).symlink_to(part)
        return part

    def udev(self, dev_t: str, props: dict[str, str]) -> None:
        lines = ["S:disk/by-id/x", "I:123"] + [f"E:{k}={v}" for k, v in props.items()] + ["G:systemd"]
        (self.db / f"b{dev_t}").write_text("\n".join(lines) + "\n")

    def mpath_map(self, dm: str, alias: str, wwid: str, slaves: list[str]) -> None:
        base = self.sys / "block" / dm
        (base / "dm").mkdir(parents=True)
        (base / "dm" / "uuid").write_text(f"mpath-{wwid}\n")
        (base / "dm" / "name").write_text(alias + "\n")
        (base / "dev").write_text("254:0\n")
        (base / "slaves").mkdir()
        for s in slaves:
            (base / "slaves" / s).symlink_to(self.sys / "block" / s)
            (self.sys / "block" / s / "holders" / dm).symlink_to(base)

    def mount(self, dev_t: str, where: str = "/mnt") -> None:
        with (self.proc / "self" / "mountinfo").open("a") as f:
            f.write(f"36 25 {dev_t} / {where} rw,relatime shared:1 - ext4 /dev/x rw\n")

    def config(self, text: str) -> None:
        (self.root / "multipath.conf").write_text(text)

    def wwids(self, *wwids: str) -> None:
        (self.root / "wwids").write_text("".join(f"/{w}/\n" for w in wwids))
