"""Text and JSON output of control commands, in upstream's layouts (pure: state in, text out).

Scripts parse these outputs, so column names, wildcard letters, state words and JSON keys follow upstream
multipath-tools. Columns are padded to the widest cell like upstream's "pretty" output; the `raw` variants
print cells unpadded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from pymultipathd.classify import PathFacts
from pymultipathd.policy.settings import FailbackMode, MapSettings
from pymultipathd.policy.state import DaemonState, MapState, PathCheck, PathState

SettingsOf = Callable[[MapState], MapSettings]

CHK_WORDS = {"up": "ready", "down": "faulty", "ghost": "ghost", "shaky": "shaky", "pending": "i/o pending",
             "timeout": "i/o timeout", "undef": "undef", "wild": "undef", "delayed": "delayed"}
GROUP_WORDS = {"A": "active", "E": "enabled", "D": "disabled"}

DEFAULT_PATH_FORMAT = "%i %d %D %p %t %T %o %C"
DEFAULT_MAP_FORMAT = "%n %d %w"


def human_size(sectors: int) -> str:
    value, units = sectors / 2, "KMGTPE"  # KiB first
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f}{units[unit]}" if value < 10 else f"{value:.0f}{units[unit]}"


def path_dm_state(state: DaemonState, p: PathState) -> str:
    m = state.maps.get(p.map or "")
    if m is None or m.status is None:
        return "undef"
    for g in m.status.groups:
        for ps in g.paths:
            if ps.dev == p.dev_t:
                return "active" if ps.active else "failed"
    return "undef"


def next_check(p: PathState, now: float) -> str:
    if p.map is None:
        return "orphan"
    interval = max(p.interval, 1.0)
    left = max(0.0, p.next_check - now)
    done = min(interval, interval - left)
    filled = int(10 * done / interval)
    return "X" * filled + "." * (10 - filled) + f" {int(done)}/{int(interval)}"


def lun_hex(hcil: str) -> str:
    """show paths %L: the LUN as the 8-byte SCSI LUN structure in hex (the kernel's int_to_scsilun: the
    number's 16-bit words in reverse order); all ones when the LUN is not known."""
    try:
        lun = int(hcil.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return f"0x{(1 << 64) - 1:016x}"
    words = [(lun >> shift) & 0xFFFF for shift in (0, 16, 32, 48)]
    return "0x" + "".join(f"{w:04x}" for w in words)


def _or_hashes(text: str | None) -> str:
    return text or "##"


def _path_fields(state: DaemonState, now: float) -> dict[str, tuple[str, Callable[[PathState], str]]]:
    def vpr(p: PathState) -> str:  # 0.9.4 prints no revision here (later upstream versions do)
        return f"{_or_hashes(p.facts.vendor)},{_or_hashes(p.facts.product)}"

    return {
        "w": ("uuid", lambda p: p.wwid or ""),
        "i": ("hcil", lambda p: p.hcil),
        "d": ("dev", lambda p: p.dev),
        "D": ("dev_t", lambda p: p.dev_t),
        "t": ("dm_st", lambda p: path_dm_state(state, p)),
        "o": ("dev_st", lambda p: p.dev_state),
        "T": ("chk_st", lambda p: CHK_WORDS.get(p.chk_state, p.chk_state)),
        "s": ("vend/prod/rev", vpr),
        "c": ("checker", lambda p: p.checker),
        "C": ("next_check", lambda p: next_check(p, now)),
        "p": ("pri", lambda p: str(p.prio)),
        "S": ("size", lambda p: human_size(p.size)),
        "z": ("serial", lambda p: p.serial),
        "m": ("multipath", lambda p: p.map or "[orphan]"),
        "N": ("host WWNN", lambda p: p.host_wwnn),
        "n": ("target WWNN", lambda p: p.node_name or "[undef]"),
        "R": ("host WWPN", lambda p: p.host_wwpn),
        "r": ("target WWPN", lambda p: p.tgt_wwpn),
        "a": ("host adapter", lambda p: p.adapter),
        "G": ("foreign", lambda p: "--"),            # no foreign multipath libraries here
        "g": ("vpd page data", lambda p: "[undef]"),  # vendor VPD pages are not read (vpd_vendor)
        "0": ("failures", lambda p: str(p.failures)),
        "P": ("protocol", lambda p: p.facts.protocol or ""),
        "I": ("init_st", lambda p: "ok" if p.wwid else "udev-missing"),
        "L": ("LUN hex", lambda p: lun_hex(p.hcil)),
        "M": ("marginal_st", marginal_word),
    }


def marginal_word(p: PathState) -> str:
    """%M and JSON marginal_st of a path (setmarginal, or marginal_pathgroups moved it to a group apart)."""
    return "marginal" if p.marginal else "normal"


def map_revision(state: DaemonState, m: MapState) -> str:
    """show maps %e: the revision of the map's first path that has one, as upstream."""
    for p in state.paths_of(m):
        if p.facts.revision:
            return p.facts.revision
    return "##"


def failback_text(m: MapState, settings_of: SettingsOf | None, now: float) -> str:
    """As upstream: the mode's word, N for `failback N`, and "left/N" seconds while one is due."""
    if settings_of is None:
        return "-"
    fb = settings_of(m).failback
    if fb.mode is not FailbackMode.DEFERRED:
        return fb.mode.value
    if m.failback_due is None:
        return str(fb.seconds)
    return f"{max(0, round(m.failback_due - now))}/{fb.seconds}"


def _map_fields(state: DaemonState, settings_of: SettingsOf | None = None,
                now: float = 0.0) -> dict[str, tuple[str, Callable[[MapState], str]]]:
    return {
        "n": ("name", lambda m: m.name),
        "w": ("uuid", lambda m: m.wwid),
        "d": ("sysfs", lambda m: m.dm_dev),
        "N": ("paths", lambda m: str(len(m.paths))),
        "Q": ("queueing", lambda m: queueing_word(m)),
        "t": ("dm-st", lambda m: "suspended" if m.suspended else "active"),
        "S": ("size", lambda m: human_size(m.table.size if m.table else 0)),
        "f": ("features", lambda m: features_text(m)),
        "h": ("hwhandler", lambda m: hwhandler_text(m)),
        "s": ("vend/prod/rev", lambda m: f"{m.vendor},{m.product}" if m.vendor and m.product else "##,##"),
        "v": ("vend", lambda m: m.vendor or "##"),
        "p": ("prod", lambda m: m.product or "##"),
        "e": ("rev", lambda m: map_revision(state, m)),
        "G": ("foreign", lambda m: "--"),
        "g": ("vpd page data", lambda m: "[undef]"),
        "A": ("action", lambda m: m.action),
        "2": ("map_loads", lambda m: str(m.stats.map_loads)),
        "o": ("open", lambda m: str(m.open_count)),
        "F": ("failback", lambda m: failback_text(m, settings_of, now)),
        "r": ("write_prot", lambda m: "ro" if m.read_only else "rw"),
        "3": ("total_q_time", lambda m: str(int(m.queueing_time(now)))),
        "x": ("failures", lambda m: str(m.stats.map_failures)),
        "0": ("path_faults", lambda m: str(m.stats.path_faults)),
        "1": ("switch_grp", lambda m: str(m.stats.switch_grp)),
        "4": ("q_timeouts", lambda m: str(m.stats.queueing_timeouts)),
    }


def wildcards() -> str:
    """`show wildcards`: every letter the format commands accept."""
    dummy = DaemonState()
    lines = ["multipath format wildcards:"]
    lines += [f"%{k}  {v[0]}" for k, v in _map_fields(dummy).items()]
    lines += ["", "path format wildcards:"]
    lines += [f"%{k}  {v[0]}" for k, v in _path_fields(dummy, 0.0).items()]
    # what the group lines of the topology show (no command takes a group format)
    lines += ["", "pathgroup format wildcards:", "%s  selector", "%p  pri", "%t  dm_st", "%M  marginal_st"]
    return "\n".join(lines) + "\n"


def _render(fmt: str, fields: dict, items: Sequence, pretty: bool) -> str:
    """Expand %x wildcards; pretty output pads columns and adds a header row."""
    tokens: list[tuple[bool, str]] = []  # (is_field, letter-or-literal)
    i = 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            letter = fmt[i + 1]
            tokens.append((letter in fields, letter if letter in fields else fmt[i:i + 2]))
            i += 2
        else:
            tokens.append((False, fmt[i]))
            i += 1
    rows = [[fields[t][1](item) if is_f else t for is_f, t in tokens] for item in items]
    if pretty:
        header = [fields[t][0] if is_f else t for is_f, t in tokens]
        rows = [header, *rows]
        widths = [max(len(r[c]) for r in rows) if tokens[c][0] else 0 for c in range(len(tokens))]
        rows = [[cell.ljust(widths[c]) if tokens[c][0] else cell for c, cell in enumerate(r)] for r in rows]
    return "".join("".join(r).rstrip() + "\n" for r in rows)


def show_paths(state: DaemonState, fmt: str | None = None, *, raw: bool = False, now: float | None = None,
               only: Sequence[PathState] | None = None) -> str:
    now = time.monotonic() if now is None else now
    paths = list(only) if only is not None else sorted(state.listed_paths(), key=lambda p: (p.hcil, p.dev))
    if not paths:
        return ""
    return _render(fmt or DEFAULT_PATH_FORMAT, _path_fields(state, now), paths, pretty=not raw)


def show_maps(state: DaemonState, fmt: str | None = None, *, raw: bool = False,
              only: Sequence[MapState] | None = None, settings_of: SettingsOf | None = None,
              now: float | None = None) -> str:
    """`settings_of`: the maps' policy settings (for %F); `now`: the daemon's clock (loop time)."""
    maps = list(only) if only is not None else sorted(state.maps.values(), key=lambda m: m.name)
    if not maps:
        return ""
    now = time.monotonic() if now is None else now
    return _render(fmt or DEFAULT_MAP_FORMAT, _map_fields(state, settings_of, now), maps, pretty=not raw)


def queueing_word(m: MapState) -> str:
    if m.table is None:
        return "-"
    if not m.table.features.queue_if_no_path:
        return "off"
    if m.retry_ticks is not None:
        return f"{m.retry_ticks} chk"
    return "on"


def features_text(m: MapState) -> str:
    if m.table is None:
        return "0"
    words = m.table.features.words()
    return " ".join([str(len(words)), *words])


def hwhandler_text(m: MapState) -> str:
    if m.table is None or not m.table.hwhandler:
        return "0"
    words = [m.table.hwhandler, *m.table.hwhandler_args]
    return " ".join([str(len(words)), *words])


def _gone(m: MapState, dev_t: str) -> PathState:
    """A path the map's table names whose device the daemon does not know (the LUN was unmapped, the disk
    deleted): shown as upstream does, since it is what tells an administrator where the map's holders
    still send I/O."""
    return PathState(dev="-", dev_t=dev_t, facts=PathFacts(dev="-", dev_t=dev_t), map=m.name,
                     chk_state=PathCheck.DOWN, dev_state="unknown")


def _group_rows(state: DaemonState, m: MapState) -> list[tuple[str, int, str, list[PathState]]]:
    """(policy, prio, status word, paths) per group, in table order."""
    if m.table is None:
        return []
    by_dev_t = {p.dev_t: p for p in state.paths_of(m)}
    rows = []
    for gi, g in enumerate(m.table.groups):
        st = m.status.groups[gi].state if m.status and gi < len(m.status.groups) else "E"
        members = [by_dev_t.get(s.dev) or _gone(m, s.dev) for s in g.paths]
        usable = [p.prio for p in members if p.usable]
        prio = sum(usable) // len(usable) if usable else 0
        policy = " ".join([g.selector, str(len(g.selector_args)), *g.selector_args])
        rows.append((policy, prio, GROUP_WORDS.get(st, st), members))
    return rows


def topology(state: DaemonState, m: MapState) -> str:
    """`multipath -ll` style block for one map."""
    head = f"{m.name} ({m.wwid})" if m.name != m.wwid else m.name
    out = [f"{head} {m.dm_dev} {m.vendor},{m.product}"]
    size = human_size(m.table.size) if m.table else "0"
    out.append(f"size={size} features='{features_text(m)}' hwhandler='{hwhandler_text(m)}' "
               f"wp={'ro' if m.read_only else 'rw'}")
    groups = _group_rows(state, m)
    for gi, (policy, prio, word, members) in enumerate(groups):
        last_group = gi == len(groups) - 1
        out.append(f"{'`' if last_group else '|'}-+- policy='{policy}' prio={prio} status={word}")
        lead = " " if last_group else "|"
        for pi, p in enumerate(members):
            last = pi == len(members) - 1
            chk = CHK_WORDS.get(p.chk_state, p.chk_state)
            out.append(f"{lead} {'`' if last else '|'}- {p.hcil} {p.dev} {p.dev_t} "
                       f"{path_dm_state(state, p)} {chk} {p.dev_state}")
    return "\n".join(out) + "\n"


def topology_all(state: DaemonState) -> str:
    return "".join(topology(state, m) for m in sorted(state.maps.values(), key=lambda m: m.name))


def map_json(state: DaemonState, m: MapState, settings_of: SettingsOf | None = None,
             now: float = 0.0) -> dict[str, object]:
    groups = []
    for gi, (policy, prio, word, members) in enumerate(_group_rows(state, m), 1):
        groups.append({
            "selector": policy, "pri": prio, "dm_st": word, "group": gi,
            "marginal_st": "marginal" if members and all(p.marginal for p in members) else "normal",
            "paths": [{
                "dev": p.dev, "dev_t": p.dev_t, "dm_st": path_dm_state(state, p), "dev_st": p.dev_state,
                "chk_st": CHK_WORDS.get(p.chk_state, p.chk_state), "checker": p.checker, "pri": p.prio,
                "host_wwnn": p.host_wwnn, "target_wwnn": p.node_name or "[undef]", "host_wwpn": p.host_wwpn,
                "target_wwpn": p.tgt_wwpn, "host_adapter": p.adapter, "marginal_st": marginal_word(p),
            } for p in members],
        })
    return {
        "name": m.name, "uuid": m.wwid, "sysfs": m.dm_dev, "failback": failback_text(m, settings_of, now),
        "queueing": queueing_word(m), "paths": len(m.paths), "write_prot": "ro" if m.read_only else "rw",
        "dm_st": "suspended" if m.suspended else "active", "features": features_text(m),
        "hwhandler": hwhandler_text(m), "action": "", "path_faults": m.stats.path_faults, "vend": m.vendor,
        "prod": m.product, "rev": "", "switch_grp": m.stats.switch_grp, "map_loads": m.stats.map_loads,
        "total_q_time": int(m.queueing_time(now)), "q_timeouts": m.stats.queueing_timeouts,
        "path_groups": groups,
    }


def maps_json(state: DaemonState, maps: Sequence[MapState] | None = None, *, single: bool = False,
              settings_of: SettingsOf | None = None, now: float | None = None) -> str:
    maps = list(maps) if maps is not None else sorted(state.maps.values(), key=lambda m: m.name)
    now = time.monotonic() if now is None else now
    doc: dict[str, object] = {"major_version": 0, "minor_version": 1}
    if single and maps:
        doc["map"] = map_json(state, maps[0], settings_of, now)
    else:
        doc["map_count"] = len(maps)
        doc["maps"] = [map_json(state, m, settings_of, now) for m in maps]
    return json.dumps(doc, indent=3) + "\n"
