"""No inert setting: every multipath.conf keyword takes effect somewhere, or says why it does not.

The keyword table (pymultipathd/config/keywords.py) records for each keyword either `effect` (where the code
acts on it, and the tests that prove it) or `unsupported` (why it has no effect here). This file holds the
table to the code: a keyword with neither fails, a claimed effect the named code does not read fails, and an
"unsupported" keyword the code does read fails (then it takes effect: say where). It also tests what an
unsupported keyword does to an administrator: a load warning naming file, line and keyword, and a mark in
`pymultipath -t`. Last, docs/configuration.md's table of effects is this table's: when it is stale,
`.venv/bin/python tests/unit/test_keyword_effects.py` prints the section to paste.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

from pymultipathd.config import hwtable, keywords, parse_text
from pymultipathd.config.keywords import NO_EFFECT
from pymultipathd.config.render import format_value, render

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "pymultipathd"
CONFIG = PKG / "config"

# the keywords as the table lists them, a name with the sections it has there (wwid, vendor, product twice)
ENTRIES = [pytest.param(kw, id=f"{kw.name}@{'+'.join(sorted(kw.sections))}") for kw in keywords.KEYWORDS]
ACTIVE = [p for p in ENTRIES if not p.values[0].ignored]
EFFECTIVE = [p for p in ACTIVE if p.values[0].effect]
UNSUPPORTED = [p for p in ACTIVE if p.values[0].unsupported and not p.values[0].synonym_of]


# ------------------------------------------------------------------------------------- reading the code


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def references(node: ast.AST, name: str) -> bool:
    """Does the code (not its comments or docstrings) use `name`: a string "name", an attribute .name or a
    keyword argument name=...?"""
    skip = _docstrings(node)
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and n.value == name and id(n) not in skip:
            return True
        if isinstance(n, ast.Attribute) and n.attr == name:
            return True
        if isinstance(n, ast.keyword) and n.arg == name:
            return True
    return False


def strings(node: ast.AST, name: str) -> list[int]:
    """Lines where the code (not a docstring) has the string "name": resolve("name"), x["name"],
    seconds("name"), resolve("name" if ... else ...), a tuple of names looked up in a loop."""
    skip = _docstrings(node)
    return sorted(n.lineno for n in ast.walk(node)
                  if isinstance(n, ast.Constant) and n.value == name and id(n) not in skip)


# The same word used for something other than the keyword's value (file relative to pymultipathd/).
NOT_THE_KEYWORD = {
    ("wwids_file", "classify.py"): "the name of the classifier's rule about the wwids file",
    ("wwids_file", "locations.py"): "the location's name; PYMULTIPATH_WWIDS sets it",
    ("bindings_file", "locations.py"): "the location's name; PYMULTIPATH_BINDINGS sets it",
    ("retain_attached_hw_handler", "dm/table.py"): "the device-mapper feature word of a table",
}


def outside_config() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if CONFIG not in p.parents)


@functools.cache
def config_methods() -> dict[str, ast.FunctionDef]:
    """The Config class's methods (pymultipathd/config/model.py): accessors that read keywords for others."""
    model = _tree(CONFIG / "model.py")
    cls = next(n for n in model.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def defines(path: Path, name: str) -> bool:
    for n in ast.walk(_tree(path)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name:
            return True
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
            return True
    return False


# ------------------------------------------------------------------------------------ reading the claims

_FILE = re.compile(r"([\w/]+\.py)")
_NAMED = re.compile(r"([\w/]+\.py) ((?:[A-Za-z_]\w*\.)?[A-Za-z_]\w*)\b")
_ACCESSOR = re.compile(r"\bConfig\.(\w+)")


def claim(kw: keywords.Keyword) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """An `effect` read: (source files under pymultipathd/, Config accessors, test files under tests/,
    (file, function) pairs it names)."""
    assert kw.effect is not None
    where, _, tests = kw.effect.partition("tests:")
    return (_FILE.findall(where), _ACCESSOR.findall(where), _FILE.findall(tests),
            [(f, name.rpartition(".")[2]) for f, name in _NAMED.findall(where)])


# ---------------------------------------------------------------------------------------- the table itself


@pytest.mark.parametrize("kw", ENTRIES)
def test_every_keyword_takes_effect_or_says_why_not(kw):
    if kw.ignored:  # accepted with a warning that says the value is ignored (the deprecated ones)
        assert kw.deprecated and "ignored" in kw.deprecated and not kw.effect and not kw.unsupported
        return
    assert bool(kw.effect) != bool(kw.unsupported), f"{kw.name}: give exactly one of effect and unsupported"
    if kw.synonym_of:
        target = keywords.attribute(kw.synonym_of)
        assert (kw.effect, kw.unsupported) == (target.effect, target.unsupported)
    for text in (kw.effect, kw.unsupported):
        assert text is None or ("\n" not in text and text.strip() == text and text)


@pytest.mark.parametrize("kw", EFFECTIVE)
def test_a_claimed_effect_is_in_the_code_it_names(kw):
    sources, accessors, tests, named = claim(kw)
    assert sources, f"{kw.name}: effect names no file under pymultipathd/"
    for f in sources:
        assert (PKG / f).is_file(), f"{kw.name}: no such file pymultipathd/{f}"
    for f, name in named:  # "daemon/core.py Core._friendly_prefix": the function is still there
        assert defines(PKG / f, name), f"{kw.name}: pymultipathd/{f} defines no {name}"
    for name in accessors:
        assert name in config_methods(), f"{kw.name}: Config has no method {name}"
    outside = [PKG / f for f in sources if CONFIG not in (PKG / f).parents]
    # read where it says: the code named uses the keyword, or a Config accessor that reads it and that
    # code calls (Config.uid_attribute_for reads uid_attrs for paths/facts.py)
    direct = [p for p in outside if references(_tree(p), kw.canonical)]
    through = [a for a in accessors if references(config_methods()[a], kw.canonical)
               and any(references(_tree(p), a) for p in outside)]
    assert direct or through, (f"{kw.name}: none of {sources} uses it, nor calls a Config accessor "
                               f"({accessors}) that reads it: is the effect gone?")
    for f in tests:
        path = ROOT / "tests" / f
        assert path.is_file(), f"{kw.name}: no such test tests/{f}"
        # the name as a word, also right after a "\t" or "\n" escape of a configuration text in the test
        word = rf"(?:(?<!\w)|(?<=\\[tn])){re.escape(kw.canonical)}(?!\w)"
        assert re.search(word, path.read_text()), f"tests/{f} never sets {kw.name}"


@pytest.mark.parametrize("kw", EFFECTIVE)
def test_a_keyword_that_takes_effect_appears_outside_the_config_package(kw):
    accessors = [a for a in claim(kw)[1] if references(config_methods()[a], kw.canonical)]
    text = [p.read_text() for p in outside_config()]
    found = [t for t in text if re.search(rf"\b{re.escape(kw.canonical)}\b", t)]
    called = [a for a in accessors if any(re.search(rf"\.{a}\(", t) for t in text)]
    assert found or called, f"{kw.name}: nothing outside pymultipathd/config mentions it"


@pytest.mark.parametrize("kw", UNSUPPORTED)
def test_a_keyword_marked_unsupported_is_read_nowhere(kw):
    where = [f"{p.relative_to(ROOT)}:{line}" for p in outside_config() for line in strings(_tree(p), kw.name)
             if (kw.name, str(p.relative_to(PKG))) not in NOT_THE_KEYWORD]
    # nor through a Config accessor the rest of the code calls
    text = "".join(p.read_text() for p in outside_config())
    where += [f"Config.{name}" for name, fn in config_methods().items()
              if name != "resolve" and references(fn, kw.name) and re.search(rf"\.{name}\(", text)]
    assert not where, (f"{kw.name} is marked unsupported ({kw.unsupported}) but read at {where}: "
                       "it takes effect, so record where (effect=...) instead")


def test_the_guards_see_what_they_should():
    # the AST readers find the reads of the code as it is written today
    settings = _tree(PKG / "policy" / "settings.py")
    assert strings(settings, "failback") and not strings(settings, "rr_weight")
    assert strings(ast.parse('x = resolve("a" if b else "c")\n'), "c") == [1]
    assert references(config_methods()["uid_attribute_for"], "uid_attrs")
    assert not references(ast.parse('"""failback"""\n# failback\n'), "failback")


# -------------------------------------------------------------------- what the administrator is told


def _unsupported(section: str) -> tuple[str, str] | None:
    """A keyword of `section` that has no effect here, with its built-in value as text (what to write);
    None once every keyword of the section takes effect."""
    for kw in keywords.attributes(section):
        if kw.unsupported and not kw.deprecated and kw.default is not None and not callable(kw.default):
            return kw.name, kw.type.fmt(kw.default)
    return None


SECTIONS = ("defaults", "device", "overrides", "multipath")
CHOSEN = {sec: _unsupported(sec) for sec in SECTIONS}


def _site_conf() -> tuple[str, dict[str, int]]:
    """A file setting one unsupported keyword in each section that has one, and the line of each."""
    layout = ["defaults {", "polling_interval 3", "defaults", "}",
              "devices {", "device {", 'vendor "ACME"', 'product "Box"', "device", "}", "}",
              "overrides {", "overrides", "}",
              "multipaths {", "multipath {", "wwid 3600a", "multipath", "}", "}"]
    lines: list[str] = []
    where: dict[str, int] = {}
    for item in layout:
        if item in SECTIONS:  # the place of that section's unsupported keyword
            got = CHOSEN[item]
            if got is None:
                continue
            where[item] = len(lines) + 1
            item = f"{got[0]} {got[1]}"
        lines.append(item)
    return "\n".join(lines) + "\n", where


# Not a skip: once every keyword takes effect these tests have nothing to refuse, and the refusal itself would
# go untested; they fail to say so.
ALL_EFFECTIVE = "no keyword without effect is left: test the refusal with a keyword marked unsupported for it"


def test_an_unsupported_keyword_in_a_file_warns_with_file_line_and_why():
    text, where = _site_conf()
    if not where:
        pytest.fail(ALL_EFFECTIVE)
    cfg = parse_text(text, "site.conf")
    expected = []
    for sec, line in sorted(where.items(), key=lambda item: item[1]):
        name = CHOSEN[sec][0]
        expected.append(("site.conf", line, name, f"{NO_EFFECT}: {keywords.lookup(sec, name).unsupported}"))
    assert [(w.file, w.line, w.keyword, w.text) for w in cfg.warnings] == expected
    first = cfg.warnings[0]
    assert str(first) == f"site.conf:{first.line}: {first.keyword}: no effect in pymultipathd: " + (
        keywords.attribute(first.keyword).unsupported)
    # accepted all the same (upstream's files keep loading), and kept
    if "overrides" in where:
        assert CHOSEN["overrides"][0] in cfg.overrides


def test_the_warning_names_the_file_and_line_in_a_conf_d_file(tmp_path):
    from pymultipathd.config import load_config

    got = CHOSEN["defaults"]
    if got is None:
        pytest.fail(ALL_EFFECTIVE)
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "10-site.conf").write_text(f"defaults {{\n\tpolling_interval 3\n\t{got[0]} {got[1]}\n}}\n")
    cfg = load_config(str(tmp_path / "multipath.conf"), str(confd))
    assert [str(w) for w in cfg.warnings] == [
        f"{confd / '10-site.conf'}:3: {got[0]}: {keywords.attribute(got[0]).no_effect()}"]


def _a_value(kw: keywords.Keyword) -> str:
    """A valid value of a keyword, as text."""
    if isinstance(kw.type, keywords.Path):
        return "/var/lib/multipath/file"
    target = keywords.attribute(kw.canonical)
    default = None if callable(target.default) else target.default
    return kw.type.fmt(default) if default is not None else "1"


def test_deprecated_and_without_effect_is_one_warning():
    # a synonym of an unsupported keyword, a deprecated file location: the deprecation, then why
    old = [kw for kw in keywords.KEYWORDS if kw.deprecated and kw.unsupported and "defaults" in kw.sections]
    if not old:
        pytest.fail("no deprecated keyword without effect is left: test the single warning with one marked "
                    "for the test")
    text = "defaults {\n" + "".join(f" {kw.name} {_a_value(kw)}\n" for kw in old) + "}\n"
    cfg = parse_text(text, "old.conf")
    assert [(w.line, w.keyword, w.text) for w in cfg.warnings] == [
        (i, kw.name, f"{kw.deprecated}; {NO_EFFECT}: {kw.unsupported}") for i, kw in enumerate(old, start=2)]


def test_ignored_deprecated_keywords_keep_their_one_warning():
    cfg = parse_text("defaults {\n udev_dir /dev\n}\n", "old.conf")
    said = [(w.keyword, w.text) for w in cfg.warnings]
    assert said == [("udev_dir", "not supported; the value is ignored")]


def test_supported_keywords_and_the_hardware_tables_values_do_not_warn():
    cfg = parse_text('defaults {\n polling_interval 3\n checker "directio"\n}\n'
                     'devices {\n device {\n vendor "PURE"\n product "FlashArray"\n no_path_retry 5\n }\n}\n')
    assert cfg.warnings == []
    from pymultipathd.config.load import parse_builtin_table
    from pymultipathd.config.model import Config

    # the hardware table's values are nobody's writing: no warning, whatever they set (its loader raises on
    # anything that would be a warning in a user's file, no-effect keywords apart) ...
    text = Path(hwtable.FILE).read_text()
    unsupported = {k for e in parse_builtin_table(text, hwtable.FILE) for k in e
                   if keywords.lookup("device", k).unsupported}
    assert unsupported, "the table sets no keyword without effect: this test proves nothing"
    assert parse_text("").warnings == [] and Config().resolve("prio", vendor="3PARdata", product="VV")
    # ... but the same entries written by an administrator warn about exactly those keywords
    assert {w.keyword for w in parse_text(text, "site.conf").warnings} == unsupported


def test_the_udev_helper_path_still_gets_the_table_as_plain_data():
    # the -u path imports keywords.py: the new fields are strings, nothing to import or compute
    assert all(isinstance(kw.effect or kw.unsupported or "", str) for kw in keywords.KEYWORDS)


# ----------------------------------------------------------------------------------- `pymultipath -t`


def _marked(kw_name: str) -> str:
    return f"  # {NO_EFFECT}: {keywords.attribute(kw_name).unsupported}"


def _value(sec: str) -> str:
    """The line `-t` prints for the unsupported keyword chosen for `sec`, without its mark."""
    name, text = CHOSEN[sec]
    kw = keywords.lookup(sec, name)
    assert kw is not None
    return f"{name} {format_value(kw.type.parse(text), kw.type)}"


def test_t_marks_what_has_no_effect_and_comments_out_built_in_values():
    text, where = _site_conf()
    out = render(parse_text(text, "site.conf"))
    # what the files set: printed, marked
    for sec, indent in (("defaults", "\t"), ("device", "\t\t"), ("overrides", "\t"), ("multipath", "\t\t")):
        if sec in where:
            assert f"{indent}{_value(sec)}{_marked(CHOSEN[sec][0])}\n" in out
    assert "\tpolling_interval 3\n" in out  # what takes effect carries no mark
    defaults = out[:out.index("\n}\n")].splitlines()[1:]
    assert defaults
    for line in defaults:  # every line of the defaults section: marked if and only if it has no effect
        kw = keywords.lookup("defaults", line.lstrip("\t# ").split()[0])
        assert kw is not None
        if kw.unsupported:
            assert line.endswith(_marked(kw.name)), line
            # a built-in value nobody set is commented out, with the same mark
            assert line.startswith("\t# ") == (kw.name != (CHOSEN["defaults"] or ("",))[0]), line
        else:
            assert NO_EFFECT not in line and not line.startswith("\t#"), line
    # the hardware table's entries are printed whole (they read back as the same entries), values marked
    for entry in hwtable.entries():
        for k in entry:
            kw = keywords.lookup("device", k)
            if kw is not None and kw.unsupported:
                assert f"\t\t{k} {format_value(entry[k], kw.type)}{_marked(k)}\n" in out


def test_t_output_reads_back_with_the_same_configuration_and_warnings():
    cfg = parse_text(_site_conf()[0], "site.conf")
    again = parse_text(render(cfg), "shown.conf")  # no ConfigError: the marks are comments
    assert again.overrides == cfg.overrides and again.multipaths == cfg.multipaths
    assert cfg.devices[0] in again.devices
    # every default is printed, but those without effect only as far as the file set them
    assert {k: v for k, v in again.defaults.items() if k in cfg.defaults} == cfg.defaults
    assert all(k in cfg.defaults or not keywords.attribute(k).unsupported for k in again.defaults)
    # so it warns as the file did, and for the hardware table's entries, printed whole
    hardware = [k for e in hwtable.entries() for k in e if keywords.lookup("device", k).unsupported]
    assert sorted(w.keyword for w in again.warnings) == sorted([w.keyword for w in cfg.warnings] + hardware)
    changed = parse_text(render(cfg, changed_only=True), "changed.conf")
    assert {w.keyword for w in changed.warnings} <= {w.keyword for w in cfg.warnings}


def test_T_marks_the_files_values_and_comments_nothing_out():
    text, where = _site_conf()
    out = render(parse_text(text), changed_only=True)
    for sec, indent in (("device", "\t\t"), ("overrides", "\t"), ("multipath", "\t\t")):
        if sec in where:  # (the defaults one is set to its built-in value: -T leaves it out)
            assert f"{indent}{_value(sec)}{_marked(CHOSEN[sec][0])}\n" in out
    assert out.count(NO_EFFECT) == len(where) - ("defaults" in where) and "\t# " not in out


# ------------------------------------------------------------------- the effects, proved one by one
# For keywords whose effect no other test shows from a configuration file to the code that acts on it.


def _resolver(text: str, wwid: str = "3600a", vendor: str = "ACME", product: str = "Box"):
    cfg = parse_text(text)
    return lambda kw: cfg.resolve(kw, wwid=wwid, vendor=vendor, product=product)


def _entry(line: str) -> str:
    return f"multipaths {{\n multipath {{\n  wwid 3600a\n  {line}\n }}\n}}\n"


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("defaults {\n polling_interval 7\n}\n", "polling_interval", 7.0),
        ("defaults {\n max_polling_interval 60\n}\n", "max_polling_interval", 60.0),
        ("defaults {\n checker_timeout 12\n}\n", "checker_timeout", 12.0),
        (_entry("flush_on_last_del always"), "flush_on_last_del", "always"),
        (_entry("deferred_remove yes"), "deferred_remove", True),
        (_entry("failback 15"), "failback", "15"),
    ],
)
def test_map_settings_follow_the_file(text, field, value):
    from pymultipathd.policy.settings import map_settings

    def shown(resolve):
        got = getattr(map_settings(resolve), field)
        return str(got) if field == "failback" else getattr(got, "value", got)

    assert shown(_resolver(text)) == value and shown(_resolver("")) != value


