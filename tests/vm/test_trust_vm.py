"""Trust boundaries on the real system: a local user squatting the sockets udev's helper and the admin
client talk to, hostile values on their way to systemd-run, and a read-only /etc/multipath at start-up.
Each test performs the attack; udev, systemd, device mapper and dmsetup are the real ones."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator

from tests.vm import dm
from tests.vm.pympd import Pympd, config
from tests.vm.sysutil import SavedFiles, run, settle, wait_for

NOBODY = 65534
PWNED = "/run/pymp-pwned"
RULES = "/etc/udev/rules.d/62-pymultipath.rules"  # where the guest installs ours (tests/vm/guest.py)
# udev imports these lines from its helper, and the wait reaches systemd-run's command line, which udev
# splits at spaces: through `sh -c` (the arguments after it are ignored) the smuggled command runs as root.
# No "$" in it: systemd would expand ${...} itself.
HOSTILE = f'FIND_MULTIPATHS_WAIT_UNTIL="1 /bin/sh -c exec>{PWNED}"\nDM_MULTIPATH_DEVICE_PATH="2"\n'

# A squatter: binds an abstract name as uid 65534, says "ready", answers every connection with argv[2] (hex).
_SQUAT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1][1:])
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    try:
        c.sendall(bytes.fromhex(sys.argv[2]))
    except OSError:
        pass
    c.close()
"""


