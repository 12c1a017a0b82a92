"""Nothing in a config file crashes the parser; -t output re-parses to the same configuration; the ERE
engine agrees with the C library's regcomp/regexec called directly (the real glibc through ctypes, not a
stand-in), back-references apart."""

import ctypes
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymultipathd.blacklist import check
from pymultipathd.config import ConfigError, parse_text
from pymultipathd.config import keywords as kwtable
from pymultipathd.config.ere import RegexError, compile_ere
from pymultipathd.config.render import render

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_or_config_error(text):
    try:
        cfg = parse_text(text, "fuzz.conf")
    except ConfigError as exc:
        assert exc.messages and all(m.file == "fuzz.conf" for m in exc.messages)
        return None
    render(cfg)
    render(cfg, changed_only=True)
    return cfg


@SETTINGS
@given(st.text())
def test_arbitrary_text_only_raises_config_error(text):
    parse_or_config_error(text)


NAMES = sorted({kw.name for kw in kwtable.KEYWORDS}) + [
    "defaults",
    "blacklist",
    "blacklist_exceptions",
    "devices",
    "device",
    "multipaths",
    "multipath",
    "overrides",
    "protocol",
    "bogus",
]
PIECES = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(["{", "}", '"', '""', "#", "!", " ", "\t", "\n", "\n}\n", " {\n"]),
    st.text(alphabet='!^$()[]{}|*+?.\\-:,0123456789abcxyz" ', max_size=8),
)


@SETTINGS
@given(st.lists(PIECES, max_size=60))
def test_config_shaped_text_only_raises_config_error(pieces):
    parse_or_config_error("".join(pieces))


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.text(max_size=12)), max_size=12),
    st.sampled_from(["defaults", "overrides", "blacklist", "blacklist_exceptions"]),
)
def test_any_value_in_any_section_only_raises_config_error(pairs, section):
    body = "\n".join(f"\t{name} {quote_raw(value)}" for name, value in pairs)
    parse_or_config_error(f"{section} {{\n{body}\n}}\ndevices {{\n\tdevice {{\n{body}\n\t}}\n}}\n")


def quote_raw(value):
    return '"' + value.replace('"', '""').replace("\n", " ") + '"'


# ---------------------------------------------------------------------------------- round trip of -t

VALID = {
    "find_multipaths": ["strict", "no", "yes", "greedy", "smart"],
    "find_multipaths_timeout": ["-10", "0", "25", "-1"],
    "force_wwids": ["yes", "no"],
    "polling_interval": ["1", "5", "30"],
    "max_polling_interval": ["7", "100"],
    "no_path_retry": ["fail", "queue", "0", "12"],
    "failback": ["manual", "immediate", "followover", "15"],
    "user_friendly_names": ["yes", "no"],
    "alias_prefix": ["mpath", "disk"],
    "path_selector": ["service-time 0", "round-robin 0"],
    "path_grouping_policy": ["failover", "multibus", "group_by_prio"],
    "path_checker": ["tur", "directio", "none"],
    "features": ["0", "1 queue_if_no_path", "2 pg_init_retries 50"],
    "uid_attribute": ["ID_SERIAL", "ID_WWN", ""],
    "flush_on_last_del": ["unused", "yes", "no"],
    "dev_loss_tmo": ["infinity", "60"],
    "fast_io_fail_tmo": ["off", "0", "5"],
    "partition_delimiter": ["p", ""],
    "prio_args": ['weird "quoted" # ! value'],
    "san_path_err_threshold": ["no", "3"],
}
REGEX = st.sampled_from(["^sd[a-z]", "!^(sd|vd)", "x y", 'q"uote', "[[:digit:]]+$", "#!", "", "\\!lit"])
ATTR = st.sampled_from(sorted(VALID)).flatmap(lambda k: st.tuples(st.just(k), st.sampled_from(VALID[k])))


def section(name, lines, indent="\t"):
    return f"{name} {{\n" + "".join(f"{indent}{line}\n" for line in lines) + "}\n"


def attr_lines(pairs, allowed_in):
    return [f"{k} {quote_raw(v)}" for k, v in pairs if kwtable.lookup(allowed_in, k)]


