"""The column-at-a-time formatting of control/format.py against plain statements of what it must print.

The show commands are built for speed (tests/perf_show.py): columns filled at once, rows laid out by a
printf template, a per-map index of dm states, cached check texts, an own JSON writer. Each part is checked
here against a straightforward version of the same thing (the per-row rendering and the per-path lookups
the module had before, json.dumps) over random states and formats, including the odd ones: paths outside
any map or naming another map, maps without table or status, table paths the daemon does not know, checks
due further off than their interval, formats with braces, % and unknown letters.
"""

from __future__ import annotations

import json
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pymultipathd.classify import PathFacts
from pymultipathd.control import format as fmt
from pymultipathd.control import grammar
from pymultipathd.dm import table as dmt
from pymultipathd.policy.state import DaemonState, MapState, MapStats, PathCheck, PathState

CHECKS = [*PathCheck, "weird"]


def _path(rng: random.Random, i: int, wwid: str | None, mapname: str | None) -> PathState:
    dev, dev_t = f"sd{i}", f"{8 + i // 16}:{(i % 16) * 16}"
    facts = PathFacts(dev=dev, dev_t=dev_t, wwid=wwid, vendor=rng.choice(["LIO-ORG", None]),
                      product=rng.choice(["disk", None]), revision=rng.choice(["4.0", None]),
                      protocol=rng.choice(["scsi:fcp", None]))
    return PathState(dev=dev, dev_t=dev_t, facts=facts, hcil=rng.choice([f"{i % 3}:0:0:{i // 3}", "#:#:#:#"]),
                     size=rng.choice([0, 8, 2097152, 3 << 30]), prio=rng.choice([0, 1, 10, 50, 130]),
                     chk_state=rng.choice(CHECKS), dev_state=rng.choice(["running", "offline"]),
                     interval=rng.choice([0.5, 1, 5.0, 20.0, 7.3]), next_check=rng.uniform(985.0, 1012.0),
                     map=mapname, failures=rng.randrange(3), marginal=rng.random() < 0.2,
                     serial=rng.choice(["", "s1"]), node_name=rng.choice(["", "0x2000"]),
                     host_wwnn=rng.choice(["[undef]", "0x2001"]), host_wwpn=rng.choice(["[undef]", "0x1001"]),
                     tgt_wwpn=rng.choice(["[undef]", "0x5001"]),
                     adapter=rng.choice(["[undef]", "0000:00:04"]),
                     checker=rng.choice(["tur", "directio"]), blacklisted=rng.random() < 0.1)


def _map(rng: random.Random, name: str, members: list[PathState]) -> MapState:
    m = MapState(name=name, wwid=rng.choice([name, f"3600{name}"]), dm_dev=f"dm-{len(name)}",
                 vendor=rng.choice(["", "LIO-ORG"]), product=rng.choice(["", "disk"]),
                 open_count=rng.randrange(2), read_only=rng.random() < 0.2, suspended=rng.random() < 0.2,
                 stats=MapStats(path_faults=rng.randrange(4)), retry_ticks=rng.choice([None, 3]),
                 queueing_since=rng.choice([None, 900.0]))
    if rng.random() < 0.85 and members:
        devs = [p.dev_t for p in members] + (["65:0"] if rng.random() < 0.2 else [])  # one the daemon lost
        groups = [devs[:1], devs[1:]] if len(devs) > 1 and rng.random() < 0.7 else [devs]
        if rng.random() < 0.1:
            groups = [devs, devs]  # a device twice: the first of its status entries counts
        feats = rng.choice(["0", "1 queue_if_no_path"])
        hw = rng.choice(["0", "1 alua"])
        line = f"0 {members[0].size} multipath {feats} {hw} {len(groups)} 1 " + " ".join(
            f"round-robin 0 {len(g)} 1 " + " ".join(f"{d} 1" for d in g) for g in groups)
        m.table = dmt.parse_multipath_line(line)
        if rng.random() < 0.85:
            status = f"2 0 0 0 {len(groups)} 1 " + " ".join(
                f"{rng.choice('AED')} 0 {len(g)} 0 " + " ".join(f"{d} {rng.choice('AF')} 0" for d in g)
                for g in groups)
            m.status = dmt.parse_multipath_status(status)
    return m


def random_state(seed: int) -> DaemonState:
    rng = random.Random(seed)
    state = DaemonState()
    paths = [_path(rng, i, rng.choice([f"3600m{i // 2}", None]), None) for i in range(rng.randrange(12))]
    for p in paths:
        state.paths[p.dev] = p
    names = [f"mpath{c}" for c in "cabd"[:rng.randrange(5)]]
    for k, name in enumerate(names):
        members = paths[2 * k:2 * k + 2]
        for p in members:
            p.map = name
        m = _map(rng, name, members)
        state.set_paths(m, [p.dev for p in members])
        state.maps[name] = m
    for p in paths:  # a few paths that name another map, or none, or lost their device
        if names and rng.random() < 0.15:
            p.map = rng.choice([None, *names])
    if paths and rng.random() < 0.3:
        del state.paths[rng.choice(paths).dev]
    return state


