"""The ERE engine (pymultipathd.config.ere): glibc's regcomp/regexec in the C locale, back-references refused.

Matching must take time linear in the text: a WWID comes from a device, and a pattern a backtracking engine
chokes on ("^([0-9a-f]+)+$") would freeze the daemon on every event of that device.
"""

import ctypes
import gc
import os
import re
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymultipathd.config import ConfigError, ere, load_config, parse_text
from pymultipathd.config.ere import Regex, RegexError, compile_ere, matches_inv, search

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTILE = "^([0-9a-f]+)+$"
WWID = "36" + "0123456789abcdef" * 3 + "0123456789"  # 60 hex digits


def _python(code: str, env: dict[str, str] | None = None) -> str:
    # timeout: a hang detector, not a speed requirement (a backtracking engine needs hours here)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    return out.stdout.strip()


# --------------------------------------------------------------------------- the hostile pattern


def test_hostile_blacklist_pattern_answers_against_a_long_wwid():
    conf = f'blacklist {{\n wwid "{HOSTILE}"\n}}\nblacklist_exceptions {{\n wwid "!{HOSTILE}"\n}}\n'
    code = f"""
from pymultipathd.blacklist import check
from pymultipathd.config import parse_text
cfg = parse_text({conf!r})
print(check(cfg, devnode="sda", wwid={WWID + "x"!r}).excluded)
print(check(cfg, devnode="sda", wwid={WWID!r}).excluded)
"""
    assert len(WWID) == 60
    assert _python(code).split() == ["False", "True"]


def test_hostile_pattern_direct_search_answers():
    code = f"""
from pymultipathd.config.ere import search
print(search({HOSTILE!r}, {WWID + "x"!r}), search({HOSTILE!r}, {WWID * 4!r}))
print(search("([0-9a-f]*)*x", {WWID!r}), search("(([0-9a-f]+)+)+$", {WWID + "x" + WWID!r}))
"""
    assert _python(code).split() == ["False", "True", "False", "True"]


# ---------------------------------------------------------------------------------------- semantics


@pytest.mark.parametrize(
    "pattern, text, expected",
    [
        # bracket classes, C locale
        ("^[[:alpha:]]+[[:digit:]]$", "sdb1", True),
        ("^[[:alpha:]]+[[:digit:]]$", "sd11", False),
        ("[[:upper:]]", "abc", False),
        ("[[:lower:]]", "ABC", False),
        ("^[[:xdigit:]]{4}$", "00aF", True),
        ("[[:xdigit:]]", "xyz", False),
        ("[[:alnum:]]", "-_.", False),
        ("[[:punct:]]", "a-b", True),
        ("[[:space:]]", "a\vb", True),
        ("[[:blank:]]", "a\tb", True),
        ("[[:blank:]]", "a\nb", False),
        ("[[:cntrl:]]", "a\x01", True),
        ("[[:print:]]", "\x01\x7f", False),
        ("[[:graph:]]", " ", False),
        ("[^[:digit:]]", "123", False),
        ("[[:alpha:]]", "\u00e9", False),  # two bytes >= 0x80: not letters in the C locale
        ("^.$", "\u00e9", False),
        ("^..$", "\u00e9", True),
        ("caf\u00e9", "un caf\u00e9", True),
        ("^.$", "\udcff", True),  # a raw byte that is not UTF-8 (os's surrogateescape)
        ("^\udcff$", "\udcff", True),
        # brackets: ], ^, -, backslash, collating elements
        ("[]]", "x]", True),
        ("[^]a]", "]a", False),
        ("[^]a]", "]ab", True),
        ("[a-]", "-", True),
        ("[\\]", "a\\b", True),
        ("[\\1]", "1", True),
        ("[.]", "x", False),
        ("[[.-.]]", "a-b", True),
        ("[[=a=]]", "bab", True),
        ("[a-[.c.]]", "c", True),
        # unmatched ")" is a literal
        ("x)", "x)", True),
        (")", "a)", True),
        ("a)b", "ab", False),
        # anchors
        ("sd", "xsdx", True),
        ("^sd", "xsd", False),
        ("sd$", "sdx", False),
        ("^$", "", True),
        ("a^b", "a^b", False),
        ("a$b", "a$b", False),
        ("(^a|b$)", "xa", False),
        ("(^a|b$)", "xb", True),
        ("\\^a\\$", "^a$", True),
        # intervals
        ("^a{2}$", "aa", True),
        ("^a{2}$", "aaa", False),
        ("^a{2,3}$", "aaaa", False),
        ("^a{2,}$", "aaaaaa", True),
        ("^a{,2}$", "", True),
        ("^(ab){2}$", "abab", True),
        ("^a{0}b$", "b", True),
        # everything else
        ("a.c", "a\nc", True),  # "." matches a newline
        ("ACME", "acme", False),  # case sensitive
        ("\\.", "ab", False),
        ("\\!sd", "!sda", True),
        ("(sd|vd)[a-c]", "vdb", True),
        ("a**", "b", True),
        ("\\\\1", "\\1", True),  # an escaped backslash, then a literal 1
        ("", "anything", True),
        # a NUL in the text is matched like any other byte (the value is matched whole)
        ("def$", "abc\x00def", True),
        ("^abc$", "abc\x00def", False),
        ("a[^x]b", "a\x00b", True),
    ],
)
def test_semantics(pattern, text, expected):
    assert search(pattern, text) is expected
    assert bool(compile_ere(pattern).search(text)) is expected


