"""multipath.conf text -> tokens -> a tree of sections and entries, each with its line. Pure: no I/O.

Syntax (upstream's): one `keyword value` per line; a value is a bare word or a "quoted string" in which ""
stands for one literal quote; outside quotes `#` and `!` start a comment; `name {` opens a (sub)section on one
line and `}` alone on its line closes it. What the names mean is decided later (load.py); here anything
followed by `{` is a section.
"""

from __future__ import annotations

import re

from pymultipathd.config.model import ConfigError, Message
from pymultipathd.record import field, record

# C isspace() in the C locale; Python's str.isspace() would also split on Unicode spaces.
SPACE = frozenset(" \t\r\n\v\f")

# The line shapes nearly every line has, whole: `keyword value` (bare, or quoted without "" inside), `name {`
# and `}`, each optionally followed by a comment. parse() reads those with one regex match instead of
# tokenize_line's loop over characters, which costs the udev helper milliseconds when it reads the built-in
# hardware table (about a thousand lines); any other line takes the general path, so the syntax is the same.
_SP = "[ \t\r\v\f]"  # SPACE within a line
_WORD = '[^ \t\r\n\v\f"#!{}]+'
_TAIL = f"{_SP}*(?:[#!].*)?"
_ENTRY = re.compile(f'{_SP}*({_WORD}){_SP}+(?:"([^"]*)"|({_WORD})){_TAIL}', re.S)
_OPEN = re.compile(f"{_SP}*({_WORD}){_SP}*{{{_TAIL}", re.S)
_CLOSE = re.compile(f"{_SP}*}}{_TAIL}", re.S)


@record(frozen=True)
class Token:
    text: str
    quoted: bool = False

    def is_brace(self, brace: str) -> bool:
        return not self.quoted and self.text == brace


@record(frozen=True)
class Entry:
    keyword: str
    value: str
    line: int


@record
class Section:
    name: str
    line: int
    items: list[Entry | Section] = field(default_factory=list)


def tokenize_line(line: str) -> list[Token]:
    """Split one line into tokens; raises ValueError on an unterminated quote."""
    tokens: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in SPACE:
            i += 1
        elif c in "#!":
            break
        elif c in "{}":
            tokens.append(Token(c))
            i += 1
        elif c == '"':
            buf: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted string")
                if line[i] == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(line[i])
                i += 1
            tokens.append(Token("".join(buf), quoted=True))
        else:
            start = i
            while i < n and line[i] not in SPACE and line[i] not in '"#!{}':
                i += 1
            tokens.append(Token(line[start:i]))
    return tokens


def parse(text: str, filename: str = "<string>") -> tuple[list[Entry | Section], list[Message]]:
    """Parse a whole file: top-level items and warnings. Raises ConfigError listing every syntax error."""
    root = Section("", 0)
    stack = [root]
    errors: list[Message] = []
    warnings: list[Message] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        m = _ENTRY.fullmatch(line)
        if m is not None:
            value = m.group(2)
            stack[-1].items.append(Entry(m.group(1), m.group(3) if value is None else value, lineno))
            continue
        m = _OPEN.fullmatch(line)
        if m is not None:
            section = Section(m.group(1), lineno)
            stack[-1].items.append(section)
            stack.append(section)
            continue
        if len(stack) > 1 and _CLOSE.fullmatch(line):
            stack.pop()
            continue
        try:
            tokens = tokenize_line(line)
        except ValueError as exc:
            errors.append(Message(filename, lineno, None, str(exc)))
            continue
        if not tokens:
            continue
        first = tokens[0]
        if first.is_brace("}"):
            if len(tokens) > 1:
                errors.append(Message(filename, lineno, None, "'}' must be alone on its line"))
            if len(stack) == 1:
                errors.append(Message(filename, lineno, None, "'}' without an open section"))
            else:
                stack.pop()
            continue
        if first.is_brace("{"):
            errors.append(
                Message(filename, lineno, None, "'{' must follow the section name on the same line")
            )
            continue
        if first.quoted:
            errors.append(Message(filename, lineno, None, f"keyword {first.text!r} must not be quoted"))
            continue
        name = first.text
        if any(t.is_brace("{") or t.is_brace("}") for t in tokens[1:]):
            if len(tokens) == 2 and tokens[1].is_brace("{"):
                section = Section(name, lineno)
                stack[-1].items.append(section)
                stack.append(section)
            else:
                errors.append(
                    Message(
                        filename,
                        lineno,
                        name,
                        "a section opens with 'name {' alone on its line; '}' goes on its own line",
                    )
                )
            continue
        if len(tokens) == 1:
            errors.append(
                Message(
                    filename, lineno, name, "missing value (a section needs '{' on the same line as its name)"
                )
            )
            continue
        if len(tokens) > 2:
            extra = " ".join(t.text for t in tokens[2:])
            warnings.append(
                Message(
                    filename,
                    lineno,
                    name,
                    f"ignoring extra text after the value: {extra!r} (quote values with spaces)",
                )
            )
        stack[-1].items.append(Entry(name, tokens[1].text, lineno))
    for section in stack[1:]:
        errors.append(Message(filename, section.line, section.name, "section is not closed with '}'"))
    if errors:
        raise ConfigError(errors)
    return root.items, warnings


def quote(value: str) -> str:
    """A value as config text: always quoted, "" for a literal quote (the inverse of tokenize_line)."""
    return '"' + value.replace('"', '""') + '"'