def as_nobody(code: str, *args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(["/usr/bin/python3", "-I", "-c", code, *args], user=NOBODY, group=NOBODY,
                            extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@contextlib.contextmanager
def squatter(name: str, reply: str = "") -> Iterator[subprocess.Popen]:
    proc = as_nobody(_SQUAT, name, reply.encode().hex())
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def rule_file(path: str, text: str) -> Iterator[None]:
    saved = SavedFiles([path])
    try:
        with open(path, "w") as f:
            f.write(text)
        run(["udevadm", "control", "--reload"])
        yield
    finally:
        saved.restore()
        run(["udevadm", "control", "--reload"])


def journal_since(since: int) -> str:
    return run(["journalctl", "--no-pager", "-o", "cat", f"--since=@{since}"], check=False)


def udev_property(dev: str, key: str) -> str | None:
    for line in run(["udevadm", "info", "--query=property", f"--name=/dev/{dev}"]).splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    return None


def test_a_local_user_cannot_answer_udev_for_a_disk(scsi_debug):
    """Attack 1: a non-root process takes the helper socket's name and tells udev the disk is claimed
    (or 'maybe', with a command smuggled into the wait). udev must not believe it."""
    since = int(time.time()) - 1
    # the daemon's own helper socket lives where this user cannot even create a directory entry
    probe = as_nobody("import os, socket\nos.makedirs('/run/pymultipathd', exist_ok=True)\n"
                      "socket.socket(socket.AF_UNIX).bind('/run/pymultipathd/udev-helper')\n")
    _, err = probe.communicate(timeout=30)
    assert probe.returncode != 0 and "PermissionError" in err, err
    # a helper socket an abstract name could still be configured to: udev's environment points there
    name = "@/pymp-vm/udev-helper-squat"
    claim = "R0\0" + HOSTILE + "\0"
    pointer = f'SUBSYSTEM=="block", ENV{{PYMULTIPATH_HELPER_SOCKET}}="{name}"\n'
    with squatter(name, claim) as sq, rule_file("/etc/udev/rules.d/61-pymp-squat-test.rules", pointer):
        sd = scsi_debug(luns=1, paths=1)
        dev = sd.paths[0].dev
        settle()
        time.sleep(3)  # a smuggled `--on-active=1 ... touch` would have fired by now
        state = udev_property(dev, "DM_MULTIPATH_DEVICE_PATH")
        journal = journal_since(since)
        pid = sq.pid
    assert state == "0", f"{dev}: DM_MULTIPATH_DEVICE_PATH={state} (no daemon runs: the disk is the system's)"
    assert not os.path.exists(PWNED)
    said = f"ignoring {name}: it is served by pid {pid} (python3), uid 65534, not root"
    assert said in journal, journal[-3000:]


def test_the_rules_let_only_whole_seconds_reach_systemd_run(scsi_debug):
    """The rule itself refuses a wait that is not digits, whatever the helper printed (here a stand-in
    helper prints it for one disk; the other disk's honest 30 s wait starts its timer as usual)."""
    with open(RULES) as f:
        ours = f.read()
    program = next(line for line in ours.splitlines() if line.startswith("IMPORT{program}="))
    script = "/usr/local/libexec/pymp-test-hostile-helper"  # /run is mounted noexec
    with open(script, "w") as f:
        f.write("#!/bin/sh\ncat /run/pymp-answer.$1\n")
    os.chmod(script, 0o755)
    devs: list[str] = []
    try:
        with rule_file(RULES, ours.replace(program, f'IMPORT{{program}}="{script} %k"')):
            sd = scsi_debug(luns=2, paths=1)
            hostile, honest = (p.dev for p in sd.paths)
            # the first events ran before the answers existed (the helper printed nothing): an "add" now is
            # each disk's first with a wait, as after a fresh boot
            for dev, answer in ((hostile, HOSTILE), (honest, 'FIND_MULTIPATHS_WAIT_UNTIL="30"\n'
                                                              'DM_MULTIPATH_DEVICE_PATH="2"\n')):
                with open(f"/run/pymp-answer.{dev}", "w") as f:
                    f.write(answer)
                devs.append(dev)
                run(["udevadm", "trigger", "--action=add", f"/dev/{dev}"])
            settle()
            time.sleep(3)  # the smuggled `--on-active=1` command would have run by now
            active = {dev: run(["systemctl", "is-active", f"cancel-multipath-wait-{dev}.timer"],
                               check=False).strip() for dev in devs}
            trace = run(["udevadm", "test", "--action=add", f"/sys/block/{devs[1]}"], check=False)
    finally:
        for dev in devs:
            run(["systemctl", "stop", f"cancel-multipath-wait-{dev}.timer"], check=False)
        for leftover in (script, *(f"/run/pymp-answer.{dev}" for dev in devs)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    assert not os.path.exists(PWNED)
    assert active == {devs[0]: "inactive", devs[1]: "active"}, (active, trace[-4000:])


def _write_mbr(node: str, start: int, size: int) -> None:
    """One Linux partition (type 0x83) at `start` of `size` sectors."""
    sector = bytearray(512)
    sector[446 + 4] = 0x83
    sector[446 + 8:446 + 16] = start.to_bytes(4, "little") + size.to_bytes(4, "little")
    sector[510:512] = b"\x55\xaa"
    fd = os.open(node, os.O_WRONLY | os.O_SYNC)
    try:
        os.pwrite(fd, bytes(sector), 0)
    finally:
        os.close(fd)


def _partition_maps() -> list[str]:
    out = run(["dmsetup", "info", "-c", "--noheadings", "-o", "name,uuid", "--separator", " "], check=False)
    return sorted(w[0] for w in (line.split() for line in out.splitlines()) if len(w) == 2
                  and w[1].startswith("part"))


def test_read_only_etc_and_a_squatted_control_socket_do_not_stop_map_assembly(scsi_debug):
    """Attack 5 and the daemon's side of attack 1: /etc/multipath is read-only (as before Debian's remount)
    and a local user holds upstream's abstract control socket name when the daemon starts. Every map and
    partition map is made (named after its WWID: no binding can be written), the squatter is named, and
    the daemon answers on its pathname socket."""
    sd = scsi_debug(luns=3, paths=2)
    wwids = sorted(w for w in sd.by_wwid() if w)
    assert len(wwids) == 3
    # scsi_debug's LUNs share one store: every LUN has it. Through a path that takes writes: scsi_debug
    # keeps one of its ports in ALUA standby, and which disk name lands there depends on probe order.
    for i, p in enumerate(sd.paths):
        try:
            _write_mbr(p.node, 2048, 8192)
            break
        except OSError:
            if i == len(sd.paths) - 1:
                raise
    os.makedirs("/etc/multipath", exist_ok=True)
    since = int(time.time()) - 1
    d = Pympd(config("greedy", user_friendly_names="yes"))
    with squatter("@/org/kernel/linux/storage/multipathd") as sq:
        run(["mount", "--bind", "/etc/multipath", "/etc/multipath"])
        try:
            run(["mount", "-o", "remount,bind,ro", "/etc/multipath"])
            d.__enter__()
            names = {wwid: d.wait_map(wwid) for wwid in wwids}
            wait_for(lambda: len(_partition_maps()) == 3, 120, "a partition map of each map")
            parts = _partition_maps()
            status = d.cmd("show", "daemon")
        finally:
            d.stop()
            for part in _partition_maps():
                dm.remove(part)
            run(["umount", "/etc/multipath"], check=False)
            d.__exit__()
    journal = journal_since(since)
    assert names == {w: w for w in wwids}, names
    assert parts == sorted(f"{w}-part1" for w in wwids)
    assert status.startswith("pid "), status
    assert f"is held by pid {sq.pid} (python3), uid 65534, NOT ROOT" in journal, journal[-3000:]
    erofs = [line for line in journal.splitlines() if "bindings" in line and "(EROFS)" in line]
    assert len(erofs) == 1, erofs  # once, not once per map
    assert any("wwids" in line and "(EROFS)" in line for line in journal.splitlines()), journal[-3000:]
