"""Reservation keys: the `reservation_key` value, where a map's key comes from, and the prkeys file.

A key is written as upstream reads it: up to 16 hex digits, "0x" optional (digits are always hex, never
decimal), zero refused; a ":aptpl" suffix asks for APTPL (persist through power loss) on registration.
`reservation_key file` takes each map's key from the prkeys file, a line "0x<16 digits> <wwid>" per map, kept
by the daemon (`setprkey`, `unsetprkey`) and by our mpathpersist when it registers; a capital "0X" marks a
key registered with APTPL.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping

from pymultipathd.errors import PymultipathError
from pymultipathd.record import record

_KEY = re.compile(r"0?[xX]?([0-9A-Fa-f]{1,16})")
FILE_WORD = "file"
PRKEYS_HEADER = """\
# Multipath persistent reservation keys, Version : 1.0
# NOTE: this file is automatically maintained by the multipathd program.
# You should not need to edit this file in normal circumstances.
#
# Format:
# prkey wwid
#
"""


class BadKey(PymultipathError, ValueError):
    """A key that does not parse; the message says what was expected."""


class Source(enum.Enum):
    NONE = "none"        # no reservation_key: the daemon registers nothing
    CONFIG = "config"    # a key written in multipath.conf
    FILE = "file"        # reservation_key file: the prkeys file's line for the map's WWID


@record(frozen=True)
class Key:
    value: int
    aptpl: bool = False

    def __str__(self) -> str:
        return f"0x{self.value:x}" + (":aptpl" if self.aptpl else "")


def parse_key(text: str) -> Key:
    """A key as `reservation_key`, `setprkey` and mpathpersist's --param-rk/--param-sark take it."""
    body, _, suffix = text.strip().partition(":")
    if suffix and suffix != "aptpl":
        raise BadKey(f"invalid key {text!r}: the only suffix is ':aptpl'")
    m = _KEY.fullmatch(body)
    if not m:
        raise BadKey(f"invalid key {text!r}: expected up to 16 hex digits, optionally after 0x")
    value = int(m.group(1), 16)
    if value == 0:
        raise BadKey(f"invalid key {text!r}: a reservation key may not be 0")
    return Key(value, aptpl=bool(suffix))


def parse_param_key(text: str) -> int:
    """--param-rk / --param-sark: hex, "0x" optional, 0 allowed (it means "no key")."""
    m = _KEY.fullmatch(text.strip())
    if not m:
        raise BadKey(f"invalid key {text!r}: expected up to 16 hex digits, optionally after 0x")
    return int(m.group(1), 16)


@record(frozen=True)
class MapKey:
    """A map's key as configured: where it comes from and, unless it is missing, the key."""

    source: Source
    key: Key | None


def configured(value: object, wwid: str, file_keys: Callable[[], Mapping[str, Key]]) -> MapKey:
    """The map's key from its resolved reservation_key (None, a key text, or "file"). `file_keys`: the
    prkeys file's keys by WWID, asked for only with "file" (the daemon's copy, or the file read now)."""
    if value is None or value == "":
        return MapKey(Source.NONE, None)
    if value == FILE_WORD:
        return MapKey(Source.FILE, file_keys().get(wwid))
    try:
        return MapKey(Source.CONFIG, parse_key(str(value)))
    except BadKey:  # the configuration's loader refused it already; a bad value means no key
        return MapKey(Source.NONE, None)


# ---- the prkeys file

def _line_key(word: str) -> Key | None:
    m = re.fullmatch(r"0([xX])([0-9A-Fa-f]{1,16})", word)
    if not m or int(m.group(2), 16) == 0:
        return None
    return Key(int(m.group(2), 16), aptpl=m.group(1) == "X")


def parse_prkeys(text: str) -> dict[str, Key]:
    """wwid -> key; comments, blank and malformed lines are skipped (a later line for a WWID wins)."""
    out: dict[str, Key] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) != 2 or line.lstrip().startswith("#"):
            continue
        key = _line_key(words[0])
        if key is not None:
            out[words[1]] = key
    return out


def render_line(key: Key, wwid: str) -> str:
    return f"0{'X' if key.aptpl else 'x'}{key.value:016x} {wwid}"


def read_prkeys(path: str) -> dict[str, Key]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_prkeys(f.read(1 << 20))  # bounded: a key line is under 100 bytes
    except OSError:  # a missing file too: no keys
        return {}


def set_prkey(path: str, wwid: str, key: Key | None) -> bool:
    """Record (or with None, remove) the key of `wwid` in the prkeys file, locked and atomically; True if
    the file changed. Raises store.StoreError when it cannot be written (the old file is kept)."""
    from pymultipathd import store

    def change(lines: list[str]) -> list[str] | None:
        kept = [ln for ln in lines if not (len(ln.split()) == 2 and not ln.lstrip().startswith("#")
                                           and ln.split()[1] == wwid)]
        new = kept + ([render_line(key, wwid)] if key is not None else [])
        return None if new == lines else new

    return store.update_file(path, PRKEYS_HEADER, change)


def default_prkeys_file() -> str:
    from pymultipathd import locations

    return os.path.join(os.path.dirname(locations.wwids_file()), "prkeys")
