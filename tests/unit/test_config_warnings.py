"""Load-time checks that name file:line: an unknown path checker or prioritizer is an error listing the valid
names; `prio ana` where SCSI paths get it is a warning (ana is the NVMe prioritizer)."""

from __future__ import annotations

import pytest

from pymultipathd.config import ConfigError, hwtable, keywords, parse_files, parse_text


@pytest.mark.parametrize("keyword, value, section", [
    ("path_checker", "turr", "defaults"),
    ("prio", "aluaa", "defaults"),
    ("path_checker", "turr", "overrides"),
    ("prio", "aluaa", "device"),
])
def test_a_misspelt_checker_or_prioritizer_is_an_error_with_file_line_and_the_valid_names(keyword, value,
                                                                                           section):
    body = f" {keyword} {value}\n"
    if section == "device":
        text = f'devices {{\n device {{\n vendor "X"\n product "Y"\n{body} }}\n}}\n'
        line = 5
    else:
        text = f"{section} {{\n{body}}}\n"
        line = 2
    with pytest.raises(ConfigError) as exc:
        parse_text(text, "site.conf")
    (message,) = exc.value.messages
    assert (message.file, message.line, message.keyword) == ("site.conf", line, keyword)
    valid = keywords.attribute(keyword).type.values  # type: ignore[attr-defined]
    assert value not in valid and all(name in message.text for name in valid)
    assert str(message).startswith(f"site.conf:{line}: {keyword}: invalid value '{value}'")


def _ana_warnings(text: str) -> list[tuple[int, str | None]]:
    warnings = parse_text(text, "site.conf").warnings
    return [(w.line, w.keyword) for w in warnings if "NVMe prioritizer" in w.text]


@pytest.mark.parametrize("text, expected", [
    ("defaults {\n prio ana\n}\n", [(2, "prio")]),
    ("defaults {\n default_prio ana\n}\n", [(2, "default_prio")]),  # the old name too
    ("overrides {\n prio ana\n}\n", [(2, "prio")]),
    ('devices {\n device {\n  vendor ".*"\n  product "X"\n  prio ana\n }\n}\n', [(5, "prio")]),
    ('devices {\n device {\n  prio ana\n  vendor "NETAPP"\n  product "LUN"\n }\n}\n', [(3, "prio")]),
    # "nvme" is not NVMe's vendor string (regexes are case sensitive)
    ('devices {\n device {\n  vendor "nvme"\n  product "X"\n  prio ana\n }\n}\n', [(5, "prio")]),
    # NVMe only: another warning (below)
    ('devices {\n device {\n  vendor "NVME"\n  product "X"\n  prio ana\n }\n}\n', []),
    # another prioritizer, or ana for one WWID's map: no warning
    ("defaults {\n prio alua\n}\n", []),
    ("multipaths {\n multipath {\n  wwid 3600a\n  prio ana\n }\n}\n", []),
])
def test_prio_ana_for_scsi_paths_warns_with_file_line(text, expected):
    assert _ana_warnings(text) == expected


@pytest.mark.parametrize("vendor", ["NVME", "^NVM[eE]$"])
def test_prio_ana_for_nvme_paths_is_refused_out_loud(vendor):
    """ana on an NVMe entry is what upstream means by it, but pymultipathd does not read the ANA log page:
    saying nothing would leave group_by_prio silently flat."""
    text = f'devices {{\n device {{\n  vendor "{vendor}"\n  product ".*"\n  prio ana\n }}\n}}\n'
    (w,) = [w for w in parse_text(text, "site.conf").warnings if "ANA log pages" in w.text]
    assert (w.line, w.keyword) == (5, "prio") and "-1" in w.text


def test_prio_ana_warning_text_and_the_value_is_kept():
    cfg = parse_text("defaults {\n prio ana\n}\n", "site.conf")
    (warning,) = cfg.warnings
    assert str(warning).startswith("site.conf:2: prio: ana is the NVMe prioritizer")
    assert "alua" in warning.text and cfg.resolve("prio") == "ana"


def test_prio_ana_warns_in_the_file_that_sets_it():
    cfg = parse_files([("multipath.conf", "defaults {\n polling_interval 3\n}\n"),
                       ("conf.d/nvme.conf", "overrides {\n prio ana\n}\n")])
    assert [(w.file, w.line) for w in cfg.warnings] == [("conf.d/nvme.conf", 2)]


def test_the_builtin_table_does_not_warn_about_prio_ana():
    from pymultipathd.config.load import parse_builtin_table

    entry = 'devices {\n device {\n  vendor ".*"\n  product "X"\n  prio ana\n }\n}\n'
    assert parse_builtin_table(entry, "hwtable.conf")[0]["prio"] == "ana"  # raises on any warning
    assert all(e.get("prio") != "ana" for e in hwtable.entries())  # 0.9.4's table sets none anyway
