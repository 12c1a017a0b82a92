"""Text and JSON output of control commands, in upstream's layouts (pure: state in, text out).

Scripts parse these outputs, so column names, wildcard letters, state words and JSON keys follow upstream
multipath-tools. Columns are padded to the widest cell like upstream's "pretty" output; the `raw` variants
print cells unpadded.

Formatting runs on the daemon's event loop: every other event waits while `show paths` of a host with a
thousand paths is made, and under emulation that once took longer than upstream's whole round trip. So a
format is parsed once (cached); a table is filled a column at a time, most columns by C attribute getters,
and laid out a row at a time by one printf-style template with the columns' widths; a path's dm state comes
from a per-map index made once per command; and indented JSON is written by a small encoder instead of the
json module's pure-Python one (json uses its C encoder only without indentation). tests/perf_show.py times
it; tests/unit/test_control_format_fast.py holds it to what the plain per-row version printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from operator import attrgetter
from typing import Any

from pymultipathd.classify import PathFacts
from pymultipathd.policy.settings import FailbackMode, MapSettings
from pymultipathd.policy.state import USABLE, DaemonState, MapState, PathCheck, PathState
from pymultipathd.record import record

SettingsOf = Callable[[MapState], MapSettings]

CHK_WORDS = {"up": "ready", "down": "faulty", "ghost": "ghost", "shaky": "shaky", "pending": "i/o pending",
             "timeout": "i/o timeout", "undef": "undef", "wild": "undef", "delayed": "delayed"}
GROUP_WORDS = {"A": "active", "E": "enabled", "D": "disabled"}

DEFAULT_PATH_FORMAT = "%i %d %D %p %t %T %o %C"
DEFAULT_MAP_FORMAT = "%n %d %w"

_BY_NAME = attrgetter("name")
_DEV, _HCIL = attrgetter("dev"), attrgetter("hcil")


@lru_cache(maxsize=256)  # LUNs come in a few sizes, and topology and %S ask for every map's or path's
def human_size(sectors: int) -> str:
    value, units = sectors / 2, "KMGTPE"  # KiB first
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f}{units[unit]}" if value < 10 else f"{value:.0f}{units[unit]}"


def path_dm_state(state: DaemonState, p: PathState) -> str:
    """A path's state in its map's last status ("undef" if not in it). One path's: for many, DmStates."""
    return _status_words(state.maps.get(p.map or "")).get(p.dev_t, "undef")


def _status_words(m: MapState | None) -> dict[str, str]:
    """dev_t -> "active"/"failed" of the paths in a map's last status (the first entry of a dev_t wins)."""
    words: dict[str, str] = {}
    if m is not None and m.status is not None:
        for g in m.status.groups:
            for ps in g.paths:
                words.setdefault(ps.dev, "active" if ps.active else "failed")
    return words


class DmStates:
    """path_dm_state for the many paths of one command: each map's status is indexed once, when the first
    of its paths is asked about, instead of scanned for every path. Made per command, so never stale."""

    __slots__ = ("_maps", "_words")

    def __init__(self, state: DaemonState) -> None:
        self._maps = state.maps
        self._words: dict[str, dict[str, str]] = {}

    def of(self, p: PathState) -> str:
        return self._of_map(p.map or "").get(p.dev_t, "undef")

    def column(self, paths: Sequence[PathState]) -> list[str]:
        """`of` each path: the same lookups in one loop, without a call per path (show paths' %t)."""
        words_of, maps, cells = self._words, self._maps, []
        for p in paths:
            name = p.map or ""
            words = words_of.get(name)
            if words is None:
                words = words_of[name] = _status_words(maps.get(name))
            cells.append(words.get(p.dev_t, "undef"))
        return cells

    def _of_map(self, name: str) -> dict[str, str]:
        words = self._words.get(name)
        if words is None:
            words = self._words[name] = _status_words(self._maps.get(name))
        return words


def next_check(p: PathState, now: float) -> str:
    """show paths %C: how far the path is through its checker interval, "orphan" outside a map."""
    return next_checks([p], now)[0]