# --- the oracles: how the module rendered and looked things up before it went for speed -------------------

def render_by_rows(fmt_text: str, columns: dict, call: fmt.Call, items: list, pretty: bool) -> str:
    tokens: list[tuple[bool, str]] = []
    i = 0
    while i < len(fmt_text):
        if fmt_text[i] == "%" and i + 1 < len(fmt_text):
            letter = fmt_text[i + 1]
            tokens.append((letter in columns, letter if letter in columns else fmt_text[i:i + 2]))
            i += 2
        else:
            tokens.append((False, fmt_text[i]))
            i += 1
    rows = [[columns[t][1](call, [item])[0] if is_f else t for is_f, t in tokens] for item in items]
    if pretty:
        rows = [[columns[t][0] if is_f else t for is_f, t in tokens], *rows]
        widths = [max(len(r[c]) for r in rows) if tokens[c][0] else 0 for c in range(len(tokens))]
        rows = [[cell.ljust(widths[c]) if tokens[c][0] else cell for c, cell in enumerate(r)] for r in rows]
    return "".join("".join(r).rstrip() + "\n" for r in rows)


def scan_dm_state(state: DaemonState, p: PathState) -> str:
    m = state.maps.get(p.map or "")
    if m is None or m.status is None:
        return "undef"
    for g in m.status.groups:
        for ps in g.paths:
            if ps.dev == p.dev_t:
                return "active" if ps.active else "failed"
    return "undef"


def plain_next_check(p: PathState, now: float) -> str:
    if p.map is None:
        return "orphan"
    interval = max(p.interval, 1.0)
    left = max(0.0, p.next_check - now)
    done = min(interval, interval - left)
    filled = int(10 * done / interval)
    return "X" * filled + "." * (10 - filled) + f" {int(done)}/{int(interval)}"


def plain_group_rows(state: DaemonState, m: MapState) -> list:
    if m.table is None:
        return []
    by_dev_t = {p.dev_t: p for p in state.paths_of(m)}
    rows = []
    for gi, g in enumerate(m.table.groups):
        st_ = m.status.groups[gi].state if m.status and gi < len(m.status.groups) else "E"
        members = [by_dev_t.get(s.dev) or fmt._gone(m, s.dev) for s in g.paths]
        usable = [p.prio for p in members if p.usable]
        prio = sum(usable) // len(usable) if usable else 0
        policy = " ".join([g.selector, str(len(g.selector_args)), *g.selector_args])
        rows.append((policy, prio, fmt.GROUP_WORDS.get(st_, st_), members))
    return rows


# --- the checks -------------------------------------------------------------------------------------------

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "data", "show_golden.json")
PATH_LETTERS = "%w %i %d %D %t %o %T %s %c %C %p %S %z %m %N %n %R %r %a %G %g %0 %P %I %L %M"
MAP_LETTERS = "%n %w %d %N %Q %t %S %f %h %s %v %p %e %G %g %A %2 %o %F %r %3 %x %0 %1 %4"
ODD = " {%d} 100%% %q {} %"


def golden_outputs(module) -> dict[str, str]:
    """What `module` (control/format.py, or an older one) prints for a few random states: every wildcard,
    odd formats, topology and JSON. tests/data/show_golden.json holds what the module printed before it was
    made fast (commit bc91363): `json.dump(golden_outputs(that_module), f, indent=1)`."""
    out = {}
    for seed in (10, 20, 68, 118):
        state = random_state(seed)
        for raw in (False, True):
            out[f"{seed} paths raw={raw}"] = module.show_paths(state, PATH_LETTERS + ODD, raw=raw, now=1000.0)
            out[f"{seed} maps raw={raw}"] = module.show_maps(state, MAP_LETTERS + ODD, raw=raw, now=1000.0)
        out[f"{seed} paths"] = module.show_paths(state, now=1000.0)
        out[f"{seed} maps"] = module.show_maps(state, now=1000.0)
        out[f"{seed} topology"] = module.topology_all(state)
        if seed in (20, 68):
            out[f"{seed} json"] = module.maps_json(state, now=1000.0)
    return out


def test_every_wildcard_prints_what_it_printed_before():
    with open(GOLDEN) as f:
        want = json.load(f)
    got = golden_outputs(fmt)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key


