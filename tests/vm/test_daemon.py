"""The daemon against real storage: assembly, failover with I/O running, queueing, restart, many LUNs,
and the control socket as Debian's own client sees it. dmsetup is the independent oracle throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.vm import dm
from tests.vm.bench_udev import MultipathState, StandInDaemon
from tests.vm.pympd import UNIT, Pympd, config
from tests.vm.sysutil import run, wait_for


def _devnos(st: dm.MpathStatus) -> list[str]:
    return sorted(p.devno for _, paths in st.groups for p in paths)


def _dm_state(name: str, devno: str) -> str:
    return dm.status(name).path(devno).state


def _sg_node(dev: str) -> str:
    (sg,) = os.listdir(f"/sys/block/{dev}/device/scsi_generic")
    return f"/dev/{sg}"


def _open_sg_nodes() -> list[str]:
    """The sg nodes the running daemon holds open, one entry per descriptor."""
    pid = run(["systemctl", "show", "-p", "MainPID", "--value", UNIT]).strip()
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            continue
    return [link for link in links if link.startswith("/dev/sg")]


def test_two_path_iscsi_map_assembled_and_usable(iscsi_bed, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    wwid = paths[0].wwid
    assert wwid and paths[1].wwid == wwid
    with Pympd(config("greedy")) as d:
        name = d.wait_map(wwid)
        assert _devnos(dm.status(name)) == sorted(p.devno for p in paths)
        uuid = run(["dmsetup", "info", "-c", "--noheadings", "-o", "uuid", name]).strip()
        assert uuid == f"mpath-{wwid}"
        topo = d.cmd("show", "map", name, "topology")
        for p in paths:
            assert f"{p.dev} {p.devno} active ready running" in topo, topo
        with open("/etc/multipath/wwids") as f:
            assert f"/{wwid}/" in f.read().splitlines()
        res = write_verify(f"/dev/mapper/{name}").run(passes=2)
        assert res.ok, res
        topo = d.cmd("show", "map", name, "topology")  # the group is active now that I/O went through it
        assert run(["pymultipath", "-ll"]) == topo  # from the daemon
        d.stop()
        offline = run(["pymultipath", "-ll", name])  # from DM and sysfs, checking each path itself
        assert offline.splitlines()[0] == topo.splitlines()[0]
        for p in paths:
            assert f"{p.dev} {p.devno} active ready running" in offline, offline
        assert "undef" in run(["pymultipath", "-l"])  # -l sends no I/O: checker state unknown
        d.start()
        # udev re-ran the helper after the map appeared: both paths are claimed members now
        for p in paths:
            props = run(["udevadm", "info", "--query=property", f"/dev/{p.dev}"])
            assert "DM_MULTIPATH_DEVICE_PATH=1" in props, (p.dev, props)


def test_failover_and_failback_with_io_running(iscsi_bed, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(config("greedy", no_path_retry="queue")) as d:
        name = d.wait_map(paths[0].wwid)
        wv = write_verify(f"/dev/mapper/{name}").start()
        wait_for(lambda: wv.progress() > 0, 60, "write-verify to make progress")
        bed.cut(0)
        cut = paths[0]
        wait_for(lambda: _dm_state(name, cut.devno) == "F", 60, f"{cut.dev} failed in {name}")
        wait_for(lambda: d.path_states(name)[cut.dev][0] == "failed", 30, "the daemon to show it failed")
        before = wv.progress()
        wait_for(lambda: wv.progress() > before, 60, "I/O to go on through the other path")
        bed.restore(0)
        # reinstated by the checker within two checker intervals (+ the iSCSI re-login, waited above)
        wait_for(lambda: _dm_state(name, cut.devno) == "A", 2 * 4 + 10, f"{cut.dev} reinstated")
        assert d.path_states(name)[cut.dev] == ("active", "ready")
        res = wv.stop()
        assert res.ok, res


def test_all_paths_down_queues_then_completes(iscsi_bed, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(config("greedy", no_path_retry="queue")) as d:
        name = d.wait_map(paths[0].wwid)
        wv = write_verify(f"/dev/mapper/{name}").start()
        wait_for(lambda: wv.progress() > 0, 60, "write-verify to make progress")
        bed.cut(0)
        bed.cut(1)
        wait_for(lambda: all(p.state == "F" for _, ps in dm.status(name).groups for p in ps), 60,
                 "both paths failed")
        stalled = wv.progress()
        time.sleep(3)
        assert wv.progress() <= stalled + 1, "I/O should wait while no path is left"
        bed.restore(0)
        bed.restore(1)
        wait_for(lambda: wv.progress() > stalled + 1, 90, "queued I/O to complete after the paths return")
        res = wv.stop()
        assert res.ok, res


def test_no_path_retry_releases_queue_with_errors_not_a_hang(iscsi_bed, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(config("greedy", no_path_retry=2)) as d:
        name = d.wait_map(paths[0].wwid)
        assert "queue_if_no_path" in run(["dmsetup", "table", name])
        wv = write_verify(f"/dev/mapper/{name}").start()
        wait_for(lambda: wv.progress() > 0, 60, "write-verify to make progress")
        bed.cut(0)
        bed.cut(1)
        # 2 intervals of 2 s after the last path failed, queueing stops and I/O fails instead of hanging
        wait_for(lambda: "queue_if_no_path" not in run(["dmsetup", "table", name]), 60,
                 "no_path_retry to stop queueing")
        res = wv.stop(timeout=60)
        assert res.errors, "I/O should have failed once queueing stopped"
        bed.restore(0)
        bed.restore(1)
        wait_for(lambda: "queue_if_no_path" in run(["dmsetup", "table", name]), 30,
                 "queueing restored when a path came back")


def test_disablequeueing_fails_queued_io_and_restorequeueing_brings_it_back(iscsi_bed, write_verify):
    """The seed article's last resort: a map with no path and queued I/O is released by disablequeueing."""
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(config("greedy", no_path_retry="queue")) as d:
        name = d.wait_map(paths[0].wwid)
        bed.cut(0)
        bed.cut(1)
        wait_for(lambda: all(p.state == "F" for _, ps in dm.status(name).groups for p in ps), 60,
                 "both paths failed")
        writer = subprocess.Popen(["dd", "if=/dev/zero", f"of=/dev/mapper/{name}", "bs=4k", "count=1",
                                   "oflag=direct"], stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        assert writer.poll() is None, "the write should be queued"
        # Debian's own multipathd binary as the client of our socket
        assert run(["multipathd", "disablequeueing", "map", name]).strip() == "ok"
        _, err = writer.communicate(timeout=60)
        assert writer.returncode != 0 and "Input/output error" in err
        assert "queue_if_no_path" not in run(["dmsetup", "table", name])
        assert run(["multipathd", "restorequeueing", "map", name]).strip() == "ok"
        assert "queue_if_no_path" in run(["dmsetup", "table", name])
        bed.restore(0)
        bed.restore(1)


def test_debian_client_speaks_to_our_daemon(iscsi_bed):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(config("greedy")) as d:
        name = d.wait_map(paths[0].wwid)
        out = run(["multipathd", "show", "paths"])
        assert out.split("\n")[0].split() == ["hcil", "dev", "dev_t", "pri", "dm_st", "chk_st", "dev_st",
                                              "next_check"]
        for p in paths:
            assert p.dev in out
        assert name in run(["multipathd", "show", "maps"])
        # without user_friendly_names the map is named by its WWID, printed once (upstream's layout)
        assert run(["multipathd", "show", "topology"]).startswith(f"{name} dm-")
        assert run(["multipathd", "show", "daemon"]).startswith(f"pid {d_pid()} ")
        # non-root peers may look but not touch
        denied = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "multipathd",
                      "disablequeueing", "map", name], check=False)
        assert "permission deny: need to be root" in denied
        assert "hcil" in run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "multipathd",
                              "show", "paths"])
        assert "fail" in run(["pymultipathd", "show", "map", "nosuchmap", "topology"], check=False)


