"""The small persistent stores multipath keeps beside its configuration.

- the wwids file (/etc/multipath/wwids): WWIDs that may be multipathed, one `/<wwid>/` per line;
- the bindings file (/etc/multipath/bindings): user-friendly names, one `alias wwid` per line;
- failed-wwid markers (/run/multipath/failed_wwids/<wwid>): empty files naming WWIDs whose map creation
  failed.

The first two use upstream multipath-tools' exact formats so a host can switch between the two implementations
and keep its WWIDs and aliases.

Every change is a read-modify-write of the whole file under an fcntl lock on a separate `<file>.lock` (the
data file itself is replaced by rename, so a lock on it would follow the old inode), written to a temporary
file in the same directory, fsync'ed and renamed over the old one. Readers take no lock: a rename is atomic,
so they see the old or the new file, never half of one. A failed write leaves the old file as it was.

Lines this module does not understand are kept where they are and reported with logging.warning naming
file:line; they are never dropped.

Stdlib only and nothing heavy at import: the udev helper reads the wwids file on every disk event.
"""

from __future__ import annotations

import _thread
import errno
import os
import stat

from pymultipathd import locations
from pymultipathd.errors import PymultipathError

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Mapping


def _warn(msg: str, *args: object) -> None:
    # logging costs ~10 ms to import and is needed only when a file has a problem: import it then
    import logging

    logging.getLogger(__name__).warning(msg, *args)


# Header lines as upstream writes them when it creates the file (compatibility: same bytes on a fresh host).
WWIDS_HEADER = (
    "# Multipath wwids, Version : 1.0\n"
    "# NOTE: This file is automatically maintained by multipath and multipathd.\n"
    "# You should not need to edit this file in normal circumstances.\n"
    "#\n"
    "# Valid WWIDs:\n"
)
BINDINGS_HEADER = (
    "# Multipath bindings, Version : 1.0\n"
    "# NOTE: this file is automatically maintained by the multipath program.\n"
    "# You should not need to edit this file in normal circumstances.\n"
    "#\n"
    "# Format:\n"
    "# alias wwid\n"
    "#\n"
)

FILE_MODE = 0o600  # upstream creates both files readable by root only
DIR_MODE = 0o700  # and /etc/multipath likewise when it has to create it

# fcntl record locks are per process: threads of one process would all "hold" the lock at once, so a
# process-local lock serialises them before the fcntl lock serialises processes. (_thread's lock is
# threading.Lock; threading itself is not needed by readers such as the udev helper.)
_thread_lock = _thread.allocate_lock()


class StoreError(PymultipathError):
    """A store file could not be read or written; the message names the file and the reason."""


def _error(what: str, e: OSError, tail: str = "") -> StoreError:
    """"<what>: <reason> (<ERRNO>)<tail>": the errno's name is what an administrator searches for."""
    name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "?"
    return StoreError(f"{what}: {e.strerror or e} ({name}){tail}")


# ---------------------------------------------------------------------------------------------------------
# Validation


def check_wwid(wwid: str, *, for_bindings: bool = False) -> None:
    bad = not wwid or "/" in wwid or "\n" in wwid or "\r" in wwid or "\0" in wwid
    # The bindings file is whitespace-separated with "#" comments, so those cannot appear in a WWID there.
    if for_bindings and not bad:
        bad = "#" in wwid or any(c.isspace() for c in wwid)
    if bad or wwid in (".", ".."):
        raise ValueError(f"invalid WWID {wwid!r}")


# ---------------------------------------------------------------------------------------------------------
# File plumbing


def _read_lines(path: str) -> list[str] | None:
    """Lines without their newline; None if the file does not exist."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _error(f"cannot read {path}", e) from e
    # split on "\n" only: str.splitlines() would also split on form feeds and other rare separators
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(directory: str) -> None:
    try:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    except OSError as e:
        raise _error(f"cannot create directory {directory}", e) from e


def write_atomic(path: str, text: str) -> None:
    """Replace `path` with `text`: temp file in the same directory, fsync, rename, fsync of the directory.

    Keeps the mode and owner of an existing file (a new one gets 0600). On any failure the old file is
    untouched, the temp file removed, and StoreError raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(directory)
    mode, owner = FILE_MODE, None
    try:
        st = os.stat(path)
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _error(f"cannot write {path}", e) from e
    tmp = None
    try:
        # own O_EXCL temp name: the tempfile module costs milliseconds of import on the udev path
        name = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        tmp = name
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), *owner)
                except PermissionError:
                    pass  # not root: the file becomes ours, which is all we can do
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _error(f"cannot write {path}", e, '; the old file is unchanged') from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    try:
        _fsync_dir(directory)
    except OSError as e:  # the new content is in place; only its durability across a crash is in doubt
        _warn("%s: written, but fsync of %s failed: %s", path, directory, e.strerror or e)


