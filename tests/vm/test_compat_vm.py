"""Drop-in names (`make install COMPAT=1`, pymultipathd/cli/compat_install.py) in a guest where Debian's
multipath-tools 0.9.4 is installed: the real /usr/sbin is refused (dpkg owns /sbin/multipath, the same file
under merged /usr), the names installed under /usr/local reach our code as an administrator's login shell
and Debian's own command lines (read from its udev rules and unit) call them, and the alternatives setup
docs/cli.md describes works and undoes cleanly. Everything installed is removed after each test: other
tests run Debian's `multipath` by name."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.vm import dm
from tests.vm.pympd import CONF, STATE, Pympd, config
from tests.vm.sysutil import SavedFiles, run, settle

pytestmark = pytest.mark.vm

PREFIX = "/usr/local"
SBIN = f"{PREFIX}/sbin"
NAMES = ("multipath", "multipathd")
DEBIAN = {"multipath": "/usr/sbin/multipath", "multipathd": "/usr/sbin/multipathd"}
ALTERNATIVES = "/var/lib/dpkg/alternatives"


def compat(*args: str) -> subprocess.CompletedProcess[str]:
    """The command `make install COMPAT=1` runs (the guest has no make; the checkout is read-only)."""
    return subprocess.run([sys.executable, "-m", "pymultipathd.cli.compat_install", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def login(script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`script` in root's login shell: PATH as Debian's /etc/profile sets it for root, nothing of ours."""
    p = subprocess.run(["env", "-i", "HOME=/root", "TERM=dumb", "sh", "-lc", script], capture_output=True,
                       text=True, timeout=240, check=False)
    if check:
        assert p.returncode == 0, f"{script!r} exited with {p.returncode}: {p.stderr}{p.stdout}"
    return p


def found(*names: str) -> list[str]:
    """What root's login shell runs for each name (dash's `command -v` answers for its first name only)."""
    return login("; ".join(f"command -v {n}" for n in names)).stdout.split()


def sbin_verified() -> list[str]:
    """`dpkg --verify multipath-tools` for its commands: empty while their checksums match. (The image
    leaves out documentation, which the same command reports as missing.)"""
    out = run(["dpkg", "--verify", "multipath-tools"], check=False)
    return [ln for ln in out.splitlines() if "sbin/" in ln]


def debian_state() -> dict[str, tuple[int, int, str]]:
    """Debian's two commands as they are: inode, mtime and SHA-256."""
    out = {}
    for path in DEBIAN.values():
        st = os.lstat(path)
        with open(path, "rb") as f:
            out[path] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out


def remove_all() -> None:
    compat("--prefix", PREFIX, "--remove")
    for name in NAMES:
        if os.path.exists(os.path.join(ALTERNATIVES, name)):
            run(["update-alternatives", "--remove-all", name], check=False)


@pytest.fixture
def dropins() -> Iterator[None]:
    """Starts and ends with no drop-in name in the guest (by our installer or by alternatives)."""
    for name in NAMES:
        assert not os.path.lexists(f"{SBIN}/{name}"), f"{SBIN}/{name} exists before the test"
    try:
        yield
    finally:
        remove_all()
        left = [f"{SBIN}/{n}" for n in NAMES if os.path.lexists(f"{SBIN}/{n}")]
        left += [f"{ALTERNATIVES}/{n}" for n in NAMES if os.path.exists(f"{ALTERNATIVES}/{n}")]
        assert not left, f"drop-in names left behind: {left}"
        # a login shell finds Debian's commands again
        assert found(*NAMES) == list(DEBIAN.values())


def test_installing_over_debians_multipath_is_refused(dropins):
    before = debian_state()
    assert sbin_verified() == []
    for args in (["--check"], []):  # make install COMPAT=1 PREFIX=/usr: the early check, then the install
        p = compat("--prefix", "/usr", *args)
        assert p.returncode == 1, p.stdout + p.stderr
        # merged /usr: dpkg knows the file as /sbin/multipath, the name under /usr/sbin finds nothing
        assert run(["dpkg-query", "-S", "/usr/sbin/multipath"], check=False) == ""
        for name in NAMES:
            assert (f"refusing: /usr/sbin/{name} (/sbin/{name}, the same name under merged /usr) belongs to "
                    f"the Debian package multipath-tools (dpkg-query -S /sbin/{name})") in p.stderr, p.stderr
        assert "PREFIX=/usr/local" in p.stderr and "update-alternatives" in p.stderr
    p = compat("--prefix", "/")
    assert p.returncode == 1
    assert ("refusing: /sbin/multipath belongs to the Debian package multipath-tools "
            "(dpkg-query -S /sbin/multipath)") in p.stderr, p.stderr
    # nothing touched: the same files, dpkg's checksums still match, no temporary link left over
    assert debian_state() == before
    assert sbin_verified() == []
    assert [f for f in os.listdir("/usr/sbin") if ".tmp" in f and "multipath" in f] == []


