"""POSIX extended regular expressions, compiled and matched by the C library's own regcomp/regexec.

multipath.conf regexes are ERE as glibc reads them, since upstream multipathd compiles them with regcomp():
unanchored, case sensitive, bracket classes such as [[:alpha:]], a backslash inside brackets is an ordinary
character, an unmatched ")" is a literal. Calling glibc through ctypes gives exactly those semantics, and
glibc's matcher, which follows sets of automaton states instead of backtracking: one pass over the text per
start position, so at worst quadratic in the text, where Python's re takes hours to reject a 60-digit WWID
with "^([0-9a-f]+)+$".

The one deliberate difference from glibc: back-references (\\1 to \\9) are refused, since no matcher answers
them in linear time (glibc backtracks on them). Errors a config file can trigger are RegexError, which
callers turn into file:line messages.

Both regcomp and regexec run in the "C" locale, set for the calling thread only: Python takes LC_CTYPE from
the environment at start-up, so without this the daemon (LANG set by systemd) and the udev helper (no LANG)
would classify bytes differently, and upstream's C daemon runs in the "C" locale anyway.
"""

from __future__ import annotations

from functools import lru_cache

from pymultipathd.errors import PymultipathError

# x86-64 glibc values (checked with a C program against <regex.h> and <locale.h>)
_REG_EXTENDED = 1
_REG_NOSUB = 8
_REG_STARTEND = 4  # eflags: the text is pmatch[0].rm_so..rm_eo, NUL bytes included
_LC_ALL_MASK = 0x1FBF  # every LC_*_MASK bit; bit 6 is __LC_ALL itself
_SIZEOF_REGEX_T = 64
_INT_MAX = 0x7FFFFFFF  # regoff_t is int in glibc's ABI
_REG_ESUBREG = 6  # regcomp: a back-reference to a group that does not exist (yet)

# glibc's matcher is quadratic in the text at worst (an unanchored "0.*x": 43 ms at 4,000 bytes, 11.5 s at
# 64,000). The values matched are short (kernel names, 8- and 16-byte SCSI strings, WWIDs cut at 127 by the
# facts layer, udev property names); anything longer is matched on its first MAX_TEXT bytes, so no value
# can make a match cost more than tens of milliseconds.
MAX_TEXT = 4096

# glibc compiles a bounded repetition by copying its operand (x{1,100} is 100 x's), nested ones multiplied:
# a{1,32767} (POSIX's own RE_DUP_MAX) took glibc 50 s to compile here, ((a{1,100}){1,100}){1,100} 4.4 s and
# larger ones exhaust memory. A pattern that would expand to more copies is refused before glibc sees it;
# 10,000 compiles in a tenth of a second and is far beyond what any device pattern needs.
MAX_EXPANSION = 10_000
_RE_DUP_MAX = 0x7FFF  # glibc refuses a larger count ("Regular expression too big")

_BACKREF_MESSAGE = "back-references (\\1 to \\9) are not supported: they cannot be matched in linear time"


class RegexError(PymultipathError, ValueError):
    """The pattern is not a valid POSIX extended regular expression, or uses a back-reference."""


class _Libc:
    """The glibc entry points, loaded at the first compile: importing ctypes costs more than everything else
    the udev helper needs from this module, and importing this module must stay cheap."""

    def __init__(self) -> None:
        import ctypes

        class Pointer(ctypes.c_void_p):
            """An opaque pointer returned as itself: ctypes turns a plain c_void_p result into an int, which
            it would then pass back as a 32-bit int to a function without argtypes."""

        lib = ctypes.CDLL("libc.so.6")
        vp, cp, i, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
        self.regcomp = lib.regcomp
        self.regcomp.argtypes, self.regcomp.restype = [vp, cp, i], i
        self.regerror = lib.regerror
        self.regerror.argtypes, self.regerror.restype = [i, vp, cp, sz], sz
        self.regfree = lib.regfree
        self.regfree.argtypes, self.regfree.restype = [vp], None
        # The per-search calls go without argtypes, converting nothing: every argument is passed as a
        # ctypes object (or bytes, or None for NULL), which is measurably faster.
        self.regexec = lib.regexec
        self.regexec.restype = i
        self.uselocale = lib.uselocale
        self.uselocale.restype = Pointer
        newlocale = lib.newlocale
        newlocale.argtypes, newlocale.restype = [i, cp, vp], Pointer
        # One locale object for every thread: uselocale() only installs it, and nothing here modifies it.
        self.c_locale = newlocale(_LC_ALL_MASK, b"C", None)
        if not self.c_locale:
            raise OSError('newlocale(LC_ALL_MASK, "C") failed')
        self.size_0 = sz(0)
        self.buffer = ctypes.create_string_buffer
        self.regmatch = ctypes.c_int * 2  # regmatch_t: regoff_t rm_so, rm_eo


_libc: _Libc | None = None


def _load() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()  # two threads racing here both build the same thing; either result is fine
    return _libc


