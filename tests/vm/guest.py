"""Guest side of the VM tier, run by the image's units from the read-only share.

    guest.py setup   (pymp-setup.service, every boot) install the checkout: package, launchers, rules, units
    guest.py run     (pymp-run.service) run the job in /mnt/out/job.json, write run.log, exit_code, timings

Lives in the repository, not the image, so changing it needs no image rebuild. Stdlib only.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = "/mnt/repo"
OUT = Path("/mnt/out")
VENV_PY = "/opt/pymp/bin/python"


def _write(path: str, text: str, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def setup() -> int:
    site = sysconfig.get_paths()["purelib"]
    # (The image's .pth puts the checkout on the venv's sys.path, with bytecode under image.PYCACHE.)
    # The package itself is copied to local disk and compiled, as a real install is: imports over 9p cost a
    # round trip per stat, which would make every udev-run `pymultipath -u` several times slower. Compiled
    # without site (-IS) so the bytecode lands in __pycache__, where the -IS launchers look, not under the
    # .pth's prefix.
    package = os.path.join(site, "pymultipathd")
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(os.path.join(REPO, "pymultipathd"), package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([VENV_PY, "-IS", "-m", "compileall", "-q", "-j", "0", package], check=True)
    subprocess.run([VENV_PY, "-m", "pymultipathd.cli.launcher", "--bindir", "/usr/local/bin",
                    "--python", VENV_PY, "--site", site], check=True, cwd="/")
    # the udev rules' program: the compiled front, built on the host by the harness (`make helper`)
    os.makedirs("/usr/local/libexec", exist_ok=True)
    front = "/usr/local/libexec/pymultipath-udev"
    shutil.copyfile(f"{REPO}/build/pymultipath-udev", f"{front}.tmp")
    os.chmod(f"{front}.tmp", 0o755)
    os.replace(f"{front}.tmp", front)
    # the login shell of `make vm-shell` finds the venv's pytest and python first, as the jobs do
    _write("/etc/profile.d/pymp.sh", "export PATH=/opt/pymp/bin:/usr/local/bin:$PATH\n"
           "export HYPOTHESIS_STORAGE_DIRECTORY=/tmp/pymp-job/.hypothesis\n")
    rules = sorted(glob.glob(f"{REPO}/udev/*.rules"))
    for rule in rules:
        dest = os.path.join("/etc/udev/rules.d", os.path.basename(rule))
        if os.path.islink(dest):  # replaces a /dev/null mask of Debian's rule of the same name
            os.unlink(dest)
        shutil.copyfile(rule, dest)
    if rules:
        subprocess.run(["udevadm", "control", "--reload"], check=False)
    units = [u for u in sorted(glob.glob(f"{REPO}/units/*")) if os.path.isfile(u)]
    for unit in units:
        shutil.copyfile(unit, os.path.join("/etc/systemd/system", os.path.basename(unit)))
    if units:
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    print(f"pymp-setup: checkout {REPO} installed ({len(rules)} udev rules, {len(units)} units)")
    return 0


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def _job_argv(job: dict) -> list[str]:
    mode, args = job["mode"], list(job.get("args", []))
    if mode == "test":
        return [VENV_PY, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--color=no",
                f"--rootdir={REPO}", "-c", f"{REPO}/pyproject.toml",
                f"--junitxml={OUT}/junit.xml", f"--timeout={job.get('test_timeout', 300)}",
                *(job.get("paths") or ["tests/vm"]), *args]
    if mode in ("demo", "bench"):
        return [VENV_PY, f"{REPO}/tests/vm/{mode}.py", *args]
    if mode == "script":  # a developer's own script, path relative to the checkout
        return [VENV_PY, f"{REPO}/{args[0]}", *args[1:]]
    raise SystemExit(f"guest: unknown job mode {mode!r} in {OUT}/job.json")


def _cpu_by_unit() -> dict[str, float]:
    """CPU seconds each unit of interest used since boot: where the guest's time went (udev's workers, with
    every `pymultipath -u` they ran, count in systemd-udevd.service; pytest and its fixtures in pymp-run).
    Read from cgroup v2's cpu.stat, which every cgroup has without systemd's CPU accounting; a unit that
    has stopped (a daemon between tests) has no cgroup left and is not listed."""
    result = {}
    for unit in ("systemd-udevd.service", "pymp-run.service", "pymultipathd.service", "multipathd.service",
                 "systemd-journald.service"):
        try:
            with open(f"/sys/fs/cgroup/system.slice/{unit}/cpu.stat") as f:
                usage = dict(line.split() for line in f if line.strip())["usage_usec"]
        except (OSError, KeyError, ValueError):
            continue
        result[unit] = round(int(usage) / 1e6, 1)
    with open("/proc/stat") as f:  # the whole guest, kernel included (USER_HZ ticks)
        user, nice, system = (int(x) for x in f.readline().split()[1:4])
    result["all (user+system)"] = round((user + nice + system) / 100, 1)
    return result


def run() -> int:
    boot_s = _uptime()
    code = 3
    t0 = time.monotonic()
    try:
        job = json.loads((OUT / "job.json").read_text())
        work = Path("/tmp/pymp-job")
        work.mkdir(exist_ok=True)
        # pytest runs in the checkout so node ids read as on the host (tests/vm/test_x.py::name)
        cwd = REPO if job["mode"] == "test" else str(work)
        path = f"/opt/pymp/bin:/usr/local/bin:{os.environ['PATH']}"
        env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=path,
                   HYPOTHESIS_STORAGE_DIRECTORY=str(work / ".hypothesis"))  # the checkout is read-only
        with open(OUT / "run.log", "ab", buffering=0) as log:
            log.write(f"[guest] booted in {boot_s:.1f} s; running {job['mode']}\n".encode())
            code = subprocess.run(_job_argv(job), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False).returncode
    except Exception as e:  # any harness fault is a reported failure, never a silent hang
        with open(OUT / "run.log", "a") as f:
            f.write(f"[guest] job failed to run: {e!r}\n")
    job_s = time.monotonic() - t0
    with open("/mnt/out/journal.txt", "w") as f:
        subprocess.run(["journalctl", "-b", "-o", "short-monotonic", "--no-pager"], stdout=f,
                       stderr=subprocess.STDOUT, check=False)
    try:
        cpu = _cpu_by_unit()
    except Exception as e:  # noqa: BLE001 - a diagnostic: never costs the job its result
        cpu = {"error": str(e)}
    _write(str(OUT / "timings.json"), json.dumps({"boot_s": boot_s, "job_s": job_s, "cpu_s": cpu}))
    _write(str(OUT / "exit_code"), f"{code}\n")
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit({"setup": setup, "run": run}[sys.argv[1]]())