def next_checks(paths: Sequence[PathState], now: float) -> list[str]:
    """next_check of each path, in one loop: show paths runs it for every path. max(interval, 1.0),
    max(0.0, left) and min(interval, done) are spelled out with those builtins' results (types, NaN), and
    the text of each (bar, seconds, interval) is made once: the calls and the formatting were most of it."""
    cells = []
    for p in paths:
        if p.map is None:
            cells.append("orphan")
            continue
        interval = p.interval
        if 1.0 > interval:
            interval = 1.0
        left = p.next_check - now
        if not left > 0.0:
            left = 0.0
        done = interval - left
        if not done < interval:
            done = interval
        filled = int(10 * done / interval)
        # a check due further off than its interval (the interval just shortened) fills less than nothing,
        # with as many dots more: such texts are not kept
        text = _check_text if filled >= 0 else _check_text_of
        cells.append(text(filled, int(done), int(interval)))
    return cells


def _check_text_of(filled: int, done: int, interval: int) -> str:
    return f"{'X' * filled}{'.' * (10 - filled)} {done}/{interval}"


_check_text = lru_cache(maxsize=1024)(_check_text_of)  # at most 11 bars x seconds x intervals in use


def lun_hex(hcil: str) -> str:
    """show paths %L: the LUN as the 8-byte SCSI LUN structure in hex (the kernel's int_to_scsilun: the
    number's 16-bit words in reverse order); all ones when the LUN is not known."""
    try:
        lun = int(hcil.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return f"0x{(1 << 64) - 1:016x}"
    words = [(lun >> shift) & 0xFFFF for shift in (0, 16, 32, 48)]
    return "0x" + "".join(f"{w:04x}" for w in words)


def chk_word(p: PathState) -> str:
    """A path's checker state as upstream words it (%T, topology, JSON chk_st)."""
    return CHK_WORDS.get(p.chk_state, p.chk_state)


def marginal_word(p: PathState) -> str:
    """%M and JSON marginal_st of a path (setmarginal, or marginal_pathgroups moved it to a group apart)."""
    return "marginal" if p.marginal else "normal"


@record
class Call:
    """What the cells of one command's output may read besides their own path or map."""

    state: DaemonState
    now: float                    # the daemon's clock (loop time)
    settings_of: SettingsOf | None = None


Cell = Callable[[Any], str]                         # one path's or map's text in a column
Fill = Callable[[Call, Sequence[Any]], list[str]]   # a column's cells for a command's paths or maps
Column = tuple[str, Fill]                           # the header, and how the cells are made


def _each(cell: Cell) -> Fill:
    """A column of `cell` of each path or map."""
    return lambda _call, rows: list(map(cell, rows))


def _attr(name: str) -> Fill:
    """A column of a text attribute, taken by a C getter."""
    return _each(attrgetter(name))


def _number(name: str) -> Fill:
    """A column of a number attribute, in decimal."""
    get = attrgetter(name)
    return lambda _call, rows: list(map(str, map(get, rows)))


def _text(text: str) -> Fill:
    return lambda _call, rows: [text] * len(rows)


def _or_hashes(text: str | None) -> str:
    return text or "##"


def _vpr(p: PathState) -> str:  # 0.9.4 prints no revision here (later upstream versions do)
    return f"{_or_hashes(p.facts.vendor)},{_or_hashes(p.facts.product)}"


def _next_checks(call: Call, paths: Sequence[PathState]) -> list[str]:
    return next_checks(paths, call.now)


def _dm_states(call: Call, paths: Sequence[PathState]) -> list[str]:
    return DmStates(call.state).column(paths)


def _chk_words(_call: Call, paths: Sequence[PathState]) -> list[str]:
    states = [p.chk_state for p in paths]
    return list(map(CHK_WORDS.get, states, states))  # chk_word of each, the loop in C


_PATH_COLUMNS: dict[str, Column] = {
    "w": ("uuid", _each(lambda p: p.facts.wwid or "")),
    "i": ("hcil", _attr("hcil")),
    "d": ("dev", _attr("dev")),
    "D": ("dev_t", _attr("dev_t")),
    "t": ("dm_st", _dm_states),
    "o": ("dev_st", _attr("dev_state")),
    "T": ("chk_st", _chk_words),
    "s": ("vend/prod/rev", _each(_vpr)),
    "c": ("checker", _attr("checker")),
    "C": ("next_check", _next_checks),
    "p": ("pri", _number("prio")),
    "S": ("size", _each(lambda p: human_size(p.size))),
    "z": ("serial", _attr("serial")),
    "m": ("multipath", _each(lambda p: p.map or "[orphan]")),
    "N": ("host WWNN", _attr("host_wwnn")),
    "n": ("target WWNN", _each(lambda p: p.node_name or "[undef]")),
    "R": ("host WWPN", _attr("host_wwpn")),
    "r": ("target WWPN", _attr("tgt_wwpn")),
    "a": ("host adapter", _attr("adapter")),
    "G": ("foreign", _text("--")),            # no foreign multipath libraries here
    "g": ("vpd page data", _text("[undef]")),  # vendor VPD pages are not read (vpd_vendor)
    "0": ("failures", _number("failures")),
    "P": ("protocol", _each(lambda p: p.facts.protocol or "")),
    "I": ("init_st", _each(lambda p: "ok" if p.facts.wwid else "udev-missing")),
    "L": ("LUN hex", _each(lambda p: lun_hex(p.hcil))),
    "M": ("marginal_st", _each(marginal_word)),
}


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


def _map_vpr(m: MapState) -> str:
    return f"{m.vendor},{m.product}" if m.vendor and m.product else "##,##"


def _revisions(call: Call, maps: Sequence[MapState]) -> list[str]:
    return [map_revision(call.state, m) for m in maps]


def _failbacks(call: Call, maps: Sequence[MapState]) -> list[str]:
    return [failback_text(m, call.settings_of, call.now) for m in maps]


def _queueing_times(call: Call, maps: Sequence[MapState]) -> list[str]:
    return [str(int(m.queueing_time(call.now))) for m in maps]


_MAP_COLUMNS: dict[str, Column] = {
    "n": ("name", _attr("name")),
    "w": ("uuid", _attr("wwid")),
    "d": ("sysfs", _attr("dm_dev")),
    "N": ("paths", _each(lambda m: str(len(m.paths)))),
    "Q": ("queueing", _each(queueing_word)),
    "t": ("dm-st", _each(lambda m: "suspended" if m.suspended else "active")),
    "S": ("size", _each(lambda m: human_size(m.table.size if m.table else 0))),
    "f": ("features", _each(features_text)),
    "h": ("hwhandler", _each(hwhandler_text)),
    "s": ("vend/prod/rev", _each(_map_vpr)),
    "v": ("vend", _each(lambda m: m.vendor or "##")),
    "p": ("prod", _each(lambda m: m.product or "##")),
    "e": ("rev", _revisions),
    "G": ("foreign", _text("--")),
    "g": ("vpd page data", _text("[undef]")),
    "A": ("action", _attr("action")),
    "2": ("map_loads", _number("stats.map_loads")),
    "o": ("open", _number("open_count")),
    "F": ("failback", _failbacks),
    "r": ("write_prot", _each(lambda m: "ro" if m.read_only else "rw")),
    "3": ("total_q_time", _queueing_times),
    "x": ("failures", _number("stats.map_failures")),
    "0": ("path_faults", _number("stats.path_faults")),
    "1": ("switch_grp", _number("stats.switch_grp")),
    "4": ("q_timeouts", _number("stats.queueing_timeouts")),
}


def wildcards() -> str:
    """`show wildcards`: every letter the format commands accept."""
    lines = ["multipath format wildcards:"]
    lines += [f"%{k}  {v[0]}" for k, v in _MAP_COLUMNS.items()]
    lines += ["", "path format wildcards:"]
    lines += [f"%{k}  {v[0]}" for k, v in _PATH_COLUMNS.items()]
    # what the group lines of the topology show (no command takes a group format)
    lines += ["", "pathgroup format wildcards:", "%s  selector", "%p  pri", "%t  dm_st", "%M  marginal_st"]
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=64)
def _split(fmt: str) -> tuple[tuple[str, str], ...]:
    """A format as (letter, text) pieces: "%x" gives ("x", "%x"), whether or not x is a wildcard of the
    command (one that is not stays as written); literal text gives ("", text). Cached: scripts poll with the
    same few formats, and the cache's size bounds what clients' formats can make it hold."""
    pieces: list[tuple[str, str]] = []
    literal = ""
    i = 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            if literal:
                pieces.append(("", literal))
                literal = ""
            pieces.append((fmt[i + 1], fmt[i:i + 2]))
            i += 2
        else:
            literal += fmt[i]
            i += 1
    if literal:
        pieces.append(("", literal))
    return tuple(pieces)


