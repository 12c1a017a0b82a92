"""Read an initramfs image in memory, as the kernel unpacks it, without writing anything to disk.

An image is a sequence of segments: cpio "newc" archives (magic 070701, or 070702 with checksums), or data
compressed with gzip, xz, lzma, bzip2 (the stdlib decompresses these), zstd or lz4 (their command-line tools
do), whose output is itself one or more newc archives. Zero bytes may pad between segments and between the
archives of a decompressed stream. Debian and dracut images usually hold an uncompressed early-microcode
archive, then one compressed main archive.

Entries are applied as the kernel's init/initramfs.c applies them to its rootfs: a name is created in the
directory its parent names, links followed (a parent that does not exist drops the entry); a later entry
replaces an earlier one of the same name, except that a directory that is not empty stays (a file or
symbolic link over it is dropped); a directory or device entry with data is skipped; hard links (nlink > 1,
the same device, inode and file type within one archive) are linked when the later name comes, and share
one content, the last written; a 070702 file whose data does not add up to its checksum stops the unpacking
(an error here). Left out: owners, permissions and times, which decide nothing here; ".." in a name is
removed from the name before it is looked up, where the kernel resolves it step by step.

The image is data from a file anybody may have built, so everything is bounded (Limits): the decompressed
size, the number of entries, a name's length and depth, all names' bytes, a single file's size, the bytes of
content held (only the files asked for are), the number of segments and of decompression tool runs, and the
time the whole reading takes. Names are normalized (no leading "./" or "/"; ".." never climbs above the
archive's root, as it cannot in the kernel's rootfs) and symbolic links are only ever resolved inside the
archive (resolve_inside), never on the host.

The distributions' own readers (`unmkinitramfs`, `lsinitrd --unpack`, `skipcpio`) are not used: they unpack
to disk, run cpio (which creates what the image says), and read nothing the kernel reads that this module
does not; the one format left out is LZO, which neither Debian nor dracut produce by default.
"""

from __future__ import annotations

import bz2
import lzma
import os
import select
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Collection, Generator, Iterator
from enum import Enum
from typing import BinaryIO

from pymultipathd.errors import PymultipathError
from pymultipathd.record import record

CHUNK = 1 << 20
FIRST_READ = 4096  # an uncompressed run's first read of the file; reads double from there up to CHUNK
HEADER_SIZE = 110  # "0707xx" and 13 fields of 8 hex digits
TRAILER = "TRAILER!!!"
MAX_SYMLINK_HOPS = 40  # the kernel's limit (ELOOP)
MAX_WARNINGS = 20


class ArchiveError(PymultipathError):
    """An image that cannot be read; the message names the file, the offset where it helps, and the reason."""


@record(frozen=True)
class Limits:
    """Bounds on what one image may make this process read, hold and spend."""

    max_total: int = 2 << 30  # decompressed bytes over all segments
    max_entries: int = 500_000
    max_name: int = 4096  # PATH_MAX, for names and symlink targets
    max_depth: int = 128  # components of one name
    max_names: int = 64 << 20  # bytes of all names together
    max_file: int = 1 << 30  # one file's declared size
    max_kept: int = 8 << 20  # bytes of file content held, all files together (see read_image's `keep`)
    max_segments: int = 256  # runs of uncompressed archives and compressed streams
    max_tool_runs: int = 16  # zstd/lz4 processes started
    deadline: float = 300.0  # seconds for reading the whole image, decompression included


class Kind(Enum):
    FILE = "file"
    SYMLINK = "symlink"
    DIR = "dir"
    OTHER = "other"  # device nodes, fifos, sockets


class Format(Enum):
    CPIO = "cpio"
    GZIP = "gzip"
    XZ = "xz"
    LZMA = "lzma"
    BZIP2 = "bzip2"
    ZSTD = "zstd"
    LZ4 = "lz4"
    LZO = "lzo"


@record(frozen=True)
class Entry:
    name: str  # normalized: "etc/multipath.conf"
    kind: Kind
    mode: int
    size: int
    data: bytes | None = None  # a file's content, if it was asked for (see read_image's `keep`)
    target: str | None = None  # a symlink's target, as written
    inode: int = 0  # the same for the names of one file (hard links); see read_image's `also`


@record(frozen=True)
class Segment:
    offset: int  # in the image file
    format: Format