@pytest.fixture
def sysfs(monkeypatch):
    """The sysfs reads of topology.path_state, answered: an ALUA path (access state active/optimized)."""
    from pymultipathd import topology
    from pymultipathd.paths import prio, sysinfo

    state = {"access": "active/optimized"}
    for name, value in (("hcil", "3:0:0:1"), ("target_node_name", "t"), ("size_sectors", 8),
                        ("unit_serial", "s"), ("dev_state", "running")):
        monkeypatch.setattr(sysinfo, name, lambda dev, devpath=None, v=value: v)
    monkeypatch.setattr(sysinfo, "access_state", lambda dev: state["access"])
    monkeypatch.setattr(prio, "priority", lambda name, dev, args="", timeout=30.0, read=None: 1)
    return topology, state


def _path(topology, text: str):
    from pymultipathd.classify import PathFacts

    f = PathFacts(dev="sdb", dev_t="8:16", wwid="3600a", vendor="ACME", product="Box")
    return topology.path_state(f, _resolver(text), None)


def test_path_checker_and_detect_checker(sysfs):
    topology, state = sysfs
    conf = "defaults {\n path_checker directio\n%s}\n"
    assert _path(topology, conf % "").checker == "tur"  # detect_checker yes: ALUA paths get tur
    assert _path(topology, conf % " detect_checker no\n").checker == "directio"
    state["access"] = ""
    assert _path(topology, conf % "").checker == "directio"