def test_search_returns_none_without_a_match():
    assert compile_ere("x").search("x") is True
    assert compile_ere("x").search("y") is None


def test_inverted_blacklist_values():
    assert matches_inv("!^sd", "vda") and not matches_inv("!^sd", "sda")
    assert matches_inv("^sd", "sda") and not matches_inv("^sd", "vda")


def test_compile_is_cached():
    assert compile_ere("^cached[0-9]$") is compile_ere("^cached[0-9]$")


def test_every_builtin_pattern_compiles():
    from pymultipathd.blacklist import BUILTIN_BLACKLIST, BUILTIN_EXCEPTIONS, builtin_blacklist
    from pymultipathd.config.hwtable import entries
    from pymultipathd.config.keywords import KEYWORDS
    from pymultipathd.config.keywords import Regex as RegexType

    keys = ("vendor", "product", "revision", "product_blacklist")
    patterns = [v for e in entries() for k, v in e.items() if k in keys]
    for spec in (BUILTIN_BLACKLIST, BUILTIN_EXCEPTIONS, builtin_blacklist()):
        patterns += [p for p in spec.devnode + spec.wwid + spec.property + spec.protocol]
        patterns += [p for d in spec.device for p in (d.vendor, d.product) if p is not None]
    patterns += [kw.default for kw in KEYWORDS if isinstance(kw.type, RegexType) and kw.default is not None]
    assert patterns
    for p in patterns:
        compile_ere(ere.split_inverted(p)[1])


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("(", "Unmatched ( or \\("),
        ("[a", "Unmatched [, [^, [:, [., or [="),
        ("[z-a]", "Invalid range end"),
        ("a\\", "Trailing backslash"),
        ("*a", "Invalid preceding regular expression"),
        ("(?i)x", "Invalid preceding regular expression"),
        ("a|*b", "Invalid preceding regular expression"),
        ("a{2,1}", "Invalid content of \\{\\}"),
        ("a{1", "Unmatched \\{"),
        ("a{99999}", "Regular expression too big"),
        ("[[:nope:]]", "Invalid character class name"),
        ("[[.ab.]]", "Invalid collation character"),
        ("a\x00b", "NUL"),
        ("\ud800", "cannot be encoded"),
    ],
)
def test_invalid_patterns(pattern, message):
    with pytest.raises(RegexError) as info:
        compile_ere(pattern)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "pattern",
    [
        "(a)\\1",
        "\\1",
        "(a)(b)\\2",
        "(a|aa)*\\1c",
        "x|(y)\\1",
        "(a)[b]\\1",
        "(a)[]]\\1",
        "(a)[^]]\\1",
        "(a)[[.].]]\\1",
    ],
)
def test_back_references_are_refused(pattern):
    with pytest.raises(RegexError, match="back-references .* not supported.*linear time"):
        compile_ere(pattern)


@pytest.mark.parametrize(
    "pattern", ["[\\1]", "[]\\1]", "[^]\\1]", "[[:digit:]\\1]", "[[.].]\\1]", "\\\\1", "(a)1"]
)
def test_a_backslash_and_digit_that_is_no_back_reference_is_accepted(pattern):
    compile_ere(pattern)


_LIBC = ctypes.CDLL("libc.so.6")


def _glibc_accepts(pattern: str) -> bool:
    buf = ctypes.create_string_buffer(1024)  # larger than regex_t
    if _LIBC.regcomp(buf, pattern.encode(), 1 | 8) != 0:
        return False
    _LIBC.regfree(buf)
    return True


BACKREF_ALPHABET = st.sampled_from(
    r"a ( ) [ ] ^ \ 1 2 \1 [:alpha:] [.a.] [.].] [=a=] | * {1} . : = $".split()
)  # no "-": a digit at the end of a range would make the oracle below lie


