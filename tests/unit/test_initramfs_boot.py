"""The initramfs boot scripts (initramfs/): shell syntax, and the shared boot script's behaviour against a
fake kernel command line, sysfs and daemon (its environment overrides)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INITRAMFS = REPO / "initramfs"
BOOT = INITRAMFS / "pymultipathd-boot"
SH_FILES = [BOOT, *(INITRAMFS / "initramfs-tools").rglob("pymultipathd"),
            *(INITRAMFS / "dracut" / "90pymultipathd").glob("pymultipathd-*.sh")]
BASH_FILES = [INITRAMFS / "dracut" / "90pymultipathd" / "module-setup.sh"]

FAKE_DAEMON = """#!/bin/sh
printf '%s\\n' "$*" > "$FAKE_ARGS"
env > "$FAKE_ENV"
trap 'echo stopped >> "$FAKE_ARGS"; exit 0' TERM
while :; do sleep 0.05; done
"""


def test_shell_files_found():
    assert len(SH_FILES) == 7 and all(p.is_file() for p in SH_FILES + BASH_FILES)


@pytest.mark.parametrize("path", SH_FILES + BASH_FILES, ids=lambda p: str(p.relative_to(INITRAMFS)))
def test_syntax(path):
    shell = "bash" if path in BASH_FILES else "sh"
    done = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", SH_FILES + BASH_FILES, ids=lambda p: str(p.relative_to(INITRAMFS)))
def test_shellcheck(path):
    assert shutil.which("shellcheck"), "shellcheck is not installed (make setup installs it)"
    shell = "bash" if path in BASH_FILES else "sh"
    done = subprocess.run(["shellcheck", "-s", shell, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.fixture
def boot(tmp_path):
    """Runs the boot script in a fake world: returns run(command, cmdline) -> CompletedProcess."""
    (tmp_path / "sys" / "block").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fingerprint.json").write_text('{"format": 1}\n')
    daemon = tmp_path / "pymultipathd"
    daemon.write_text(FAKE_DAEMON)
    daemon.chmod(0o755)
    (tmp_path / "uptime").write_text("100.25 50.00\n")
    modprobe = tmp_path / "modprobe"
    modprobe.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$FAKE_MODPROBE"\n')
    modprobe.chmod(0o755)
    started: list[str] = []

    def run(command: str, cmdline: str, **extra: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "cmdline").write_text(cmdline + "\n")
        env = {"PATH": os.environ["PATH"], "PYMULTIPATH_CMDLINE": str(tmp_path / "cmdline"),
               "PYMULTIPATH_SYSFS": str(tmp_path / "sys"), "PYMULTIPATH_RUNDIR": str(tmp_path / "run"),
               "PYMULTIPATH_BOOT_STATE": str(tmp_path / "state"),
               "PYMULTIPATH_BOOT_DATA": str(tmp_path / "data"),
               "PYMULTIPATHD": str(daemon), "PYMULTIPATH_MODPROBE": str(modprobe),
               "PYMULTIPATH_UPTIME": str(tmp_path / "uptime"), "FAKE_ARGS": str(tmp_path / "args"),
               "FAKE_ENV": str(tmp_path / "env"), "FAKE_MODPROBE": str(tmp_path / "modprobe.log"),
               "NOTIFY_SOCKET": "/run/systemd/notify", **extra}
        started.append(command)
        return subprocess.run(["sh", str(BOOT), command], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60)

    run.dir = tmp_path  # type: ignore[attr-defined]
    yield run
    pid_file = tmp_path / "state" / "pid"
    if pid_file.exists():  # a failed test must not leave the fake daemon behind
        run("stop", "")


def _wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("cmdline,word", [
    ("root=/dev/mapper/mpatha rd.multipath=0", "rd.multipath=0"),
    ("quiet nompath", "nompath"),
    ("multipath=off root=/dev/sda1", "multipath=off"),
    ("rd.multipath=no", "rd.multipath=no"),
    ("rd.multipath=1 rd.multipath=0", "rd.multipath=0"),
])
def test_start_honours_the_command_line(boot, cmdline, word):
    done = boot("start", cmdline)
    assert done.returncode == 0
    assert f"multipath is off for this boot ({word})" in done.stderr
    assert not (boot.dir / "state" / "pid").exists() and not (boot.dir / "args").exists()
    assert not (boot.dir / "run" / "initramfs-fingerprint.json").exists()
    assert boot("disabled", cmdline).returncode == 0
    assert boot("ready", cmdline).returncode == 0  # nothing started: nothing to wait for


def test_last_rd_multipath_wins(boot):
    assert boot("disabled", "rd.multipath=0 rd.multipath=1").returncode == 1


def test_start_wait_ready_stop(boot):
    done = boot("start", "root=/dev/mapper/mpatha rd.pymultipath.wait=1")
    assert done.returncode == 0, done.stderr
    _wait_for(boot.dir / "env")
    assert (boot.dir / "args").read_text().split("\n")[0] == "-d -s --no-linkwatch"
    env = (boot.dir / "env").read_text()
    assert "NOTIFY_SOCKET" not in env  # nothing of systemd reaches the daemon here
    assert "dm-multipath" in (boot.dir / "modprobe.log").read_text()
    assert (boot.dir / "run" / "initramfs-fingerprint.json").read_text() == '{"format": 1}\n'
    assert (boot.dir / "state" / "deadline").read_text() == "101\n"  # uptime 100 + 1

    (boot.dir / "uptime").write_text("100.5 0\n")
    assert boot("ready", "root=/dev/mapper/mpatha").returncode == 1  # not there, wait not over
    (boot.dir / "uptime").write_text("101.0 0\n")
    done = boot("wait", "root=/dev/mapper/mpatha")
    assert done.returncode == 1
    assert "gave up waiting; still missing: map mpatha (root=)" in done.stderr

    dm = boot.dir / "sys" / "block" / "dm-0" / "dm"
    dm.mkdir(parents=True)
    (dm / "name").write_text("mpatha\n")
    assert boot("ready", "root=/dev/mapper/mpatha").returncode == 0
    assert boot("wait", "root=/dev/mapper/mpatha").returncode == 0

    assert boot("start", "").stderr.startswith("pymultipathd-boot: pymultipathd already runs")
    done = boot("stop", "")
    assert done.returncode == 0, done.stderr
    assert "stopped" in (boot.dir / "args").read_text()
    assert not (boot.dir / "state" / "pid").exists()
    assert boot("stop", "").returncode == 0  # twice: nothing to do


def test_waits_for_maps_recorded_at_build_time(boot):
    (boot.dir / "data" / "root-wwids").write_text("3600140512345\n")
    assert boot("start", "root=UUID=1234-abcd").returncode == 0
    (boot.dir / "uptime").write_text("100.0 0\n")
    assert boot("ready", "root=UUID=1234-abcd").returncode == 1
    dm = boot.dir / "sys" / "block" / "dm-3" / "dm"
    dm.mkdir(parents=True)
    (dm / "uuid").write_text("mpath-3600140512345\n")
    assert boot("ready", "root=UUID=1234-abcd").returncode == 0


def test_root_by_wwid_and_wait_bound(boot):
    (boot.dir / "uptime").write_text("7 0\n")
    cmdline = "root=/dev/disk/by-id/dm-uuid-mpath-36001 rd.pymultipath.wait=99999999999"
    assert boot("start", cmdline).returncode == 0
    assert (boot.dir / "state" / "deadline").read_text() == "607\n"  # bounded to 600 s
    dm = boot.dir / "sys" / "block" / "dm-1" / "dm"
    dm.mkdir(parents=True)
    (dm / "uuid").write_text("mpath-36001\n")
    assert boot("ready", "root=/dev/disk/by-id/dm-uuid-mpath-36001").returncode == 0


def test_bad_wait_value_is_ignored(boot):
    done = boot("start", "rd.pymultipath.wait=5s")
    assert "ignoring rd.pymultipath.wait=5s" in done.stderr
    assert (boot.dir / "state" / "deadline").read_text() == "130\n"  # the default, 30 s


def test_command_line_words_are_data(boot):
    # globs and shell syntax in a word are neither expanded nor run
    (boot.dir / "a-file").write_text("")
    cmdline = "root=/dev/mapper/* x=$(touch${IFS}pwned) `touch pwned2` ;touch pwned3"
    done = boot("start", cmdline)
    assert done.returncode == 0
    (boot.dir / "uptime").write_text("1000 0\n")  # the wait is over: says what is missing
    done = boot("ready", cmdline)
    assert "map * (root=)" in done.stderr
    assert not list(boot.dir.glob("pwned*"))


def test_missing_daemon_is_named(boot):
    done = boot("start", "", PYMULTIPATHD=str(boot.dir / "nothing-here"))
    assert done.returncode == 1
    assert "nothing-here is missing from the image: rebuild it" in done.stderr


def test_wait_stops_when_the_daemon_dies(boot):
    daemon = boot.dir / "dies"
    daemon.write_text("#!/bin/sh\necho 'cannot start: device mapper unavailable' >&2\nexit 1\n")
    daemon.chmod(0o755)
    assert boot("start", "root=/dev/mapper/x", PYMULTIPATHD=str(daemon)).returncode == 0
    time.sleep(0.3)
    done = boot("wait", "root=/dev/mapper/x", PYMULTIPATHD=str(daemon))
    assert done.returncode == 1
    assert "pymultipathd is not running" in done.stderr and "device mapper unavailable" in done.stderr


@pytest.mark.parametrize("script,calls", [("local-top", ["start", "wait"]), ("init-bottom", ["stop"])])
def test_initramfs_tools_scripts(tmp_path, script, calls):
    path = INITRAMFS / "initramfs-tools" / "scripts" / script / "pymultipathd"
    done = subprocess.run(["sh", str(path), "prereqs"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == ""
    log = tmp_path / "log"
    fake = tmp_path / "boot"
    fake.write_text(f'#!/bin/sh\necho "$1" >> "{log}"\n')
    fake.chmod(0o755)
    done = subprocess.run(["sh", str(path)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "PYMULTIPATH_BOOT": str(fake)})
    assert done.returncode == 0
    assert log.read_text().split() == calls
