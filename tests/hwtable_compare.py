"""Compare two `multipath -t` outputs entry by entry: the built-in hardware table (devices section) and the
device entries of the blacklist sections. Standard library only, so both test tiers import it (the unit tests
on the host, tests/vm in the guest against Debian's own `multipath -t`).

    upstream = parse(text_of_multipath_t)
    ours = parse(text_of_pymultipath_t)
    for d in compare(upstream, ours): print(d)

Only formatting is normalised: a value reads the same quoted or bare, and ""-escapes are undone; comments
(pymultipathd marks keywords it does not act on with "# no effect ...") are dropped. A different spelling of a
value is a difference, even a synonym.

Also the regeneration tool of pymultipathd/config/hwtable.conf, which is upstream's devices section verbatim:

  python -m tests.hwtable_compare extract tests/data/multipath-t-0.9.4.txt > pymultipathd/config/hwtable.conf
  python -m tests.hwtable_compare diff UPSTREAM_T_OUTPUT OURS_T_OUTPUT
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

# the sections whose `device { }` subsections are compared
SECTIONS = ("devices", "blacklist", "blacklist_exceptions")


@dataclass(frozen=True)
class Entry:
    vendor: str | None
    product: str | None
    settings: dict[str, str] = field(default_factory=dict)  # every other keyword, value as text

    def name(self) -> str:
        return f"{self.vendor!r}/{self.product!r}"


@dataclass(frozen=True)
class Difference:
    """One way the two outputs differ. `keyword` None: the entry itself (missing, extra, out of order)."""

    section: str
    vendor: str | None
    product: str | None
    keyword: str | None
    upstream: str | None  # the value upstream prints (None: not printed)
    ours: str | None
    text: str

    def __str__(self) -> str:
        return self.text


def _tokens(line: str) -> list[str]:
    """multipath.conf tokens of one line: words, "quoted strings" ("" is a quote), braces; comments cut."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
        elif c in "#!":
            break
        elif c in "{}":
            out.append(c)
            i += 1
        elif c == '"':
            buf = []
            i += 1
            while i < n:
                if line[i] == '"':
                    if line[i + 1:i + 2] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    break
                buf.append(line[i])
                i += 1
            i += 1
            out.append("\0" + "".join(buf))  # marks a quoted token, so a quoted "{" is not a brace
        else:
            start = i
            while i < n and not line[i].isspace() and line[i] not in '"#!{}':
                i += 1
            out.append(line[start:i])
    return out


def _text(token: str) -> str:
    return token[1:] if token.startswith("\0") else token


def parse(text: str) -> dict[str, list[Entry]]:
    """The device entries of each section of SECTIONS (sections absent: empty lists), in order."""
    result: dict[str, list[Entry]] = {s: [] for s in SECTIONS}
    stack: list[str] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        tokens = _tokens(line)
        if not tokens:
            continue
        if tokens[0] == "}":
            if stack and stack.pop() == "device" and current is not None and len(stack) == 1:
                if stack[0] in result:
                    settings = dict(current)
                    vendor, product = settings.pop("vendor", None), settings.pop("product", None)
                    result[stack[0]].append(Entry(vendor, product, settings))
                current = None
            continue
        if len(tokens) >= 2 and tokens[1] == "{":
            stack.append(_text(tokens[0]))
            if stack[-1] == "device" and len(stack) == 2:
                current = {}
            continue
        if current is not None and len(stack) == 2 and len(tokens) >= 2:
            current[_text(tokens[0])] = _text(tokens[1])
    return result


def _key(entry: Entry) -> tuple[str | None, str | None]:
    return entry.vendor, entry.product


def _occurrences(entries: list[Entry]) -> list[tuple[str | None, str | None, int]]:
    """(vendor, product, n): the n-th entry with that vendor/product, so repeated entries pair in order."""
    seen: dict[tuple[str | None, str | None], int] = {}
    out = []
    for e in entries:
        n = seen.get(_key(e), 0)
        seen[_key(e)] = n + 1
        out.append((e.vendor, e.product, n))
    return out


def _q(value: str | None) -> str:
    return "(not set)" if value is None else f'"{value}"'


