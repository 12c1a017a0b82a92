"""`pymultipath [options] [DEV ...]` making maps from the shell (scsi_debug), with dmsetup as the independent
view: bare `pymultipath` builds the maps the daemon builds, `-r` reloads after a path change, `-d -v3`
changes nothing and names each path's rule, and with the daemon running the daemon is asked instead."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.vm import dm
from tests.vm.pympd import CONF, STATE, Pympd, config
from tests.vm.sysutil import CommandError, SavedFiles, run, settle, wait_for, write_sysfs

pytestmark = pytest.mark.vm

FAILED_DIR = "/run/multipath/failed_wwids"
ADD_HOST = "/sys/bus/pseudo/drivers/scsi_debug/add_host"


def tables() -> dict[str, str]:
    """name -> table of every multipath map, from dmsetup."""
    out = run(["dmsetup", "table", "--target", "multipath"], check=False)
    found = {}
    for line in out.splitlines():
        name, sep, table = line.partition(": ")
        if sep:
            found[name] = table.strip()
    return found


def wwid_of(name: str) -> str:
    return run(["dmsetup", "info", "-c", "--noheadings", "-o", "uuid", name]).strip().removeprefix("mpath-")


def by_wwid() -> dict[str, str]:
    """WWID -> table of every multipath map."""
    return {wwid_of(n): t for n, t in tables().items()}


def files() -> dict[str, bytes | None]:
    """The wwids and bindings files and the failed-WWID markers as they are now."""
    out: dict[str, bytes | None] = {}
    for path in STATE:
        try:
            with open(path, "rb") as f:
                out[path] = f.read()
        except FileNotFoundError:
            out[path] = None
    marked = sorted(os.listdir(FAILED_DIR)) if os.path.isdir(FAILED_DIR) else None
    out[FAILED_DIR] = None if marked is None else "\n".join(marked).encode()
    return out


@pytest.fixture
def no_daemon_conf() -> Iterator[SavedFiles]:
    """multipath.conf, wwids and bindings saved now and restored after, with the maps made meanwhile removed
    first (pymultipathd is not running: the autouse check says so)."""
    saved = SavedFiles((CONF, *STATE))
    try:
        yield saved
    finally:
        dm.remove_multipath_maps()
        saved.restore()


def write_conf(text: str, wwids: list[str] | None = None) -> None:
    with open(CONF, "w") as f:
        f.write(text)
    os.makedirs(os.path.dirname(STATE[0]), exist_ok=True)
    for path in STATE:
        if os.path.exists(path):
            os.unlink(path)
    if wwids:
        with open(STATE[0], "w") as f:
            f.write("".join(f"/{w}/\n" for w in wwids))


def test_bare_pymultipath_builds_the_maps_the_daemon_builds(scsi_debug):
    sd = scsi_debug(luns=2, paths=2)
    wwids = sorted(w for w in sd.by_wwid() if w)
    assert len(wwids) == 2
    with Pympd(config("greedy", user_friendly_names="yes")) as d:
        names = {w: d.wait_map(w) for w in wwids}
        daemons = by_wwid()
        # bare pymultipath without a daemon leaves queue_if_no_path off (upstream's -q turns it on): the
        # comparison needs a configuration that does not queue, as the default (no_path_retry fail)
        assert not any("queue_if_no_path" in t for t in daemons.values()), daemons
        d.stop()
        dm.remove_multipath_maps()
        assert dm.multipath_maps() == []
        # the same devices, classifier, assembly and bindings: the same maps, made by the shell
        out = run(["pymultipath", "-v1"], timeout=180)
        assert sorted(out.split()) == sorted(names.values()), out
        settle()
        assert by_wwid() == daemons
        assert {wwid_of(n) for n in dm.multipath_maps()} == set(wwids)
        assert sorted(dm.multipath_maps()) == sorted(names.values())   # the daemon's bindings, reused
        with open(STATE[0]) as f:
            recorded = f.read().splitlines()
        assert all(f"/{w}/" in recorded for w in wwids)
        # nothing left to do: a second run changes nothing and says nothing at -v1
        assert run(["pymultipath", "-v1"], timeout=180) == ""
        assert by_wwid() == daemons


def test_r_reloads_after_a_path_change(scsi_debug, no_daemon_conf):
    sd = scsi_debug(luns=1, paths=2)
    (wwid, paths), = [(w, ps) for w, ps in sd.by_wwid().items() if w]
    write_conf(config("greedy", path_grouping_policy="multibus"))
    assert run(["pymultipath", "-v1"], timeout=180).split() == [wwid]  # no user_friendly_names: the WWID
    settle()
    before = tables()[wwid]
    assert sorted(p.devno for p in paths) == sorted(w for w in before.split() if ":" in w)
    # -r without a change reloads all the same, and says so
    assert run(["pymultipath", "-r", "-v1"], timeout=180).split() == [wwid]
    assert tables()[wwid] == before
    # a third path of the LUN appears (another scsi_debug host: the same WWID)
    write_sysfs(ADD_HOST, "1")
    settle()

    def third() -> str | None:
        devs = {p.dev for p in paths}
        for dev in os.listdir("/sys/block"):
            if dev.startswith("sd") and dev not in devs:
                props = run(["udevadm", "info", "--query=property", f"--name=/dev/{dev}"], check=False)
                if f"ID_SERIAL={wwid}" in props.splitlines():
                    return dev
        return None

    new = wait_for(third, 120, "a third path of the LUN")
    with open(f"/sys/block/{new}/dev") as f:
        devno = f.read().strip()
    out = run(["pymultipath", "-r", "-v3", wwid], timeout=180)
    assert f"{wwid}: reload: " in out and f"+{devno}" in out, out
    assert f"reload: {wwid}" in out
    after = tables()[wwid]
    assert devno in after.split() and all(p.devno in after.split() for p in paths), after


def test_dry_run_changes_nothing_and_names_each_paths_rule(scsi_debug, no_daemon_conf):
    sd = scsi_debug(luns=2, paths=2)
    groups = sorted((w, ps) for w, ps in sd.by_wwid().items() if w)
    (recorded, rpaths), (other, opaths) = groups
    # strict (the default): only the WWID in the wwids file is claimed
    write_conf(config("strict", user_friendly_names="yes"), wwids=[recorded])
    before_files, before_maps = files(), tables()
    out = run(["pymultipath", "-d", "-v3"], timeout=180)
    for p in rpaths:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"  {p.dev} {p.devno} "))
        assert ": yes by rule wwids_file: " in line, line
    for p in opaths:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"  {p.dev} {p.devno} "))
        assert ": no by rule strict: " in line, line
    assert f"create: mpatha ({recorded}) undef " in out, out
    assert "  table: 0 " in out and " multipath " in out
    assert f"({other}) undef" not in out   # strict: its single WWID is not recorded
    # a named device is planned whatever find_multipaths says, still without a trace
    out = run(["pymultipath", "-d", "-v3", opaths[0].dev], timeout=180)
    assert f"({other}) undef" in out and "named on the command line" in out, out
    assert tables() == before_maps and files() == before_files
    # with maps in place: -d -r plans a reload of each and loads none
    run(["pymultipath", "-v0"], timeout=180)
    settle()
    live, made_files = tables(), files()
    assert len(live) == 1
    out = run(["pymultipath", "-d", "-r", "-v3"], timeout=180)
    assert "reload: forced (-r)" in out and "reload: mpatha" in out, out
    assert tables() == live and files() == made_files


def test_a_running_daemon_is_asked_and_stays_the_only_writer(scsi_debug):
    sd = scsi_debug(luns=2, paths=2)
    (w1, p1), (w2, _) = sorted((w, ps) for w, ps in sd.by_wwid().items() if w)
    with Pympd(config("greedy", user_friendly_names="yes")) as d:
        n1, n2 = d.wait_map(w1), d.wait_map(w2)
        # gone from the daemon and the kernel: naming a path asks the daemon for it back ("add map")
        assert d.cmd("del", "map", n1) == "ok\n"
        out = run(["pymultipath", "-v1", p1[0].node], timeout=180)
        assert out.split() == [n1], out
        assert d.maps().get(n1) == w1
        # -r: reconfigure, then each map reloaded by the daemon; the daemon still lists both
        out = run(["pymultipath", "-r", "-v1"], timeout=240)
        assert sorted(out.split()) == sorted([n1, n2]), out
        assert set(d.maps()) == {n1, n2}
        # what the daemon cannot honour is refused, not applied behind its back
        with pytest.raises(CommandError) as refused:
            run(["pymultipath", "-p", "multibus"], timeout=180)
        assert refused.value.code == 1 and "-p multibus cannot apply" in refused.value.err
        before = tables()
        out = run(["pymultipath", "-d", "-v3"], timeout=180)
        assert "pymultipathd is running: without -d" in out
        assert tables() == before