def _lock_file(lock_path: str) -> int:
    """Open `lock_path` and take its exclusive fcntl lock; closing the returned fd releases it."""
    import fcntl  # only writers lock; readers (the udev helper) never need it

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as e:
        raise _error(f"cannot open lock file {lock_path}", e) from e
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            return fd
        except InterruptedError:
            continue
        except OSError as e:
            os.close(fd)
            raise _error(f"cannot lock {lock_path}", e) from e


def update_file(path: str, header: str, change: Callable[[list[str]], list[str] | None]) -> bool:
    """Locked read-modify-write, exclusive across threads and processes. `change` gets the current lines
    (a new or empty file starts as the header) and returns the new lines, or None for "nothing to do".
    True if the file was written."""
    _ensure_dir(os.path.dirname(os.path.abspath(path)))
    with _thread_lock:
        fd = _lock_file(path + ".lock")
        try:
            lines = _read_lines(path)
            if not lines:
                lines = header.splitlines()
            new = change(lines)
            if new is None:
                return False
            write_atomic(path, "".join(line + "\n" for line in new))
            return True
        finally:
            os.close(fd)  # releases the lock


# ---------------------------------------------------------------------------------------------------------
# wwids file


def _wwid_of_line(line: str, filename: str, lineno: int) -> str | None:
    """The WWID a wwids-file line holds, or None for a comment, blank or malformed line (warned)."""
    if not line.strip() or line.startswith("#"):
        return None
    if line.startswith("/"):
        end = line.find("/", 1)
        if end > 1:
            if line[end + 1 :].strip():
                # upstream reads up to the second "/" and ignores the rest; do the same, but say so
                _warn("%s:%d: text after /%s/ ignored", filename, lineno, line[1:end])
            return line[1:end]
    _warn("%s:%d: malformed line %r (expected /<wwid>/); kept as is", filename, lineno, line)
    return None


def _scan_wwids(lines: list[str], filename: str) -> list[str | None]:
    return [_wwid_of_line(line, filename, n) for n, line in enumerate(lines, 1)]


def wwids_from_text(text: str, filename: str) -> list[str]:
    """The WWIDs of a wwids file's text, as read_wwids reads the file; `filename` names it in warnings."""
    lines = text.split("\n")  # as _read_lines splits
    lines = lines[:-1] if lines[-1] == "" else lines
    return list(dict.fromkeys(w for w in _scan_wwids(lines, filename) if w is not None))


def read_wwids(path: str | None = None) -> list[str]:
    """WWIDs in the wwids file, in file order, without duplicates. A missing file is an empty list."""
    path = path or locations.wwids_file()
    lines = _read_lines(path) or []
    seen: dict[str, None] = {}
    for wwid in _scan_wwids(lines, path):
        if wwid is not None:
            seen.setdefault(wwid, None)
    return list(seen)


def add_wwid(wwid: str, path: str | None = None) -> bool:
    """Add `wwid` to the wwids file (created with upstream's header if missing). True if it was added."""
    return add_wwids([wwid], path)


def add_wwids(wwids: Iterable[str], path: str | None = None) -> bool:
    """Add several WWIDs in one locked write (the daemon creates many maps at once). True if any was added."""
    wanted = list(dict.fromkeys(wwids))
    for wwid in wanted:
        check_wwid(wwid)
    path = path or locations.wwids_file()

    def change(lines: list[str]) -> list[str] | None:
        known = _scan_wwids(lines, path)
        new = [f"/{w}/" for w in wanted if w not in known]
        return [*lines, *new] if new else None

    return bool(wanted) and update_file(path, WWIDS_HEADER, change)


