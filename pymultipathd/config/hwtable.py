"""The built-in hardware table: multipath-tools 0.9.4's 123 device entries, kept as data in hwtable.conf (next
to this module, multipath.conf syntax, upstream's `multipath -t` devices section verbatim).

It is read with the project's own parser and keyword table (load.parse_builtin_table) the first time a device
lookup needs it, once per process: `pymultipath -u` runs on every disk event, and a run that never looks up a
vendor/product pays nothing. The entries are the keyword table's typed values, like a user's devices entries.
How they are matched and merged with the user's is Config.hardware_table's and Config.resolve's business
(model.py); docs/configuration.md, "Built-in hardware table", tells where the data came from and how to
regenerate and compare it.
"""

from __future__ import annotations

import os

from pymultipathd.config.ere import search

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Sequence

FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hwtable.conf")

# characters with a meaning in a POSIX ERE; a pattern without any is a plain string
_ERE_SPECIAL = frozenset("\\.[]()*+?{}|^$")

_entries: tuple[dict[str, object], ...] | None = None
_product_blacklist: tuple[tuple[str, str], ...] | None = None


def entries() -> tuple[dict[str, object], ...]:
    """The table's entries in upstream's order (parsed on the first call; ConfigError if the file is bad)."""
    global _entries
    if _entries is None:
        from pymultipathd.config.load import parse_builtin_table  # the loader only when a lookup needs it

        with open(FILE, encoding="utf-8") as f:
            _entries = parse_builtin_table(f.read(), FILE)
    return _entries


def product_blacklist(table: Sequence[dict[str, object]] | None = None) -> tuple[tuple[str, str], ...]:
    """(vendor, product_blacklist) of every entry that has one, in table order, each pair once: upstream
    adds one blacklist device entry per distinct pair (setup_default_blist). Default: the built-in table."""
    global _product_blacklist
    if table is None and _product_blacklist is not None:
        return _product_blacklist
    out: list[tuple[str, str]] = []
    for e in entries() if table is None else table:
        bl, vendor = e.get("product_blacklist"), e.get("vendor")
        if bl is not None and vendor is not None:
            item = (str(vendor), str(bl))
            if item not in out:
                out.append(item)
    if table is None:
        _product_blacklist = tuple(out)
    return tuple(out)


def matches(pattern: str, text: str) -> bool:
    """A vendor/product/revision regex against a device's string: POSIX ERE, unanchored.

    Most of the table's vendor patterns are plain strings ("NETAPP", "3PARdata"); for those an unanchored
    match is a substring test, and a lookup does not compile a hundred patterns through glibc."""
    if _ERE_SPECIAL.isdisjoint(pattern):
        return pattern in text
    return search(pattern, text)

