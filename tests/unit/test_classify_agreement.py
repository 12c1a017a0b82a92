"""Agreement of the daemon and `pymultipath -u` (the property the 2018 dm-devel post asks for).

For random worlds, in every mode: the WWIDs the daemon would assemble, with exactly which paths, equal the
WWIDs and paths `-u` claims. `-u` is modelled as the helper runs it: first with the device alone, then with
every initialized disk only when the verdict could depend on them (udev_helper.needs_siblings). Paths in a
smart-mode wait are "maybe" on both sides, so neither claims nor assembles them.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pymultipathd.classify import (
    MODES,
    MapFacts,
    PathFacts,
    World,
    assembly,
    assembly_and_verdicts,
    classify,
    restrict,
)
from pymultipathd.cli.udev_helper import needs_siblings
from pymultipathd.config.load import parse_text
from pymultipathd.record import replace

NOW = 1_700_000_000.0
WWIDS = ["36001405aaaa", "36001405bbbb", "36001405cccc", "36001405dddd"]
CONFIGS = {m: parse_text(f"defaults {{\n find_multipaths {m}\n}}\n"
                         'blacklist {\n wwid "dddd$"\n}\n') for m in MODES}


@st.composite
def worlds(draw):
    n = draw(st.integers(1, 7))
    names = [f"sd{chr(ord('b') + i)}" for i in range(n)]
    paths = []
    for i, dev in enumerate(names):
        wwid = draw(st.sampled_from([*WWIDS, None]))
        props = {"ID_WWN": "0x1"} if draw(st.booleans()) or i else {}
        if wwid:
            props["ID_SERIAL"] = wwid
        paths.append(PathFacts(
            dev=dev, devtype=draw(st.sampled_from(["disk", "disk", "disk", "partition"])),
            dev_t=f"8:{16 * (i + 1)}", wwid=wwid, vendor="LIO-ORG", product="disk",
            protocol=draw(st.sampled_from(["scsi:iscsi", "scsi:fcp", "scsi:usb"])), properties=props,
            in_use=draw(st.booleans()), hidden=draw(st.booleans()) and draw(st.booleans()),
            released=draw(st.booleans())))
    maps = []
    for wwid in draw(st.lists(st.sampled_from(WWIDS), max_size=2, unique=True)):
        members = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        maps.append(MapFacts(f"mpath{wwid[-1]}", "mpath-" + wwid, tuple(members)))
    timers = {}
    for p in paths:
        if draw(st.booleans()):
            timers[p.dev_t] = NOW + draw(st.sampled_from([-5.0, 0.0, 3.0, 10.0]))
    return World(
        paths=tuple(paths), maps=tuple(maps),
        wwids=frozenset(draw(st.lists(st.sampled_from(WWIDS), max_size=2))),
        failed_wwids=frozenset(draw(st.lists(st.sampled_from(WWIDS), max_size=1))),
        daemon_running=True, now=NOW, timers=timers)


def udev_claims(world: World, config) -> dict[str, tuple[str, ...]]:
    claimed: dict[str, list[str]] = {}
    for p in world.paths:
        v = classify(p, replace(world, paths=(p,)), config, for_udev=True)
        if needs_siblings(v):
            v = classify(p, world, config, for_udev=True)
        if v.decision == "yes":
            # udev knows the LUN by the map holding the path, else by the path's own WWID
            held = [m.uuid[6:] for m in world.maps if m.uuid.startswith("mpath-") and p.dev in m.paths]
            claimed.setdefault(held[0] if held else p.wwid, []).append(p.dev)
    return {w: tuple(sorted(d)) for w, d in claimed.items()}


@settings(max_examples=300, deadline=None)
@given(worlds(), st.sampled_from(MODES))
def test_daemon_assembles_exactly_what_udev_claims(world, mode):
    config = CONFIGS[mode]
    assert assembly(world, config) == udev_claims(world, config)


@settings(max_examples=200, deadline=None)
@given(worlds(), st.sampled_from(MODES))
def test_maybe_only_in_smart_and_never_assembled(world, mode):
    config = CONFIGS[mode]
    assembled = {d for devs in assembly(world, config).values() for d in devs}
    for p in world.paths:
        v = classify(p, world, config, for_udev=True)
        if v.decision == "maybe":
            assert mode == "smart" and v.rule == "waiting" and v.wait_until > world.now
            assert p.dev not in assembled


@settings(max_examples=300, deadline=None)
@given(worlds(), st.sampled_from(MODES), st.sets(st.sampled_from(WWIDS), min_size=1))
def test_a_batch_classified_alone_gets_the_whole_worlds_answers(world, mode, batch):
    # the daemon classifies a uevent batch over classify.restrict(world, batch): same verdicts, same maps
    config = CONFIGS[mode]
    small = restrict(world, batch)
    full_claimed, full = assembly_and_verdicts(world, config)
    claimed, verdicts = assembly_and_verdicts(small, config)
    assert verdicts == {d: v for d, v in full.items() if d in verdicts}
    assert {w: d for w, d in claimed.items() if w in batch} == {w: d for w, d in full_claimed.items()
                                                                if w in batch}


def test_the_generator_reaches_the_interesting_rules():
    # guards the property above against a generator that only ever produces "no"
    from hypothesis import find

    for mode, rule in (("smart", "siblings"), ("smart", "waiting"), ("on", "siblings"),
                       ("strict", "map_exists"), ("greedy", "greedy"), ("smart", "timeout")):
        find(worlds(), lambda w, m=mode, r=rule: any(
            classify(p, w, CONFIGS[m], for_udev=True).rule == r for p in w.paths),
            settings=settings(max_examples=2000, deadline=None, database=None))
