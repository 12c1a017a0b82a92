"""multipath.conf syntax: tokens, sections, comments, quoting and syntax errors with file:line."""

import pytest

from pymultipathd.config import ConfigError
from pymultipathd.config.parser import Entry, Section, Token, parse, quote, tokenize_line


@pytest.mark.parametrize(
    "line, expected",
    [
        ("", []),
        ("   \t ", []),
        ("# a comment", []),
        ("! also a comment", []),
        ("polling_interval 5", [Token("polling_interval"), Token("5")]),
        ("  polling_interval\t5  ", [Token("polling_interval"), Token("5")]),
        ("polling_interval 5 # trailing comment", [Token("polling_interval"), Token("5")]),
        ("polling_interval 5 ! trailing comment", [Token("polling_interval"), Token("5")]),
        ("polling_interval 5#glued comment", [Token("polling_interval"), Token("5")]),
        ('path_selector "service-time 0"', [Token("path_selector"), Token("service-time 0", True)]),
        ('devnode "!^sd[a-z]"', [Token("devnode"), Token("!^sd[a-z]", True)]),
        ('product "a # b ! c"', [Token("product"), Token("a # b ! c", True)]),
        ('product "2.5"" SSD"', [Token("product"), Token('2.5" SSD', True)]),
        ('product """"', [Token("product"), Token('"', True)]),
        ('product ""', [Token("product"), Token("", True)]),
        ('product "  spaced  "', [Token("product"), Token("  spaced  ", True)]),
        ("defaults {", [Token("defaults"), Token("{")]),
        ("defaults{", [Token("defaults"), Token("{")]),
        ("}", [Token("}")]),
        ('vendor "{}"', [Token("vendor"), Token("{}", True)]),
        ('a"b"', [Token("a"), Token("b", True)]),
        ("x\r", [Token("x")]),
    ],
)
def test_tokenize(line, expected):
    assert tokenize_line(line) == expected


def test_unterminated_quote_is_an_error():
    with pytest.raises(ValueError, match="unterminated"):
        tokenize_line('vendor "abc')


@pytest.mark.parametrize("value", ["", "plain", 'with "quotes"', '""', "a # b", "!inv", "{ }", "tab\there"])
def test_quote_round_trips(value):
    assert tokenize_line("k " + quote(value)) == [Token("k"), Token(value, True)]


def test_sections_and_subsections_with_lines():
    text = """
defaults {
    polling_interval 10
}
devices {
    device {
        vendor "LIO-ORG"
        product ".*"
    }
}
"""
    items, warnings = parse(text, "f.conf")
    assert warnings == []
    assert items == [
        Section("defaults", 2, [Entry("polling_interval", "10", 3)]),
        Section(
            "devices", 5, [Section("device", 6, [Entry("vendor", "LIO-ORG", 7), Entry("product", ".*", 8)])]
        ),
    ]


def test_crlf_line_endings():
    items, _ = parse("defaults {\r\n polling_interval 7\r\n}\r\n")
    assert items == [Section("defaults", 1, [Entry("polling_interval", "7", 2)])]


def test_extra_words_after_value_are_a_warning_naming_the_line():
    items, warnings = parse("defaults {\n features 1 queue_if_no_path\n}\n", "w.conf")
    assert items[0].items == [Entry("features", "1", 2)]
    assert len(warnings) == 1 and str(warnings[0]).startswith("w.conf:2: features: ignoring extra text")


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ('defaults {\n vendor "abc\n}\n', 2, "unterminated quoted string"),
        ("defaults {\n polling_interval 5\n", 1, "not closed"),
        ("}\n", 1, "without an open section"),
        ("defaults {\n} }\n", 2, "alone on its line"),
        ("defaults {\n polling_interval 5 }\n", 2, "own line"),
        ("defaults\n{\n}\n", 1, "missing value"),
        ("defaults {\n}\n{\n", 3, "same line"),
        ("defaults {\n polling_interval\n}\n", 2, "missing value"),
        ('defaults {\n "polling_interval" 5\n}\n', 2, "must not be quoted"),
        ("defaults x {\n}\n", 1, "alone on its line"),
    ],
)
def test_syntax_errors_name_file_and_line(text, line, fragment):
    with pytest.raises(ConfigError) as info:
        parse(text, "bad.conf")
    messages = info.value.messages
    assert any(m.file == "bad.conf" and m.line == line and fragment in m.text for m in messages), messages
    assert f"bad.conf:{line}:" in str(info.value)


def test_all_syntax_errors_are_reported_together():
    with pytest.raises(ConfigError) as info:
        parse('a "x\nb "y\n', "m.conf")
    assert [m.line for m in info.value.messages] == [1, 2]
