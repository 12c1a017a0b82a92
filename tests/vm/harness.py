"""Host side of the VM test tier (stdlib only): build the image, boot it under QEMU, collect the result.

    python -m tests.vm.harness build [--force]
    python -m tests.vm.harness test [-k EXPR] [PYTEST ARGS...]
    python -m tests.vm.harness demo | bench [ARGS...] | shell

One boot runs one job. The job is written to the output share (job.json); the guest's pymp-run.service runs it
(tests/vm/guest.py), streams its output to run.log (printed here live), writes exit_code and powers off.
No exit_code means a hung or crashed guest: that is a failure, with the end of the console log printed.
Environment: PYMP_VM_CACHE (image cache), PYMP_VM_OUT (results dir), PYMP_VM_TIMEOUT (wall-clock seconds),
PYMP_VM_MEM (MiB), PYMP_VM_SMP, PYMP_VM_TEST_TIMEOUT (per-test seconds).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.vm import image

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUTS = {"test": 2400, "demo": 600, "bench": 5400, "script": 1200}
QEMU = "qemu-system-x86_64"
_LOCKS: list = []


def _say(msg: str) -> None:
    print(f"[vm] {msg}", flush=True)


def out_dir(mode: str) -> Path:
    """out/vm/<mode>, or out/vm/<mode>-<pid> while another harness run holds that one (parallel sessions)."""
    base = Path(os.environ.get("PYMP_VM_OUT") or REPO / "out" / "vm")
    base.mkdir(parents=True, exist_ok=True)
    lock = open(base / f".{mode}.lock", "w")  # kept open (and locked) until this process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _LOCKS.append(lock)
        return base / mode
    except BlockingIOError:
        lock.close()
        return base / f"{mode}-{os.getpid()}"


def qemu_argv(img: Path, out: Path, *, interactive: bool) -> list[str]:
    append = ["root=/dev/vda", "rw", "console=ttyS0,115200", "fsck.mode=skip", "panic=-1",
              "net.ifnames=0"]
    if not interactive:
        append += ["quiet", "systemd.wants=pymp-run.service"]
    argv = [
        QEMU, "-accel", "tcg,thread=multi", "-cpu", "max",  # KVM on this kind of host hangs a stock kernel
        "-smp", os.environ.get("PYMP_VM_SMP", "2"), "-m", os.environ.get("PYMP_VM_MEM", "2048"),
        "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
        "-nic", "none",  # no network device: nothing leaves the guest
        "-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.img"), "-append", " ".join(append),
        "-drive", f"file={img / 'rootfs.img'},if=virtio,format=raw,snapshot=on",
        "-device", "virtio-rng-pci",
        "-virtfs", f"local,path={REPO},mount_tag={image.REPO_TAG},security_model=none,readonly=on,id=repo",
        "-virtfs", f"local,path={out},mount_tag={image.OUT_TAG},security_model=none,id=out",
    ]
    if interactive:
        argv += ["-serial", "mon:stdio"]
    else:
        argv += ["-serial", f"file:{out / 'console.log'}"]
    return argv


def _tail(path: Path, n: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} missing)"


def _stream(path: Path, pos: int) -> int:
    """Print what was appended to path since pos; return the new position."""
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read()
    except FileNotFoundError:
        return pos
    if data:
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()
    return pos + len(data)


def run_job(mode: str, args: list[str], *, timeout: float | None = None) -> int:
    img = image.build()
    out = out_dir(mode)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    limit = timeout or float(os.environ.get("PYMP_VM_TIMEOUT") or DEFAULT_TIMEOUTS[mode])
    job = {"mode": mode, "args": args, "test_timeout": int(os.environ.get("PYMP_VM_TEST_TIMEOUT") or 300)}
    (out / "job.json").write_text(json.dumps(job))
    _say(f"booting {img.name} for {mode!r} (limit {limit:.0f} s, results in {out})")
    t0 = time.monotonic()
    proc = subprocess.Popen(qemu_argv(img, out, interactive=False), stdin=subprocess.DEVNULL,
                            stdout=open(out / "qemu.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    pos, timed_out = 0, False
    try:
        while proc.poll() is None:
            pos = _stream(out / "run.log", pos)
            if time.monotonic() - t0 > limit:
                timed_out = True
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _stream(out / "run.log", pos)
    wall = time.monotonic() - t0
    code_file = out / "exit_code"
    if timed_out or not code_file.exists():
        why = f"killed after the {limit:.0f} s limit" if timed_out else f"QEMU exited ({proc.returncode})"
        _say(f"FAILURE: the guest did not report a result ({why}). End of the console log:")
        print(_tail(out / "console.log", 80))
        print(_tail(out / "qemu.log", 20))
        return 3
    code = int(code_file.read_text().strip() or 3)
    timings = _timings(out)
    _say(f"{mode} finished with exit code {code} in {wall:.0f} s wall clock{timings}")
    if mode == "test":
        summary = _pytest_summary(out / "run.log")
        _say(f"VM tier result: {summary or 'no pytest summary line found'}")
        if (out / "junit.xml").exists():
            _say(f"junit: {out / 'junit.xml'}")
    if code != 0:
        _say(f"logs: {out}/run.log, console.log, journal.txt")
    return code


def _timings(out: Path) -> str:
    try:
        t = json.loads((out / "timings.json").read_text())
    except (OSError, ValueError):
        return ""
    return f" (guest boot {t.get('boot_s', 0):.0f} s, job {t.get('job_s', 0):.0f} s)"


def _pytest_summary(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        s = line.strip().strip("=").strip()
        if (" passed" in s or " failed" in s or " error" in s or "no tests ran" in s) and " in " in s:
            return s
    return None


def shell() -> int:
    img = image.build()
    out = out_dir("shell")
    out.mkdir(parents=True, exist_ok=True)
    _say("interactive shell: root is logged in on the serial console; `poweroff` or Ctrl-A X to leave")
    _say(f"the checkout is at {image.REPO_MOUNT} (read-only), {out} at {image.OUT_MOUNT}")
    return subprocess.call(qemu_argv(img, out, interactive=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.vm.harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) the cached VM image")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    t = sub.add_parser("test", help="run the VM pytest session (tests/vm) in one boot")
    t.add_argument("-k", dest="expr", help="pytest -k expression")
    sub.add_parser("demo", help="run tests/vm/demo.py in the guest")
    sub.add_parser("bench", help="run tests/vm/bench.py in the guest")
    sub.add_parser("shell", help="interactive root shell in the guest")
    s = sub.add_parser("script", help="run a Python file of the checkout in the guest (path relative to it)")
    s.add_argument("file")
    sub.add_parser("path", help="print the cached image directory for the current recipe")
    ns, extra = ap.parse_known_args(argv)
    if ns.cmd == "build":
        t0 = time.monotonic()
        d = image.build(force=ns.force)
        _say(f"image ready in {time.monotonic() - t0:.0f} s: {d}")
        return 0
    if ns.cmd == "path":
        print(image.image_dir())
        return 0
    for tool in (QEMU, "mmdebstrap", "mke2fs"):
        if not shutil.which(tool):
            _say(f"missing host tool {tool!r}: `make setup` installs qemu-system-x86 mmdebstrap e2fsprogs")
            return 2
    if ns.cmd == "shell":
        return shell()
    args = list(extra)
    if ns.cmd == "script":
        args = [ns.file, *args]
    if ns.cmd == "test" and ns.expr:
        args = ["-k", ns.expr, *args]
    return run_job(ns.cmd, args)


if __name__ == "__main__":
    sys.exit(main())
