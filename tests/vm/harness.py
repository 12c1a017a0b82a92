"""Host side of the VM test tier (stdlib only): build the image, boot it under QEMU, collect the result.

    python -m tests.vm.harness build [--force]
    python -m tests.vm.harness test [--shards N] [--shell-check] [-k EXPR] [PYTEST ARGS...]
    python -m tests.vm.harness demo | bench [ARGS...] | shell | rootboot

One boot runs one job. The job is written to the output share (job.json); the guest's pymp-run.service runs it
(tests/vm/guest.py), streams its output to run.log (printed here live), writes exit_code and powers off.
No exit_code means a hung or crashed guest: that is a failure, with the end of the console log printed.
Environment: PYMP_VM_CACHE (image cache), PYMP_VM_OUT (results dir), PYMP_VM_TIMEOUT (wall-clock seconds),
PYMP_VM_MEM (MiB), PYMP_VM_SMP (CPUs per guest: 2, or 1 per shard), PYMP_VM_SHARDS, PYMP_VM_TEST_TIMEOUT
(per-test seconds).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.vm import image

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUTS = {"test": 2400, "demo": 600, "bench": 7200, "script": 1200}
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


def qemu_argv(img: Path, out: Path, *, interactive: bool, smp: str | None = None) -> list[str]:
    append = ["root=/dev/vda", "rw", "console=ttyS0,115200", "fsck.mode=skip", "panic=-1",
              "net.ifnames=0"]
    if not interactive:
        # Nobody logs in to a job's guest: no gettys (the serial one logs root in), and none of the modules
        # udev would load for hardware no test uses (nested KVM, PC speaker, floppy): seconds of each boot
        # of a one-CPU TCG guest.
        append += ["quiet", "systemd.wants=pymp-run.service", "systemd.mask=getty.target",
                   "modprobe.blacklist=kvm,kvm_amd,kvm_intel,pcspkr,floppy"]
    argv = [
        QEMU, "-accel", "tcg,thread=multi", "-cpu", "max",  # KVM on this kind of host hangs a stock kernel
        "-smp", smp or os.environ.get("PYMP_VM_SMP", "2"), "-m", os.environ.get("PYMP_VM_MEM", "2048"),
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


# The guest's 9p shares not mounted at boot ("9pnet_virtio: no channels available" when the mount races the
# device's probe, seen about once in a few dozen one-CPU boots): the job unit then never starts and the guest
# would sit idle until its limit. Such a boot is given up at once and the guest booted again.
BOOT_FAILED = re.compile(rb"Failed to mount.*mnt-(out|repo)\.mount")
BOOT_TRIES = 3


class Job:
    """One guest running one job: QEMU started, run.log streamed (lines prefixed with `label` when several
    guests run at once), the exit code collected."""

    def __init__(self, mode: str, args: list[str], out: Path, limit: float, *, label: str = "",
                 paths: list[str] | None = None) -> None:
        self.mode, self.out, self.limit, self.label = mode, out, limit, label
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        job = {"mode": mode, "args": args, "test_timeout": int(os.environ.get("PYMP_VM_TEST_TIMEOUT") or 300)}
        if paths:
            job["paths"] = paths
        (out / "job.json").write_text(json.dumps(job))
        self.pos, self.partial, self.timed_out, self.code = 0, b"", False, None
        self.proc: subprocess.Popen | None = None
        self.t0 = 0.0
        self.boots, self.img, self.smp = 0, Path(), ""

    def start(self, img: Path, smp: str) -> None:
        _say(f"{self.label}booting {img.name} for {self.mode!r} (limit {self.limit:.0f} s, {smp} CPU, "
             f"results in {self.out})")
        self.boots, self.img, self.smp = self.boots + 1, img, smp
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(qemu_argv(img, self.out, interactive=False, smp=smp),
                                     stdin=subprocess.DEVNULL, stdout=open(self.out / "qemu.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        """Stream new output; kill the guest past its limit. False once it is over."""
        assert self.proc is not None
        self._stream()
        if self.proc.poll() is not None:
            return False
        if self._boot_failed():
            self.kill()
            failed = self.out / f"console-boot{self.boots}.log"
            (self.out / "console.log").rename(failed)
            if self.boots >= BOOT_TRIES:
                _say(f"{self.label}the guest's shares did not mount in {self.boots} boots (see {failed})")
                return False
            _say(f"{self.label}the guest's shares did not mount (a boot-time race; {failed}): booting again")
            self.start(self.img, self.smp)
        if time.monotonic() - self.t0 > self.limit:
            self.timed_out = True
            self.kill()
            return False
        return True

    def _boot_failed(self) -> bool:
        """The job has not started (no run.log yet) and the console says a share failed to mount."""
        if (self.out / "run.log").exists():
            return False
        try:
            return BOOT_FAILED.search((self.out / "console.log").read_bytes()) is not None
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _stream(self, final: bool = False) -> None:
        try:
            with open(self.out / "run.log", "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        if not self.label:
            sys.stdout.write(data.decode(errors="replace"))
        else:  # whole lines only, so two guests' output does not interleave mid-line
            *lines, self.partial = (self.partial + data).split(b"\n")
            if final and self.partial:
                lines, self.partial = [*lines, self.partial], b""
            for line in lines:
                sys.stdout.write(f"{self.label}{line.decode(errors='replace')}\n")
        sys.stdout.flush()

    def finish(self) -> int:
        self.kill()
        self._stream(final=True)
        wall = time.monotonic() - self.t0
        code_file = self.out / "exit_code"
        if self.timed_out or not code_file.exists():
            assert self.proc is not None
            why = (f"killed after the {self.limit:.0f} s limit" if self.timed_out
                   else f"QEMU exited ({self.proc.returncode})")
            _say(f"{self.label}FAILURE: the guest did not report a result ({why}). End of the console log:")
            print(_tail(self.out / "console.log", 80))
            print(_tail(self.out / "qemu.log", 20))
            return 3
        code = int(code_file.read_text().strip() or 3)
        _say(f"{self.label}{self.mode} finished with exit code {code} in {wall:.0f} s wall clock"
             f"{_timings(self.out)}")
        if self.mode == "test":
            _say(f"{self.label}VM tier result: {_summary(self.out)}")
            if (self.out / "junit.xml").exists():
                _say(f"{self.label}junit: {self.out / 'junit.xml'}")
        if code != 0:
            _say(f"{self.label}logs: {self.out}/run.log, console.log, journal.txt")
        return code


def _limit(mode: str, timeout: float | None) -> float:
    return timeout or float(os.environ.get("PYMP_VM_TIMEOUT") or DEFAULT_TIMEOUTS[mode])


def _run_all(jobs: list[Job], smp: str) -> list[int]:
    img = image.build()
    try:
        for job in jobs:
            job.start(img, smp)
        while any([job.running() for job in jobs]):  # a list: every job streams on every round
            time.sleep(0.5)
    finally:
        for job in jobs:
            job.kill()
    return [job.finish() for job in jobs]


def run_job(mode: str, args: list[str], *, timeout: float | None = None) -> int:
    job = Job(mode, args, out_dir(mode), _limit(mode, timeout))
    return _run_all([job], os.environ.get("PYMP_VM_SMP", "2"))[0]


# Minutes per test file in a one-CPU TCG guest (sharded run of 2026-11-24, after midnight), to balance the
# shards; a new file counts 3.
WEIGHTS = {"test_daemon.py": 5.2, "test_classify_vm.py": 4.7, "test_daemon_policy.py": 2.5,
           "test_compat_vm.py": 1.2,  # 59 s of tests in a two-CPU guest, 182 s on a busy host (2026-12-06)
           "test_bed.py": 2.1, "test_dm_layer.py": 2.0, "test_flush.py": 1.1, "test_control_vm.py": 0.5,
           "test_trust_vm.py": 1.2, "test_holders_vm.py": 3.0, "test_deadportal_vm.py": 2.9,
           "test_hwtable_vm.py": 0.1, "test_checkers_vm.py": 2.4, "test_assemble_vm.py": 1.6,
           "test_persist_vm.py": 1.2, "test_keywords_vm.py": 3.6,
           "test_recheck_wwid_vm.py": 1.5, "test_wildcards_vm.py": 1.0,
           "test_marginal_vm.py": 3.7, "test_ghost_delay_vm.py": 3.0}
# test_trust_vm: 41-79 s of tests in a two-CPU guest, test_holders_vm 117 s (2026-11-29, not yet sharded);
# test_deadportal_vm 173 s alone in a one-CPU guest, 128 s in a two-CPU one (2026-11-29)
# test_checkers_vm 128 s, test_assemble_vm 84 s, test_hwtable_vm 1.4 s in a two-CPU guest (2026-12-06)
# test_persist_vm 64 s, test_recheck_wwid_vm 84 s in a two-CPU guest (2026-12-06); CI's two one-CPU shards
# took 1078 and 1052 s with them (2026-12-06); test_marginal_vm 195 s (one I/O error check takes 120 s),
# test_ghost_delay_vm about 170 s, reassign_maps and retrigger_* about 100 s more in test_keywords_vm, in a
# two-CPU guest (2026-12-07)


def shard_files(files: list[str], n: int) -> list[list[str]]:
    """Split test files into n groups of about equal weight (largest first onto the lightest group)."""
    groups: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for f in sorted(files, key=lambda f: (-WEIGHTS.get(os.path.basename(f), 3), f)):
        i = load.index(min(load))
        groups[i].append(f)
        load[i] += WEIGHTS.get(os.path.basename(f), 3)
    return [g for g in groups if g]


def run_sharded(args: list[str], shards: int) -> int:
    """The VM suite split by file over several guests booted at once, each with one CPU: much of the suite
    waits (checker intervals, timers, timeouts), so two guests finish well before one would."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "vm").glob("test_*.py"))
    groups = shard_files(files, shards)
    limit = _limit("test", None)
    jobs = [Job("test", args, out_dir(f"test-shard{i + 1}"), limit, label=f"[{i + 1}] ", paths=g)
            for i, g in enumerate(groups)]
    for i, g in enumerate(groups):
        _say(f"shard {i + 1}: {' '.join(os.path.basename(f) for f in g)}")
    codes = _run_all(jobs, os.environ.get("PYMP_VM_SMP", "1"))
    _say("VM tier result: " + "; ".join(f"shard {i + 1}: {_summary(job.out)} (exit code {code})"
                                          for i, (job, code) in enumerate(zip(jobs, codes, strict=True))))
    return max(codes)