@settings(max_examples=1500, deadline=None)
@given(st.lists(BACKREF_ALPHABET, max_size=10).map("".join))
def test_back_reference_detection_agrees_with_glibc(pattern):
    # Oracle: for a pattern glibc accepts, with fewer than 9 groups, turning every "\1".."\8" into "\9"
    # breaks it exactly when one of them was a back-reference (a "\9" back-reference has no group).
    if not _glibc_accepts(pattern) or pattern.count("(") >= 9:
        return
    is_backref = not _glibc_accepts(re.sub(r"\\[1-8]", r"\\9", pattern))
    try:
        compile_ere(pattern)
        refused = False
    except RegexError as exc:
        assert "back-references" in str(exc)
        refused = True
    assert refused is is_backref, pattern


# --------------------------------------------------------------------------- config files name file:line


def test_config_errors_name_file_and_line(tmp_path):
    conf = tmp_path / "multipath.conf"
    conf.write_text(
        "blacklist {\n"
        '    wwid "^36"\n'
        '    devnode "(sd"\n'
        "}\n"
        "devices {\n"
        "    device {\n"
        '        vendor "(a)\\1"\n'
        '        product ".*"\n'
        "    }\n"
        "}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path / "none"))
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{conf}:3: devnode: ") and "Unmatched ( or \\(" in lines[0]
    assert lines[1].startswith(f"{conf}:7: vendor: ") and "back-references" in lines[1]


def test_back_reference_in_a_blacklist_entry_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        parse_text('blacklist {\n wwid "!(3)\\1"\n}\n', "b.conf")
    (msg,) = info.value.messages
    assert (msg.file, msg.line, msg.keyword) == ("b.conf", 2, "wwid")
    assert "back-references" in msg.text


# ------------------------------------------------------------------- locale, threads, memory


def test_matching_ignores_the_process_locale():
    code = """
from pymultipathd.config.ere import search
print(search("[[:alpha:]]", "\\u00e9"), search("^.$", "\\u00e9"), search("^..$", "\\u00e9"))
"""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k != "LANG"}
    for extra in ({}, {"LANG": "C.UTF-8"}, {"LC_ALL": "C.UTF-8"}, {"LC_ALL": "C"}):
        assert _python(code, {**base, **extra}) == "False False True", extra


def test_the_thread_locale_is_restored():
    lib = ere._load()
    before = lib.uselocale(None).value  # NULL: query only
    assert compile_ere("^x").search("x")
    with pytest.raises(RegexError):
        compile_ere("(")
    assert lib.uselocale(None).value == before


def test_searches_from_many_threads():
    cases = [
        ("^[0-9a-f]+$", WWID, True),
        ("^[0-9a-f]+$", WWID + "x", False),
        (HOSTILE, WWID + "x", False),
        ("(sd|vd)[a-z]$", "vdq", True),
        ("[[:alpha:]]", "1234", False),
    ]
    failures = []

    def run():
        for _ in range(300):
            for pattern, text, expected in cases:
                if search(pattern, text) is not expected:
                    failures.append((pattern, text))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_regfree_when_collected(monkeypatch):
    lib = ere._load()
    freed = []
    real = lib.regfree
    monkeypatch.setattr(lib, "regfree", lambda buf: (freed.append(ctypes.addressof(buf)), real(buf)))
    rx = Regex("^not cached$")
    addr = ctypes.addressof(rx._buf)
    del rx
    gc.collect()
    assert freed == [addr]
    with pytest.raises(RegexError):
        Regex("(a)\\1")  # compiled by glibc before being refused: freed too
    gc.collect()
    assert len(freed) == 2
    with pytest.raises(RegexError):
        Regex("(")  # glibc freed it itself
    gc.collect()
    assert len(freed) == 2


def test_importing_the_module_does_not_load_ctypes():
    code = "import sys; import pymultipathd.config.ere; print('ctypes' in sys.modules)"
    assert _python(code) == "False"


@pytest.mark.parametrize("pattern", ["a{1,32767}", "((a{1,100}){1,100}){1,100}", "(x{1,200}y{1,200}){1,40}"])
def test_a_repetition_that_would_expand_past_the_bound_is_refused_before_glibc_compiles_it(pattern):
    """glibc copies a bounded repetition's operand: a{1,32767} took it 50 s to compile, nested ones run out
    of memory. Refused at once, with the reason."""
    with pytest.raises(RegexError, match=r"expand to \d+ copies, more than 10000"):
        compile_ere(pattern)


@pytest.mark.parametrize("pattern, size", [("^(3600a0b8|36001405)[0-9a-f]{24}$", 40), ("x{3}y{2,}", 5),
                                           ("(a{1,100}){1,100}", 10000), ("[a{]{2}", 2), ("(ab|cd){2}", 8)])
def test_the_expansion_counted(pattern, size):
    from pymultipathd.config.ere import _expansion

    assert _expansion(pattern) == size
    compile_ere(pattern)