PIECES = ["%" + c for c in "widDtoTscCpSzmNnRraGg0PILMQfhvpeA23x14F%{}q"] + [
    " ", "  ", "|", "{", "}", "{0}", "%", "x", "\t", "%s", "%-3d"]


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10_000), pieces=st.lists(st.sampled_from(PIECES), max_size=9), raw=st.booleans(),
       now=st.sampled_from([0.0, 995.5, 1000.0, 1e4]))
def test_columns_at_once_print_what_rows_one_by_one_printed(seed, pieces, raw, now):
    state = random_state(seed)
    text = "".join(pieces)
    paths = fmt._by_hcil_dev(state.listed_paths())
    maps = sorted(state.maps.values(), key=lambda m: m.name)
    settings_of = None  # %F's settings come from the daemon's core; "-" without
    for columns, items in ((fmt._PATH_COLUMNS, paths), (fmt._MAP_COLUMNS, maps)):
        if not items:
            continue
        call = fmt.Call(state, now, settings_of)
        assert fmt._render(text, columns, call, items, not raw) == render_by_rows(text, columns, call, items,
                                                                                     not raw)
    if paths:
        assert fmt.show_paths(state, text or None, raw=raw, now=now) == render_by_rows(
            text or fmt.DEFAULT_PATH_FORMAT, fmt._PATH_COLUMNS, fmt.Call(state, now), paths, not raw)


def test_show_paths_order_is_hcil_then_dev():
    rng = random.Random(7)
    state = DaemonState()
    for i in rng.sample(range(40), 40):
        p = _path(rng, i, None, None)
        p.hcil, p.blacklisted = f"0:0:0:{i % 3}", False
        state.paths[p.dev] = p
    paths = fmt._by_hcil_dev(state.listed_paths())
    assert paths == sorted(state.listed_paths(), key=lambda p: (p.hcil, p.dev))
    assert paths != sorted(state.listed_paths(), key=lambda p: p.hcil)  # the dev order is tested too


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_per_map_index_of_dm_states_is_the_status_scan(seed):
    state = random_state(seed)
    paths = list(state.paths.values())
    rng = random.Random(seed)
    for p in paths:
        if rng.random() < 0.3:
            p.dev_t = "65:0"  # a device a map's table names that the daemon lost and found again
    want = [scan_dm_state(state, p) for p in paths]
    assert fmt.DmStates(state).column(paths) == want
    assert [fmt.DmStates(state).of(p) for p in paths] == want
    assert [fmt.path_dm_state(state, p) for p in paths] == want


@settings(max_examples=300, deadline=None)
@given(interval=st.one_of(st.floats(-5, 100), st.integers(-5, 100)), due=st.floats(-200, 200),
       now=st.floats(0, 1e6), orphan=st.booleans())
def test_next_check_texts_are_the_formula(interval, due, now, orphan):
    # a check due further off than its interval draws more than ten dots, as before: so bounded here
    p = PathState(dev="sda", dev_t="8:0", facts=PathFacts(dev="sda", dev_t="8:0"), interval=interval,
                  next_check=now + due, map=None if orphan else "mpatha")
    assert fmt.next_checks([p, p], now) == [plain_next_check(p, now)] * 2
    assert fmt.next_check(p, now) == plain_next_check(p, now)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_topology_and_json_over_the_group_rows_as_before(seed):
    state = random_state(seed)
    for m in state.maps.values():
        rows = fmt._group_rows(state, m)
        assert [r[:3] for r in rows] == [r[:3] for r in plain_group_rows(state, m)]
        def who(rows):
            return [[(p.dev, p.dev_t, p.chk_state, p.dev_state) for p in r[3]] for r in rows]

        assert who(rows) == who(plain_group_rows(state, m))
        block = fmt.topology(state, m)
        for p in (p for r in rows for p in r[3]):
            assert f" {p.hcil} {p.dev} {p.dev_t} {scan_dm_state(state, p)} " in block
    maps = sorted(state.maps.values(), key=lambda m: m.name)
    assert fmt.topology_all(state) == "".join(fmt.topology(state, m) for m in maps)
    doc = json.loads(fmt.maps_json(state, now=1000.0))
    assert doc["maps"] == [fmt.map_json(state, m, None, 1000.0) for m in maps]
    assert fmt.maps_json(state, now=1000.0) == json.dumps(json.loads(fmt.maps_json(state, now=1000.0)),
                                                          indent=3) + "\n"


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=6))
JSON_DOCS = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(doc=JSON_DOCS)
def test_indented_json_is_json_dumps_byte_for_byte(doc):
    assert fmt.dumps_indented(doc) == json.dumps(doc, indent=fmt.JSON_INDENT)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab %\t\n\u00a0\u2003x")), max_size=30))
def test_a_command_without_quotes_splits_as_the_quoting_splitter_does(text):
    # the trailing "" sends the same text through the splitter's character loop, adding one empty word
    assert grammar.split_words(text) == grammar.split_words(text + ' ""')[:-1]
