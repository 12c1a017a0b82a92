"""Wall time of our udev helper against Debian's `/sbin/multipath -u|-c DEV`, same devices, same boot.

Ours is timed as udev runs it, the compiled front (udev/pymultipath-udev.c): with a daemon (its helper
service answers) and with none (the front answers the no-daemon rules itself); `-u` and `-c`, in every
find_multipaths mode. The Python helper asked directly with the daemon answering is timed for reference.

    from tests.vm import bench_udev
    bench_udev.run() -> {"reps": N, "devices": [...], "modes": {"smart": {"daemon": {"front -u": {"median_ms":
                         .., "p90_ms": ..}, "multipath -u": {...}, ...}, "alone": {...}, "verdicts_agree":
                         True, ...}, ...}}

Runs inside the test VM only (scsi_debug, a config in /etc/multipath.conf, both restored after). Also holds
the pieces tests/vm/test_classify_vm.py shares with it: the stand-in daemon listener and the config/state
save-and-restore.
"""

from __future__ import annotations

import asyncio
import glob
import os
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field

from tests.vm.sysutil import SavedFiles
from tests.vm.sysutil import run as run_cmd

DAEMON_SOCKET = "\0/org/kernel/linux/storage/multipathd"  # abstract: upstream's and ours (no env override)
CONF = "/etc/multipath.conf"
WWIDS = "/etc/multipath/wwids"
BINDINGS = "/etc/multipath/bindings"
TIMER_DIR = "/run/multipath/find_multipaths"
OURS = "/usr/local/bin/pymultipath"
FRONT = "/usr/local/libexec/pymultipath-udev"  # what the udev rule runs
UPSTREAM = "/sbin/multipath"

WWIDS_HEADER = """\
# Multipath wwids, Version : 1.0
# NOTE: This file is automatically maintained by multipath and multipathd.
# You should not need to edit this file in normal circumstances.
#
# Valid WWIDs:
"""


def conf_text(mode: str, timeout: int | None = None) -> str:
    """/etc/multipath.conf for one find_multipaths mode; the boot disk (vda) stays out of it."""
    extra = f"\tfind_multipaths_timeout {timeout}\n" if timeout is not None else ""
    # multi-line blacklist section: 0.9.4 misreads a one-line one
    return (f"defaults {{\n\tfind_multipaths {mode}\n{extra}}}\n"
            "blacklist {\n\tdevnode \"^vd[a-z]\"\n}\n")


class StandInDaemon:
    """Listens on the daemon's abstract socket and closes every connection: `-u` (ours and upstream's) only
    connect()s to learn whether a daemon runs, so this makes them see one without any map being made.
    answering=True also runs the daemon's helper service (pymultipathd.daemon.udev_service, the code
    pymultipathd runs) on its own loop, so our `-u` is answered as with a running pymultipathd."""

    def __init__(self, answering: bool = True) -> None:
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.answering = answering
        self.service = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> StandInDaemon:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(DAEMON_SOCKET)
        except OSError as e:
            s.close()
            raise RuntimeError(f"cannot listen on @{DAEMON_SOCKET[1:]}: {e} (is a daemon running?)") from e
        s.listen(128)
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._serve, name="stand-in-daemon", daemon=True)
        self._thread.start()
        if self.answering:
            self._start_service()
        return self

    def _start_service(self) -> None:
        from pymultipathd.daemon.udev_service import UdevService

        # no running configuration: the service reads the files, again whenever they change
        self.service = UdevService(lambda: ((), None))
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="helper-service", daemon=True).start()
        if not asyncio.run_coroutine_threadsafe(self.service.start(), self._loop).result(30):
            raise RuntimeError("the helper service could not listen (is a pymultipathd running?)")

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.service.close(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if self._sock:
            self._sock.close()
        self._sock = self._thread = None

    def __enter__(self) -> StandInDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_wait_timers() -> None:
    """Stop every transient cancel-multipath-wait-* timer (and its service) the rules started."""
    out = run_cmd(["systemctl", "list-units", "--all", "--plain", "--no-legend", "cancel-multipath-wait-*"],
                  check=False)
    units = [line.split()[0] for line in out.splitlines() if line.split()]
    if units:
        run_cmd(["systemctl", "stop", *units], check=False)
        run_cmd(["systemctl", "reset-failed", *units], check=False)


def clear_wait_files() -> None:
    for f in glob.glob(f"{TIMER_DIR}/*"):
        os.unlink(f)


@dataclass
class MultipathState:
    """Writes /etc/multipath.conf (and optionally the wwids file); puts both back as they were on exit and
    removes the smart-mode wait files and timers, so the next test or bench starts clean."""

    mode: str
    timeout: int | None = None
    wwids: list[str] = field(default_factory=list)
    _saved: SavedFiles | None = None

    def __enter__(self) -> MultipathState:
        self._saved = SavedFiles((CONF, WWIDS, BINDINGS))
        self.write_conf(self.mode, self.timeout)
        if self.wwids:
            self.write_wwids(self.wwids)
        return self

    def write_conf(self, mode: str, timeout: int | None = None) -> None:
        self.mode, self.timeout = mode, timeout
        _atomic(CONF, conf_text(mode, timeout))

    def write_wwids(self, wwids: list[str]) -> None:
        os.makedirs("/etc/multipath", exist_ok=True)
        _atomic(WWIDS, WWIDS_HEADER + "".join(f"/{w}/\n" for w in wwids))

    def __exit__(self, *exc: object) -> None:
        stop_wait_timers()
        clear_wait_files()
        if self._saved is not None:
            self._saved.restore()


def _atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def device_path_value(tool: str, dev: str, env: dict[str, str] | None = None) -> str:
    """The DM_MULTIPATH_DEVICE_PATH value `tool -u dev` prints ("" if none)."""
    out = run_cmd([tool, "-u", dev], check=False, env=env)
    for line in out.splitlines():
        if line.startswith("DM_MULTIPATH_DEVICE_PATH="):
            return line.split("=", 1)[1].strip('"')
    return ""


def valid_path(tool: str, dev: str, env: dict[str, str] | None = None) -> bool:
    """`tool -c dev` says the disk is a multipath path (exit status 0)."""
    return subprocess.run([tool, "-c", dev], capture_output=True, check=False, env=env).returncode == 0


def _time_calls(tool: str, flag: str, devs: list[str], env: dict[str, str] | None = None) -> list[float]:
    times = []
    for dev in devs:
        t0 = time.perf_counter()
        subprocess.run([tool, flag, dev], capture_output=True, check=False, env=env)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def stats(ms: list[float]) -> dict[str, float]:
    """Median, 90th percentile and maximum of wall times in ms (shared by the benchmarks)."""
    ordered = sorted(ms)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2), "calls": len(ordered)}