# magic -> format; lzma "alone" files have no real magic, 5d 00 00 is what the kernel tests too
_MAGIC = (
    (b"\x1f\x8b", Format.GZIP),
    (b"\x1f\x9e", Format.GZIP),
    (b"\xfd7zXZ\x00", Format.XZ),
    (b"\x5d\x00\x00", Format.LZMA),
    (b"BZh", Format.BZIP2),
    (b"\x28\xb5\x2f\xfd", Format.ZSTD),
    (b"\x02\x21\x4c\x18", Format.LZ4),  # legacy frame, what the kernel's lz4 initramfs uses
    (b"\x04\x22\x4d\x18", Format.LZ4),
    (b"\x89LZO", Format.LZO),
)
# format -> (program, Debian package) for the ones the stdlib cannot read
TOOLS = {Format.ZSTD: ("zstd", "zstd"), Format.LZ4: ("lz4", "lz4")}
_KINDS = {stat.S_IFREG: Kind.FILE, stat.S_IFLNK: Kind.SYMLINK, stat.S_IFDIR: Kind.DIR,
          stat.S_IFCHR: Kind.OTHER, stat.S_IFBLK: Kind.OTHER, stat.S_IFIFO: Kind.OTHER,
          stat.S_IFSOCK: Kind.OTHER}


def detect(head: bytes) -> Format | None:
    """The compression whose magic `head` starts with, else None."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def normalize(name: str) -> str:
    """An archive name as a path below the root: "./etc//x" -> "etc/x"; ".." stops at the root."""
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        parts.append(comp)
    return "/".join(parts)


def resolve_inside(path: str, readlink: Callable[[str], str | None], *,
                   follow_last: bool = True) -> str | None:
    """`path` with every symbolic link resolved the way a process chrooted to the tree would: an absolute
    target starts again at the tree's root, ".." stops there, so no link leads out of it. `readlink(p)`
    gives the target of p (normalized, below the root) if p is a symlink, else None. None for a loop."""
    todo = list(reversed(path.split("/")))
    done: list[str] = []
    hops = 0
    while todo:
        comp = todo.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        here = "/".join([*done, comp])
        target = readlink(here) if (todo or follow_last) else None
        if target is None:
            done.append(comp)
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            return None
        if target.startswith("/"):
            done = []
        todo.extend(reversed(target.split("/")))
    return "/".join(done)


class Image:
    """The unpacked view of an image: normalized path -> Entry, as the kernel would leave its rootfs. Every
    name's parent is a DIR entry (or the root), so the directory index has one item per name."""

    def __init__(self, source: str, entries: dict[str, Entry], segments: tuple[Segment, ...],
                 warnings: tuple[str, ...] = ()) -> None:
        self.source = source
        self.entries = entries
        self.segments = segments
        self.warnings = warnings
        self._children: dict[str, list[str]] | None = None

    def readlink(self, path: str) -> str | None:
        e = self.entries.get(path)
        return e.target if e is not None and e.kind is Kind.SYMLINK else None

    def resolve(self, path: str) -> str | None:
        return resolve_inside(normalize(path), self.readlink)

    def lookup(self, path: str) -> Entry | None:
        """The entry at `path` after resolving links inside the image."""
        real = self.resolve(path)
        if real is None:
            return None
        return Entry("", Kind.DIR, 0o40755, 0) if real == "" else self.entries.get(real)

    def children(self) -> dict[str, list[str]]:
        """directory -> the names in it, one item per entry."""
        if self._children is None:
            index: dict[str, list[str]] = {}
            for name in self.entries:
                parent, _, base = name.rpartition("/")
                index.setdefault(parent, []).append(base)
            self._children = index
        return self._children

    def listdir(self, path: str) -> list[str] | None:
        """Names in the directory `path` (links resolved inside the image), sorted; None if it is none."""
        real = self.resolve(path)
        if real is None:
            return None
        if real:
            entry = self.entries.get(real)
            if entry is None or entry.kind is not Kind.DIR:
                return None
        return sorted(self.children().get(real, ()))


class _Short(ArchiveError):
    """The stream ended inside a structure: caught where the structure is known and said in words."""


