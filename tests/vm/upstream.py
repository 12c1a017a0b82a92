"""Debian's multipath-tools 0.9.4, the comparison: masked in the image, started on demand, stopped after.

    with UpstreamMultipathd(config=GREEDY) as mp:   # writes /etc/multipath.conf, unmasks, starts
        mp.wait_map(wwid)
    with UpstreamRules():                           # udev classifies with Debian's rule instead of ours
        ...
"""

from __future__ import annotations

import glob
import os

from tests.vm import dm, image
from tests.vm.sysutil import SavedFiles, run, settle, wait_for

UNITS = ["multipathd.socket", "multipathd.service"]
CONF = "/etc/multipath.conf"
STATE = ["/etc/multipath/wwids", "/etc/multipath/bindings"]

# The blacklist section spans several lines: 0.9.4 misreads a one-line section.
GREEDY = """\
defaults {
	find_multipaths greedy
	user_friendly_names yes
}
blacklist {
	devnode "^vd[a-z]"
}
"""


OUR_RULES = "/etc/udev/rules.d/62-pymultipath.rules"
PARKED = "/etc/udev/pymp-parked.rules.off"  # same file system: renamed, never copied


class UpstreamRules:
    """Debian's `multipath -u` rule in force instead of ours while inside (the image masks it with a
    /dev/null link in /etc/udev/rules.d; guest.py setup installs ours there): for comparisons where udev's own
    work per disk is part of what is measured, such as hot-plug."""

    def __enter__(self) -> UpstreamRules:
        self.masks = [p for p in glob.glob("/etc/udev/rules.d/*.rules")
                      if os.path.islink(p) and os.readlink(p) == "/dev/null"
                      and image.is_debian_multipath_rule(_text(f"/lib/udev/rules.d/{os.path.basename(p)}"))]
        if not self.masks:
            raise RuntimeError("no masked Debian multipath rule in /etc/udev/rules.d")
        os.replace(OUR_RULES, PARKED)
        for mask in self.masks:
            os.unlink(mask)
        run(["udevadm", "control", "--reload"])
        return self

    def __exit__(self, *exc: object) -> None:
        for mask in self.masks:
            os.symlink("/dev/null", mask)
        os.replace(PARKED, OUR_RULES)
        run(["udevadm", "control", "--reload"])


def _text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class UpstreamMultipathd:
    def __init__(self, config: str = GREEDY, start_timeout: float = 120, stop_timeout: float = 120) -> None:
        self.config = config
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._saved: SavedFiles | None = None

    def start(self) -> UpstreamMultipathd:
        self._saved = SavedFiles((CONF, *STATE))
        with open(CONF, "w") as f:
            f.write(self.config)
        run(["systemctl", "unmask", *UNITS])
        run(["systemctl", "start", "multipathd.service"], timeout=self.start_timeout)
        return self

    def show(self, *words: str) -> str:
        return run(["multipathd", *words], check=False)

    def maps(self) -> dict[str, str]:
        """Map name -> WWID, as multipathd reports them."""
        out = run(["multipathd", "show", "maps", "raw", "format", "%n %w"], check=False)
        return {w[0]: w[1] for w in (line.split() for line in out.splitlines()) if len(w) == 2}

    def wait_map(self, wwid: str, timeout: float = 120) -> str:
        """Wait until a multipath map with this WWID exists; return its name."""
        def find() -> str | None:
            return next((n for n, w in self.maps().items() if w == wwid), None)
        return wait_for(find, timeout, f"multipathd to create a map for WWID {wwid}", interval=0.5)

    def stop(self) -> None:
        run(["systemctl", "stop", *reversed(UNITS)], check=False, timeout=self.stop_timeout)
        dm.remove_multipath_maps()
        run(["systemctl", "mask", *UNITS])
        if self._saved is not None:
            self._saved.restore()
        settle()

    def __enter__(self) -> UpstreamMultipathd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