def debian_command(path: str, pattern: str) -> list[str]:
    """A command line of Debian's multipath-tools as its own file writes it (first group of `pattern`)."""
    with open(path) as f:
        m = re.search(pattern, f.read(), re.MULTILINE)
    assert m, f"{path}: no line matching {pattern!r}"
    return shlex.split(m.group(1))


def udev_env(dev: str) -> dict[str, str]:
    """The environment udev gives a program run for a "change" event of /dev/DEV: the event's properties,
    no PATH (the rules name their programs by absolute path)."""
    with open(f"/sys/class/block/{dev}/dev") as f:
        major, minor = f.read().strip().split(":")
    devpath = os.path.realpath(f"/sys/class/block/{dev}").removeprefix("/sys")
    return {"ACTION": "change", "DEVPATH": devpath, "SUBSYSTEM": "block", "DEVTYPE": "disk",
            "DEVNAME": f"/dev/{dev}", "MAJOR": major, "MINOR": minor, "SEQNUM": "1"}


def call(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False,
                          env=env if env is not None else {**os.environ})


def test_drop_in_names_run_our_code_where_scripts_call_upstream(dropins, scsi_debug):
    sd = scsi_debug(luns=1, paths=2)
    (wwid, paths), = [(w, ps) for w, ps in sd.by_wwid().items() if w]
    for _ in range(2):  # installing twice is fine: the second run replaces its own links
        p = compat("--prefix", PREFIX)
        assert p.returncode == 0, p.stderr
    for name in NAMES:
        assert os.readlink(f"{SBIN}/{name}") == f"{PREFIX}/bin/py{name}"
    # root's login PATH has /usr/local/sbin before /usr/sbin: the names find ours, Debian's files untouched
    assert found(*NAMES) == [f"{SBIN}/{n}" for n in NAMES]
    assert sbin_verified() == []
    assert login("multipath --help").stdout.startswith("usage: pymultipath ")
    assert login("multipathd --help").stdout.startswith("usage: pymultipathd ")
    assert "defaults {" in login("multipath -t").stdout
    # upstream's debugging habit: a command that means nothing is an error (exit 1 for map making)
    assert login("multipath -Z", check=False).returncode == 1

    saved = SavedFiles((CONF, *STATE))
    try:
        with open(CONF, "w") as f:
            f.write(config("strict"))
        # an administrator's runbook: make the map of a path, list it, check it
        made = login(f"multipath -v1 {paths[0].node}")
        assert made.stdout.split() == [wwid], made.stdout + made.stderr   # no user_friendly_names: the WWID
        settle()
        assert dm.multipath_maps() == [wwid]
        ll = login("multipath -ll").stdout
        assert wwid in ll and all(f" {p.dev} {p.devno} " in ll for p in paths), ll
        dmdev = os.path.basename(os.path.realpath(f"/dev/mapper/{wwid}"))
        assert dmdev.startswith("dm-")
        assert login(f"multipath -C {dmdev}", check=False).returncode == 0

        # Debian's own callers, with their command lines read from their files. None finds `multipath` by
        # PATH (udev rules use $env{MPATH_SBIN_PATH}, /sbin or /usr/sbin; units and the init script /sbin),
        # so the drop-ins never change what they run; a site script copying those lines calls the drop-in.
        rules = "/lib/udev/rules.d"
        check_map = debian_command(f"{rules}/56-dm-mpath.rules",
                                   r'^PROGRAM=="\$env\{MPATH_SBIN_PATH\}/(multipath -U[^"]*)"')
        classify = debian_command(f"{rules}/60-multipath.rules",
                                  r'^IMPORT\{program\}="\$env\{MPATH_SBIN_PATH\}/(multipath -u[^"]*)"')
        reload_ = debian_command("/lib/systemd/system/multipathd.service", r"^ExecReload=/sbin/(.*)$")
        assert check_map == ["multipath", "-U", "-v1", "%k"] and classify == ["multipath", "-u", "%k"]
        assert reload_ == ["multipathd", "reconfigure"]

        def udev_call(argv: list[str], dev: str) -> subprocess.CompletedProcess[str]:
            return call([f"{SBIN}/{argv[0]}", *(dev if a == "%k" else a for a in argv[1:])], udev_env(dev))

        u = udev_call(check_map, dmdev)
        assert u.returncode == 0, u.stderr   # a usable path: udev goes on to probe the map
        for p in paths:
            u = udev_call(classify, p.dev)
            # IMPORT{program} reads KEY="VALUE" lines: the path is claimed (its WWID is in the wwids file)
            assert u.returncode == 0 and 'DM_MULTIPATH_DEVICE_PATH="1"' in u.stdout.splitlines(), u
        for p in paths:
            sd.offline(p)
        try:
            # no usable path: upstream's exit 1 for both (udev then skips probing a map that would fail I/O)
            assert udev_call(check_map, dmdev).returncode == 1
            assert login(f"multipath -C {dmdev}", check=False).returncode == 1
        finally:
            for p in paths:
                sd.online(p)
        assert udev_call(check_map, dmdev).returncode == 0

        # our daemon takes the map over; `multipathd CMD` reaches it through the drop-in name
        with Pympd(config("strict")) as d:
            assert d.wait_map(wwid) == wwid
            shown = login("multipathd show paths").stdout
            assert all(p.dev in shown for p in paths), shown
            assert wwid in login("multipathd show maps").stdout
            r = call([f"{SBIN}/{reload_[0]}", *reload_[1:]])   # `systemctl reload multipathd`'s line
            assert r.returncode == 0 and r.stdout.strip() == "ok", r
            assert login(f"multipathd show map {wwid} topology").stdout.count(" active ") >= 1
            # a refused command is the client's exit 1, as upstream's multipathd client
            assert login("multipathd show map no-such-map topology", check=False).returncode == 1
    finally:
        dm.remove_multipath_maps()
        saved.restore()