def d_pid() -> int:
    return int(run(["systemctl", "show", "-p", "MainPID", "--value", "pymultipathd.service"]).strip())


def test_kill9_and_restart_under_io_keeps_the_map_untouched(iscsi_bed, write_verify):
    bed = iscsi_bed()
    paths = bed.paths(0)
    with Pympd(config("greedy")) as d:
        name = d.wait_map(paths[0].wwid)
        table = run(["dmsetup", "table", name])
        wv = write_verify(f"/dev/mapper/{name}").start()
        wait_for(lambda: wv.progress() > 0, 60, "write-verify to make progress")
        os.kill(d_pid(), signal.SIGKILL)
        wait_for(lambda: not d.active(), 30, "the daemon to die")
        d.start()
        # the unit's priorities hold for the restarted daemon: a larger CPU share, never OOM-killed
        assert os.getpriority(os.PRIO_PROCESS, d_pid()) == -10
        with open(f"/proc/{d_pid()}/oom_score_adj") as f:
            assert f.read().strip() == "-1000"
        assert d.maps() == {name: paths[0].wwid}
        assert run(["dmsetup", "table", name]) == table
        # adopted, not reloaded: no table load since this daemon started
        assert d.cmd("show", "maps", "raw", "format", "%n %2").split() == [name, "0"]
        res = wv.stop()
        assert res.ok, res


def test_many_scsi_debug_luns_each_map_created_once(scsi_debug):
    # 24 LUNs x 2 paths arriving at once; the 256/512-path scale runs in `make bench` (bench_daemon), where
    # the time it takes under TCG does not count against the test suite's budget. They arrive as at boot:
    # the configuration in place and the daemon's socket listening (the socket unit's) while udev first sees
    # them, so udev claims them and the daemon starts over claimed paths.
    luns = 24
    with MultipathState("greedy"), StandInDaemon():
        sd = scsi_debug(luns=luns, paths=2, dev_size_mb=4)
    groups = {w: ps for w, ps in sd.by_wwid().items() if w}
    assert len(groups) == luns and all(len(ps) == 2 for ps in groups.values())
    with Pympd(config("greedy")) as d:
        wait_for(lambda: len(d.maps()) == luns, 300, f"{luns} maps")
        assert set(d.maps().values()) == set(groups)
        status = d.cmd("show", "status")
        assert f"map creates: {luns}" in status, status
        assert "map reloads: 0" in status, status
        for name in dm.multipath_maps():
            assert len(_devnos(dm.status(name))) == 2
        # tur sends through each path's sg node, kept open between checks and closed when the path goes
        nodes = {p.dev: _sg_node(p.dev) for ps in groups.values() for p in ps}
        want = sorted(nodes.values())
        wait_for(lambda: sorted(_open_sg_nodes()) == want, 60, "one descriptor of each path's sg node")
        gone = sorted(nodes)[0]
        d.cmd("del", "path", gone)
        wait_for(lambda: nodes[gone] not in _open_sg_nodes(), 30, f"{gone}'s sg node closed after del path")