def test_prio_and_detect_prio(sysfs):
    topology, state = sysfs
    assert _path(topology, "defaults {\n prio alua\n}\n").prio_name == "sysfs"  # detect_prio yes
    assert _path(topology, "defaults {\n prio alua\n detect_prio no\n}\n").prio_name == "alua"
    state["access"] = ""
    assert _path(topology, "defaults {\n prio alua\n}\n").prio_name == "alua"
    assert _path(topology, "").prio_name == "const"


def test_prio_args_reach_the_configured_prioritizer_only(sysfs):
    topology, state = sysfs
    state["access"] = ""
    conf = 'defaults {\n prio %s\n prio_args "devname sdb 7"\n detect_prio no\n}\n'
    p = _path(topology, conf % "weightedpath")
    assert (p.prio_name, p.prio_args) == ("weightedpath", "devname sdb 7")
    assert _path(topology, conf % "const").prio_args == "devname sdb 7"
    state["access"] = "active/optimized"  # detect_prio picks sysfs: the arguments were not written for it
    p = _path(topology, conf.replace(" detect_prio no\n", "") % "weightedpath")
    assert (p.prio_name, p.prio_args) == ("sysfs", "")


def test_polling_interval_is_a_new_paths_first_interval(sysfs):
    topology, _ = sysfs
    assert _path(topology, "defaults {\n polling_interval 9\n}\n").interval == 9.0


