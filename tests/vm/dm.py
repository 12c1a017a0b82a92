"""Device-mapper multipath maps made and inspected with dmsetup (the bed's own tool, not the project's)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from tests.vm.sysutil import CommandError, run, settle


@dataclass(frozen=True)
class PathStatus:
    devno: str  # "8:16"
    state: str  # "A" active or "F" failed
    fail_count: int


@dataclass(frozen=True)
class MpathStatus:
    queued_io: int
    groups: list[tuple[str, list[PathStatus]]]  # (group state A/E/D, paths)
    next_group: int = 0  # the kernel's "next group" (a switch_group target before I/O made it active)

    def group_in_use(self) -> int:
        """1-based group that I/O goes to: the active (A) one, else the one the next I/O will pick."""
        return next((i for i, (state, _) in enumerate(self.groups, 1) if state == "A"), self.next_group)

    def group_of(self, devno: str) -> int:
        return next(i for i, (_, paths) in enumerate(self.groups, 1) if any(p.devno == devno for p in paths))

    def path(self, devno: str) -> PathStatus:
        for _, paths in self.groups:
            for p in paths:
                if p.devno == devno:
                    return p
        raise LookupError(f"path {devno} not in the map")


def multipath_table(sectors: int, devnos: list[str], *, queue_if_no_path: bool = False) -> str:
    """One priority group, round-robin over every path; queue_if_no_path off unless asked."""
    features = "1 queue_if_no_path" if queue_if_no_path else "0"
    paths = " ".join(f"{d} 1" for d in devnos)
    return f"0 {sectors} multipath {features} 0 1 1 round-robin 0 {len(devnos)} 1 {paths}"


def create(name: str, table: str) -> str:
    run(["dmsetup", "create", name, "--table", table])
    settle()
    return f"/dev/mapper/{name}"


def status(name: str) -> MpathStatus:
    """Parse `dmsetup status` of a multipath target (counts drive the parse, so any selector works)."""
    return _parse_status(name, run(["dmsetup", "status", name]).split())


def statuses() -> dict[str, MpathStatus]:
    """Every multipath map's status from one dmsetup call (name -> status)."""
    out = run(["dmsetup", "status", "--target", "multipath"], check=False)
    found = {}
    for line in out.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and "No devices" not in line:
            found[name] = _parse_status(name, rest.split())
    return found


def _parse_status(name: str, words: list[str]) -> MpathStatus:
    if len(words) < 4 or words[2] != "multipath":
        raise ValueError(f"dmsetup status {name}: not a multipath target: {' '.join(words)!r}")
    it = iter(words[3:])

    def take(n: int) -> list[str]:
        return [next(it) for _ in range(n)]

    feats = take(int(next(it)))
    take(int(next(it)))  # hardware handler status
    ngroups = int(next(it))
    next_group = int(next(it))
    groups = []
    for _ in range(ngroups):
        gstate = next(it)
        take(int(next(it)))  # selector status args
        npaths, nargs = int(next(it)), int(next(it))
        paths = []
        for _ in range(npaths):
            devno, state, fails = next(it), next(it), int(next(it))
            take(nargs)
            paths.append(PathStatus(devno, state, fails))
        groups.append((gstate, paths))
    return MpathStatus(int(feats[0]) if feats else 0, groups, next_group)


def message(name: str, msg: str) -> None:
    run(["dmsetup", "message", name, "0", *msg.split()])


def remove(name: str, timeout: float = 30) -> None:
    """Remove a map, retrying while udev still holds it briefly. dmsetup itself waits until udev has handled
    the remove event, which behind a backlog of hundreds of maps' events takes minutes under TCG: that wait
    is bounded by `timeout` too, not by run()'s default."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            run(["dmsetup", "remove", name], timeout=max(60.0, timeout))
            return
        except CommandError:
            if time.monotonic() > deadline:
                raise
            settle()
            time.sleep(0.5)


def remove_multipath_maps() -> None:
    """Every multipath map gone, after udev has worked through what is queued (hundreds of maps' events
    take minutes under TCG, and dmsetup waits for udev to handle each removal)."""
    settle(900)
    for name in multipath_maps():
        remove(name, timeout=300)


def multipath_maps() -> list[str]:
    out = run(["dmsetup", "ls", "--target", "multipath"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip() and "No devices" not in line]


def holders(dev: str) -> list[str]:
    """dm map names holding a block device (by sysfs holders)."""
    base = f"/sys/block/{dev}/holders"
    names = []
    for h in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(f"/sys/block/{h}/dm/name") as f:
                names.append(f.read().strip())
        except OSError:
            continue
    return names


def remove_holders(devs: list[str]) -> None:
    for name in sorted({n for d in devs for n in holders(d)}):
        remove(name)
