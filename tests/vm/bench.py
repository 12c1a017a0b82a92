"""`make bench`, inside the VM: run the named benchmarks in this one boot.

    bench.py [ITEM ...]
      udev                    tests/vm/bench_udev.py: `-u`/`-c` per call, with a daemon and without
      dm                      tests/vm/bench_dm.py: device-mapper operations
      events                  bench_daemon.events(): hot-plug at 64 and 256 paths, failover, path down
      hotplug:N[,N...] | failover | pathdown    one of those alone
      scale:N[,N...][@P][:calm]  bench_daemon.scale(): start-up, footprint, show commands at N paths
                              each; our daemon's profile at P paths; `:calm`: no uevent storm
    default: udev dm events scale:64,256,512,1024@1024

Results go to /mnt/out/bench.json (bench.json in the job's output directory on the host) as {"udev": ..,
"dm": .., "daemon": ..}; the daemon items' results are merged. A benchmark that raises is reported with its
error and makes the exit code 1. Benchmarks measure; nothing here asserts a time.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable

OUT = "/mnt/out/bench.json"
DEFAULT = ["udev", "dm", "events", "scale:64,256,512,1024@1024"]


# the results key of each item kind (the rest are the daemon's)
KEYS = {"udev": "udev", "dm": "dm"}


def plan(item: str) -> tuple[str, Callable[[], dict]]:
    """ITEM -> (the results key, what measures it)."""
    if item in KEYS:
        return KEYS[item], importlib.import_module(f"tests.vm.bench_{item}").run
    daemon = importlib.import_module("tests.vm.bench_daemon")
    if item == "events":
        return "daemon", daemon.events
    if item.startswith("hotplug:"):
        sizes = tuple(int(n) for n in item[8:].split(","))
        return "daemon", lambda: daemon.events(sizes, failover=False, pathdown=False)
    if item in ("failover", "pathdown"):
        return "daemon", lambda: daemon.events((), failover=item == "failover", pathdown=item == "pathdown")
    if item.startswith("scale:"):
        spec, calm, _ = item[6:].partition(":calm")
        counts, _, at = spec.partition("@")
        sizes = tuple(int(n) for n in counts.split(","))
        return "daemon", lambda: daemon.scale(sizes, profile_at=int(at) if at else None, storm=not calm)
    raise SystemExit(f"bench.py: unknown item {item!r} (see the module's docstring)")


def merge(into: dict, more: dict) -> None:
    """Daemon results from several items: lists (rows, errors) grow, the rest is set."""
    for k, v in more.items():
        if isinstance(v, list) and isinstance(into.get(k), list):
            into[k] += v
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            into[k].update(v)
        else:
            into[k] = v


def main(argv: list[str]) -> int:
    results: dict[str, dict] = {}
    failed = False
    for item in argv or DEFAULT:
        key, measure = plan(item)
        print(f"\n== bench {item}", flush=True)
        t0 = time.monotonic()
        try:
            merge(results.setdefault(key, {}), measure())
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            results.setdefault(key, {}).setdefault("errors", []).append(f"{item}: {e!r}")
            failed = True
        print(json.dumps(results[key], indent=2, default=str), flush=True)
        print(f"== bench {item}: {time.monotonic() - t0:.0f} s", flush=True)
        _write(results)  # after every item: a guest stopped at its time limit keeps what it measured
    print(f"\nresults: {OUT}")
    return 1 if failed else 0


def _write(results: dict) -> None:
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=str)
    os.replace(tmp, OUT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