def remove_wwid(wwid: str, path: str | None = None) -> bool:
    """Remove every line naming `wwid` from the wwids file. True if one was there."""
    check_wwid(wwid)
    path = path or locations.wwids_file()
    if not os.path.exists(path):
        return False

    def change(lines: list[str]) -> list[str] | None:
        found = _scan_wwids(lines, path)
        if wwid not in found:
            return None
        return [line for line, w in zip(lines, found, strict=True) if w != wwid]

    return update_file(path, WWIDS_HEADER, change)


def replace_wwids(wwids: Iterable[str], path: str | None = None) -> None:
    """Reset the wwids file to upstream's header plus `wwids` (upstream's `multipath -W`).

    Malformed lines of the old file are kept (after the header) so nothing the user wrote is lost
    silently; comments other than the header go, as upstream's reset drops them too.
    """
    new_wwids = list(dict.fromkeys(wwids))
    for w in new_wwids:
        check_wwid(w)
    path = path or locations.wwids_file()

    def change(lines: list[str]) -> list[str]:
        kept = [
            line
            for line, w in zip(lines, _scan_wwids(lines, path), strict=True)
            if w is None and line.strip() and not line.startswith("#")
        ]
        return [*WWIDS_HEADER.splitlines(), *kept, *(f"/{w}/" for w in new_wwids)]

    update_file(path, WWIDS_HEADER, change)


# ---------------------------------------------------------------------------------------------------------
# bindings file


def format_alias(index: int, prefix: str = "mpath") -> str:
    """Alias number `index` (1-based): 1 -> mpatha, 26 -> mpathz, 27 -> mpathaa (bijective base 26)."""
    if index < 1:
        raise ValueError(f"alias index must be >= 1, not {index}")
    letters = []
    while index:
        index, rem = divmod(index - 1, 26)
        letters.append(chr(ord("a") + rem))
    return prefix + "".join(reversed(letters))


def lowest_free_alias(prefix: str, *taken: Container[str], start: int = 1) -> tuple[str, int]:
    """The first `<prefix><letters>` from alias number `start` on that none of `taken` holds, and its
    number (the bindings file's rule for a new alias; pure, nothing is bound)."""
    index, alias = start, format_alias(start, prefix)
    while any(alias in t for t in taken):
        index += 1
        alias = format_alias(index, prefix)
    return alias, index


def aliases_by_wwid(bindings: Mapping[str, str]) -> dict[str, str]:
    """WWID -> alias from alias -> WWID bindings; a WWID bound twice keeps its first alias, as it is read."""
    return {w: a for a, w in reversed(list(bindings.items()))}


def parse_alias(alias: str, prefix: str = "mpath") -> int | None:
    """Inverse of format_alias; None if `alias` is not `prefix` followed by lowercase letters."""
    rest = alias[len(prefix) :] if alias.startswith(prefix) else ""
    if not rest or not all("a" <= c <= "z" for c in rest):
        return None
    index = 0
    for c in rest:
        index = index * 26 + (ord(c) - ord("a") + 1)
    return index


