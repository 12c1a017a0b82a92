"""The classifier: every rule, every mode, the timeout semantics and REFERENCE.md's upstream examples."""

from __future__ import annotations

import pytest

from pymultipathd.classify import (
    MODES,
    RULES,
    MapFacts,
    PathFacts,
    World,
    assembled_wwids,
    assembly,
    classify,
    explain,
    normalize_mode,
    wait_seconds,
)
from pymultipathd.config.load import parse_text

NOW = 1_700_000_000.0
W1 = "36001405aaaaaaaaaaaaaaaaaaaaaaaaa"
W2 = "36001405bbbbbbbbbbbbbbbbbbbbbbbbb"


def cfg(mode: str = "strict", extra: str = "", timeout: int | None = None, sections: str = ""):
    lines = [f"find_multipaths {mode}"]
    if timeout is not None:
        lines.append(f"find_multipaths_timeout {timeout}")
    return parse_text("defaults {\n" + "\n".join(lines) + "\n" + extra + "}\n" + sections)


def disk(dev: str, wwid: str | None = W1, minor: int = 16, **kw) -> PathFacts:
    props = {"ID_SERIAL": wwid, "ID_WWN": "0x6001405"} if wwid else {"ID_WWN": "0x6001405"}
    kw.setdefault("properties", props)
    return PathFacts(dev=dev, devtype=kw.pop("devtype", "disk"), dev_t=f"8:{minor}", wwid=wwid,
                     vendor=kw.pop("vendor", "LIO-ORG"), product=kw.pop("product", "disk0"),
                     protocol=kw.pop("protocol", "scsi:iscsi"), **kw)


def world(*paths: PathFacts, **kw) -> World:
    kw.setdefault("now", NOW)
    return World(paths=paths, **kw)


def verdict(path: PathFacts, w: World, config, for_udev: bool = True) -> tuple[str, str]:
    v = classify(path, w, config, for_udev=for_udev)
    return v.decision, v.rule


SDB = disk("sdb", minor=16)
SDC = disk("sdc", minor=32)
MAP = MapFacts("mpatha", "mpath-" + W1, ("sdb",))


# ------------------------------------------------------------------------------------------ rule by rule

@pytest.mark.parametrize("mode", MODES)
def test_member_of_map_wins_in_every_mode_over_everything(mode):
    blacklisted = cfg(mode, sections="blacklist {\n devnode sdb\n}\n")
    w = world(SDB, maps=(MAP,), daemon_running=False, failed_wwids=frozenset({W1}))
    assert verdict(SDB, w, blacklisted) == ("yes", "member_of_map")


def test_a_map_with_a_foreign_uuid_is_not_multipath():
    w = world(SDB, maps=(MapFacts("vg-lv", "LVM-abc", ("sdb",)),))
    assert verdict(SDB, w, cfg("greedy", ), for_udev=False)[1] != "member_of_map"


@pytest.mark.parametrize("mode", MODES)
def test_daemon_not_running_only_matters_to_udev(mode):
    w = world(SDB, wwids=frozenset({W1}), daemon_running=False)
    assert verdict(SDB, w, cfg(mode)) == ("no", "daemon_not_running")
    assert verdict(SDB, w, cfg(mode), for_udev=False)[0] == "yes"


def test_partitions_and_unknown_devtypes_are_not_disks():
    for devtype in ("partition", None):
        p = disk("sdb1", devtype=devtype)
        assert verdict(p, world(p), cfg("greedy")) == ("no", "not_a_disk")


@pytest.mark.parametrize(("path", "sections", "extra", "rule"), [
    (disk("sdb", properties={"ID_SERIAL": W1, "ID_WWN": "x", "ID_BUS": "usb"}),
     'blacklist {\n property "ID_BUS"\n}\n', "", "blacklisted:property"),
    (disk("sdb", properties={"ID_SERIAL": W1}), "", "", "blacklisted:property_missing"),
    (disk("loop0"), "", "", "blacklisted:devnode"),
    (disk("sdb"), 'blacklist {\n devnode "^sd[b-z]"\n}\n', "", "blacklisted:devnode"),
    (disk("sdb", vendor="ACME", product="Box"),
     'blacklist {\n device {\n  vendor "ACME"\n  product "Box"\n }\n}\n', "", "blacklisted:device"),
    (disk("sdb"), 'blacklist {\n protocol "scsi:iscsi"\n}\n', "", "blacklisted:protocol"),
    (disk("sdb", protocol="scsi:usb"), "", "", "blacklisted:protocol"),
    (disk("sdb"), f'blacklist {{\n wwid "{W1}"\n}}\n', "", "blacklisted:wwid"),
])
def test_blacklist_criteria(path, sections, extra, rule):
    config = cfg("greedy", extra=extra, sections=sections)
    assert verdict(path, world(path), config) == ("no", rule)