def _core(text: str):
    from pymultipathd.daemon.core import Core

    return Core(parse_text(text), ctl=None)


def test_user_friendly_names_alias_prefix_and_a_multipath_alias():
    cases = [
        ("", None),
        ("defaults {\n user_friendly_names yes\n}\n", "mpath"),
        ("defaults {\n user_friendly_names yes\n alias_prefix disk\n}\n", "disk"),
        ("defaults {\n user_friendly_names yes\n}\nmultipaths {\n multipath {\n  wwid 3600a\n"
         "  alias data\n }\n}\n", None),
    ]
    for text, prefix in cases:
        core = _core(text)
        try:
            assert core._friendly_prefix("3600a", core.resolver("3600a", None, None)) == prefix, text
        finally:
            core.runner.close()
    core = _core("multipaths {\n multipath {\n  wwid 3600a\n  alias data\n }\n}\n")
    try:
        assert core.alias_for("3600a", core.resolver("3600a", None, None)) == "data"
        assert core.alias_for("3600b", core.resolver("3600b", None, None)) == "3600b"
    finally:
        core.runner.close()


def test_uid_attrs_picks_the_wwid_property_by_device_name(tmp_path, monkeypatch):
    from sysfs_tree import Tree

    from pymultipathd.paths import facts

    tree = Tree(tmp_path)
    for k, v in tree.env().items():
        monkeypatch.setenv(k, v)
    tree.disk("sdb", "8:16", "36001405aaaa", props={"ID_OTHER": "3600xyz"})
    assert facts.path_facts("sdb", parse_text("")).wwid == "36001405aaaa"
    assert facts.path_facts("sdb", parse_text('defaults {\n uid_attrs "sd:ID_OTHER"\n}\n')).wwid == "3600xyz"
    assert facts.path_facts("sdb", parse_text('defaults {\n uid_attrs "nvme:ID_OTHER"\n}\n')).wwid == (
        "36001405aaaa")