def compare_section(section: str, upstream: list[Entry], ours: list[Entry]) -> list[Difference]:
    """Entries paired by vendor/product (missing, extra, settings that differ), then their order."""
    diffs: list[Difference] = []
    up_keys, our_keys = _occurrences(upstream), _occurrences(ours)
    ours_by_key = dict(zip(our_keys, ours, strict=True))
    up_set = set(up_keys)
    for pos, (key, entry) in enumerate(zip(up_keys, upstream, strict=True)):
        mine = ours_by_key.get(key)
        where = f"{section} #{pos + 1} {entry.name()}"
        if mine is None:
            diffs.append(Difference(section, entry.vendor, entry.product, None, "entry", None,
                                    f"{where}: upstream's entry is missing from ours"))
            continue
        for kw in sorted(set(entry.settings) | set(mine.settings)):
            a, b = entry.settings.get(kw), mine.settings.get(kw)
            if a != b:
                diffs.append(Difference(section, entry.vendor, entry.product, kw, a, b,
                                        f"{where}: {kw}: upstream {_q(a)}, ours {_q(b)}"))
    for pos, (key, entry) in enumerate(zip(our_keys, ours, strict=True)):
        if key not in up_set:
            diffs.append(Difference(section, entry.vendor, entry.product, None, None, "entry",
                                    f"{section} #{pos + 1} {entry.name()}: ours only, not upstream's"))
    # order: the entries both have, compared position by position; the first that differs is reported
    both = set(up_keys) & set(our_keys)
    up_order = [k for k in up_keys if k in both]
    our_order = [k for k in our_keys if k in both]
    for pos, (a, b) in enumerate(zip(up_order, our_order, strict=True)):
        if a != b:
            diffs.append(Difference(section, a[0], a[1], None, "order", "order",
                                    f"{section}: order differs from common entry {pos + 1} on: "
                                    f"upstream {a[0]!r}/{a[1]!r}, ours {b[0]!r}/{b[1]!r}"))
            break
    return diffs


def compare(upstream: dict[str, list[Entry]], ours: dict[str, list[Entry]],
            sections: Iterable[str] = SECTIONS) -> list[Difference]:
    """Every difference between two parses, section by section."""
    diffs: list[Difference] = []
    for section in sections:
        diffs += compare_section(section, upstream.get(section, []), ours.get(section, []))
    return diffs


# ------------------------------------------------------------------------------------ regenerating the data

HEADER = """\
# The built-in hardware table of pymultipathd: multipath-tools 0.9.4's, read lazily by
# pymultipathd/config/hwtable.py with the project's own configuration parser.
#
# DATA, not configuration: do not edit by hand. This is the devices section of Debian bookworm's
# `multipath -t` (multipath-tools 0.9.4-3+deb12u2, no /etc/multipath.conf), kept verbatim from
# tests/data/multipath-t-0.9.4.txt; regenerate with
# python -m tests.hwtable_compare extract tests/data/multipath-t-0.9.4.txt > pymultipathd/config/hwtable.conf
# (tests/unit/test_hwtable.py fails when the two differ). Each entry sets exactly what upstream's sets.
# docs/configuration.md, "Built-in hardware table", says how the entries are matched and merged.
"""


def devices_section(text: str) -> str:
    """The `devices { ... }` section of a `multipath -t` output, verbatim, lines ending in newlines."""
    lines = text.splitlines()
    start = lines.index("devices {")
    end = lines.index("}", start)
    return "\n".join(lines[start:end + 1]) + "\n"


def extract(text: str) -> str:
    """hwtable.conf's text from upstream's `multipath -t` output."""
    return HEADER + devices_section(text)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "extract":
        with open(argv[1]) as f:
            sys.stdout.write(extract(f.read()))
        return 0
    if len(argv) == 3 and argv[0] == "diff":
        with open(argv[1]) as a, open(argv[2]) as b:
            diffs = compare(parse(a.read()), parse(b.read()))
        for d in diffs:
            print(d)
        return 1 if diffs else 0
    print("usage: python -m tests.hwtable_compare extract MULTIPATH_T | diff UPSTREAM_T OURS_T",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