def _scan_bindings(lines: list[str], filename: str) -> tuple[dict[str, str], set[str]]:
    """(alias -> wwid of the valid bindings, every alias any line claims). Warns about the rest."""
    bindings: dict[str, str] = {}
    alias_line: dict[str, int] = {}  # line that bound each alias / wwid first
    wwid_line: dict[str, int] = {}
    claimed: set[str] = set()
    for n, raw in enumerate(lines, 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        claimed.add(fields[0])  # even a broken line's alias is never handed out again
        if len(fields) != 2:
            _warn("%s:%d: malformed line %r (expected: alias wwid); kept as is", filename, n, raw)
            continue
        alias, wwid = fields
        if alias in bindings:
            _warn(
                "%s:%d: alias %s already bound to %s at line %d; this line is ignored",
                filename,
                n,
                alias,
                bindings[alias],
                alias_line[alias],
            )
            continue
        if wwid in wwid_line:
            _warn(
                "%s:%d: wwid %s already has an alias at line %d; this line is ignored",
                filename,
                n,
                wwid,
                wwid_line[wwid],
            )
            continue
        bindings[alias] = wwid
        alias_line[alias] = wwid_line[wwid] = n
    return bindings, claimed


def bindings_from_text(text: str, filename: str) -> dict[str, str]:
    """alias -> wwid of a bindings file's text, as read_bindings reads the file; `filename` names it in
    warnings."""
    lines = text.split("\n")  # as _read_lines splits
    return _scan_bindings(lines[:-1] if lines[-1] == "" else lines, filename)[0]


def read_bindings(path: str | None = None) -> dict[str, str]:
    """alias -> wwid, in file order. Duplicates (of an alias or a WWID): the first line wins, with a
    warning. A missing file is an empty dict."""
    path = path or locations.bindings_file()
    return _scan_bindings(_read_lines(path) or [], path)[0]


def lookup_alias(wwid: str, path: str | None = None) -> str | None:
    """The alias bound to `wwid`, without creating one (for a read-only /etc)."""
    for alias, bound in read_bindings(path).items():
        if bound == wwid:
            return alias
    return None


def alias_for(
    wwid: str, prefix: str = "mpath", path: str | None = None, *, reserved: Container[str] = ()
) -> str:
    """The alias of `wwid`: its existing binding as is, else the lowest free `<prefix><letters>`, persisted.

    Never hands out an alias any line of the bindings file claims, nor one in `reserved` (e.g. names of
    existing maps or aliases set in the multipaths section).
    """
    return aliases_for([wwid], prefix, path, reserved=reserved)[wwid]


def aliases_for(
    wwids: Iterable[str], prefix: str = "mpath", path: str | None = None, *, reserved: Container[str] = ()
) -> dict[str, str]:
    """alias_for() of several WWIDs with one locked write of the bindings file (new ones in the given
    order, so a batch binds as a run of single calls would)."""
    wanted = list(dict.fromkeys(wwids))
    for wwid in wanted:
        check_wwid(wwid, for_bindings=True)
    if not prefix or any(c.isspace() or c == "#" for c in prefix):
        raise ValueError(f"invalid alias prefix {prefix!r}")
    path = path or locations.bindings_file()
    result: dict[str, str] = {}
    for wwid in wanted:  # the common case needs no lock and no write
        existing = lookup_alias(wwid, path)
        if existing is not None:
            result[wwid] = existing
    missing = [w for w in wanted if w not in result]
    if not missing:
        return result

    def change(lines: list[str]) -> list[str] | None:
        bindings, claimed = _scan_bindings(lines, path)
        bound = aliases_by_wwid(bindings)  # another process may have bound some
        claimed = set(claimed)
        added = []
        index = 1
        for wwid in missing:
            if wwid in bound:
                result[wwid] = bound[wwid]
                continue
            alias, index = lowest_free_alias(prefix, claimed, reserved, start=index)
            claimed.add(alias)
            result[wwid] = alias
            added.append(f"{alias} {wwid}")
        return [*lines, *added] if added else None

    update_file(path, BINDINGS_HEADER, change)
    return result


# ---------------------------------------------------------------------------------------------------------
# failed-wwid markers


def _marker(wwid: str, path: str | None) -> str:
    check_wwid(wwid)
    return os.path.join(path or locations.failed_wwids_dir(), wwid)


def is_failed(wwid: str, path: str | None = None) -> bool:
    """True if `wwid` is marked failed. `path` is the marker directory."""
    return os.path.lexists(_marker(wwid, path))


def mark_failed(wwid: str, path: str | None = None) -> bool:
    """Mark `wwid` failed (an empty marker file). True if it was not marked before."""
    marker = _marker(wwid, path)
    _ensure_dir(os.path.dirname(marker))
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    except FileExistsError:
        return False
    except OSError as e:
        raise _error(f"cannot create {marker}", e) from e
    os.close(fd)
    return True


def unmark_failed(wwid: str, path: str | None = None) -> bool:
    """Remove the failed marker of `wwid`. True if there was one."""
    marker = _marker(wwid, path)
    try:
        os.unlink(marker)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _error(f"cannot remove {marker}", e) from e
    return True


def failed_wwids(path: str | None = None) -> frozenset[str]:
    """Every WWID marked failed (one directory listing, for building a classifier World)."""
    try:
        return frozenset(os.listdir(path or locations.failed_wwids_dir()))
    except FileNotFoundError:
        return frozenset()
    except OSError as e:
        raise _error(f"cannot list {path or locations.failed_wwids_dir()}", e) from e