class _Stream:
    """The bytes of one stream (the image file, or a decompressor's output), read forward once."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self._at = 0  # read position in _buf
        self.offset = 0  # bytes consumed since the stream's start

    def _fill(self, n: int) -> bool:
        while len(self._buf) - self._at < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            if self._at > CHUNK or self._at == len(self._buf):
                del self._buf[:self._at]
                self._at = 0
            self._buf += chunk
        return True

    def read(self, n: int) -> bytes:
        if not self._fill(n):
            raise _Short
        out = bytes(self._buf[self._at:self._at + n])
        self._at += n
        self.offset += n
        return out

    def pieces(self, n: int) -> Iterator[bytes]:
        """The next `n` bytes, in pieces of at most CHUNK."""
        while n > 0:
            if len(self._buf) == self._at and not self._fill(1):
                raise _Short
            step = min(n, len(self._buf) - self._at, CHUNK)
            yield bytes(self._buf[self._at:self._at + step])
            self._at += step
            self.offset += step
            n -= step

    def skip(self, n: int) -> None:
        while n > 0:
            if len(self._buf) == self._at and not self._fill(1):
                raise _Short
            step = min(n, len(self._buf) - self._at)
            self._at += step
            self.offset += step
            n -= step

    def peek(self) -> int | None:
        """The next byte, or None at the end."""
        if not self._fill(1):
            return None
        return self._buf[self._at]

    def skip_zeros(self) -> None:
        """Past the zero bytes at the read position, a buffer at a time."""
        while self._fill(1):
            rest = len(self._buf) - self._at
            n = rest - len(bytes(self._buf[self._at:]).lstrip(b"\0"))
            self._at += n
            self.offset += n
            if n < rest:
                return


class _Node:
    """One file system object being unpacked; the names of hard links share one."""

    __slots__ = ("mode", "size", "data", "target", "inode", "wanted")

    def __init__(self, mode: int, inode: int, wanted: bool, target: str | None = None) -> None:
        self.mode = mode
        self.size = 0
        self.data: bytes | None = None
        self.target = target
        self.inode = inode
        self.wanted = wanted

    @property
    def kind(self) -> Kind:
        return _KINDS[stat.S_IFMT(self.mode)]


class _Reader:
    """One image being read: its limits, the tree so far, what is counted against the limits."""

    def __init__(self, path: str, limits: Limits, keep: Callable[[str], bool], also: Collection[int],
                 until: float) -> None:
        self.path = path
        self.limits = limits
        self.keep = keep
        self.also = also
        self.until = until
        self.nodes: dict[str, _Node] = {}
        self.kids: dict[str, int] = {}  # directory -> how many names it holds
        self.inodes = 0
        self.count = 0
        self.total = 0
        self.names = 0
        self.kept = 0
        self.tool_runs = 0
        self.tool_wait = 0.0  # seconds spent waiting for a tool's output
        self.warnings: list[str] = []
        self.dropped = 0  # warnings not kept (MAX_WARNINGS)

    def fail(self, where: str, why: str) -> ArchiveError:
        return ArchiveError(f"{self.path}: {where}: {why}")

    def warn(self, text: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)
        else:
            self.dropped += 1

    def check_time(self, where: str) -> None:
        if time.monotonic() > self.until:
            raise self.late(where)

    def late(self, where: str) -> ArchiveError:
        waited = (f", {self.tool_wait:.0f} s of it waiting for zstd/lz4 output" if self.tool_wait >= 1
                  else "")
        return self.fail(where, f"reading the image took longer than {self.limits.deadline:.0f} s (the "
                         f"limit){waited}; {self.total} bytes unpacked so far; not read further")

    def counted(self, chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
        for chunk in chunks:
            self.total += len(chunk)
            if self.total > self.limits.max_total:
                raise self.fail(where, f"unpacks to more than {self.limits.max_total} bytes (the limit); "
                                "not read further")
            self.check_time(where)
            yield chunk

    # ------------------------------------------------------------------------------------------- cpio

    def archives(self, stream: _Stream, where: str, *, base: int | None = None) -> None:
        """Every archive of a stream, zeros between them, up to its end (the kernel's rule). `base`: the
        stream is the image file from that offset: it ends before anything but a 4-byte aligned archive."""
        while True:
            stream.skip_zeros()
            first = stream.peek()
            if first is None:
                return
            if base is not None and (first != ord("0") or (base + stream.offset) % 4):
                return  # another segment: the caller looks at it
            if first != ord("0"):
                raise self.fail(where, f"junk after a cpio archive at byte {stream.offset} of the "
                                "decompressed data")
            self.archive(stream, where)

    def archive(self, stream: _Stream, where: str) -> None:
        """One cpio archive, its trailer included. Offsets in messages count from the stream's start."""
        limits = self.limits
        links: dict[tuple[int, int, int, int], str] = {}  # the kernel's hard-link table, one archive's
        while True:
            at = stream.offset
            try:
                head = stream.read(HEADER_SIZE)
            except _Short:
                raise self.fail(where, f"truncated cpio header at byte {at}") from None
            magic = head[:6]
            if magic not in (b"070701", b"070702"):
                why = ("an old-format cpio archive; only newc (070701/070702) is unpacked by the kernel"
                       if magic in (b"070707", b"\xc7\x71") else f"no cpio magic (found {magic!r})")
                raise self.fail(where, f"byte {at}: {why}")
            try:
                ino, mode, _uid, _gid, nlink, _mtime, size, dmaj, dmin, _rmaj, _rmin, namesize, check = (
                    int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13))
            except ValueError:
                raise self.fail(where, f"byte {at}: a cpio header field is not hexadecimal") from None
            if namesize < 1 or namesize > limits.max_name + 1:
                raise self.fail(where, f"byte {at}: name size {namesize} (limit {limits.max_name})")
            try:
                raw = stream.read(namesize)
                stream.skip(-(HEADER_SIZE + namesize) % 4)
            except _Short:
                raise self.fail(where, f"byte {at}: truncated name") from None
            if raw[-1:] != b"\0" or b"\0" in raw[:-1]:
                raise self.fail(where, f"byte {at}: name not terminated by its only NUL")
            text = raw[:-1].decode("utf-8", errors="surrogateescape")
            if text == TRAILER:
                self.skip_data(stream, size, where, at, text)
                return
            self.entry(stream, where, at, text, mode, size, nlink, (dmaj, dmin, ino, stat.S_IFMT(mode)),
                       check if magic == b"070702" else None, links)

    def entry(self, stream: _Stream, where: str, at: int, text: str, mode: int, size: int, nlink: int,
              key: tuple[int, int, int, int], check: int | None, links: dict[tuple[int, int, int, int], str],
              ) -> None:
        limits = self.limits
        if size > limits.max_file:
            raise self.fail(where, f"byte {at}: {text!r} declares {size} bytes (limit {limits.max_file})")
        self.count += 1
        if self.count > limits.max_entries:
            raise self.fail(where, f"more than {limits.max_entries} entries (the limit)")
        if self.count % 1024 == 0:
            self.check_time(where)
        name = normalize(text)
        self.names += len(name)
        if self.names > limits.max_names:
            raise self.fail(where, f"names of more than {limits.max_names} bytes together (the limit)")
        if name.count("/") >= limits.max_depth:
            raise self.fail(where, f"byte {at}: a name {name.count('/') + 1} directories deep "
                            f"(limit {limits.max_depth})")
        if ".." in text.split("/"):
            self.warn(f"{where}: {text!r} climbs above the archive's root; taken as {name!r}, as the kernel "
                      "would")
        kind = _KINDS.get(stat.S_IFMT(mode))
        if kind is Kind.SYMLINK:
            if size > limits.max_name:
                raise self.fail(where, f"byte {at}: symlink {text!r} target of {size} bytes")
            target = self.data(stream, size, where, at, text).decode("utf-8", errors="surrogateescape")
            if name:
                self.symlink(name, mode, target)
            return
        if kind is Kind.FILE:
            self.file(stream, where, at, text, name, mode, size, nlink, key, check, links)
            return
        self.skip_data(stream, size, where, at, text)
        if kind is None or size or not name:
            if kind is not None and size:
                self.warn(f"{where}: {text!r} ({kind.value}) carries {size} bytes of data: skipped, as the "
                          "kernel does")
            return
        full = self.place(name, where)
        if full is None:
            return
        there = self.nodes.get(full)
        if there is not None and stat.S_IFMT(there.mode ^ mode):
            self.remove(full)  # the kernel's clean_path: another type goes (a directory only if empty)
        if kind is Kind.OTHER and nlink > 1 and self.link(full, key, name, links) is not None:
            return
        if full not in self.nodes:  # mkdir and mknod do not replace what is there
            self.add(full, self.new(mode))

    def file(self, stream: _Stream, where: str, at: int, text: str, name: str, mode: int, size: int,
             nlink: int, key: tuple[int, int, int, int], check: int | None,
             links: dict[tuple[int, int, int, int], str]) -> None:
        full = self.place(name, where) if name else None
        node: _Node | None = None
        truncate = True
        if full is not None and nlink > 1 and key in links:
            truncate = False  # the kernel opens the link without O_TRUNC: no data, the content stays
            node = self.link(full, key, name, links)
            full = full if node is not None else None
        elif full is not None:
            if nlink > 1:
                links[key] = name
            there = self.nodes.get(full)
            if there is not None and there.kind is not Kind.FILE and not self.remove(full):
                self.warn(f"{where}: {text!r} is a directory that is not empty: the file is dropped, as the "
                          "kernel drops it")
                full = None
            else:
                node = self.nodes.get(full)
                if node is None:
                    node = self.new(mode)
                    self.add(full, node)
        writes = node is not None and (size > 0 or truncate)
        hold = writes and node is not None and node.wanted
        if hold:
            assert node is not None
            if self.kept - len(node.data or b"") + size > self.limits.max_kept:
                raise self.fail(where, f"byte {at}: the files read from the image hold more than "
                                f"{self.limits.max_kept} bytes (the limit); {text!r} has {size}")
        body = self.body(stream, size, where, at, text, hold, check if node is not None else None)
        if writes:
            assert node is not None
            self.kept += len(body or b"") - len(node.data or b"")
            node.size, node.data = size, body

    def body(self, stream: _Stream, size: int, where: str, at: int, name: str, hold: bool,
             check: int | None) -> bytes | None:
        """A file's data: held if `hold`, its checksum checked if `check` is not None (070702)."""
        if not hold and check is None:
            self.skip_data(stream, size, where, at, name)
            return None
        held: list[bytes] = []
        total = 0
        try:
            for piece in stream.pieces(size):
                if check is not None:
                    total += sum(piece)
                if hold:
                    held.append(piece)
            stream.skip(-size % 4)
        except _Short:
            raise self.fail(where, f"byte {at}: {name!r} is truncated") from None
        if check is not None and total & 0xFFFFFFFF != check:
            raise self.fail(where, f"byte {at}: {name!r}: bad data checksum (the kernel stops unpacking the "
                            "image there)")
        return b"".join(held) if hold else None

    def symlink(self, name: str, mode: int, target: str) -> None:
        full = self.place(name, None)
        # the kernel's clean_path(name, 0): whatever is there goes, a directory only if empty; symlink()
        # fails when something stays
        if full is not None and self.remove(full):
            self.add(full, self.new(mode, target))

    def link(self, full: str, key: tuple[int, int, int, int], name: str,
             links: dict[tuple[int, int, int, int], str]) -> _Node | None:
        """The kernel's maybe_link: `full` becomes another name of the first name of `key` in this archive,
        if that one is there. None when there is none (then `name` is the first) or link() fails."""
        first = links.get(key)
        if first is None:
            links[key] = name
            return None
        if not self.remove(full):
            return None
        src = self.place(first, None)
        node = self.nodes.get(src) if src is not None else None
        if node is None or node.kind is Kind.DIR:
            return None
        self.add(full, node)
        return node

    def readlink(self, path: str) -> str | None:
        node = self.nodes.get(path)
        return node.target if node is not None and node.target is not None else None

    def place(self, name: str, where: str | None) -> str | None:
        """Where `name` is created: its parent directory resolved through links inside the tree; None when
        that is no directory (the kernel's open or mkdir fails there)."""
        parent, _, base = name.rpartition("/")
        if not parent:
            return name
        node = self.nodes.get(parent)
        if node is None or node.kind is not Kind.DIR:
            real = resolve_inside(parent, self.readlink)
            node = self.nodes.get(real) if real else None
            if real == "":
                return base
            if node is None or node.kind is not Kind.DIR:
                if where is not None:
                    self.warn(f"{where}: {name!r}: its directory {parent!r} is not in the image before it: "
                              "skipped, as the kernel skips it")
                return None
            parent = real or parent
        return f"{parent}/{base}"

    def new(self, mode: int, target: str | None = None) -> _Node:
        self.inodes += 1
        return _Node(mode, self.inodes, self.inodes in self.also, target)

    def add(self, full: str, node: _Node) -> None:
        self.nodes[full] = node
        parent = full.rpartition("/")[0]
        self.kids[parent] = self.kids.get(parent, 0) + 1
        if not node.wanted and node.kind is Kind.FILE and self.keep(full):
            node.wanted = True

    def remove(self, full: str) -> bool:
        """Unlink `full`, or rmdir it if it is an empty directory. True if nothing is left there."""
        node = self.nodes.get(full)
        if node is None:
            return True
        if node.kind is Kind.DIR and self.kids.get(full):
            return False
        del self.nodes[full]
        self.kids.pop(full, None)
        self.kids[full.rpartition("/")[0]] -= 1
        return True

    def image_entries(self) -> dict[str, Entry]:
        return {name: Entry(name, n.kind, n.mode, n.size, n.data, n.target, n.inode)
                for name, n in self.nodes.items()}

    def data(self, stream: _Stream, size: int, where: str, at: int, name: str) -> bytes:
        try:
            out = stream.read(size)
            stream.skip(-size % 4)
        except _Short:
            raise self.fail(where, f"byte {at}: {name!r} is truncated") from None
        return out

    def skip_data(self, stream: _Stream, size: int, where: str, at: int, name: str) -> None:
        try:
            stream.skip(size + (-size % 4))
        except _Short:
            raise self.fail(where, f"byte {at}: {name!r} is truncated") from None

    # ---------------------------------------------------------------------------------- decompression

    def stdlib_chunks(self, f: _File, pos: int, fmt: Format, end: list[int]) -> Iterator[bytes]:
        """Decompressed output of the stream at `pos`; `end` gets the offset just after it."""
        d = _Decompressor(fmt)
        fed = 0
        where = f"offset {pos} ({fmt.value})"
        while not d.eof:
            data = b""
            if d.needs_input():
                data = f.pread(CHUNK, pos + fed)
                if not data:
                    raise self.fail(where, "compressed data ends early (truncated image)")
                fed += len(data)
            try:
                out = d.decompress(data, CHUNK)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
                raise self.fail(where, f"corrupt compressed data: {e}") from None
            if out:
                yield out
            else:
                self.check_time(where)
        end.append(pos + fed - len(d.unused_data()))

    def tool_chunks(self, f: _File, pos: int, end: int, fmt: Format) -> Generator[bytes, None, None]:
        """Output of `zstd -dc`/`lz4 -dc` fed bytes pos..end of the image, bounded in time and size."""
        program, package = TOOLS[fmt]
        where = f"offset {pos} ({fmt.value})"
        self.tool_runs += 1
        if self.tool_runs > self.limits.max_tool_runs:
            raise self.fail(where, f"more than {self.limits.max_tool_runs} streams for zstd or lz4 (the "
                            "limit): not read further")
        exe = shutil.which(program)
        if exe is None:
            raise self.fail(where, f"compressed with {fmt.value}: the {program} program is needed to read it "
                            f"(Debian package {package})")
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([exe, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err)
            feeder = threading.Thread(target=_feed, args=(f, pos, end, proc), daemon=True)
            feeder.start()
            try:
                assert proc.stdout is not None
                fd = proc.stdout.fileno()
                while True:
                    started = time.monotonic()
                    left = self.until - started
                    ready = left > 0 and select.select([fd], [], [], left)[0]
                    self.tool_wait += time.monotonic() - started
                    if not ready:
                        raise self.late(where)
                    chunk = os.read(fd, CHUNK)
                    if not chunk:
                        break
                    yield chunk
                try:
                    rc = proc.wait(max(self.until - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    raise self.fail(where, f"{program} did not exit") from None
                if rc != 0:
                    err.seek(0)
                    said = err.read(2000).decode("utf-8", "replace").strip()
                    raise self.fail(where, f"{program} failed (exit {rc}): {said or 'no message'}")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
                feeder.join(5)


def _feed(f: _File, pos: int, end: int, proc: subprocess.Popen[bytes]) -> None:
    """Write bytes pos..end of the open image to the tool's stdin (a thread: the main one reads its
    stdout). Read by position from the file already open, never by its name again."""
    assert proc.stdin is not None
    try:
        while pos < end:
            data = f.pread(min(CHUNK, end - pos), pos)
            if not data:
                break
            proc.stdin.write(data)
            pos += len(data)
    except (BrokenPipeError, ValueError, OSError):
        pass  # the tool stopped reading (killed, or it failed and says why on stderr)
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


class _Decompressor:
    """zlib, lzma and bz2 decompressors behind one interface, each bounded per call to `n` output bytes."""

    def __init__(self, fmt: Format) -> None:
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS) if fmt is Format.GZIP else None
        self.d: lzma.LZMADecompressor | bz2.BZ2Decompressor | None = None
        if fmt is Format.BZIP2:
            self.d = bz2.BZ2Decompressor()
        elif fmt is not Format.GZIP:
            self.d = lzma.LZMADecompressor(lzma.FORMAT_XZ if fmt is Format.XZ else lzma.FORMAT_ALONE)

    @property
    def eof(self) -> bool:
        return bool(self.z.eof if self.z is not None else self.d.eof)  # type: ignore[union-attr]

    def needs_input(self) -> bool:
        if self.z is not None:
            return not self.z.unconsumed_tail  # zlib keeps what it could not yet output as input
        return bool(self.d.needs_input)  # type: ignore[union-attr]

    def decompress(self, data: bytes, n: int) -> bytes:
        if self.z is not None:
            return self.z.decompress(self.z.unconsumed_tail + data, n)
        return self.d.decompress(data, n)  # type: ignore[union-attr]

    def unused_data(self) -> bytes:
        return self.z.unused_data if self.z is not None else self.d.unused_data  # type: ignore[union-attr]


class _File:
    """The image file, read by position (os.pread: the feeding thread reads it too)."""

    def __init__(self, path: str, f: BinaryIO) -> None:
        self.path = path
        self.fd = f.fileno()

    def pread(self, n: int, pos: int) -> bytes:
        return os.pread(self.fd, n, pos)

    def chunks(self, pos: int) -> Iterator[bytes]:
        """The file from `pos`, in reads that start small (an archive of a few entries reads little) and
        double up to CHUNK."""
        n = FIRST_READ
        while chunk := self.pread(n, pos):
            yield chunk
            pos += len(chunk)
            n = min(n * 2, CHUNK)


def _u32(f: _File, pos: int) -> int | None:
    raw = f.pread(4, pos)
    return int.from_bytes(raw, "little") if len(raw) == 4 else None


def _frame_end(f: _File, pos: int, size: int, fmt: Format) -> int:
    """Where the zstd or lz4 frames starting at `pos` end, from their headers and block sizes alone (the
    formats' specifications: zstd RFC 8878; lz4's frame and legacy formats). Frames of the same format may
    follow each other; anything else (padding, another segment) ends the stream."""
    legacy = 0x184C2102
    while pos + 4 <= size:
        magic = _u32(f, pos)
        if fmt is Format.ZSTD and magic == 0xFD2FB528:
            fhd = f.pread(1, pos + 4)[0] if pos + 5 <= size else 0
            single, checksum = fhd & 0x20, fhd & 0x04
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            at = pos + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            while True:
                raw = f.pread(3, at)
                if len(raw) < 3:
                    return size
                block = int.from_bytes(raw, "little")
                kind, length = (block >> 1) & 3, block >> 3
                at += 3 + (1 if kind == 1 else length)
                if block & 1:
                    break
            pos = at + (4 if checksum else 0)
        elif fmt is Format.ZSTD and magic is not None and magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            pos += 8 + (_u32(f, pos + 4) or 0)
        elif fmt is Format.LZ4 and magic == legacy:
            pos += 4
            while (chunk := _u32(f, pos)) not in (None, 0, legacy) and pos + 4 + chunk <= size:
                pos += 4 + chunk
        elif fmt is Format.LZ4 and magic == 0x184D2204:
            flg = f.pread(1, pos + 4)[0] if pos + 5 <= size else 0
            at = pos + 4 + 2 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
            while (chunk := _u32(f, at)) is not None and chunk != 0:
                at += 4 + (chunk & 0x7FFFFFFF) + (4 if flg & 0x10 else 0)
            pos = at + 4 + (4 if flg & 0x04 else 0)
        else:
            break
    return min(pos, size)


def read_image(path: str, limits: Limits | None = None, keep: Callable[[str], bool] | None = None, *,
               also: Collection[int] = (), until: float | None = None) -> Image:
    """Read the initramfs image `path`. `keep(name)`: whether to hold the content of the file a name
    (links resolved) is created at (default: every file's), within Limits.max_kept; `also`: the inodes
    (Entry.inode of an earlier reading of the same image) whose content to hold too, for a file reached
    through a link the names did not show. `until`: a time.monotonic() by which reading must be done
    (default: now + Limits.deadline). ArchiveError names the file and the reason for anything it cannot
    read or that breaks a limit."""
    limits = limits or Limits()
    until = time.monotonic() + limits.deadline if until is None else until
    reader = _Reader(path, limits, keep or (lambda _name: True), frozenset(also), until)
    segments: list[Segment] = []
    try:
        # O_NONBLOCK: a FIFO named here must not block the open; anything but a regular file is refused
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ArchiveError(f"{path}: cannot read: {e.strerror or e}") from None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        f = _File(path, handle)
        try:
            info = os.fstat(fd)
        except OSError as e:
            raise ArchiveError(f"{path}: cannot read: {e.strerror or e}") from None
        if not stat.S_ISREG(info.st_mode):
            raise ArchiveError(f"{path}: not a regular file")
        size = info.st_size
        if size == 0:
            raise ArchiveError(f"{path}: empty file")
        pos = 0
        try:
            while pos < size:
                reader.check_time(f"offset {pos}")
                head = f.pread(8, pos)
                if head[0] == 0:  # padding: find where it ends
                    pos = _past_zeros(f, pos, size, reader)
                    continue
                fmt = Format.CPIO if head.startswith(b"0707") else detect(head)
                if fmt is None or fmt is Format.LZO:
                    what = "LZO-compressed data, which this reader does not unpack" if fmt else \
                        f"neither a cpio archive nor compressed data (bytes {head[:6].hex()})"
                    raise reader.fail(f"offset {pos}", what)
                if fmt is Format.CPIO and pos % 4:
                    raise reader.fail(f"offset {pos}", "cpio archive not aligned to 4 bytes")
                segments.append(Segment(pos, fmt))
                where = f"offset {pos} ({fmt.value})"
                if len(segments) > limits.max_segments:
                    raise reader.fail(where, f"more than {limits.max_segments} segments (the limit): "
                                      "not read further")
                if fmt is Format.CPIO:
                    # a run of archives, zeros between them, read as the one stream they are in the file
                    stream = _Stream(reader.counted(f.chunks(pos), where))
                    reader.archive(stream, where)
                    reader.archives(stream, where, base=pos)
                    pos += stream.offset
                    continue
                if fmt in TOOLS:
                    # the tools do not say where their stream ended, and take padding after it for a broken
                    # frame: they are fed exactly the stream, whose end its frame headers give
                    stop = _frame_end(f, pos, size, fmt)
                    gen = reader.tool_chunks(f, pos, stop, fmt)
                    try:
                        reader.archives(_Stream(reader.counted(gen, where)), where)
                    finally:
                        gen.close()
                    pos = stop
                    continue
                end: list[int] = []
                # the archives are read to the stream's end, so the decompressor saw its end too
                reader.archives(_Stream(reader.counted(reader.stdlib_chunks(f, pos, fmt, end), where)), where)
                pos = end[0]
        except OSError as e:
            raise ArchiveError(f"{path}: cannot read: {e.strerror or e}") from None
    if not segments:
        raise ArchiveError(f"{path}: holds only zero bytes")
    more = [f"and {reader.dropped} more warnings like these"] if reader.dropped else []
    warnings = reader.warnings + more
    return Image(path, reader.image_entries(), tuple(segments), tuple(warnings))


def _past_zeros(f: _File, pos: int, size: int, reader: _Reader) -> int:
    while pos < size:
        block = f.pread(min(CHUNK, size - pos), pos)
        if not block:
            return size
        stripped = block.lstrip(b"\0")
        if stripped:
            return pos + len(block) - len(stripped)
        pos += len(block)
        reader.check_time(f"zero padding at offset {pos}")
    return size
