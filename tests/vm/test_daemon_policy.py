"""Daemon policies against real storage: failback (manual, immediate, followover, N seconds) switched on the
running daemon by SIGHUP and `systemctl reload`, ALUA priorities read with RTPG as the array changes them, and
start by socket activation. dmsetup and LIO's configfs are the independent views."""

from __future__ import annotations

import os
import signal
import time

from tests.vm import dm, lio
from tests.vm.pympd import CONF, UNIT, Pympd, config
from tests.vm.sysutil import run, wait_for, write_sysfs

MAX_INTERVAL = 4  # max_polling_interval of tests.vm.pympd.config


def _failover_conf(failback: object) -> str:
    # one path per group, so there is a group to fail back to; overrides beat the LIO-ORG hardware entry
    return config("greedy", no_path_retry="queue") + (
        f"overrides {{\n\tpath_grouping_policy failover\n\tfailback {failback}\n}}\n")


def _journal() -> str:
    return run(["journalctl", "-b", "-u", UNIT, "--no-pager", "-o", "cat"], check=False)


def _reconfigure(failback: object, how: str) -> None:
    with open(CONF, "w") as f:
        f.write(_failover_conf(failback))
    if how == "reload":
        run(["systemctl", "reload", UNIT], timeout=120)  # ExecReload waits for the daemon's answer
        return
    done = _journal().count("reconfigured from")
    pid = int(run(["systemctl", "show", "-p", "MainPID", "--value", UNIT]).strip())
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: _journal().count("reconfigured from") > done, 60, "the daemon to reconfigure on SIGHUP")


def _group(name: str) -> int:
    return dm.status(name).group_in_use()


def _cut_and_restore(bed, portal: int, name: str, devno: str) -> None:
    bed.cut(portal)
    wait_for(lambda: dm.status(name).path(devno).state == "F", 60, f"{devno} failed in {name}")
    bed.restore(portal)
    wait_for(lambda: dm.status(name).path(devno).state == "A", 2 * MAX_INTERVAL + 20, f"{devno} reinstated")


