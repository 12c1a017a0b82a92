"""The built-in hardware table: upstream's data (multipath-tools 0.9.4), matched and merged as upstream does,
printed by `pymultipath -t` as upstream's `multipath -t` prints it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pymultipathd.blacklist import check
from pymultipathd.config import ConfigError, hwtable, keywords, parse_text
from pymultipathd.config.ere import compile_ere
from pymultipathd.config.load import parse_builtin_table
from pymultipathd.config.model import Config
from pymultipathd.config.render import render, render_blacklists
from tests import hwtable_compare

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_T = ROOT / "tests" / "data" / "multipath-t-0.9.4.txt"
DOC = ROOT / "docs" / "configuration.md"

# How our `-t` output may differ from Debian's `multipath -t` (0.9.4, no configuration files), shared with
# tests/vm/test_hwtable_vm.py: (section, keyword, upstream's value, ours) -> why. Each reason is also in
# docs/configuration.md ("Built-in hardware table").
KNOWN_DIFFERENCES: dict[tuple[str, str, str, str], str] = {
    ("devices", "flush_on_last_del", "yes", "always"):
        "flush_on_last_del is printed with the newer upstream spelling: pymultipathd reads 0.9.4's yes as "
        "always, the same setting",
}


def unexplained(upstream_text: str, ours_text: str) -> tuple[list[str], set[tuple[str, str, str, str]]]:
    """The differences KNOWN_DIFFERENCES does not explain, and the known ones that were seen."""
    left, seen = [], set()
    diffs = hwtable_compare.compare(hwtable_compare.parse(upstream_text), hwtable_compare.parse(ours_text))
    for d in diffs:
        key = (d.section, d.keyword or "", d.upstream or "", d.ours or "")
        if key in KNOWN_DIFFERENCES:
            seen.add(key)
        else:
            left.append(str(d))
    return left, seen


def _upstream() -> str:
    return UPSTREAM_T.read_text()


# ------------------------------------------------------------------------------------------------ the data


def test_the_data_file_is_upstreams_devices_section_verbatim():
    assert Path(hwtable.FILE).read_text() == hwtable_compare.extract(_upstream()), (
        "pymultipathd/config/hwtable.conf: regenerate it with `python -m tests.hwtable_compare extract "
        "tests/data/multipath-t-0.9.4.txt > pymultipathd/config/hwtable.conf`")


def test_every_upstream_entry_is_loaded_with_exactly_its_settings():
    upstream = hwtable_compare.parse(_upstream())["devices"]
    table = hwtable.entries()
    assert len(table) == len(upstream) == 123
    for ours, theirs in zip(table, upstream, strict=True):
        assert (ours["vendor"], ours["product"]) == (theirs.vendor, theirs.product)
        assert set(ours) - {"vendor", "product"} == set(theirs.settings)
        for kw, text in theirs.settings.items():  # typed as the keyword table types a user's value
            assert ours[kw] == keywords.lookup("device", kw).type.parse(text), (theirs.name(), kw)


def test_entries_are_distinct_and_every_pattern_compiles():
    # the loader does not compile the table's patterns (cost); this proves they would compile
    table = hwtable.entries()
    assert len({(e["vendor"], e["product"], e.get("revision")) for e in table}) == len(table)
    for e in table:
        for key in ("vendor", "product", "revision", "product_blacklist"):
            if key in e:
                compile_ere(str(e[key]))


def test_the_table_is_parsed_lazily_once():
    code = ("from pymultipathd.config import hwtable, parse_text\n"
            "from pymultipathd.blacklist import check\n"
            "cfg = parse_text('defaults {\\n polling_interval 3\\n}\\n')\n"
            "cfg.resolve('no_path_retry'); cfg.resolve('uid_attribute', wwid='3600a')\n"
            "check(cfg, devnode='sda', wwid='x')\n"
            "assert hwtable._entries is None, 'parsed without a device lookup'\n"
            "cfg.resolve('prio', vendor='NETAPP', product='LUN')\n"
            "first = hwtable.entries()\n"
            "parse_text('').resolve('prio', vendor='DGC', product='VRAID')\n"
            "assert hwtable.entries() is first\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_builtin_table_is_data_a_user_file_is_not():
    # vpd_vendor has no effect here: upstream's 3PAR entry sets it quietly, an administrator is told
    assert keywords.lookup("device", "vpd_vendor").unsupported
    assert any("vpd_vendor" in e for e in hwtable.entries())
    entry = 'devices {\n device {\n  vendor "3PARdata"\n  product "VV"\n  vpd_vendor hp3par\n }\n}\n'
    assert parse_builtin_table(entry, "hwtable.conf")[0]["vpd_vendor"] == "hp3par"
    assert [w.keyword for w in parse_text(entry, "site.conf").warnings] == ["vpd_vendor"]


@pytest.mark.parametrize("text, where", [
    ('devices {\n device {\n  vendor "X"\n  product "Y"\n  bogus 1\n }\n}\n', "hwtable.conf:5: bogus"),
    ('devices {\n device {\n  vendor "X"\n  product "Y"\n  no_path_retry sometimes\n }\n}\n',
     "hwtable.conf:5: no_path_retry"),
    ('devices {\n device {\n  vendor "X"\n }\n}\n', "hwtable.conf:2: device"),
    ('defaults {\n polling_interval 3\n}\n', "hwtable.conf:1: defaults"),
    ('devices {\n device {\n  vendor "X"\n  product "Y"\n  selector "round-robin 0"\n }\n}\n',
     "hwtable.conf:5: selector"),  # a deprecated name
])
def test_a_broken_table_is_an_error_naming_file_and_line(text, where):
    with pytest.raises(ConfigError) as exc:
        parse_builtin_table(text, "hwtable.conf")
    assert where in str(exc.value)


# ------------------------------------------------------------------------------- `-t` against upstream's


def test_t_prints_upstreams_table_and_product_blacklist():
    left, seen = unexplained(_upstream(), render(Config()))
    assert left == []
    assert seen == set(KNOWN_DIFFERENCES), "a known difference no longer happens: remove it"


def test_the_comparison_sees_a_changed_value_a_missing_and_a_moved_entry():
    ours = render(Config())
    apple = '\t\tvendor "APPLE"\n\t\tproduct "Xserve RAID"\n\t\tpath_grouping_policy '
    changed = ours.replace(apple + '"multibus"', apple + '"failover"')
    assert unexplained(_upstream(), changed)[0] == [
        "devices #2 'APPLE'/'Xserve RAID': path_grouping_policy: upstream \"multibus\", ours \"failover\""]
    dropped = ours.replace('\t\tvendor "SGI"\n\t\tproduct "Universal Xport"\n', '\t\tvendor "SGI"\n')
    assert any("blacklist #1 'SGI'/'Universal Xport'" in d for d in unexplained(_upstream(), dropped)[0])
    up = hwtable_compare.parse(_upstream())
    moved = {**up, "devices": up["devices"][1:] + up["devices"][:1]}
    assert [d.text for d in hwtable_compare.compare(up, moved)] == [
        "devices: order differs from common entry 1 on: upstream 'NVM[eE]'/'.*', ours 'APPLE'/'Xserve RAID'"]
    # quoting is formatting, not a difference
    bare = 'devices {\n device {\n vendor X\n product "Y"\n no_path_retry queue  # a comment\n }\n}\n'
    quoted = 'devices {\n device {\n vendor "X"\n product Y\n no_path_retry "queue"\n }\n}\n'
    assert hwtable_compare.parse(bare) == hwtable_compare.parse(quoted)
    other = hwtable_compare.parse(quoted.replace('"queue"', '"fail"'))
    assert [d.text for d in hwtable_compare.compare(hwtable_compare.parse(bare), other)] == [
        "devices #1 'X'/'Y': no_path_retry: upstream \"queue\", ours \"fail\""]


def test_known_differences_are_explained_in_the_docs():
    doc = DOC.read_text()
    section = " ".join(doc[doc.index("## Built-in hardware table"):].split())
    for reason in KNOWN_DIFFERENCES.values():
        assert reason in section


def test_t_reads_back_as_the_same_table():
    shown = parse_text(render(Config()), "shown.conf")
    assert render(shown) == render(Config())
    builtin, user = shown.hardware_table()
    assert builtin == [] and user == list(hwtable.entries())  # every entry re-declared: merged into it


# ------------------------------------------------------------------------------------------------ matching

DEFAULTS = Config()


def settings(cfg: Config, vendor: str, product: str, revision: str | None = None) -> dict[str, object]:
    names = ("path_grouping_policy", "path_checker", "prio", "hardware_handler", "failback", "no_path_retry",
             "features", "uid_attribute", "dev_loss_tmo", "fast_io_fail_tmo", "detect_checker")
    return {n: cfg.resolve(n, vendor=vendor, product=product, revision=revision) for n in names}


BASE = settings(DEFAULTS, "NOBODY", "NOTHING")


@pytest.mark.parametrize("vendor, product, expected", [
    ("NETAPP", "LUN C-Mode", {"path_grouping_policy": "group_by_prio", "features": "2 pg_init_retries 50",
                              "prio": "ontap", "failback": "immediate", "no_path_retry": "queue",
                              "dev_loss_tmo": "infinity"}),
    ("DGC", "VRAID", {"path_grouping_policy": "group_by_prio", "hardware_handler": "1 emc",
                      "path_checker": "emc_clariion", "prio": "emc", "failback": "immediate",
                      "no_path_retry": 60, "detect_checker": False}),
    ("HP", "HSV210", {"path_grouping_policy": "group_by_prio", "prio": "alua", "failback": "immediate",
                      "no_path_retry": 12}),
    ("IBM", "2145", {"path_grouping_policy": "group_by_prio", "prio": "alua", "failback": "immediate",
                     "no_path_retry": "queue"}),
    ("3PARdata", "VV", {"path_grouping_policy": "group_by_prio", "hardware_handler": "1 alua", "prio": "alua",
                        "failback": "immediate", "no_path_retry": 18, "fast_io_fail_tmo": 10,
                        "dev_loss_tmo": "infinity"}),
    ("LIO-ORG", "TCMU device", {"path_grouping_policy": "group_by_prio", "hardware_handler": "1 alua",
                                "prio": "alua", "failback": "immediate", "no_path_retry": 12}),
    # every matching entry counts, a later one winning: "^DF" and then "^DF600F" both match
    ("HITACHI", "DF600F", {"path_grouping_policy": "multibus", "prio": "hds", "failback": "immediate",
                           "no_path_retry": "queue"}),
    # the generic NVMe entry and the array's own
    ("NVME", "HPE Alletra", {"path_grouping_policy": "group_by_prio", "uid_attribute": "ID_WWN",
                             "path_checker": "none", "failback": "immediate", "no_path_retry": "queue"}),
    ("NVME", "dellemc-powerstore", {"path_grouping_policy": "group_by_prio", "uid_attribute": "ID_WWN",
                                    "path_checker": "none", "failback": "immediate", "no_path_retry": 3}),
    ("ATA", "QEMU HARDDISK", {}),  # no entry: the defaults
    ("Linux", "scsi_debug", {}),
])
def test_real_devices_get_the_merged_settings(vendor, product, expected):
    assert settings(DEFAULTS, vendor, product) == {**BASE, **expected}
    assert DEFAULTS.is_known_hardware(vendor=vendor, product=product) == bool(expected)


def test_the_defaults_are_what_no_entry_sets():
    assert BASE == {"path_grouping_policy": "failover", "path_checker": "tur", "prio": "const",
                    "hardware_handler": "0", "failback": "manual", "no_path_retry": "fail", "features": "0",
                    "uid_attribute": "ID_SERIAL", "dev_loss_tmo": None, "fast_io_fail_tmo": 5,
                    "detect_checker": True}


@pytest.mark.parametrize("vendor, product, excluded", [
    ("DGC", "LUNZ", "^DGC:LUNZ"),
    ("EMC", "LUNZ", "EMC:LUNZ"),
    ("IBM", "Universal Xport", "IBM:Universal Xport"),
    ("NETAPP", "Universal Xport", "(NETAPP|LSI|ENGENIO):Universal Xport"),
    ("DGC", "VRAID", None),
    ("NETAPP", "LUN", None),
])
def test_product_blacklist(vendor, product, excluded):
    verdict = check(DEFAULTS, devnode="sdb", vendor=vendor, product=product)
    assert verdict.excluded == (excluded is not None)
    if excluded:
        assert (verdict.criterion, verdict.source, verdict.pattern) == ("device", "default", excluded)


def test_show_blacklist_lists_the_tables_product_blacklist():
    text = render_blacklists(DEFAULTS)
    assert "(default rule) vendor=^DGC product=LUNZ" in text
    assert text.count("product=Universal Xport") == 8


# --------------------------------------------------------------------- the user's entries and the table

DF = 'devices {\n device {\n  vendor "HITACHI"\n  product "^DF"\n  no_path_retry 5\n }\n}\n'


def test_a_user_entry_beats_every_builtin_one_that_matches():
    cfg = parse_text('devices {\n device {\n  vendor "NETAPP"\n  product ".*"\n  prio alua\n }\n}\n')
    assert settings(cfg, "NETAPP", "LUN") == {**settings(DEFAULTS, "NETAPP", "LUN"), "prio": "alua"}


def test_a_redeclared_entry_is_merged_into_the_users_at_the_users_place():
    # upstream's factorize_hwtable: the built-in "^DF" entry is removed, its settings merged into the user's
    # entry, which sits after "^DF600F": so "^DF"'s group_by_prio now beats "^DF600F"'s multibus
    cfg = parse_text(DF)
    assert settings(cfg, "HITACHI", "DF600F") == {**settings(DEFAULTS, "HITACHI", "DF600F"),
                                                  "path_grouping_policy": "group_by_prio", "no_path_retry": 5}
    builtin, user = cfg.hardware_table()
    assert len(builtin) == 122 and user == [{"vendor": "HITACHI", "product": "^DF", "path_grouping_policy":
                                             "group_by_prio", "failback": "immediate", "prio": "hds",
                                             "no_path_retry": 5}]
    entries = hwtable_compare.parse(render(cfg))["devices"]
    assert [(e.vendor, e.product) for e in entries].count(("HITACHI", "^DF")) == 1
    assert (entries[-1].vendor, entries[-1].product, entries[-1].settings["no_path_retry"]) == \
        ("HITACHI", "^DF", "5")


def test_same_strings_only_a_different_regex_is_another_entry():
    cfg = parse_text(DF.replace('"^DF"', '"^DF.*"'))
    assert settings(cfg, "HITACHI", "DF600F")["path_grouping_policy"] == "multibus"
    assert len(cfg.hardware_table()[0]) == 123


def test_redeclared_entries_across_files_merge_in_order():
    from pymultipathd.config import parse_files

    later = DF.replace("no_path_retry 5", "prio alua")
    cfg = parse_files([("multipath.conf", DF), ("conf.d/x.conf", later)])
    assert cfg.hardware_table()[1] == [{"vendor": "HITACHI", "product": "^DF", "path_grouping_policy":
                                        "group_by_prio", "failback": "immediate", "prio": "alua",
                                        "no_path_retry": 5}]


def test_a_redeclared_entry_replaces_the_product_blacklist():
    redeclared = 'devices {\n device {\n  vendor "^DGC"\n  product "^(RAID|DISK|VRAID)"\n' \
                 '  product_blacklist "^Ctl"\n }\n}\n'
    cfg = parse_text(redeclared)
    assert not check(cfg, devnode="sdb", vendor="DGC", product="LUNZ").excluded  # as upstream
    assert check(cfg, devnode="sdb", vendor="DGC", product="Ctl").pattern == "^DGC:^Ctl"
    assert check(cfg, devnode="sdb", vendor="EMC", product="LUNZ").excluded  # another entry's
    assert 'product "LUNZ"' in render(cfg)  # EMC's still


def test_the_match_memo_is_bounded(monkeypatch):
    """Device strings come from the devices (a target may present a new vendor/product per LUN): the
    entries found per string are remembered up to MATCH_MEMO_MAX strings, then the memo starts over."""
    from pymultipathd.config import model

    monkeypatch.setattr(model, "MATCH_MEMO_MAX", 3)
    cfg = parse_text("")
    for i in range(10):
        cfg.matching_devices(f"VENDOR{i}", "PRODUCT", "")
        assert len(cfg._hardware().matches) <= 3
    assert cfg.matching_devices("NETAPP", "LUN C-Mode", "")  # lookups still find the table's entries