def _render(fmt: str, columns: dict[str, Column], call: Call, items: Sequence[Any], pretty: bool) -> str:
    """Expand %x wildcards; pretty output pads columns and adds a header row. Each column is filled at once
    for all items, then each row is one printf-style formatting of a template with the columns' widths
    (%-Ns pads as str.ljust does; str.format's parse of its template takes half as long again)."""
    template: list[str] = []  # literal text (its % doubled) and a conversion per column
    cells: list[list[str]] = []
    for letter, text in _split(fmt):
        column = columns.get(letter)
        if column is None:
            template.append(text.replace("%", "%%"))
            continue
        header, fill = column
        if pretty:
            cells.append([header, *fill(call, items)])
            template.append(f"%-{len(max(cells[-1], key=len))}s")
        else:
            cells.append(fill(call, items))
            template.append("%s")
    if not cells:  # no wildcard of this command: every row is the text as written
        line = "".join(text for _, text in _split(fmt)).rstrip() + "\n"
        return line * (len(items) + pretty)
    rows = map("".join(template).__mod__, zip(*cells, strict=True))
    return "\n".join(map(str.rstrip, rows)) + "\n"


def _by_hcil_dev(paths: list[PathState]) -> list[PathState]:
    """show paths' order, by (hcil, dev): two stable sorts on one string each compare faster than one on
    a tuple key of both, and give the same order (ties on both keep theirs in either)."""
    paths.sort(key=_DEV)
    paths.sort(key=_HCIL)
    return paths