def test_failback_policies_follow_reconfigure(iscsi_bed, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(_failover_conf("manual")) as d:
        name = d.wait_map(paths[0].wwid)
        st = dm.status(name)
        assert len(st.groups) == 2, st
        first = next(i for i, p in enumerate(paths) if st.group_of(p.devno) == 1)  # portal of group 1
        best = paths[first]
        wv = write_verify(f"/dev/mapper/{name}").start()
        wait_for(lambda: wv.progress() > 0, 60, "write-verify to make progress")
        assert _group(name) == 1

        # manual: after a failover the map stays where it went
        _cut_and_restore(bed, first, name, best.devno)
        assert _group(name) == 2
        time.sleep(3 * MAX_INTERVAL)  # every path checked at least twice since: no failback came
        assert _group(name) == 2

        # immediate (set by SIGHUP): back to the best group at the next check
        _reconfigure("immediate", "sighup")
        wait_for(lambda: _group(name) == 1, 3 * MAX_INTERVAL + 10, "immediate failback to group 1")

        # followover (set by systemctl reload): an administrator's switch is not undone ...
        _reconfigure("followover", "reload")
        d.cmd("switchgroup", "map", name, "group", "2")
        wait_for(lambda: _group(name) == 2, 30, "the administrator's switch to group 2")
        time.sleep(3 * MAX_INTERVAL)
        assert _group(name) == 2
        # ... but group 1 coming back as a whole is followed
        _cut_and_restore(bed, first, name, best.devno)
        wait_for(lambda: _group(name) == 1, 3 * MAX_INTERVAL + 10, "followover failback to group 1")

        # failback N: deferred N seconds after the path came back
        _reconfigure(8, "reload")
        d.cmd("switchgroup", "map", name, "group", "2")
        wait_for(lambda: _group(name) == 2, 30, "the administrator's switch to group 2")
        _cut_and_restore(bed, first, name, best.devno)
        assert _group(name) == 2, "failback 8 must wait, not switch at once"
        wait_for(lambda: _group(name) == 1, 8 + 3 * MAX_INTERVAL + 10, "deferred failback to group 1")
        assert "failback to group 1 in 8 s" in _journal()

        # table loads since the daemon started: only the creation (switching groups needs no reload)
        assert d.cmd("show", "maps", "raw", "format", "%n %2").split() == [name, "1"]
        res = wv.stop()
        assert res.ok, res


def _alua_state_file(bed) -> str:
    return f"{lio.CORE}/{bed.target.hba}/{bed.target.luns[0].name}/alua/default_tg_pt_gp/alua_access_state"


def test_alua_priorities_come_from_rtpg_and_follow_the_array(iscsi_bed):
    bed = iscsi_bed()
    paths = bed.paths(0)
    conf = config("greedy") + "overrides {\n\tprio alua\n\tdetect_prio no\n}\n"
    with Pympd(conf) as d:
        d.wait_map(paths[0].wwid)

        def prios() -> dict[str, str]:
            out = d.cmd("show", "paths", "raw", "format", "%d %p")
            return {w[0]: w[1] for w in (line.split() for line in out.splitlines()) if len(w) == 2}

        assert all(prios()[p.dev] == "50" for p in paths), prios()  # active/optimized
        state = _alua_state_file(bed)
        write_sysfs(state, "1")  # the array makes its port group active/non-optimized
        try:
            wait_for(lambda: all(prios()[p.dev] == "10" for p in paths), 3 * MAX_INTERVAL + 20,
                     "the daemon to read the non-optimized state with RTPG")
        finally:
            write_sysfs(state, "0")
        wait_for(lambda: all(prios()[p.dev] == "50" for p in paths), 3 * MAX_INTERVAL + 20,
                 "the priorities to return to active/optimized")
        assert "priority 50 -> 10" in _journal()


class SocketActivated(Pympd):
    """Starts only pymultipathd.socket: the first client's connection must start the daemon."""

    def start(self) -> None:
        run(["systemctl", "start", "pymultipathd.socket"])

    def stop(self) -> None:
        run(["systemctl", "stop", "pymultipathd.socket", UNIT], check=False, timeout=120)


def test_socket_activation_starts_the_daemon_on_first_client(iscsi_bed):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with SocketActivated(config("greedy")) as d:
        assert not d.active(), "the daemon must not run before a client connects"
        assert not dm.multipath_maps()
        out = run(["pymultipathd", "show", "daemon"], timeout=120)  # a client's connection starts it
        assert "running" in out, out
        # it answers while it still assembles (and then tells systemd it is ready): wait for that
        wait_for(d.active, 120, "pymultipathd.service to become active")
        name = d.wait_map(paths[0].wwid)
        # Debian's own client reaches it through the same activated socket
        assert name in run(["multipathd", "show", "maps"], check=False)
        # both sockets were handed over by systemd, not bound by the daemon
        assert "sockets from systemd" in _journal()


def test_last_path_gone_removes_unused_map_keeps_held_one_and_defers_if_asked(iscsi_bed):
    bed = iscsi_bed(luns=3, size_mb=16)
    luns = [bed.paths(i) for i in range(3)]
    unused, held, deferred = (ps[0].wwid for ps in luns)
    conf = config("greedy") + (
        f"multipaths {{\n\tmultipath {{\n\t\twwid {deferred}\n\t\tdeferred_remove yes\n\t}}\n}}\n")
    with Pympd(conf) as d:
        names = [d.wait_map(w) for w in (unused, held, deferred)]
        holders = [open(f"/dev/mapper/{n}", "rb") for n in names[1:]]  # noqa: SIM115 - closed below
        try:
            for ps in luns:  # the SCSI devices go away, as on a LUN unmapped from this host
                for p in ps:
                    write_sysfs(f"/sys/block/{p.dev}/device/delete", "1")
            wait_for(lambda: names[0] not in dm.multipath_maps(), 60, "the unused map removed with its paths")
            wait_for(lambda: "DEFERRED REMOVE" in run(["dmsetup", "info", names[2]]), 60,
                     "a deferred remove of the held map with deferred_remove yes")
            wait_for(lambda: f"{names[1]}: last path gone; map kept" in _journal(), 60,
                     "the daemon to keep the held map and say why")
            assert "python" in _journal(), "the report names the process holding the map"
            assert names[1] in dm.multipath_maps() and names[2] in dm.multipath_maps()
        finally:
            for f in holders:
                f.close()
        wait_for(lambda: names[2] not in dm.multipath_maps(), 30, "the deferred map gone once closed")
        assert names[1] in dm.multipath_maps(), "without deferred_remove the map stays until flushed"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _chain(dev: str, prefix: str) -> str:
    """The session<N> or host<N> directory name in a path's device chain."""
    parts = os.path.realpath(f"/sys/block/{dev}/device").split("/")
    return next(p for p in parts if p.startswith(prefix) and p[len(prefix):].isdigit())


def test_transport_timeouts_and_io_size_reach_sysfs(iscsi_bed):
    """fast_io_fail_tmo is each iSCSI session's recovery_tmo, eh_deadline each SCSI host's, max_sectors_kb
    each path's and so the map's: read back from sysfs, the kernel's own view."""
    bed = iscsi_bed()
    paths = bed.paths(0)
    def recovery_tmo(dev: str) -> str:
        return _read(f"/sys/class/iscsi_session/{_chain(dev, 'session')}/recovery_tmo")

    assert {recovery_tmo(p.dev) for p in paths} != {"7"}  # the bed's own value differs
    conf = config("greedy") + "overrides {\n\tfast_io_fail_tmo 7\n\teh_deadline 13\n\tmax_sectors_kb 64\n}\n"
    with Pympd(conf) as d:
        name = d.wait_map(paths[0].wwid)
        for p in paths:
            assert recovery_tmo(p.dev) == "7"
            # iscsi_tcp hosts have no host reset, so the kernel refuses any eh_deadline: the daemon must
            # have tried, and said so
            host = _chain(p.dev, "host")
            eh = _read(f"/sys/class/scsi_host/{host}/eh_deadline")
            assert eh == "13" or f"/sys/class/scsi_host/{host}/eh_deadline to 13: Invalid argument" in \
                _journal(), eh
            assert _read(f"/sys/block/{p.dev}/queue/max_sectors_kb") == "64"
        dm_dev = os.path.basename(os.path.realpath(f"/dev/mapper/{name}"))
        assert int(_read(f"/sys/block/{dm_dev}/queue/max_sectors_kb")) <= 64
        # an overrides protocol subsection for the paths' own transport beats the overrides section; one
        # for another transport changes nothing
        protocols = ('\tprotocol {\n\t\ttype "scsi:iscsi"\n\t\tfast_io_fail_tmo 9\n\t}\n'
                     '\tprotocol {\n\t\ttype "scsi:fcp"\n\t\tfast_io_fail_tmo 3\n\t}\n')
        with open("/etc/multipath.conf", "w") as f:
            f.write(conf.replace("\tmax_sectors_kb 64\n", "\tmax_sectors_kb 64\n" + protocols))
        d.cmd("reconfigure")
        assert {recovery_tmo(p.dev) for p in paths} == {"9"}