class Regex:
    """A compiled ERE (a glibc regex_t, freed with the object)."""

    __slots__ = ("pattern", "_buf", "_lib")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._buf = None
        if "\0" in pattern:
            raise RegexError("a regular expression cannot contain a NUL character")
        try:
            raw = pattern.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise RegexError(f"the regular expression cannot be encoded: {exc.reason}") from exc
        size = _expansion(pattern)
        if size > MAX_EXPANSION:
            raise RegexError(f"its repetitions ({{m,n}}, nested) expand to {size} copies, more than "
                             f"{MAX_EXPANSION}: write the pattern without such counts")
        lib = self._lib = _load()
        buf = lib.buffer(_SIZEOF_REGEX_T)
        old = lib.uselocale(lib.c_locale)
        try:
            rc = lib.regcomp(buf, raw, _REG_EXTENDED | _REG_NOSUB)
            if rc == _REG_ESUBREG:
                # glibc's "Invalid back reference" (to a group that does not exist): adding the group would
                # only lead to the refusal below, so say that at once
                raise RegexError(_BACKREF_MESSAGE)
            if rc != 0:
                # regerror() inside the C locale too: its message is translated through LC_MESSAGES
                msg = lib.buffer(256)
                lib.regerror(rc, buf, msg, len(msg))
                # a failed regcomp frees what it allocated: nothing for regfree here
                raise RegexError(msg.value.decode("utf-8", "replace"))
        finally:
            lib.uselocale(old)
        self._buf = buf
        if _has_back_reference(pattern):
            raise RegexError(_BACKREF_MESSAGE)  # __del__ frees the regex_t

    def __del__(self) -> None:
        buf = self._buf
        if buf is not None:
            self._buf = None
            self._lib.regfree(buf)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    def search(self, text: str) -> bool | None:
        """True if the ERE matches somewhere in text, None if not (as re.Pattern.search, without a match
        object: patterns are compiled with REG_NOSUB)."""
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            # Only Python code can make such a str (the OS layer decodes with surrogateescape); some fixed
            # bytes keep the answer defined.
            data = text.encode("utf-8", "surrogatepass")
        if len(data) > MAX_TEXT:
            data = data[:MAX_TEXT]
        lib = self._lib
        pmatch, eflags = None, 0
        if b"\0" in data and len(data) <= _INT_MAX:
            # regexec reads a C string and would stop at the NUL, so bytes after it could never be matched
            # and "$" would anchor before them. Match the whole value the caller holds instead: that is
            # the value the daemon acts on (upstream cannot meet a NUL, its values are C strings). regoff_t
            # is an int: a text of 2 GiB or more is read as a C string.
            pmatch, eflags = lib.regmatch(0, len(data)), _REG_STARTEND
        old = lib.uselocale(lib.c_locale)
        try:
            rc = lib.regexec(self._buf, data, lib.size_0, pmatch, eflags)
        finally:
            lib.uselocale(old)
        return True if rc == 0 else None


def _expansion(p: str) -> int:
    """How many atoms glibc's compiled form of `p` holds, roughly: bounded repetitions copy their operand
    (nested ones multiply). Tokenised as _has_back_reference does; an invalid pattern gets some number and
    glibc then says what is wrong with it."""
    frames: list[list[int]] = [[0, 0]]  # per open group: [atoms so far, atoms of the last item]
    i, n = 0, len(p)

    def item(cost: int) -> None:
        frames[-1][0] += cost
        frames[-1][1] = cost

    while i < n:
        c = p[i]
        if c == "\\":
            item(1)
            i += 2
        elif c == "[":
            i = _bracket_end(p, i)
            item(1)
        elif c == "(":
            frames.append([0, 0])
            i += 1
        elif c == ")" and len(frames) > 1:
            inner = frames.pop()[0]
            item(max(inner, 1))
            i += 1
        elif c == "{":
            close = p.find("}", i)
            bounds = p[i + 1:close].split(",") if close > i else []
            digits = [b for b in bounds if b.isdigit()]
            i = close + 1 if close > i else n
            if digits:
                times = int(digits[-1])  # {m,n}: n copies; {m,}: m copies and a star
                times = 1 if times > _RE_DUP_MAX else max(times, 1)  # over it: glibc says so itself
                frames[-1][0] += frames[-1][1] * (times - 1)
                frames[-1][1] *= times
        else:
            if c == "|":
                frames[-1][1] = 0
            elif c not in "*+?^$":
                item(1)
            i += 1
    return sum(f[0] for f in frames)


def _bracket_end(p: str, i: int) -> int:
    """The index after the bracket expression starting at p[i] == "[" (glibc's rules, see below)."""
    n = len(p)
    j = i + 1
    if p.startswith("^", j):
        j += 1
    if p.startswith("]", j):
        j += 1
    while j < n and p[j] != "]":
        if p[j] == "[" and j + 1 < n and p[j + 1] in ".=:":
            end = p.find(p[j + 1] + "]", j + 2)
            j = n if end < 0 else end + 2
        else:
            j += 1
    return j + 1


def _has_back_reference(p: str) -> bool:
    """Whether glibc reads a back-reference in p, a pattern it has compiled.

    Outside a bracket expression a backslash escapes the next character; a bracket expression runs from "["
    to the first "]" that is neither its first character (after an optional "^") nor inside a [:name:],
    [.c.] or [=c=] element, and a backslash is ordinary inside it. That is glibc's tokeniser for valid
    patterns, which is all this needs to follow.
    """
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 < n and p[i + 1] in "123456789":
                return True
            i += 2
        elif c == "[":
            i = _bracket_end(p, i)
        else:
            i += 1
    return False


@lru_cache(maxsize=2048)
def compile_ere(pattern: str) -> Regex:
    """Compiled form of an ERE; RegexError (glibc's regerror() text) if glibc rejects it or it uses a
    back-reference."""
    return Regex(pattern)


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