def show_paths(state: DaemonState, fmt: str | None = None, *, raw: bool = False, now: float | None = None,
               only: Sequence[PathState] | None = None) -> str:
    now = time.monotonic() if now is None else now
    paths = list(only) if only is not None else _by_hcil_dev(state.listed_paths())
    if not paths:
        return ""
    return _render(fmt or DEFAULT_PATH_FORMAT, _PATH_COLUMNS, Call(state, now), paths, pretty=not raw)


def show_maps(state: DaemonState, fmt: str | None = None, *, raw: bool = False,
              only: Sequence[MapState] | None = None, settings_of: SettingsOf | None = None,
              now: float | None = None) -> str:
    """`settings_of`: the maps' policy settings (for %F); `now`: the daemon's clock (loop time)."""
    maps = list(only) if only is not None else sorted(state.maps.values(), key=_BY_NAME)
    if not maps:
        return ""
    now = time.monotonic() if now is None else now
    return _render(fmt or DEFAULT_MAP_FORMAT, _MAP_COLUMNS, Call(state, now, settings_of), maps,
                   pretty=not raw)


def _gone(m: MapState, dev_t: str) -> PathState:
    """A path the map's table names whose device the daemon does not know (the LUN was unmapped, the disk
    deleted): shown as upstream does, since it is what tells an administrator where the map's holders
    still send I/O."""
    return PathState(dev="-", dev_t=dev_t, facts=PathFacts(dev="-", dev_t=dev_t), map=m.name,
                     chk_state=PathCheck.DOWN, dev_state="unknown")


