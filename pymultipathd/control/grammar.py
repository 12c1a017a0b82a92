"""The control-socket command grammar, compatible with upstream multipathd (pure: no I/O).

A command is a line of words. Each word is a keyword, or the parameter of the keyword just before it
(`map mpatha`). A keyword may be shortened to any prefix that matches only one keyword (`sh pa` = `show
paths`); an exact match always wins (`map` is not ambiguous with `maps`). Double quotes group words, and a
doubled quote inside quotes is a literal quote. At most four keywords, in the order of the command table:
`show map X topology` is a command, `show topology map X` is not.
"""

from __future__ import annotations

from functools import cache

from pymultipathd.errors import PymultipathError
from pymultipathd.record import field, record

MAX_KEYWORDS = 4

# word -> (canonical word, takes a parameter). Aliases share the canonical word.
KEYWORDS: dict[str, tuple[str, bool]] = {
    "list": ("show", False),
    "show": ("show", False),
    "add": ("add", False),
    "remove": ("del", False),
    "del": ("del", False),
    "switch": ("switchgroup", False),
    "switchgroup": ("switchgroup", False),
    "suspend": ("suspend", False),
    "resume": ("resume", False),
    "reinstate": ("reinstate", False),
    "fail": ("fail", False),
    "resize": ("resize", False),
    "reset": ("reset", False),
    "reload": ("reload", False),
    "forcequeueing": ("forcequeueing", False),
    "disablequeueing": ("disablequeueing", False),
    "restorequeueing": ("restorequeueing", False),
    "paths": ("paths", False),
    "maps": ("maps", False),
    "multipaths": ("maps", False),
    "path": ("path", True),
    "map": ("map", True),
    "multipath": ("map", True),
    "group": ("group", True),
    "reconfigure": ("reconfigure", False),
    "all": ("all", False),
    "daemon": ("daemon", False),
    "status": ("status", False),
    "stats": ("stats", False),
    "topology": ("topology", False),
    "config": ("config", False),
    "blacklist": ("blacklist", False),
    "devices": ("devices", False),
    "raw": ("raw", False),
    "wildcards": ("wildcards", False),
    "quit": ("quit", False),
    "exit": ("quit", False),
    "shutdown": ("shutdown", False),
    "getprstatus": ("getprstatus", False),
    "setprstatus": ("setprstatus", False),
    "unsetprstatus": ("unsetprstatus", False),
    "format": ("format", True),
    "json": ("json", False),
    "getprkey": ("getprkey", False),
    "setprkey": ("setprkey", False),
    "unsetprkey": ("unsetprkey", False),
    "key": ("key", True),
    "local": ("local", False),
    "setmarginal": ("setmarginal", False),
    "unsetmarginal": ("unsetmarginal", False),
}

# Every command the daemon knows, as its canonical keyword sequence. Read-only ones are marked for the
# permission check: a peer that is not root may run only those.
COMMANDS: dict[tuple[str, ...], bool] = {
    ("show", "paths"): True,
    ("show", "paths", "format"): True,
    ("show", "paths", "raw", "format"): True,
    ("show", "path"): True,
    ("show", "status"): True,
    ("show", "daemon"): True,
    ("show", "maps"): True,
    ("show", "maps", "status"): True,
    ("show", "maps", "stats"): True,
    ("show", "maps", "format"): True,
    ("show", "maps", "raw", "format"): True,
    ("show", "maps", "topology"): True,
    ("show", "maps", "json"): True,
    ("show", "topology"): True,
    ("show", "map", "topology"): True,
    ("show", "map", "json"): True,
    ("show", "map", "format"): True,
    ("show", "map", "raw", "format"): True,
    ("show", "config"): True,
    ("show", "config", "local"): True,
    ("show", "blacklist"): True,
    ("show", "devices"): True,
    ("show", "wildcards"): True,
    ("reset", "maps", "stats"): False,
    ("reset", "map", "stats"): False,
    ("add", "path"): False,
    ("del", "path"): False,
    ("add", "map"): False,
    ("del", "map"): False,
    ("del", "maps"): False,
    ("switchgroup", "map", "group"): False,
    ("reconfigure",): False,
    ("reconfigure", "all"): False,
    ("suspend", "map"): False,
    ("resume", "map"): False,
    ("resize", "map"): False,
    ("reset", "map"): False,
    ("reload", "map"): False,
    ("disablequeueing", "map"): False,
    ("restorequeueing", "map"): False,
    ("disablequeueing", "maps"): False,
    ("restorequeueing", "maps"): False,
    ("reinstate", "path"): False,
    ("fail", "path"): False,
    ("quit",): True,
    ("shutdown",): False,
    ("getprstatus", "map"): True,
    ("setprstatus", "map"): False,
    ("unsetprstatus", "map"): False,
    ("getprkey", "map"): True,
    ("setprkey", "map", "key"): False,
    ("unsetprkey", "map"): False,
    ("forcequeueing", "daemon"): False,
    ("restorequeueing", "daemon"): False,
    ("setmarginal", "path"): False,
    ("unsetmarginal", "path"): False,
    ("unsetmarginal", "map"): False,
}