# ------------------------------------------------------------------------------ docs/configuration.md

DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- keyword effects: generated from pymultipathd/config/keywords.py -->"
END = "<!-- end of keyword effects -->"
_TAGS = (("defaults", "D"), ("device", "V"), ("multipath", "M"), ("overrides", "O"), ("blacklist", "B"),
         ("blacklist_device", "BD"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def effects_markdown() -> str:
    rows = [BEGIN, "| keyword | sections | in pymultipathd |", "| --- | --- | --- |"]
    for kw in keywords.KEYWORDS:
        tags = "".join(tag for sec, tag in _TAGS if sec in kw.sections)
        if kw.ignored:
            status = f"**no effect**: deprecated, {kw.deprecated}"
        elif kw.unsupported:
            status = f"**no effect**: {kw.unsupported}"
        else:
            status = f"takes effect: {kw.effect}"
        if kw.synonym_of:
            status = f"name of `{kw.synonym_of}`; {status}"
        rows.append(f"| `{kw.name}` | {tags} | {_cell(status)} |")
    rows.append(END)
    return "\n".join(rows) + "\n"


REF_BEGIN = "<!-- keyword reference: generated from pymultipathd/config/keywords.py -->"
REF_END = "<!-- end of keyword reference -->"
# built-in defaults computed from other keywords or the program's locations, as the reference states them
DERIVED_DEFAULTS = {"max_polling_interval": "4 * polling_interval",
                    "wwids_file": "/etc/multipath/wwids (env PYMULTIPATH_WWIDS)",
                    "bindings_file": "/etc/multipath/bindings (env PYMULTIPATH_BINDINGS)",
                    "prkeys_file": "prkeys beside the wwids file"}


def reference_markdown() -> str:
    """docs/configuration.md's keyword reference: value, built-in default and meaning of every keyword of
    the map and path sections (the blacklist's are described in prose)."""
    rows = [REF_BEGIN, "| keyword | sections | value | built-in default | meaning |",
            "| --- | --- | --- | --- | --- |"]
    for kw in keywords.KEYWORDS:
        if keywords.BL in kw.sections or keywords.BLD in kw.sections:
            continue
        tags = "".join(tag for sec, tag in _TAGS if sec in kw.sections)
        if kw.synonym_of:
            another = "" if kw.deprecated else " (another name, no warning)"
            rows.append(f"| `{kw.name}` | {tags} | read as `{kw.synonym_of}`{another} |")
        elif kw.ignored:
            rows.append(f"| `{kw.name}` | {tags} | accepted with a warning, value ignored |")
        else:
            if callable(kw.default):
                default = DERIVED_DEFAULTS[kw.name]
            else:
                default = "unset" if kw.default is None else format_value(kw.default, kw.type)
            rows.append(f"| `{kw.name}` | {tags} | {_cell(kw.type.describe)} | {_cell(default)} | "
                        f"{_cell(kw.doc)} |")
    rows.append(REF_END)
    return "\n".join(rows) + "\n"


GENERATED = ((BEGIN, END, effects_markdown), (REF_BEGIN, REF_END, reference_markdown))


def _with_tables(text: str) -> str:
    for begin, end, make in GENERATED:
        assert begin in text and end in text, f"docs/configuration.md lost its markers {begin!r}"
        text = text[:text.index(begin)] + make() + text[text.index(end) + len(end) + 1:]
    return text


@pytest.mark.parametrize("begin, end, make", GENERATED, ids=["effects", "reference"])
def test_configuration_doc_has_the_tables_effects(begin, end, make):
    text = DOC.read_text()
    assert begin in text and end in text, f"docs/configuration.md lost its markers {begin!r}"
    section = text[text.index(begin):text.index(end) + len(end)] + "\n"
    assert section == make(), (
        "docs/configuration.md's keyword tables differ from the keyword table: run "
        "`.venv/bin/python tests/unit/test_keyword_effects.py`, which rewrites them")


if __name__ == "__main__":
    DOC.write_text(_with_tables(DOC.read_text()))
    sys.stdout.write(f"{DOC}: keyword tables regenerated\n")
