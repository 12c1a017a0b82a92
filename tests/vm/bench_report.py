"""Write docs/benchmarks.md from a `make bench` run's bench.json (host side, stdlib only).

    python -m tests.vm.bench_report out/vm/bench/bench.json docs/benchmarks.md

Every figure comes from that one run: the report names its commit and date. Every table puts ours beside
upstream's figure from the same boot, as a ratio (below 1.0: we are faster or smaller), and the targets
table at the top says which of issue 22's targets that run met. A hand-written reading of the numbers may
follow the generated part, between ANALYSIS and ANALYSIS_END; it is kept when the report is written again.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable

ANALYSIS = "<!-- analysis: written by hand, kept by bench_report.py -->"
ANALYSIS_END = "<!-- end of analysis -->"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 2) if ours is not None and theirs else None


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _ms(t: dict | None) -> str:
    return f"{t['median_ms']:.1f} ({t['p90_ms']:.1f})" if t else "-"


class Targets:
    """Issue 22's targets, each checked against every ratio measured for it."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, list[tuple[str, float | None]]]] = []

    def add(self, what: str, bound: str, ratios: Iterable[tuple[str, float | None]]) -> None:
        self.rows.append((what, bound, list(ratios)))

    def render(self) -> list[str]:
        out = ["| target | bound | measured ratios | met |", "|---|---|---|---|"]
        for what, bound, ratios in self.rows:
            op, limit = bound.split()[0], float(bound.split()[1])
            known = [(k, v) for k, v in ratios if v is not None]
            ok = [(v < limit if op == "<" else v <= limit) for _, v in known]
            met = "no data" if not known else "yes" if all(ok) else \
                f"no ({sum(not o for o in ok)} of {len(ok)})"
            shown = ", ".join(f"{k} {_r(v)}" for k, v in ratios) or "-"
            out.append(f"| {what} | {bound} | {shown} | {met} |")
        return out


def _header(meta: dict) -> list[str]:
    commit = meta.get("commit", "?") + (" with uncommitted changes" if meta.get("dirty") else "")
    guests = "; ".join(f"{name}: {' '.join(items)}" for name, items in meta.get("guests", {}).items())
    return ["# Benchmarks", "",
            "Written by `make bench` (tests/vm/bench_host.py boots the guests, tests/vm/bench.py measures in "
            "them, tests/vm/bench_report.py writes this file). Ours and upstream's (Debian multipath-tools "
            "0.9.4, dmsetup) run in the same boot of the same guest; every figure below is from the one run "
            "named here. The guests run under QEMU TCG (no KVM on this host), so absolute times are several "
            "times those of real hardware; the ratios are what compare. Benchmarks measure; no test asserts "
            "a time.", "",
            f"- commit: {commit}",
            f"- date: {meta.get('date', '?')}; the whole run took {meta.get('wall_s', '?')} s",
            f"- host: {meta.get('host', '?')}; {meta.get('qemu', '?')}",
            f"- guests: {meta.get('guest_cpus', '?')} CPU and {meta.get('guest_mib', '?')} MiB each, two "
            f"side by side ({guests}); the root-on-multipath boots after the first of them",
            *(f"- {note}" for note in meta.get("notes", []))]


