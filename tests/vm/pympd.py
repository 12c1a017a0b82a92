"""Our daemon in the guest, run through its real systemd unit (units/pymultipathd.service).

    with Pympd(config) as d:     # writes /etc/multipath.conf (saved and restored), starts the unit
        d.wait_map(wwid)         # -> map name, once `show maps` lists it
        d.cmd("show", "topology")

On exit the unit is stopped, the maps it made are removed (dmsetup, an independent tool), and
/etc/multipath.conf, wwids and bindings are put back as they were, so the next test starts clean.
"""

from __future__ import annotations

import os
import time

from pymultipathd.control import client, grammar
from tests.vm import dm
from tests.vm.sysutil import CommandError, SavedFiles, run, settle, wait_for

UNIT = "pymultipathd.service"
CONF = "/etc/multipath.conf"
STATE = ("/etc/multipath/wwids", "/etc/multipath/bindings")
CMD_TIMEOUT = 180  # seconds for one control command (see Pympd.cmd)

BASE = """\
defaults {{
	find_multipaths {mode}
	polling_interval 2
	max_polling_interval 4
{extra}}}
blacklist {{
	devnode "^vd[a-z]"
}}
"""


def config(mode: str = "greedy", **defaults: object) -> str:
    extra = "".join(f"\t{k} {v}\n" for k, v in defaults.items())
    return BASE.format(mode=mode, extra=extra)


class Pympd:
    def __init__(self, conf: str | None = None, *, show_journal: bool = True,
                 start_timeout: float = 180, stop_timeout: float = 120) -> None:
        self.conf = conf if conf is not None else config()
        self.show_journal = show_journal
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._saved: SavedFiles | None = None
        self._since = 0

    def __enter__(self) -> Pympd:
        self._saved = SavedFiles((CONF, *STATE))
        self._since = int(time.time()) - 1  # the journal shown on exit is this run's, not the whole boot's
        with open(CONF, "w") as f:
            f.write(self.conf)
        try:
            self.start()
        except BaseException:
            self.__exit__()  # a unit that failed to start may be restarting: stop it and restore the files
            raise
        return self

    def start(self) -> None:
        # Type=notify: `systemctl start` returns once the daemon said READY=1 (initial assembly done)
        run(["systemctl", "start", UNIT], timeout=self.start_timeout)

    def stop(self) -> None:
        run(["systemctl", "stop", UNIT], check=False, timeout=self.stop_timeout)

    def __exit__(self, *exc: object) -> None:
        if self.show_journal:
            journal = run(["journalctl", "-b", "-u", UNIT, "--no-pager", "-n", "200",
                           f"--since=@{self._since}"], check=False)
            print(f"--- {UNIT} journal ---\n{journal}")  # shown by pytest when the test fails
        self.stop()
        run(["systemctl", "reset-failed", UNIT], check=False)
        dm.remove_multipath_maps()
        if self._saved is not None:
            self._saved.restore()

    def cmd(self, *words: str, check: bool = True) -> str:
        """One command over the control socket from this process, printed as the client prints it. Tests
        poll through this several times a second; a `pymultipathd` process per poll (Python start-up and
        imports) cost the TCG guest more CPU than the daemon being waited for. `cli` runs the real client."""
        command = grammar.join_words(list(words))
        try:
            # generous: one TCG CPU busy with a udev storm (sg_inq, partx, -u per disk) starves both sides
            reply = client.send(command, timeout=CMD_TIMEOUT)
        except client.ClientError as err:
            if check:
                raise CommandError(["pymultipathd", *words], 1, "", str(err)) from err
            return ""
        out = client.as_printed(reply)
        if check and reply.startswith("fail"):
            raise CommandError(["pymultipathd", *words], 1, out, "")
        return out

    def cli(self, *words: str, check: bool = True) -> str:
        """The same through the installed `pymultipathd` client (its own process, exit status 1 on "fail")."""
        env = {**os.environ, "PYMULTIPATH_CLIENT_TIMEOUT": str(CMD_TIMEOUT - 10)}
        return run(["pymultipathd", *words], check=check, timeout=CMD_TIMEOUT, env=env)

    def maps(self) -> dict[str, str]:
        """name -> wwid, as the daemon reports them."""
        out = self.cmd("show", "maps", "raw", "format", "%n %w")
        return {w[0]: w[1] for w in (line.split() for line in out.splitlines()) if len(w) == 2}

    def wait_map(self, wwid: str, timeout: float = 120) -> str:
        """The name of the map of `wwid` once the daemon lists it and udev has made its /dev/mapper node
        (the daemon does not wait for udev, which may be busy for minutes; see pymultipathd.dm.ioctl)."""
        def find() -> str | None:
            name = next((n for n, w in self.maps().items() if w == wwid), None)
            return name if name and os.path.exists(f"/dev/mapper/{name}") else None

        name = wait_for(find, timeout, f"the daemon's map for {wwid}")
        settle(timeout)  # and udev's other work on it (kpartx reading its partition table) is over
        return name

    def path_states(self, map_name: str) -> dict[str, tuple[str, str]]:
        """dev -> (dm state, checker state) of the paths of a map."""
        out = self.cmd("show", "paths", "raw", "format", "%d %m %t %T")
        states = {}
        for line in out.splitlines():
            w = line.split()
            if len(w) >= 4 and w[1] == map_name:
                states[w[0]] = (w[2], " ".join(w[3:]))
        return states

    def active(self) -> bool:
        return run(["systemctl", "is-active", UNIT], check=False).strip() == "active"