def _group_rows(state: DaemonState, m: MapState) -> list[tuple[str, int, str, list[PathState]]]:
    """(policy, prio, status word, paths) per group, in table order; prio is the mean of the usable paths'
    (plain loops: topology and JSON make this for every map)."""
    table = m.table
    if table is None:
        return []
    known = state.paths
    by_dev_t: dict[str, PathState] = {}
    for d in m.paths:
        p = known.get(d)
        if p is not None:
            by_dev_t[p.dev_t] = p
    status = m.status.groups if m.status is not None else ()
    rows = []
    for gi, g in enumerate(table.groups):
        st = status[gi].state if gi < len(status) else "E"
        members: list[PathState] = []
        total = usable = 0
        for s in g.paths:
            p = by_dev_t.get(s.dev) or _gone(m, s.dev)
            members.append(p)
            if p.chk_state in USABLE:
                total += p.prio
                usable += 1
        args = g.selector_args
        policy = f"{g.selector} {len(args)} {' '.join(args)}" if args else f"{g.selector} 0"
        rows.append((policy, total // usable if usable else 0, GROUP_WORDS.get(st, st), members))
    return rows


def topology(state: DaemonState, m: MapState) -> str:
    """`multipath -ll` style block for one map."""
    return _topology(state, m, DmStates(state).of)


def _topology(state: DaemonState, m: MapState, dm_state: Cell) -> str:
    head = f"{m.name} ({m.wwid})" if m.name != m.wwid else m.name
    size = human_size(m.table.size) if m.table else "0"
    out = [f"{head} {m.dm_dev} {m.vendor},{m.product}\n"
           f"size={size} features='{features_text(m)}' hwhandler='{hwhandler_text(m)}' "
           f"wp={'ro' if m.read_only else 'rw'}\n"]
    groups = _group_rows(state, m)
    last_group = len(groups) - 1
    for gi, (policy, prio, word, members) in enumerate(groups):
        out.append(f"{'`' if gi == last_group else '|'}-+- policy='{policy}' prio={prio} status={word}\n")
        lead = " " if gi == last_group else "|"
        last = len(members) - 1
        for pi, p in enumerate(members):
            chk = p.chk_state
            out.append(f"{lead} {'`' if pi == last else '|'}- {p.hcil} {p.dev} {p.dev_t} "
                       f"{dm_state(p)} {CHK_WORDS.get(chk, chk)} {p.dev_state}\n")
    return "".join(out)


def topology_all(state: DaemonState) -> str:
    dm_state = DmStates(state).of
    return "".join([_topology(state, m, dm_state) for m in sorted(state.maps.values(), key=_BY_NAME)])


def map_json(state: DaemonState, m: MapState, settings_of: SettingsOf | None = None,
             now: float = 0.0, dm_state: Cell | None = None) -> dict[str, object]:
    """`dm_state`: path_dm_state for the command's paths (a DmStates' of), when it shows several maps."""
    dm_state = dm_state or DmStates(state).of
    groups = []
    for gi, (policy, prio, word, members) in enumerate(_group_rows(state, m), 1):
        groups.append({
            "selector": policy, "pri": prio, "dm_st": word, "group": gi,
            "marginal_st": "marginal" if members and all(p.marginal for p in members) else "normal",
            "paths": [{
                "dev": p.dev, "dev_t": p.dev_t, "dm_st": dm_state(p), "dev_st": p.dev_state,
                "chk_st": chk_word(p), "checker": p.checker, "pri": p.prio,
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
    maps = list(maps) if maps is not None else sorted(state.maps.values(), key=_BY_NAME)
    now = time.monotonic() if now is None else now
    dm_state = DmStates(state).of
    doc: dict[str, object] = {"major_version": 0, "minor_version": 1}
    if single and maps:
        doc["map"] = map_json(state, maps[0], settings_of, now, dm_state)
    else:
        doc["map_count"] = len(maps)
        doc["maps"] = [map_json(state, m, settings_of, now, dm_state) for m in maps]
    return dumps_indented(doc) + "\n"


JSON_INDENT = 3  # upstream's JSON is indented by three spaces


def dumps_indented(doc: object) -> str:
    """json.dumps(doc, indent=JSON_INDENT), byte for byte, several times faster: the json module writes
    indented output with its pure-Python encoder, a generator per level, for every string and number."""
    out: list[str] = []
    _encode(doc, "\n", out)
    return "".join(out)


def _encode(value: object, newline: str, out: list[str]) -> None:
    """Append `value`'s JSON to `out`; `newline` is a line break with the current indentation. Strings,
    ints and non-empty lists and dicts (of str keys) are written here, the C string escaper doing strings as
    json does, and the str and int members of a container without a call of their own (most values are);
    any other value (bool, None, float, an empty container, a tuple) is json's own text, re-indented (its
    strings hold no raw line break, so every one in its text is a line break of the layout)."""
    if type(value) is dict and value:
        inner = newline + " " * JSON_INDENT
        lead, sep = "{" + inner, "," + inner
        for key, item in value.items():
            if type(item) is str:
                out.append(f"{lead}{encode_basestring_ascii(key)}: {encode_basestring_ascii(item)}")
            elif type(item) is int:
                out.append(f"{lead}{encode_basestring_ascii(key)}: {int.__repr__(item)}")
            else:
                out.append(f"{lead}{encode_basestring_ascii(key)}: ")
                _encode(item, inner, out)
            lead = sep
        out.append(newline + "}")
    elif type(value) is list and value:
        inner = newline + " " * JSON_INDENT
        lead, sep = "[" + inner, "," + inner
        for item in value:
            out.append(lead)
            _encode(item, inner, out)
            lead = sep
        out.append(newline + "]")
    elif type(value) is str:
        out.append(encode_basestring_ascii(value))
    elif type(value) is int:
        out.append(int.__repr__(value))
    else:
        out.append(json.dumps(value, indent=JSON_INDENT).replace("\n", newline))