def _udev(r: dict, targets: Targets) -> list[str]:
    out = ["## udev helper: `-u` and `-c` per call (wall time)", "",
           f"{r.get('reps', '?')} rounds over the disks {', '.join(r.get('devices', []))}, ms, median (p90). "
           "Ours as udev runs it, the compiled front (udev/pymultipath-udev.c). With a daemon: our "
           "pymultipathd runs in that mode (it answers the front through its helper service and has made "
           "the maps the mode calls for, which both tools then see; upstream's sees it listen on the control "
           "socket). Alone: nothing listens (boot before the daemon, the initramfs, a stopped daemon).", "",
           "| mode | daemon | ours -u | multipath -u | ratio | ours -c | multipath -c | ratio "
           "| `pymultipath -u` (Python) | same verdicts |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    answered: list[tuple[str, float | None]] = []
    alone: list[tuple[str, float | None]] = []
    for mode, m in r.get("modes", {}).items():
        for case, sink in (("daemon", answered), ("alone", alone)):
            t = m.get(case, {})
            ru = _ratio(t.get("front -u", {}).get("median_ms"), t.get("multipath -u", {}).get("median_ms"))
            rc = _ratio(t.get("front -c", {}).get("median_ms"), t.get("multipath -c", {}).get("median_ms"))
            sink += [(f"{mode} -u", ru), (f"{mode} -c", rc)]
            agree = m.get(f"verdicts_{case}")
            same = "-" if agree is None else "yes" if _agree(agree) else "NO"
            out.append(f"| {mode} | {'yes' if case == 'daemon' else 'none'} | {_ms(t.get('front -u'))} "
                       f"| {_ms(t.get('multipath -u'))} | {_r(ru)} | {_ms(t.get('front -c'))} "
                       f"| {_ms(t.get('multipath -c'))} | {_r(rc)} | {_ms(t.get('pymultipath -u'))} "
                       f"| {same} |")
    targets.add("`-u`/`-c` per call, daemon running", "<= 0.8", answered)
    targets.add("`-u`/`-c` per call, no daemon", "<= 0.8", alone)
    return out


def _agree(verdicts: dict) -> bool:
    return all(v["front -u"] == v["multipath -u"] and v["front -c"] == v["multipath -c"]
               for v in verdicts.values())


def _dm(r: dict, targets: Targets) -> list[str]:
    ours, theirs = r["ms_per_map"]["pymultipathd.dm"], r["ms_per_map"]["dmsetup"]
    out = [f"## Device-mapper operations: {r['maps']} maps, ms per map "
           "(ours: raw ioctls; upstream: dmsetup)",
           "", "| step | pymultipathd.dm | dmsetup | ratio |", "|---|---|---|---|"]
    for k in ours:
        out.append(f"| {k} | {ours[k]:.2f} | {theirs[k]:.2f} | {_r(_ratio(ours[k], theirs[k]))} |")
    return out


def _pairs(rows: list[dict]) -> dict[int, dict[str, dict]]:
    by_paths: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_paths.setdefault(row["paths"], {})[row["daemon"]] = row
    return by_paths


def _startup(d: dict, targets: Targets) -> list[str]:
    startup = _pairs(d.get("startup", []))
    out = ["## Daemon start-up and footprint", "",
           "The paths (scsi_debug LUNs x 2) exist and udev has claimed them, as after coldplug at boot (the "
           "socket unit listened while udev first saw them). Start-up: seconds from `systemctl start` until "
           "every map exists in device mapper. Then RSS, and CPU seconds per checker interval (5 s) over "
           "the first three intervals after start-up (every path checked each interval) and in steady state "
           "(checks backed off to max_polling_interval; over one max_polling_interval, four intervals, which "
           "holds each path's check once). Maps made / reloaded: ours, from `show status` (one "
           "create per map and no reload is right). Stop: seconds `systemctl stop` took at the end.", "",
           "| paths | start-up s ours / theirs | ratio | RSS MiB ours / theirs | ratio "
           "| CPU s first intervals ours / theirs | ratio | CPU s steady ours / theirs | ratio "
           "| maps made / reloaded | stop s ours / theirs |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    conv, rss, first, steady = [], [], [], []
    for paths in sorted(startup):
        o, t = startup[paths].get("ours", {}), startup[paths].get("theirs", {})
        rc = _ratio(o.get("seconds"), t.get("seconds"))
        rr = _ratio(o.get("rss_mib"), t.get("rss_mib"))
        rf = _ratio(o.get("cpu_s_per_interval_after_start"), t.get("cpu_s_per_interval_after_start"))
        rs = _ratio(o.get("cpu_s_per_interval"), t.get("cpu_s_per_interval"))
        conv.append((str(paths), rc))
        rss.append((str(paths), rr))
        first.append((str(paths), rf))
        steady.append((str(paths), rs))
        out.append(f"| {paths} | {o.get('seconds', '-')} / {t.get('seconds', '-')} | {_r(rc)} "
                   f"| {o.get('rss_mib', '-')} / {t.get('rss_mib', '-')} | {_r(rr)} "
                   f"| {o.get('cpu_s_per_interval_after_start', '-')} / "
                   f"{t.get('cpu_s_per_interval_after_start', '-')} | {_r(rf)} "
                   f"| {o.get('cpu_s_per_interval', '-')} / {t.get('cpu_s_per_interval', '-')} | {_r(rs)} "
                   f"| {o.get('creates', '-')} / {o.get('reloads', '-')} "
                   f"| {o.get('stop_s', '-')} / {t.get('stop_s', '-')} |")
    for paths in sorted(startup):
        for which, row in sorted(startup[paths].items()):
            if "stalled" in row:
                waits = sorted(set(row["stalled"].get("wchan", {}).values()))
                out.append(f"\n{which} at {paths} paths took over 30 s to stop; its threads waited in "
                           f"{', '.join(waits) or 'nothing recorded'} (bench.json has the stacks)")
    targets.add("start-up convergence, by paths", "<= 0.7", conv)
    targets.add("RSS, by paths", "<= 1.0", rss)
    targets.add("CPU per checker interval, first three intervals, by paths", "<= 0.8", first)
    targets.add("CPU per checker interval, steady state, by paths", "<= 0.8", steady)
    return out


def _threads(d: dict, _targets: Targets) -> list[str]:
    """Where each daemon's CPU per interval went: user / system time of the process, and the busiest few
    threads of each window by their time on a CPU."""
    rows = []
    for paths, pair in sorted(_pairs(d.get("startup", [])).items()):
        for which, row in sorted(pair.items()):
            for phase, split in (row.get("cpu_by_thread") or {}).items():
                busiest = sorted(split.get("threads", {}).items(), key=lambda kv: -kv[1])[:5]
                cells = ", ".join(f"{_md(name)} {s:.3f}" for name, s in busiest)
                rows.append(f"| {paths} | {which} | {phase} | {split.get('user', '-')} / "
                            f"{split.get('system', '-')} | {cells or '-'} |")
    if not rows:
        return []
    return ["## CPU per checker interval by thread", "",
            "The same windows as the start-up table's CPU columns, in CPU seconds per interval: the "
            "process's user / system time (system: the kernel at work for it, e.g. the SCSI commands of "
            "checks and device-mapper ioctls), and the five busiest threads by their time on a CPU "
            "(schedstat). Our daemon names its threads (checker, dm, map-io, ...; the event loop has the "
            "process's name); upstream's all carry the process's name, so they show as one.", "",
            "| paths | daemon | window | user / system s | busiest threads s |", "|---|---|---|---|---|",
            *rows]


def _show(d: dict, targets: Targets) -> list[str]:
    startup = _pairs(d.get("startup", []))
    out = ["## `show paths`, `show maps`, `show topology`", "",
           "Round trips over one connection speaking the shared protocol, ms, median (p90): idle, and during "
           "a storm of change uevents on every path (one `udevadm trigger` burst: minutes of work for udev "
           "and the daemon under TCG). The ratio compares medians.", "",
           "| paths | command | idle ours | idle theirs | ratio | storm ours | storm theirs | ratio |",
           "|---|---|---|---|---|---|---|---|"]
    by_cmd: dict[str, list[tuple[str, float | None]]] = {}
    for paths in sorted(startup):
        o = startup[paths].get("ours", {}).get("show", {})
        t = startup[paths].get("theirs", {}).get("show", {})
        for cmd in sorted(o.keys() | t.keys()):
            oc, tc = o.get(cmd, {}), t.get(cmd, {})
            ri, rs = _median_ratio(oc, tc, "idle"), _median_ratio(oc, tc, "storm")
            by_cmd.setdefault(cmd, []).extend([(f"{paths} idle", ri), (f"{paths} storm", rs)])
            out.append(f"| {paths} | {cmd} | {_ms(oc.get('idle'))} | {_ms(tc.get('idle'))} | {_r(ri)} "
                       f"| {_ms(oc.get('storm'))} | {_ms(tc.get('storm'))} | {_r(rs)} |")
    for cmd in sorted(by_cmd):
        targets.add(f"`{cmd}`, idle and storm, by paths", "<= 0.8", by_cmd[cmd])
    return out


def _median_ratio(ours: dict, theirs: dict, phase: str) -> float | None:
    return _ratio(ours.get(phase, {}).get("median_ms"), theirs.get(phase, {}).get("median_ms"))


def _events(d: dict, targets: Targets) -> list[str]:
    out: list[str] = []
    hot = _pairs(d.get("hotplug", []))
    if hot:
        rows = []
        for paths in sorted(hot):
            o, t = hot[paths].get("ours", {}).get("seconds"), hot[paths].get("theirs", {}).get("seconds")
            rows.append((str(paths), _ratio(o, t)))
            out.append(f"| {paths} | {o if o is not None else '-'} | {t if t is not None else '-'} "
                       f"| {_r(_ratio(o, t))} |")
        out = ["## Hot-plug convergence", "",
               "The daemon runs and the paths appear at once; seconds from the module load to every map. "
               "Each daemon runs with its own udev rule (ours: the compiled front asking our daemon; "
               "Debian's: `multipath -u`); the kernel's SCSI scan and udev's other rules are part of the "
               "time for both.", "",
               "| paths | pymultipathd s | multipathd s | ratio |", "|---|---|---|---|", *out]
        targets.add("hot-plug convergence, by paths", "<= 0.7", rows)
    f = d.get("failover", {})
    if f:
        o, t = f.get("ours", {}).get("seconds"), f.get("theirs", {}).get("seconds")
        targets.add("failover detection, link cut", "< 0.05", [("", _ratio(o, t))])
        out += ["", "## Failover and path-down detection", "",
                "Link cut: an iSCSI portal's link goes down under steady state; seconds until the kernel "
                "table shows the path failed.", "",
                "| pymultipathd s | multipathd s | ratio |", "|---|---|---|",
                f"| {o} | {t} | {_r(_ratio(o, t))} |"]
    down = d.get("pathdown", {})
    if down:
        o, t = down.get("ours", {}), down.get("theirs", {})
        ratio = _ratio(o.get("mean_s"), t.get("mean_s"))
        targets.add("path-down detection, links up (checker only)", "<= 1.0", [("mean", ratio)])
        out += ["", "Path down with the links up: the LUN's target port group turns ALUA \"unavailable\" "
                "(the storage behind the target is gone; TUR answers NOT READY) with no I/O running, so only "
                "a checker can see it; seconds until the kernel table shows a path failed, after the checks "
                "had backed off. Where each checker is in its interval (up to 20 s for both) decides most of "
                "each round, so each round starts at a random point of it.", "",
                "| pymultipathd s, rounds (mean) | multipathd s, rounds (mean) | ratio of means |",
                "|---|---|---|",
                f"| {', '.join(map(str, o.get('rounds', [])))} ({o.get('mean_s')}) "
                f"| {', '.join(map(str, t.get('rounds', [])))} ({t.get('mean_s')}) | {_r(ratio)} |"]
    return out


def _profiles(d: dict) -> list[str]:
    prof = [(row["paths"], row["profile"]) for row in d.get("startup", []) if row.get("profile")]
    out: list[str] = []
    for paths, p in prof:
        for phase in ("start-up", "first intervals", "steady", "storm"):
            s = p.get(phase)
            if not s:
                continue
            if "error" in s:
                out += ["", f"### Our daemon at {paths} paths, {phase}: not sampled ({s['error']})"]
                continue
            out += ["", f"### Our daemon at {paths} paths, {phase} ({s['samples']} samples in "
                    f"{s['seconds']} s, py-spy at 50 Hz, the thread holding the GIL)", "",
                    "| own samples: function (module) | % | on the stack: function (module) | % |",
                    "|---|---|---|---|"]
            for (fo, _, po), (ft, _, pt) in zip(s["own"], s["total"], strict=False):
                out.append(f"| {_md(fo)} | {po} | {_md(ft)} | {pt} |")
    return (["## Where our daemon's time goes (profiles)"] + out) if out else []


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _rootboot(r: dict) -> list[str]:
    ours, theirs = r.get("ours", {}), r.get("debian", {})

    def boot(key: str, facts: dict) -> dict[str, float]:
        m = re.search(r"([\d.]+)s \(kernel\).*?([\d.]+)s \(userspace\) = ([\d.]+)s", facts.get(key, ""))
        return dict(zip(("kernel", "userspace", "total"), map(float, m.groups()), strict=True)) if m else {}

    b, again, deb = boot("systemd_analyze_boot", ours), boot("systemd_analyze_again", ours), \
        boot("systemd_analyze_debian", theirs)

    def row(name: str, o: float | None, t: float | None, unit: str = "") -> str:
        return f"| {name} | {o if o is not None else '-'}{unit} | {t if t is not None else '-'}{unit} " \
               f"| {_r(_ratio(o, t))} |"

    mb = 1e6
    return ["## Root on multipath: initramfs size and boot time", "",
            "tests/vm/rootboot.py builds the initramfs of one root file system twice in the guest, with our "
            "initramfs-tools hook and with Debian's multipath-tools-boot 0.9.4 (both zstd, the image's "
            "`MODULES=list` plus the multipath modules), and boots that root from two SCSI paths to one disk "
            "with each.", "",
            "| | pymultipathd | multipath-tools-boot | ratio |", "|---|---|---|---|",
            row("image, compressed (bytes)", ours.get("initrd_bytes"), theirs.get("initrd_bytes")),
            row("image, unpacked (MB)", _div(ours.get("unpacked_bytes"), mb),
                _div(theirs.get("unpacked_bytes"), mb)),
            row("files in the image", ours.get("entries"), theirs.get("entries")),
            row("building the image (s)", ours.get("build_s"), theirs.get("build_s")),
            row("kernel + initramfs until the root's systemd (s)", b.get("kernel"), deb.get("kernel")),
            row("the same, next boot of ours (s)", again.get("kernel"), deb.get("kernel")),
            row("whole boot to multi-user (s)", b.get("total"), deb.get("total"))]


def _div(x: float | None, by: float) -> float | None:
    return round(x / by, 1) if x is not None else None


def _errors(results: dict) -> list[str]:
    errors = [e for part in results.values() if isinstance(part, dict) for e in part.get("errors", [])]
    return (["## Not measured, or wrong, in this run", ""] + [f"- {e}" for e in errors]) if errors else []


def _analysis(previous: str) -> list[str]:
    start, end = previous.find(ANALYSIS), previous.find(ANALYSIS_END)
    if start < 0 or end < start:
        return [ANALYSIS, "", ANALYSIS_END]
    return [previous[start:end + len(ANALYSIS_END)]]


def render(results: dict, previous: str = "") -> str:
    targets = Targets()
    d = results.get("daemon", {})
    body: list[list[str]] = []
    sections: list[tuple[dict | None, Callable[[dict, Targets], list[str]]]] = [
        (results.get("udev"), _udev), (results.get("dm"), _dm), (d or None, _startup), (d or None, _threads),
        (d or None, _show), (d or None, _events)]
    for part, fn in sections:
        if part and (fn is not _dm or "ms_per_map" in part):
            body.append(fn(part, targets))
    if d:
        body.append(_profiles(d))
    if results.get("rootboot", {}).get("ours"):
        body.append(_rootboot(results["rootboot"]))
    body.append(_errors(results))
    lines = _header(results.get("meta", {})) + ["", "## Issue 22's targets in this run", "",
                                                 *targets.render(), ""]
    for part_lines in body:
        if part_lines:
            lines += part_lines + [""]
    return "\n".join(lines + _analysis(previous)) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.vm.bench_report BENCH_JSON OUTPUT_MD", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        results = json.load(f)
    try:
        with open(argv[1]) as f:
            previous = f.read()
    except FileNotFoundError:
        previous = ""
    text = render(results, previous)
    tmp = argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, argv[1])
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