def test_usb_allowed_by_allow_usb_devices():
    p = disk("sdb", protocol="scsi:usb")
    assert verdict(p, world(p), cfg("greedy", extra="allow_usb_devices yes\n")) == ("yes", "greedy")


def test_an_exception_beats_the_blacklist():
    sections = 'blacklist {\n devnode "^sd"\n}\nblacklist_exceptions {\n devnode "^sdb$"\n}\n'
    assert verdict(SDB, world(SDB), cfg("greedy", sections=sections)) == ("yes", "greedy")


def test_hidden_no_wwid_failed_wwid():
    hidden = disk("nvme0c0n1", hidden=True, protocol="nvme:tcp", vendor="NVME")
    assert verdict(hidden, world(hidden), cfg("greedy")) == ("no", "hidden")
    nowwid = disk("sdb", wwid=None)
    assert verdict(nowwid, world(nowwid), cfg("greedy")) == ("no", "no_wwid")
    w = world(SDB, wwids=frozenset({W1}), failed_wwids=frozenset({W1}))
    assert verdict(SDB, w, cfg("strict")) == ("no", "failed_wwid")


@pytest.mark.parametrize(("mode", "expected"), [
    ("greedy", ("no", "in_use")), ("smart", ("no", "in_use")), ("off", ("no", "in_use")),
    ("strict", ("yes", "wwids_file")), ("on", ("yes", "wwids_file")),
])
def test_in_use_protects_only_in_greedy_smart_off(mode, expected):
    busy = disk("sdb", in_use=True, holders=("md0",))
    assert verdict(busy, world(busy, wwids=frozenset({W1})), cfg(mode)) == expected


def test_greedy_and_off_claim_every_usable_path():
    assert verdict(SDB, world(SDB), cfg("greedy")) == ("yes", "greedy")
    assert verdict(SDB, world(SDB), cfg("off")) == ("yes", "greedy")


@pytest.mark.parametrize("mode", ["strict", "on", "smart"])
def test_wwids_file_and_map_exists(mode):
    assert verdict(SDB, world(SDB, wwids=frozenset({W1})), cfg(mode)) == ("yes", "wwids_file")
    other_map = MapFacts("mpatha", "mpath-" + W1, ("sdx",))
    assert verdict(SDB, world(SDB, maps=(other_map,)), cfg(mode)) == ("yes", "map_exists")


def test_strict_claims_nothing_else():
    assert verdict(SDB, world(SDB, SDC), cfg("strict")) == ("no", "strict")


def test_on_claims_siblings_and_refuses_single_paths():
    assert verdict(SDB, world(SDB, SDC), cfg("on")) == ("yes", "siblings")
    assert verdict(SDB, world(SDB), cfg("on")) == ("no", "single_path")


def test_released_only_in_smart_and_only_below_wwids_file():
    released = disk("sdb", released=True)
    other_map = MapFacts("mpatha", "mpath-" + W1, ("sdx",))
    assert verdict(released, world(released, SDC), cfg("smart")) == ("no", "released")
    assert verdict(released, world(released, maps=(other_map,)), cfg("smart")) == ("no", "released")
    assert verdict(released, world(released, wwids=frozenset({W1})), cfg("smart")) == ("yes", "wwids_file")
    assert verdict(released, world(released, SDC), cfg("on")) == ("yes", "siblings")


def test_smart_waits_then_times_out():
    config = cfg("smart", timeout=5)
    v = classify(SDB, world(SDB), config, for_udev=True)
    assert (v.decision, v.rule, v.wait_until) == ("maybe", "waiting", NOW + 5)
    running = world(SDB, timers={"8:16": NOW + 3})
    assert classify(SDB, running, config, for_udev=True).wait_until == NOW + 3
    expired = world(SDB, timers={"8:16": NOW})
    assert verdict(SDB, expired, config) == ("no", "timeout")
    assert verdict(SDB, world(SDB, SDC, timers={"8:16": NOW + 3}), config) == ("yes", "siblings")


@pytest.mark.parametrize("sibling", [
    disk("sdc", minor=32, in_use=True),
    disk("sdc", minor=32, released=True),
    disk("sdc1", minor=33, devtype="partition"),
    disk("sdc", minor=32, hidden=True),
    disk("sdc", minor=32, properties={"ID_SERIAL": W1}),  # property_missing
])
def test_smart_siblings_must_be_claimable_themselves(sibling):
    assert verdict(SDB, world(SDB, sibling), cfg("smart"))[1] == "waiting"


