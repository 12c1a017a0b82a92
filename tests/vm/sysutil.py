"""Small helpers shared by the VM fixtures: run a command, wait for a condition, settle udev, sysfs I/O."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class CommandError(RuntimeError):
    def __init__(self, argv: list[str], code: int, out: str, err: str) -> None:
        super().__init__(f"command {' '.join(argv)!r} exited with {code}: {(err or out).strip()[-2000:]}")
        self.argv, self.code, self.out, self.err = argv, code, out, err


def run(argv: list[str], *, check: bool = True, timeout: float = 60, input: str | None = None,
        env: dict[str, str] | None = None) -> str:
    """Run argv (never through a shell); return stdout. Raises CommandError naming the command on failure."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, check=False,
                           env=env)
    except subprocess.TimeoutExpired as e:
        raise CommandError(argv, -1, "", f"timed out after {timeout} s") from e
    if check and p.returncode != 0:
        raise CommandError(argv, p.returncode, p.stdout, p.stderr)
    return p.stdout


def wait_for(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll pred until it returns a truthy value; raise TimeoutError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def settle(timeout: float = 120) -> None:
    run(["udevadm", "settle", f"--timeout={int(timeout)}"], timeout=timeout + 10)


def write_sysfs(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_sysfs(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def udev_wwid(dev: str) -> str | None:
    """The WWID multipath uses (udev ID_SERIAL) for a block device name like 'sdb'."""
    out = run(["udevadm", "info", "--query=property", f"--name=/dev/{dev}"], check=False)
    for line in out.splitlines():
        if line.startswith("ID_SERIAL="):
            return line.split("=", 1)[1]
    return None


class SavedFiles:
    """Files a test rewrites (multipath.conf, wwids, bindings), saved now and put back by restore(): contents
    restored, files that did not exist removed again, and directories that did not exist removed if empty."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.data: dict[str, bytes | None] = {}
        for path in paths:
            try:
                with open(path, "rb") as f:
                    self.data[path] = f.read()
            except FileNotFoundError:
                self.data[path] = None
        self.new_dirs = {d for d in map(os.path.dirname, self.data) if not os.path.isdir(d)}

    def restore(self) -> None:
        for path, data in self.data.items():
            if data is None:
                if os.path.exists(path):
                    os.unlink(path)
            else:
                with open(path, "wb") as f:
                    f.write(data)
        for d in self.new_dirs:
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