def importtime_top(dev: str, n: int = 15) -> list[tuple[str, int]]:
    """The modules with the largest cumulative import time (us) of one `pymultipath -u DEV`."""
    with open(OURS) as f:
        interpreter = f.readline()[2:].split()  # the launcher's interpreter and its flags
    p = subprocess.run([*interpreter, "-X", "importtime", OURS, "-u", dev], capture_output=True, text=True,
                       check=False)
    rows = []
    for line in p.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1])))
    return sorted(rows, key=lambda r: -r[1])[:n]


# (name, program, flag, environment): what is timed in every mode, with the daemon (stand-in) and without
TOOLS = (("front -u", FRONT, "-u"), ("multipath -u", UPSTREAM, "-u"),
         ("front -c", FRONT, "-c"), ("multipath -c", UPSTREAM, "-c"))


def _rounds(devs: list[str], reps: int, tools: tuple[tuple[str, str, str], ...],
            env: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """`reps` rounds; the tools alternate round by round, so a slow patch of the guest hits all alike."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in tools}
    for _ in range(reps):
        for name, tool, flag in tools:
            times[name] += _time_calls(tool, flag, devs, env)
    return {name: stats(t) for name, t in times.items()}


def _verdicts(devs: list[str], env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    return {d: {"front -u": device_path_value(FRONT, d, env), "multipath -u": device_path_value(UPSTREAM, d),
                "front -c": valid_path(FRONT, d, env), "multipath -c": valid_path(UPSTREAM, d)}
            for d in devs}


def _agree(verdicts: dict[str, dict[str, object]]) -> bool:
    return all(v["front -u"] == v["multipath -u"] and v["front -c"] == v["multipath -c"]
               for v in verdicts.values())


def run(reps: int = 10, modes: tuple[str, ...] = ("strict", "greedy", "smart")) -> dict:
    """Both helpers, `-u` and `-c`, on the disks of a 2-LUN x 2-path scsi_debug, `reps` rounds each, per
    mode: with a daemon (our pymultipathd running with that mode: the front is answered by its helper
    service, what udev runs whenever pymultipathd runs; upstream's sees it listen on the control socket)
    and with none (boot before the daemon, the initramfs, a stopped daemon: nothing listens anywhere). The
    Python helper asked directly with the daemon answering is timed for reference."""
    from tests.vm import scsidebug
    from tests.vm.pympd import Pympd

    result: dict = {"reps": reps, "modes": {}}
    sd = scsidebug.ScsiDebug(luns=2, paths_per_lun=2, dev_size_mb=8)
    # Loaded under greedy: the disks are claimed, never released (DM_MULTIPATH_DEVICE_PATH=0 in the udev db),
    # so smart answers the same for both tools (docs/classification.md: released outside udev differs).
    with MultipathState("greedy", timeout=5) as state:
        with StandInDaemon():
            sd.load()
        try:
            # half the disks: the per-call cost does not depend on which
            devs = [p.dev for p in sd.paths][::2]
            result["devices"] = devs
            for mode in modes:
                state.write_conf(mode, 5)
                row: dict = {}
                # our real daemon, as on a running host: it answers from its loaded configuration and its
                # own view of maps and paths (a stand-in answering from the files reads all of sysfs per
                # request); it also makes the maps this mode calls for, which both tools then see
                with Pympd(conf_text(mode, 5), show_journal=False):
                    row["verdicts_daemon"] = _verdicts(devs)
                    row["daemon"] = _rounds(devs, reps, (*TOOLS, ("pymultipath -u", OURS, "-u")))
                stop_wait_timers()
                clear_wait_files()
                # nothing listens on any of the daemons' sockets now
                row["verdicts_alone"] = _verdicts(devs)
                row["alone"] = _rounds(devs, reps, TOOLS)
                row["verdicts_agree"] = _agree(row["verdicts_daemon"]) and _agree(row["verdicts_alone"])
                result["modes"][mode] = row
                stop_wait_timers()
                clear_wait_files()
            result["importtime_top_us"] = importtime_top(devs[0])
        finally:
            sd.unload()
    return result


if __name__ == "__main__":
    import json
    import sys

    json.dump(run(), sys.stdout, indent=2)
    print()