@st.composite
def configs(draw):
    text = section("defaults", attr_lines(draw(st.lists(ATTR, max_size=8)), "defaults"))
    for name in ("blacklist", "blacklist_exceptions"):
        lines = [
            f"{crit} {quote_raw(draw(REGEX))}"
            for crit in draw(
                st.lists(st.sampled_from(["devnode", "wwid", "property", "protocol"]), max_size=4)
            )
        ]
        for _ in range(draw(st.integers(0, 2))):
            lines.append(
                f"device {{\n\t\tvendor {quote_raw(draw(REGEX))}\n\t\tproduct {quote_raw(draw(REGEX))}\n\t}}"
            )
        text += section(name, lines)
    devices = []
    for _ in range(draw(st.integers(0, 3))):
        attrs = attr_lines(draw(st.lists(ATTR, max_size=4)), "device")
        vendor = draw(st.sampled_from(["ACME", "LIO-ORG", "^NET"]))
        devices.append(
            section("device", [f'vendor "{vendor}"', 'product ".*"', *attrs], "\t\t").replace("}", "\t}")
        )
    text += "devices {\n" + "".join(devices) + "}\n"
    text += section("overrides", attr_lines(draw(st.lists(ATTR, max_size=3)), "overrides"))
    mps = []
    for i in range(draw(st.integers(0, 3))):
        attrs = attr_lines(draw(st.lists(ATTR, max_size=3)), "multipath")
        mps.append(
            section("multipath", [f"wwid 3600{i % 2}", f"alias a{i}", *attrs], "\t\t").replace("}", "\t}")
        )
    text += "multipaths {\n" + "".join(mps) + "}\n"
    return text


QUERIES = [
    {},
    {"wwid": "36000"},
    {"wwid": "36001", "vendor": "ACME", "product": "x"},
    {"vendor": "LIO-ORG", "product": "TCMU"},
    {"vendor": "NETAPP", "product": "LUN"},
]
DEVICES = [
    dict(
        devnode="sda",
        wwid="36000",
        vendor="ACME",
        product="x",
        protocol="scsi:iscsi",
        properties={"ID_SERIAL": "1", "ID_WWN": "2"},
    ),
    dict(
        devnode="vdb",
        wwid="1#!",
        vendor='q"uote',
        product="x y",
        protocol="sd1",
        properties={"ID_SERIAL": "1"},
    ),
    dict(devnode="nvme0n1", wwid="eui.1", vendor="NVME", product="!lit", protocol="nvme:tcp"),
]


def effective(cfg):
    values = {
        (kw.name, i): cfg.resolve(kw.name, **q)
        for kw in kwtable.attributes("defaults") + kwtable.attributes("device")
        for i, q in enumerate(QUERIES)
    }
    verdicts = [check(cfg, **d) for d in DEVICES]
    return values, verdicts, cfg.find_multipaths(), cfg.find_multipaths_timeout()


@SETTINGS
@given(configs())
def test_render_parses_back_to_the_same_effective_config(text):
    cfg = parse_text(text)
    shown = render(cfg)
    again = parse_text(shown, "shown.conf")
    assert effective(again) == effective(cfg)
    assert render(again) == shown
    changed = parse_text(render(cfg, changed_only=True), "changed.conf")
    assert effective(changed) == effective(cfg)


# ------------------------------------------------------------------------ ERE against the C library

_LIBC = ctypes.CDLL("libc.so.6")
_REG_EXTENDED, _REG_NOSUB = 1, 8
SUBJECTS = [
    "",
    "a",
    "b",
    "ab",
    "ba",
    "aab",
    "a*b",
    "(a)",
    "[",
    "]",
    "a,b",
    "1",
    "-",
    ":",
    "!a",
    "ab{1}",
    "a|b",
    "\\",
    "$",
    "^a",
]  # no newlines: config and udev values are single lines


def glibc(pattern):
    buf = ctypes.create_string_buffer(1024)  # larger than regex_t
    if _LIBC.regcomp(buf, pattern.encode(), _REG_EXTENDED | _REG_NOSUB) != 0:
        return None
    try:
        return [_LIBC.regexec(buf, s.encode(), 0, None, 0) == 0 for s in SUBJECTS]
    finally:
        _LIBC.regfree(buf)


def ours(pattern):
    try:
        rx = compile_ere(pattern)
    except RegexError:
        return None
    return [rx.search(s) is not None for s in SUBJECTS]


ERE_ALPHABET = st.sampled_from(
    list("ab()[]|*+?{}^$.\\,1-:!") + ["[:alpha:]", "[:digit:]", "{1,2}", "{2}", "{,1}"]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(ERE_ALPHABET, max_size=8).map("".join))
def test_ere_agrees_with_glibc(pattern):
    try:
        compile_ere(pattern)
    except RegexError as exc:
        if "back-references" in str(exc):  # refused on purpose (docs/configuration.md)
            assert re.search(r"\\[1-9]", pattern), pattern
            return
    assert ours(pattern) == glibc(pattern), pattern