def _timings(out: Path) -> str:
    try:
        t = json.loads((out / "timings.json").read_text())
    except (OSError, ValueError):
        return ""
    cpu = ", ".join(f"{k} {v}" for k, v in (t.get("cpu_s") or {}).items())
    return (f" (guest boot {t.get('boot_s', 0):.0f} s, job {t.get('job_s', 0):.0f} s;"
            f" CPU seconds: {cpu or '?'})")


def _summary(out: Path) -> str:
    return _pytest_summary(out / "run.log") or "no pytest summary line found"


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


SHELL_CHECK_TEST = "tests/vm/test_bed.py::test_two_luns_have_distinct_wwids"


def shell_check(test: str = SHELL_CHECK_TEST) -> int:
    """`make vm-shell` as a developer uses it, driven through a pseudo-terminal: wait for the root prompt on
    the serial console, run one VM test by name the way tests/vm/README.md says, power off. Fails on no
    prompt, a failed test or a guest that does not stop."""
    import pty
    import re
    import select

    img = image.build()
    out = out_dir("shell-check")
    out.mkdir(parents=True, exist_ok=True)
    _say(f"shell check: booting {img.name} interactively, then running {test} at the prompt")
    pid, fd = pty.fork()
    if pid == 0:  # child: QEMU on the pty, as `make vm-shell` runs it on the developer's terminal
        os.execvp(QEMU, qemu_argv(img, out, interactive=True))
    seen = bytearray()
    log = open(out / "console.log", "wb")

    def expect(pattern: str, timeout: float, start: int) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern.encode(), seen[start:])
            if m:
                return m
            if select.select([fd], [], [], 1.0)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the guest is gone
                    return None
                seen.extend(chunk)
                log.write(chunk)
                log.flush()
        return None

    code = 0
    try:
        if not expect(r"root@[^\s]*:[^\n]*# ", 300, 0):
            _say("shell check FAILED: no root prompt on the serial console within 300 s")
            print(_tail(out / "console.log", 40))
            return 3
        mark = len(seen)
        os.write(fd, f"cd /mnt/repo && pytest -p no:cacheprovider -q {test}; echo PYMP-RC=$?\n".encode())
        m = expect(r"PYMP-RC=(\d+)", 600, mark)
        if not m:
            _say("shell check FAILED: the test gave no result within 600 s")
            code = 3
        elif m.group(1) != b"0":
            _say(f"shell check FAILED: the test exited {m.group(1).decode()} in the shell")
            code = 1
        print(seen[mark:].decode(errors="replace")[-3000:])
        os.write(fd, b"poweroff\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                pid = 0
                break
            expect(r"(?!)", 1, 0)  # keep draining the console while it shuts down
        if pid:
            _say("shell check FAILED: the guest did not power off within 120 s")
            code = code or 3
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        log.close()
    if code == 0:
        _say("shell check passed: prompt, one test by name, poweroff")
    return code


def _alongside_shell_check(run: Callable[[], int]) -> int:
    """run() and shell_check() at the same time (the check is a minute of light work for a third guest,
    which costs the busy shards less than that minute added after them), then the root-on-multipath boot
    (tests/vm/rootboot.py) on its own: its image builds are CPU-bound, and beside the shards they took three
    times as long and slowed the shards."""
    from tests.vm import rootboot

    codes: list[int] = []
    checker = threading.Thread(target=lambda: codes.append(shell_check()), name="shell-check")
    checker.start()
    try:
        code = run()
    finally:
        checker.join()
    root = rootboot.run()
    return max(code, codes[0] if codes else 3, root)


def build_front() -> bool:
    """Compile the udev front (udev/pymultipath-udev.c) on the host, for guest.py setup to install: the
    guest has no compiler, and host and guest are both bookworm, so the binary runs there as built here."""
    try:
        p = subprocess.run(["make", "-s", "-C", str(REPO), "helper"], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        _say(f"cannot build the udev front: {e}")
        return False
    if p.returncode != 0:
        _say(f"cannot build the udev front (`make helper` exited {p.returncode}):\n{p.stdout}{p.stderr}")
    return p.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.vm.harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) the cached VM image")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    t = sub.add_parser("test", help="run the VM pytest session (tests/vm) in one boot")
    t.add_argument("-k", dest="expr", help="pytest -k expression (runs in one guest)")
    t.add_argument("--shards", type=int, default=None,
                   help="split the suite by file over this many guests at once (default: 2 for the whole "
                        "suite, 1 with -k or extra pytest arguments; PYMP_VM_SHARDS)")
    t.add_argument("--shell-check", action="store_true",
                   help="with the whole suite, also run shell-check in a third guest at the same time, and "
                        "rootboot after them")
    sub.add_parser("demo", help="run tests/vm/demo.py in the guest")
    sub.add_parser("bench", help="every benchmark (tests/vm/bench_host.py: two guests, then the root boots); "
                                 "with bench.py ITEMs, only those in one guest")
    sub.add_parser("shell", help="interactive root shell in the guest")
    sub.add_parser("shell-check", help="check `shell` works: boot it through a pty, run one test by name")
    r = sub.add_parser("rootboot", help="boot a root file system on a multipath map with our initramfs "
                                        "(tests/vm/rootboot.py)")
    r.add_argument("--compare", action="store_true",
                   help="also build and boot Debian's multipath-tools-boot image (docs/benchmarks.md)")
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
    if not build_front():
        return 2
    if ns.cmd == "shell":
        return shell()
    if ns.cmd == "shell-check":
        return shell_check()
    if ns.cmd == "bench" and not extra:
        from tests.vm import bench_host

        return bench_host.run()
    if ns.cmd == "rootboot":
        from tests.vm import rootboot

        return rootboot.run(compare=ns.compare)
    args = list(extra)
    if ns.cmd == "script":
        args = [ns.file, *args]
    if ns.cmd == "test":
        shards = ns.shards or int(os.environ.get("PYMP_VM_SHARDS") or (1 if ns.expr or args else 2))
        if ns.expr:
            args = ["-k", ns.expr, *args]
        if ns.shell_check and not (ns.expr or args):
            return _alongside_shell_check(lambda: run_sharded(args, shards) if shards > 1 else
                                          run_job("test", args))
        if shards > 1:
            return run_sharded(args, shards)
    return run_job(ns.cmd, args)


if __name__ == "__main__":
    sys.exit(main())
