"""Unpacking an image as the kernel's init/initramfs.c does, and the bounds on hostile images
(pymultipathd/initrd/archive.py): deep names, long zero padding, many segments, many archives, FIFOs, the
one deadline. Bounds are asserted by structure (index items, peeks, limits raised), never by time."""

from __future__ import annotations

import builtins
import gzip
import lzma
import os
import time

import pytest
from test_initrd_archive import DIR, FILE, LINK, cpio, cpio_entry, tool_compress, write

from pymultipathd.initrd import archive, inputs
from pymultipathd.initrd.archive import ArchiveError, Format, Kind, Limits

TRAILER = cpio_entry("TRAILER!!!", 0)


def _read(tmp_path, data: bytes, **kw: object) -> archive.Image:
    return archive.read_image(write(tmp_path, data), **kw)  # type: ignore[arg-type]


def _fails(tmp_path, data: bytes, *words: str, **kw: object) -> str:
    with pytest.raises(ArchiveError) as info:
        _read(tmp_path, data, **kw)
    for w in words:
        assert w in str(info.value), str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------------ the kernel's rules

def test_a_bad_070702_checksum_stops_the_reading(tmp_path):
    good = cpio_entry("a", FILE, b"abc", magic=b"070702")
    assert _read(tmp_path, good + TRAILER).lookup("a").data == b"abc"
    bad = cpio_entry("a", FILE, b"abc", magic=b"070702", check=7)
    _fails(tmp_path, bad + TRAILER, "'a': bad data checksum")


def test_a_name_whose_directory_is_missing_is_dropped(tmp_path):
    img = _read(tmp_path, cpio({"etc": "/", "etc/multipath/wwids": "x"}, parents=False))
    assert img.lookup("etc/multipath/wwids") is None and list(img.entries) == ["etc"]
    assert "its directory 'etc/multipath' is not in the image" in img.warnings[0]


def test_a_name_through_a_symlinked_directory_is_created_at_its_target(tmp_path):
    files = {"var": "/", "var/mp": "/", "etc": "/", "etc/multipath": "->/var/mp", "etc/multipath/wwids": "w"}
    img = _read(tmp_path, cpio(files, parents=False))
    assert img.entries["var/mp/wwids"].data == b"w" and "etc/multipath/wwids" not in img.entries
    assert img.lookup("etc/multipath/wwids").data == b"w"


def test_what_replaces_a_directory(tmp_path):
    full = cpio({"d": "/", "d/x": "1", "e": "/"}, parents=False)
    later = cpio({"d": "->/nowhere", "e": "->/d"}, parents=False)
    img = _read(tmp_path, full + gzip.compress(later))
    assert img.entries["d"].kind is Kind.DIR  # not empty: stays, the symlink is dropped
    assert img.entries["e"].kind is Kind.SYMLINK  # empty: removed, replaced
    img = _read(tmp_path, full + gzip.compress(cpio({"d": "file", "e": "file"}, parents=False)))
    assert img.entries["d"].kind is Kind.DIR and img.entries["e"].data == b"file"
    assert any("not empty: the file is dropped" in w for w in img.warnings)


def test_a_directory_entry_with_data_is_skipped(tmp_path):
    data = cpio_entry("etc", DIR, b"xxxx") + cpio_entry("etc/a", FILE, b"1") + TRAILER
    img = _read(tmp_path, data)
    assert img.entries == {}
    assert "carries 4 bytes of data: skipped" in img.warnings[0]


def test_hard_links_are_linked_at_entry_time_by_type_within_an_archive(tmp_path):
    dev = cpio_entry("d", 0o020600, ino=9, nlink=2)
    data = (dev + cpio_entry("a", FILE, b"", ino=9, nlink=2) + cpio_entry("b", FILE, b"x", ino=9, nlink=2)
            + TRAILER + cpio_entry("c", FILE, b"", ino=9, nlink=2) + TRAILER)
    img = _read(tmp_path, data)
    assert img.entries["d"].kind is Kind.OTHER  # another type: no link to it
    assert img.entries["a"].data == img.entries["b"].data == b"x"
    assert img.entries["a"].inode == img.entries["b"].inode != img.entries["c"].inode
    assert img.entries["c"].data == b""  # the table ends with its archive


