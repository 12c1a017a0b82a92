"""Control commands against real maps (scsi_debug), each checked with dmsetup, the independent view."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.vm import dm
from tests.vm.pympd import CONF, Pympd, config
from tests.vm.sysutil import CommandError, run, wait_for, write_sysfs


def _next_group(name: str) -> int:
    """The group the kernel uses next, straight from `dmsetup status`."""
    w = run(["dmsetup", "status", name]).split()
    i = 4 + int(w[3])        # past the feature words
    i += 1 + int(w[i])       # past the hardware handler words
    return int(w[i + 1])     # <nr_groups> <next_group>


def _state(name: str, devno: str) -> str:
    return dm.status(name).path(devno).state


def test_map_path_and_daemon_commands(scsi_debug):
    sd = scsi_debug(luns=2, paths=2, dev_size_mb=8)
    groups = sorted((w, ps) for w, ps in sd.by_wwid().items() if w)
    (w1, p1), (w2, _) = groups
    with Pympd(config("greedy", path_grouping_policy="failover", user_friendly_names="yes")) as d:
        n1, n2 = d.wait_map(w1), d.wait_map(w2)

        # show family
        assert 'find_multipaths "greedy"' in d.cmd("show", "config")  # strings quoted, as upstream's -t
        assert '(config file rule) ^vd[a-z]' in d.cmd("show", "blacklist")
        assert f"{p1[0].dev} yes" in d.cmd("show", "devices")
        assert "%w  uuid" in d.cmd("show", "wildcards")
        assert "paths: " in d.cmd("show", "status")
        doc = json.loads(d.cmd("show", "maps", "json"))
        assert {m["name"] for m in doc["maps"]} == {n1, n2}
        assert json.loads(d.cmd("show", "map", n1, "json"))["map"]["uuid"] == w1
        assert p1[0].dev in d.cmd("show", "path", p1[0].dev)
        assert d.cmd("show", "map", "nosuch", "topology", check=False) == "fail\ndevice not found\n"

        # the installed client: words joined as upstream's, -k"cmd", exit status 1 on a "fail" reply
        listing = ("show", "maps", "raw", "format", "%n %w")
        assert d.cli(*listing) == d.cmd(*listing)
        assert n1 in run(["pymultipathd", "-kshow maps"])
        with pytest.raises(CommandError) as failed:
            d.cli("show", "map", "nosuch", "topology")
        assert (failed.value.code, failed.value.out) == (1, "fail\ndevice not found\n")

        # switchgroup: failover gives one group per path
        assert _next_group(n1) == 1
        assert d.cmd("switchgroup", "map", n1, "group", "2") == "ok\n"
        assert _next_group(n1) == 2
        assert "fail" in d.cmd("switchgroup", "map", n1, "group", "9", check=False)

        # suspend / resume
        assert d.cmd("suspend", "map", n1) == "ok\n"
        assert "SUSPENDED" in run(["dmsetup", "info", n1])
        assert d.cmd("resume", "map", n1) == "ok\n"
        assert "ACTIVE" in run(["dmsetup", "info", n1])

        # fail / reinstate a path. The kernel's failure count proves the fail reached it: the state alone
        # cannot, since the daemon re-checks a path the kernel failed at once (as upstream does, within a
        # tick) and reinstates a healthy one, which may happen before the status is read here. "Grew", not
        # "grew by one": scsi_debug keeps some paths in ALUA standby, and I/O sent there fails.
        dev = p1[0]

        def failures() -> int:
            return dm.status(n1).path(dev.devno).fail_count

        before = failures()
        assert d.cmd("fail", "path", dev.dev) == "ok\n"
        assert failures() > before
        wait_for(lambda: _state(n1, dev.devno) == "A", 30, f"{dev.dev} reinstated by the checker")
        before = failures()
        assert d.cmd("fail", "path", dev.dev) == "ok\n"
        assert d.cmd("reinstate", "path", dev.dev) == "ok\n"  # "ok": the kernel took the message
        # Not asserted at once: the reinstate starts the ALUA handler's path activation, which can fail the
        # path again for a moment; the checker brings it back either way.
        wait_for(lambda: _state(n1, dev.devno) == "A", 30, f"{dev.dev} active after reinstate")
        assert failures() > before

        # the counters of `show maps stats` count what happened above, and `reset map stats` zeroes them
        def counters() -> list[int]:  # path faults, group switches, table loads
            return [int(w) for w in d.cmd("show", "map", n1, "raw", "format", "%0 %1 %2").split()]

        faults, switches, loads = counters()
        assert faults >= 1 and switches >= 1 and loads >= 1, counters()
        assert d.cmd("reset", "map", n1, "stats") == "ok\n"
        assert counters() == [0, 0, 0]
        assert d.cmd("reload", "map", n1) == "ok\n"
        assert counters()[2] >= 1  # a reload is a table load (the re-read of its paths may load one too)

        # pymultipath -C / -U: a usable path or none (every path's SCSI device offline), without I/O
        def usable(*args: str, env: dict[str, str] | None = None) -> int:
            return subprocess.run(["pymultipath", *args], env=env, capture_output=True, timeout=60,
                                  check=False).returncode

        rdev = os.stat(f"/dev/mapper/{n1}").st_rdev
        major, minor = str(os.major(rdev)), str(os.minor(rdev))
        assert usable("-C", f"/dev/mapper/{n1}") == 0
        assert usable("-U", env={**os.environ, "MAJOR": major, "MINOR": minor}) == 0
        assert usable("-C", f"/dev/{p1[0].dev}") == 1  # a path, not a map
        for p in p1:
            write_sysfs(f"/sys/block/{p.dev}/device/state", "offline\n")
        try:
            wait_for(lambda: usable("-C", n1) == 1, 30, f"{n1} without a usable path")
        finally:
            for p in p1:
                write_sysfs(f"/sys/block/{p.dev}/device/state", "running\n")
        wait_for(lambda: usable("-C", f"{major}:{minor}") == 0, 60, f"{n1} usable again")

        # del path: the map is reloaded without it; add path: back in
        assert d.cmd("del", "path", dev.dev) == "ok\n"
        assert dev.devno not in run(["dmsetup", "table", n1])
        assert d.cmd("add", "path", dev.dev) == "ok\n"
        assert dev.devno in run(["dmsetup", "table", n1])

        # reload / resize keep the table as it should be
        table = run(["dmsetup", "table", n1])
        assert d.cmd("reload", "map", n1) == "ok\n"
        assert d.cmd("resize", "map", n1) == "ok\n"
        assert run(["dmsetup", "table", n1]).split()[:2] == table.split()[:2]

        # del map removes it (not in use); add map WWID brings it back
        assert d.cmd("del", "map", n2) == "ok\n"
        assert n2 not in dm.multipath_maps()
        assert d.cmd("add", "map", w2) == "ok\n"
        wait_for(lambda: any(w == w2 for w in d.maps().values()), 60, "the map to come back")

        # reconfigure with a broken file: refused, previous configuration kept, maps untouched
        with open(CONF, "a") as f:
            f.write("defaults {\n\tpolling_interval notanumber\n}\n")
        reply = d.cmd("reconfigure", check=False)
        assert reply.startswith("fail\n") and f"{CONF}:" in reply and "polling_interval" in reply, reply
        assert d.active() and set(d.maps().values()) == {w1, w2}
        with open(CONF, "w") as f:
            f.write(config("greedy", path_grouping_policy="failover", user_friendly_names="yes"))
        assert d.cmd("reconfigure") == "ok\n"

        # shutdown: the daemon exits, the maps stay
        assert d.cmd("shutdown") == "ok\n"
        wait_for(lambda: not d.active(), 60, "the daemon to exit")
        assert set(dm.multipath_maps()) >= {n1}
