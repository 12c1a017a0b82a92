"""`make bench` on the host (stdlib only): every benchmark of docs/benchmarks.md from one commit in one run.

Two one-CPU guests boot side by side, each running tests/vm/bench.py on part of the list (every row pairs
ours and upstream's in one boot, so a row's ratio never spans two guests); when the first is done, the
root-on-multipath boots (tests/vm/rootboot.py --compare) run in its place. The results are merged into
out/vm/bench/bench.json with the commit, the date and the machine, for tests/vm/bench_report.py.
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import platform
import re
import subprocess
import threading
import time
from pathlib import Path

from tests.vm import bench, harness, image, rootboot

# (name, bench.py items): about equal guest time each, the root boots included (2026-12-07: the 1024-path
# rows and path down take about as long as everything else; hot-plug at 256 paths, about 20 minutes of
# both daemons, is left to a focused `harness bench hotplug:256`)
GUESTS = (("events", ["udev", "dm", "hotplug:64", "failover", "scale:64,256,512"]),
          ("scale", ["scale:1024@1024", "pathdown"]))
SMP = "1"


def _git(*args: str) -> str:
    p = subprocess.run(["git", "-C", str(harness.REPO), *args], capture_output=True, text=True, check=False)
    return p.stdout.strip()


def meta() -> dict:
    """What the report names: the commit (and whether the tree had changes), the date, the machine."""
    qemu = subprocess.run([harness.QEMU, "--version"], capture_output=True, text=True, check=False)
    return {"commit": _git("rev-parse", "--short=12", "HEAD"), "dirty": bool(_git("status", "--porcelain",
                                                                                  "--untracked-files=no")),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "host": f"{platform.node()}, {os.cpu_count()} cores, {_cpu()}",
            "qemu": (qemu.stdout.splitlines() or ["?"])[0], "guest_cpus": int(SMP),
            "guest_mib": int(os.environ.get("PYMP_VM_MEM") or 2048),
            "guests": {name: items for name, items in GUESTS}}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def merge(parts: list[dict]) -> dict:
    """The guests' bench.json files as one: the daemon's rows and errors from both, the rest as given."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if key == "daemon":
                bench.merge(out.setdefault("daemon", {}), value)
            else:
                out[key] = value
    return out


# "== bench ITEM", the item's own output (bench_dm prints a table), its results as JSON, "== bench ITEM: N s"
FINISHED_ITEM = re.compile(r"^== bench (\S+)\n(?:[^\n]*\n)*?(\{\n(?:[^\n]*\n)*?\})\n== bench \1: \d+ s$",
                           re.M)


def guest_results(out: Path, label: str) -> dict:
    """A guest's bench.json; else (a guest of an older bench.py stopped at its time limit) the results of
    the items it finished, as bench.py printed them to run.log between "== bench ITEM" and its time."""
    try:
        return json.loads((out / "bench.json").read_text())
    except (OSError, ValueError) as e:
        missing = f"{label}: no bench.json ({e})"
    results: dict = {}
    try:
        text = (out / "run.log").read_text(errors="replace")
    except OSError:
        return {"errors": [missing]}
    for item, body in FINISHED_ITEM.findall(text):
        try:
            key = bench.KEYS.get(item.split(":")[0], "daemon")
            bench.merge(results.setdefault(key, {}), json.loads(body))
        except ValueError:
            continue
    cut = re.search(r"^== bench (scale:\S+)\n(?![\s\S]*^== bench \1: \d+ s$)([\s\S]*)", text, re.M)
    if cut:  # a scale item the guest did not finish: the rows it printed as it went
        bench.merge(results.setdefault("daemon", {}), {"startup": printed_rows(cut.group(2))})
    results.setdefault("daemon", {}).setdefault("errors", []).append(
        f"{missing}: the finished items' results taken from run.log, the rest not measured")
    return results


def printed_rows(text: str) -> list[dict]:
    """The start-up rows bench_daemon.startup printed line by line ("  start-up {...}", then "  footprint",
    "  show", "  profile" of the same row)."""
    rows: list[dict] = []
    for what, literal in re.findall(r"^  (start-up|footprint|show|profile) (\{.*\})$", text, re.M):
        try:
            value = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            continue
        if what == "start-up":
            rows.append(value)
        elif rows and what == "footprint":
            rows[-1].update(value)
        elif rows:
            rows[-1][what] = value
    return rows


def run() -> int:
    img = image.build()
    limit = harness._limit("bench", None)
    jobs = [harness.Job("bench", items, harness.out_dir(f"bench-{name}"), limit, label=f"[{name}] ")
            for name, items in GUESTS]
    root_out = harness.out_dir("bench-rootboot")
    root_codes: list[int] = []
    root = threading.Thread(target=lambda: root_codes.append(rootboot.run(SMP, compare=True, base=root_out)),
                            name="rootboot")
    t0 = time.monotonic()
    try:
        for job in jobs:
            job.start(img, SMP)
        while True:
            alive = [job.running() for job in jobs]  # a list: every job streams on every round
            if not all(alive) and not root.is_alive() and not root_codes:
                root.start()  # one CPU is free now
            if not any(alive):
                break
            time.sleep(0.5)
    finally:
        for job in jobs:
            job.kill()
    codes = [job.finish() for job in jobs]
    if not root_codes and not root.is_alive():
        root.start()
    root.join()
    parts = [guest_results(job.out, job.label.strip()) for job in jobs]
    results = merge(parts)
    try:
        results["rootboot"] = json.loads((root_out / "summary.json").read_text())
    except (OSError, ValueError) as e:
        results["rootboot"] = {"errors": [f"no root-on-multipath figures ({e})"]}
    results["meta"] = {**meta(), "wall_s": round(time.monotonic() - t0)}
    out = harness.out_dir("bench")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bench.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.rename(out / "bench.json")
    m = results["meta"]
    harness._say(f"benchmarks of {m['commit']} in {m['wall_s']} s: {out / 'bench.json'}")
    return max([*codes, *(root_codes or [3])])
