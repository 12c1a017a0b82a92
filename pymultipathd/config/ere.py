"""POSIX extended regular expressions (as glibc's regcomp(REG_EXTENDED) reads them) on top of Python's re.

multipath.conf regexes are ERE: unanchored, case sensitive, with bracket classes such as [[:alpha:]], where a
backslash inside brackets is an ordinary character and an unmatched ")" is a literal. Python's re reads the
same text differently (and would accept its own (?...) extensions), so every pattern is translated, never
passed through. Errors a config file can trigger are reported as RegexError, which callers turn into
file:line messages.
"""

from __future__ import annotations

import re
from functools import lru_cache

# glibc's RE_DUP_MAX: a larger interval bound is an error there, so it is one here too.
_DUP_MAX = 0x7FFF

_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "0-9a-zA-Z",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": "".join("\\" + c for c in r"""!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"""),  # string.punctuation
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
    "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f",
}

# compiled at first use (re caches it): most patterns have no interval, and compiling costs at import
_INTERVAL = r"\{(\d*)(,(\d*))?\}"


class RegexError(ValueError):
    """The pattern is not a valid POSIX extended regular expression."""


def _class_char(ch: str) -> str:
    # Escape everything that is not alphanumeric so Python never sees a range, set operation or escape.
    return ch if ch.isalnum() else "\\" + ch


def _bracket(p: str, i: int) -> tuple[str, int]:
    """Translate the bracket expression starting at p[i] == '['; return (python text, index after it)."""
    n = len(p)
    j = i + 1
    negate = j < n and p[j] == "^"
    if negate:
        j += 1
    parts: list[str] = []
    first = True

    def element(k: int) -> tuple[str, int]:
        """One character (plain or [.x.] / [=x=]) at p[k]."""
        if p.startswith("[.", k) or p.startswith("[=", k):
            kind = p[k + 1]
            end = p.find(kind + "]", k + 2)
            if end < 0:
                raise RegexError("unterminated [. or [= in bracket expression")
            name = p[k + 2 : end]
            if len(name) != 1:
                raise RegexError(f"invalid collating element {name!r}")
            return name, end + 2
        return p[k], k + 1

    while True:
        if j >= n:
            raise RegexError("unmatched [")
        c = p[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if p.startswith("[:", j):
            end = p.find(":]", j + 2)
            if end < 0:
                raise RegexError("unterminated [: in bracket expression")
            name = p[j + 2 : end]
            if name not in _CLASSES:
                raise RegexError(f"invalid character class [:{name}:]")
            parts.append(_CLASSES[name])
            j = end + 2
            if j + 1 < n and p[j] == "-" and p[j + 1] != "]":
                raise RegexError("a character class cannot start a range")
            continue
        ch, j = element(j)
        if j + 1 < n and p[j] == "-" and p[j + 1] != "]":
            if p.startswith("[:", j + 1):
                raise RegexError("invalid range end")
            end_ch, j = element(j + 1)
            if ord(end_ch) < ord(ch):
                raise RegexError(f"invalid range {ch}-{end_ch}")
            parts.append(_class_char(ch) + "-" + _class_char(end_ch))
            # glibc rejects a range directly followed by another "-x" ("a-c-e").
            if j + 1 < n and p[j] == "-" and p[j + 1] != "]":
                raise RegexError("invalid range end")
        else:
            parts.append(_class_char(ch))
    return "[" + ("^" if negate else "") + "".join(parts) + "]", j


class _Frame:
    """One parenthesised level: alternatives, each a list of [text, kind] with kind atom|quantified|anchor."""

    def __init__(self) -> None:
        self.alternatives: list[list[list[str]]] = [[]]

    @property
    def items(self) -> list[list[str]]:
        return self.alternatives[-1]

    def text(self) -> str:
        return "|".join("".join(item[0] for item in alt) for alt in self.alternatives)


def translate(pattern: str) -> str:
    """Python re source equivalent to the POSIX ERE `pattern` (compile with re.DOTALL | re.ASCII)."""
    p = pattern
    n = len(p)
    stack = [_Frame()]
    groups_closed = 0
    groups_opened = 0
    i = 0

    def quantify(q: str) -> None:
        items = stack[-1].items
        if not items or items[-1][1] == "anchor":
            raise RegexError(f"nothing to repeat before {q!r}")
        last = items[-1]
        if last[1] == "quantified":
            last[0] = "(?:" + last[0] + ")"
        last[0] += q
        last[1] = "quantified"

    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 >= n:
                raise RegexError("trailing backslash")
            e = p[i + 1]
            i += 2
            if e in "wWsSbB":
                stack[-1].items.append(["\\" + e, "atom" if e in "wWsS" else "anchor"])
            elif e == "<":
                stack[-1].items.append([r"\b(?=\w)", "anchor"])
            elif e == ">":
                stack[-1].items.append([r"\b(?<=\w)", "anchor"])
            elif e == "`":
                stack[-1].items.append([r"\A", "anchor"])
            elif e == "'":
                stack[-1].items.append([r"\Z", "anchor"])
            elif e in "123456789":
                if int(e) > groups_closed:
                    raise RegexError(f"invalid back reference \\{e}")
                stack[-1].items.append([f"(?:\\{e})", "atom"])
            else:
                stack[-1].items.append([re.escape(e), "atom"])
            continue
        if c == "[":
            text, i = _bracket(p, i)
            stack[-1].items.append([text, "atom"])
            continue
        if c == "(":
            stack.append(_Frame())
            groups_opened += 1
            i += 1
            continue
        if c == ")":
            i += 1
            if len(stack) == 1:  # glibc: an unmatched ")" is an ordinary character
                stack[-1].items.append([r"\)", "atom"])
                continue
            inner = stack.pop()
            groups_closed += 1
            stack[-1].items.append(["(" + inner.text() + ")", "atom"])
            continue
        if c == "|":
            stack[-1].alternatives.append([])
            i += 1
            continue
        if c == ".":
            stack[-1].items.append([".", "atom"])
            i += 1
            continue
        if c == "^":
            stack[-1].items.append(["^", "anchor"])
            i += 1
            continue
        if c == "$":
            stack[-1].items.append([r"\Z", "anchor"])
            i += 1
            continue
        if c in "*+?":
            quantify(c)
            i += 1
            continue
        if c == "{":
            m = re.compile(_INTERVAL).match(p, i)
            if not m:
                raise RegexError("invalid interval {...}")
            lo_s, has_comma, hi_s = m.group(1), m.group(2), m.group(3)
            try:
                lo = int(lo_s) if lo_s else 0
                hi = int(hi_s) if hi_s else None
            except ValueError as exc:  # absurdly long digit strings
                raise RegexError("interval bound too large") from exc
            if not lo_s and not has_comma:
                raise RegexError("invalid interval {}")
            if lo > _DUP_MAX or (hi is not None and hi > _DUP_MAX):
                raise RegexError("interval bound too large")
            if hi is not None and hi < lo:
                raise RegexError("invalid interval: max below min")
            if not has_comma:
                q = f"{{{lo}}}"
            elif hi is None:
                q = f"{{{lo},}}"
            else:
                q = f"{{{lo},{hi}}}"
            quantify(q)
            i = m.end()
            continue
        stack[-1].items.append([re.escape(c), "atom"])
        i += 1
    if len(stack) > 1:
        raise RegexError("unmatched (")
    return stack[0].text()


@lru_cache(maxsize=2048)
def compile_ere(pattern: str) -> re.Pattern[str]:
    """Compiled form of an ERE; raises RegexError if glibc would reject it (or it is too complex)."""
    try:
        return re.compile(translate(pattern), re.DOTALL | re.ASCII)
    except RegexError:
        raise
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        raise RegexError(f"invalid regular expression: {exc}") from exc


def search(pattern: str, text: str) -> bool:
    """True if the ERE matches anywhere in text (POSIX regexec semantics, unanchored)."""
    return compile_ere(pattern).search(text) is not None


def split_inverted(value: str) -> tuple[bool, str]:
    """Blacklist regexes: a leading "!" inverts the match; returns (inverted, pattern)."""
    if value.startswith("!"):
        return True, value[1:]
    return False, value


def matches_inv(value: str, text: str) -> bool:
    """Match a blacklist-section regex, honouring the leading "!" inversion."""
    inverted, pattern = split_inverted(value)
    return search(pattern, text) != inverted