def test_hard_linked_content_written_under_a_name_not_kept(tmp_path):
    wanted = "etc/multipath/wwids"
    dirs = cpio_entry("etc", DIR) + cpio_entry("etc/multipath", DIR) + cpio_entry("usr", DIR)
    empty = cpio_entry(wanted, FILE, b"", ino=5, nlink=2)
    full = cpio_entry("usr/w", FILE, b"/x/\n", ino=5, nlink=2)
    gnu = dirs + empty + full + TRAILER
    img = _read(tmp_path, gnu, keep=lambda n: n == wanted)
    assert img.lookup(wanted).data == b"/x/\n"  # the wanted name came first: its inode is held
    first = dirs + full + empty + TRAILER
    img = _read(tmp_path, first, keep=lambda n: n == wanted)
    entry = img.lookup(wanted)
    assert entry.data is None and entry.size == 4
    again = _read(tmp_path, first, keep=lambda n: n == wanted, also={entry.inode})
    assert again.lookup(wanted).data == b"/x/\n"


# ---------------------------------------------------------------------------------------------- bounds

def test_the_directory_index_has_one_item_per_name(tmp_path):
    chain = [("/".join(f"d{i}" for i in range(depth + 1)), "/") for depth in range(40)]
    deep = chain[-1][0]
    files = dict(chain) | {f"{deep}/f{i}": "x" for i in range(50)}
    img = _read(tmp_path, cpio(files))
    assert img.lookup(f"{deep}/f3").data == b"x"
    assert sum(len(v) for v in img.children().values()) == len(img.entries) == 90


def test_deep_names_and_many_name_bytes_are_refused(tmp_path):
    deep = "/".join("d" for _ in range(20))
    _fails(tmp_path, cpio({deep: "x"}, parents=False), "a name 20 directories deep (limit 8)",
           limits=Limits(max_depth=8))
    many = {f"{'n' * 50}{i}": "" for i in range(10)}
    _fails(tmp_path, cpio(many), "names of more than 200 bytes together", limits=Limits(max_names=200))


def test_zero_padding_is_skipped_a_buffer_at_a_time(tmp_path, monkeypatch):
    data = lzma.compress(cpio({"a": "1"}) + b"\0" * (8 << 20) + cpio({"b": "2"}))
    peeks = 0
    real = archive._Stream.peek

    def counting(self: archive._Stream) -> int | None:
        nonlocal peeks
        peeks += 1
        return real(self)

    monkeypatch.setattr(archive._Stream, "peek", counting)
    img = _read(tmp_path, data)
    assert img.lookup("b").data == b"2"
    assert peeks < 100  # not one per zero byte


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_one_deadline_for_the_whole_image_names_what_took_long(tmp_path, compression):
    main = cpio({"a": "1"}) + b"\0" * (1 << 20)
    data = lzma.compress(main) if compression == "xz" else tool_compress("zstd", main)
    text = _fails(tmp_path, data, "reading the image took longer than 0 s (the limit)",
                  limits=Limits(deadline=0.0))
    assert "zstd took" not in text
    _fails(tmp_path, data, "took longer", until=time.monotonic() - 1)


def test_segments_and_tool_runs_are_bounded(tmp_path):
    tiny = tool_compress("zstd", cpio({"a": "1"}))
    many = b"".join(tiny + b"\0" * (-len(tiny) % 4) for _ in range(Limits().max_tool_runs + 1))
    _fails(tmp_path, many, f"more than {Limits().max_tool_runs} streams for zstd or lz4")
    gz = gzip.compress(cpio({"a": "1"}))
    _fails(tmp_path, gz * 6, "more than 5 segments", limits=Limits(max_segments=5))


def test_many_uncompressed_archives_are_one_run_counted_once(tmp_path):
    img = _read(tmp_path, TRAILER * 5000 + cpio({"last": "x"}), limits=Limits(max_total=1 << 20))
    assert img.lookup("last").data == b"x"
    assert [s.format for s in img.segments] == [Format.CPIO]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.img"
    os.mkfifo(fifo)
    with pytest.raises(ArchiveError, match="not a regular file"):
        archive.read_image(str(fifo))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "multipath.conf")
    assert inputs.DirTree(str(root)).read("etc/multipath.conf") is None


def test_the_tool_is_fed_from_the_file_already_open(tmp_path, monkeypatch):
    path = write(tmp_path, tool_compress("zstd", cpio({"a": "zstd"})))

    def no_open(*args: object, **kw: object) -> object:
        raise AssertionError("the image is opened again by name")

    monkeypatch.setattr(builtins, "open", no_open)
    assert archive.read_image(path).lookup("a").data == b"zstd"


def test_symlinks_to_directories_and_loops_in_parents(tmp_path):
    files = {"a": "->b", "b": "->a", "a/x": "1"}
    img = _read(tmp_path, cpio(files, parents=False))
    assert "a/x" not in img.entries and img.resolve("a/x") is None
    assert img.lookup("") is not None and img.listdir("") == ["a", "b"]
    assert img.listdir("a") is None and LINK
