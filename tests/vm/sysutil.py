"""Small helpers shared by the VM fixtures: run a command, wait for a condition, settle udev, sysfs I/O."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CommandError(RuntimeError):
    def __init__(self, argv: list[str], code: int, out: str, err: str) -> None:
        super().__init__(f"command {' '.join(argv)!r} exited with {code}: {(err or out).strip()[-2000:]}")
        self.argv, self.code, self.out, self.err = argv, code, out, err


def run(argv: list[str], *, check: bool = True, timeout: float = 60, input: str | None = None) -> str:
    """Run argv (never through a shell); return stdout. Raises CommandError naming the command on failure."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, check=False)
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