class CommandError(PymultipathError, ValueError):
    """A command that does not parse; str() is the reason, without the trailing help."""


@record(frozen=True)
class Command:
    keywords: tuple[str, ...]                        # canonical, e.g. ("show", "map", "topology")
    params: dict[str, str] = field(default_factory=dict)  # keyword -> parameter, e.g. {"map": "mpatha"}

    @property
    def name(self) -> str:
        return " ".join(self.keywords)

    @property
    def read_only(self) -> bool:
        return COMMANDS[self.keywords]


def split_words(text: str) -> list[str]:
    """Split on whitespace; "..." groups words and "" inside quotes is a literal quote."""
    if '"' not in text:
        return text.split()  # the same words (str.split's whitespace is isspace()'s), without a loop per char
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        word: list[str] = []
        while i < n and not text[i].isspace():
            if text[i] != '"':
                word.append(text[i])
                i += 1
                continue
            i += 1  # opening quote: read to the closing one
            while True:
                if i >= n:
                    raise CommandError("unbalanced quote")
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        word.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                word.append(text[i])
                i += 1
        words.append("".join(word))
    return words


def join_words(words: list[str]) -> str:
    """A command line from argv words: a word with blanks or quotes is quoted, as upstream's client does."""
    out = []
    for w in words:
        if not w or any(c.isspace() or c == '"' for c in w):
            w = '"' + w.replace('"', '""') + '"'
        out.append(w)
    return " ".join(out)


def find_keyword(word: str) -> tuple[str, bool] | None:
    """Exact match, else the single keyword that `word` is a prefix of; None if none or ambiguous."""
    if word in KEYWORDS:
        return KEYWORDS[word]
    if not word:
        return None
    hits = {KEYWORDS[k] for k in KEYWORDS if k.startswith(word)}
    # Aliases of one keyword (e.g. "switch"/"switchgroup") are not an ambiguity.
    return hits.pop() if len(hits) == 1 else None


def parse(text: str) -> Command:
    words = split_words(text)
    if not words:
        raise CommandError("empty command")
    keywords: list[str] = []
    params: dict[str, str] = {}
    pending: str | None = None
    for word in words:
        if pending is not None:
            params[pending] = word
            pending = None
            continue
        found = find_keyword(word)
        if found is None:
            raise CommandError(f"{word}: not found")
        canonical, takes_param = found
        keywords.append(canonical)
        if len(keywords) > MAX_KEYWORDS:
            raise CommandError(f"too many keywords (at most {MAX_KEYWORDS})")
        if takes_param:
            pending = canonical
    if pending is not None:
        raise CommandError(f"{pending}: missing argument")
    key = tuple(keywords)
    if key not in COMMANDS:
        raise CommandError(f"{' '.join(keywords)}: not a command")
    return Command(key, params)


@cache  # the tables are constants; every request that does not parse gets this help
def reference() -> str:
    """The command list, for the help reply to a command that does not parse."""
    aliases: dict[str, list[str]] = {}
    for word, (canonical, _) in KEYWORDS.items():
        aliases.setdefault(canonical, []).append(word)
    lines = []
    for seq in COMMANDS:
        parts = []
        for kw in seq:
            words = aliases[kw]
            text = "|".join(sorted(words, key=lambda w: (w != kw, w)))
            if KEYWORDS[kw][1]:
                text += f" ${kw}"
            parts.append(text)
        lines.append(" " + " ".join(parts))
    return "CLI commands reference:\n" + "\n".join(lines) + "\n"