def test_a_path_with_another_wwid_is_no_sibling():
    assert verdict(SDB, world(SDB, disk("sdc", wwid=W2, minor=32)), cfg("on")) == ("no", "single_path")


# ------------------------------------------------------------------------------------ timeout semantics

KNOWN = 'devices {\n device {\n  vendor "ACME"\n  product "Box"\n }\n}\n'


@pytest.mark.parametrize(("timeout", "vendor", "seconds"), [
    (30, "ACME", 30.0), (30, "NOBODY", 30.0),
    (-7, "ACME", 7.0), (-7, "NOBODY", 1.0),
    (0, "ACME", 10.0), (0, "NOBODY", 1.0),
    (None, "ACME", 10.0), (None, "NOBODY", 1.0),
])
def test_find_multipaths_timeout(timeout, vendor, seconds):
    config = cfg("smart", timeout=timeout, sections=KNOWN)
    assert wait_seconds(config, vendor, "Box") == seconds
    p = disk("sdb", vendor=vendor, product="Box")
    assert classify(p, world(p), config, for_udev=True).wait_until == NOW + seconds


def test_builtin_hardware_is_known():
    nvme = disk("nvme0n1", vendor="NVME", product="Linux", protocol="nvme:tcp")
    assert wait_seconds(cfg("smart"), nvme.vendor, nvme.product) == 10.0


# --------------------------------------------------------------------------------------- modes, -i, misc

@pytest.mark.parametrize(("spelling", "mode"), [("no", "off"), ("0", "off"), ("yes", "on"), ("1", "on"),
                                                 ("smart", "smart"), ("GREEDY", "greedy")])
def test_mode_synonyms(spelling, mode):
    assert normalize_mode(spelling) == mode


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="'sometimes'"):
        normalize_mode("sometimes")


def test_force_wwids_means_strict():
    config = cfg("greedy", extra="force_wwids yes\n")
    assert verdict(SDB, world(SDB, SDC), config) == ("no", "strict")


def test_deprecated_i_forces_greedy():
    config = cfg("strict", extra="force_wwids yes\n")
    config.find_multipaths_override = "greedy"  # what load_config(find_multipaths="greedy") sets for -i
    assert verdict(SDB, world(SDB), config) == ("yes", "greedy")


def test_explain_lists_rules_in_order_and_ends_with_the_decision():
    v, steps = explain(SDB, world(SDB), cfg("smart"), for_udev=True)
    assert steps[-1].rule == v.rule == "waiting" and steps[-1].outcome == "maybe"
    assert all(s.outcome == "pass" for s in steps[:-1])
    order = [RULES.index(s.rule) for s in steps if s.rule in RULES]
    assert order == sorted(order)


def test_assembly_groups_claimed_paths_by_wwid():
    sdd = disk("sdd", wwid=W2, minor=48)
    w = world(SDB, SDC, sdd)
    assert assembly(w, cfg("on")) == {W1: ("sdb", "sdc")}
    assert assembled_wwids(w, cfg("greedy")) == {W1, W2}
    assert assembled_wwids(w, cfg("strict")) == frozenset()


# ------------------------------------------------------------- REFERENCE.md: upstream `is_path_valid` order

def test_reference_order_examples():
    # 1. a dm holder with uuid mpath-* -> member, whatever else is true
    assert verdict(disk("sdb", released=True), world(maps=(MAP,)), cfg("smart"))[0] == "yes"
    # 2. daemon unreachable beats "not a disk"
    part = disk("sdb1", devtype="partition")
    assert verdict(part, world(part, daemon_running=False), cfg("greedy"))[1] == "daemon_not_running"
    # 3. a partition is "no" before the blacklist is even consulted
    assert verdict(disk("loop0p1", devtype="partition"), world(), cfg("greedy"))[1] == "not_a_disk"
    # 5. a failed WWID is "no" even if the wwids file lists it
    w = world(SDB, wwids=frozenset({W1}), failed_wwids=frozenset({W1}))
    assert verdict(SDB, w, cfg("greedy"))[1] == "failed_wwid"
    # 6. greedy: in use beats greedy
    assert verdict(disk("sdb", in_use=True), world(), cfg("greedy"))[1] == "in_use"
    # 7. strict: wwids file and existing map claim; 8. smart -> maybe, every other mode -> no
    assert verdict(SDB, world(SDB), cfg("smart"))[0] == "maybe"
    assert verdict(SDB, world(SDB), cfg("strict"))[0] == "no"