def test_alternatives_switch_between_ours_and_debians(dropins):
    ours = ["update-alternatives", "--install", f"{SBIN}/multipath", "multipath", f"{PREFIX}/bin/pymultipath",
            "50", "--slave", f"{SBIN}/multipathd", "multipathd", f"{PREFIX}/bin/pymultipathd"]
    theirs = ["update-alternatives", "--install", f"{SBIN}/multipath", "multipath", "/sbin/multipath",
              "10", "--slave", f"{SBIN}/multipathd", "multipathd", "/sbin/multipathd"]
    run(ours)
    run(theirs)
    # automatic mode: the highest priority, ours
    assert login("multipath --help").stdout.startswith("usage: pymultipath ")
    assert login("readlink -f $(command -v multipathd)").stdout.strip() == f"{PREFIX}/bin/pymultipathd"
    # the installer does not take over a name alternatives manage
    p = compat("--prefix", PREFIX)
    assert p.returncode == 1
    assert (f"refusing: {SBIN}/multipath exists and is a symlink to /etc/alternatives/multipath, not to our "
            "pymultipath") in p.stderr, p.stderr
    assert compat("--prefix", PREFIX, "--remove").stdout.count("left ") == 2   # not ours to remove
    # switched to Debian's: both names follow, upstream's binary answers
    run(["update-alternatives", "--set", "multipath", "/sbin/multipath"])
    assert login("readlink -f $(command -v multipath) $(command -v multipathd)").stdout.split() == [
        DEBIAN["multipath"], DEBIAN["multipathd"]]
    h = login("multipath -h", check=False)
    assert "multipath-tools v0.9.4" in h.stdout + h.stderr, h
    # undone: no link, no alternatives entry
    run(["update-alternatives", "--remove-all", "multipath"])
    assert not any(os.path.lexists(f"{SBIN}/{n}") for n in NAMES)
    assert not os.path.exists(f"{ALTERNATIVES}/multipath")
