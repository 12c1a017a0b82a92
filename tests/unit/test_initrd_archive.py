"""Reading initramfs images (pymultipathd/initrd/archive.py) from images crafted here: newc archives written
by a small writer below, compressed every way the kernel reads, an early-microcode prefix, zero padding, and
hostile ones (huge declared sizes, names climbing out, links pointing out, truncation, a bomb).

The writer is also what tests/unit/test_initrd_verify.py builds its images with."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess

import pytest

from pymultipathd.initrd import archive
from pymultipathd.initrd.archive import ArchiveError, Kind, Limits

# ------------------------------------------------------------------------------------------ the writer

FILE, DIR, LINK = 0o100644, 0o040755, 0o120777


def cpio_entry(name: str, mode: int = FILE, data: bytes = b"", *, ino: int = 1, nlink: int = 1,
               size: int | None = None, namesize: int | None = None, magic: bytes = b"070701",
               check: int | None = None) -> bytes:
    """One newc entry: header, NUL-terminated name and data, each padded to 4 bytes. `size`, `namesize`
    and `check` (070702: the sum of the data's bytes) may lie (hostile archives)."""
    raw = name.encode("utf-8", "surrogateescape") + b"\0"
    if check is None:
        check = sum(data) & 0xFFFFFFFF if magic == b"070702" else 0
    fields = (ino, mode, 0, 0, nlink, 0, len(data) if size is None else size, 0, 0, 0, 0,
              len(raw) if namesize is None else namesize, check)
    head = magic + b"".join(b"%08X" % v for v in fields)
    out = head + raw
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


Files = dict[str, bytes | str | tuple[int, bytes]]


def with_parents(files: Files) -> Files:
    """`files` with a directory entry before each name for each of its parents not named, as the
    generators write them (the kernel creates nothing in a directory that does not exist)."""
    out: Files = {}
    for name, value in files.items():
        parts = archive.normalize(name).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in out and parent not in files:
                out[parent] = "/"
        out[name] = value
    return out


def cpio(files: dict[str, bytes | str | tuple[int, bytes]], *, trailer: bool = True,
         parents: bool = True) -> bytes:
    """A newc archive: name -> file content (bytes), symlink target ("->target" as str), directory ("/"
    as str), or (mode, data); the directories of the names first unless `parents` is false."""
    out = b""
    for ino, (name, value) in enumerate((with_parents(files) if parents else files).items(), 2):
        if isinstance(value, tuple):
            out += cpio_entry(name, value[0], value[1], ino=ino)
        elif isinstance(value, str) and value.startswith("->"):
            out += cpio_entry(name, LINK, value[2:].encode(), ino=ino)
        elif value == "/":
            out += cpio_entry(name, DIR, ino=ino)
        else:
            out += cpio_entry(name, FILE, value.encode() if isinstance(value, str) else value, ino=ino)
    if trailer:
        out += cpio_entry("TRAILER!!!", 0, ino=0)
    return out + b"\0" * (-len(out) % 512)  # as cpio pads to its block size


def tool_compress(tool: str, data: bytes) -> bytes:
    exe = shutil.which(tool)
    # zstd and lz4 are Debian packages `make setup` installs: a missing one fails the test, never skips it
    assert exe, f"{tool} is needed (apt-get install {tool}; make setup installs it)"
    argv = [exe, "-q", "-c"] + (["-l"] if tool == "lz4" else [])  # lz4: the legacy frame the kernel reads
    return subprocess.run(argv, input=data, capture_output=True, check=True, timeout=60).stdout


COMPRESS = {
    "none": lambda data: data,
    "gzip": lambda data: gzip.compress(data, 1),
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    "bzip2": lambda data: bz2.compress(data, 1),
    "zstd": lambda data: tool_compress("zstd", data),
    "lz4": lambda data: tool_compress("lz4", data),
}

MICROCODE = cpio({"kernel": "/", "kernel/x86": "/", "kernel/x86/microcode": "/",
                  "kernel/x86/microcode/GenuineIntel.bin": b"\x01" * 100})


def image(files: dict[str, bytes | str | tuple[int, bytes]], compression: str = "gzip", *,
          early: bool = True) -> bytes:
    """An image as Debian's and dracut's generators make them: the early-microcode archive, uncompressed
    and padded, then the main archive, compressed."""
    main = COMPRESS[compression](cpio(files))
    return (MICROCODE + b"\0" * 512 if early else b"") + main


def write(tmp_path, data: bytes, name: str = "initrd.img"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# -------------------------------------------------------------------------------------------- reading

FILES = {".": "/", "etc": "/", "etc/multipath.conf": "defaults {\n find_multipaths yes\n}\n",
         "lib": "->usr/lib", "usr": "/", "usr/lib": "/", "usr/lib/udev": "/",
         "usr/lib/udev/rules.d": "/", "usr/lib/udev/rules.d/62-pymultipath.rules": b"# rules\n",
         "dev": "/", "dev/console": (0o020600, b"")}


@pytest.mark.parametrize("compression", list(COMPRESS))
def test_every_compression_with_an_early_microcode_prefix(tmp_path, compression):
    img = archive.read_image(write(tmp_path, image(FILES, compression)))
    assert img.lookup("/etc/multipath.conf").data == b"defaults {\n find_multipaths yes\n}\n"
    assert img.lookup("etc/multipath.conf").kind is Kind.FILE
    # lib -> usr/lib (merged /usr) is followed inside the image
    assert img.lookup("lib/udev/rules.d/62-pymultipath.rules").data == b"# rules\n"
    assert img.listdir("lib/udev/rules.d") == ["62-pymultipath.rules"]
    assert img.lookup("kernel/x86/microcode/GenuineIntel.bin").size == 100
    assert img.entries["dev/console"].kind is Kind.OTHER
    expected = ["cpio"] if compression == "none" else ["cpio", compression]
    assert [s.format.value for s in img.segments][:len(expected)] == expected
    assert img.segments[0].offset == 0


def test_no_prefix_and_the_crc_magic(tmp_path):
    data = cpio_entry("a", data=b"x", magic=b"070702") + cpio_entry("TRAILER!!!", 0, magic=b"070702")
    img = archive.read_image(write(tmp_path, gzip.compress(data)))
    assert img.lookup("a").data == b"x"


def test_later_entries_override_earlier_ones_across_segments(tmp_path):
    first = cpio({"etc/multipath.conf": "old\n", "etc/x": "kept\n"})
    second = gzip.compress(cpio({"etc/multipath.conf": "new\n"}))
    third = lzma.compress(cpio({"etc/y": "->/etc/multipath.conf"}))
    fourth = tool_compress("zstd", cpio({"etc/z": "zstd"})) + tool_compress("zstd", cpio({"etc/x": "last"}))
    fifth = tool_compress("lz4", cpio({"etc/w": "lz4"}))
    data = (first + b"\0" * 8 + second + b"\0" * 4 + third + b"\0" * 100 + fourth + b"\0" * 4 + fifth
            + b"\0" * 8)
    img = archive.read_image(write(tmp_path, data))
    assert img.lookup("etc/multipath.conf").data == b"new\n"
    assert img.lookup("etc/y").data == b"new\n"
    assert [img.lookup(f"etc/{n}").data for n in "xzw"] == [b"last", b"zstd", b"lz4"]
    assert [s.format.value for s in img.segments] == ["cpio", "gzip", "xz", "zstd", "lz4"]


def test_several_archives_inside_one_compressed_stream(tmp_path):
    inner = cpio({"a": "1"}) + b"\0" * 64 + cpio({"b": "2", "a": "3"})
    img = archive.read_image(write(tmp_path, gzip.compress(inner)))
    assert (img.lookup("a").data, img.lookup("b").data) == (b"3", b"2")


def test_names_are_normalized(tmp_path):
    img = archive.read_image(write(tmp_path, cpio({"./etc//a": "1", "/etc/b": "2", "etc/./c": "3"})))
    assert sorted(img.entries) == ["etc", "etc/a", "etc/b", "etc/c"]
    assert img.listdir("/etc") == ["a", "b", "c"] and img.lookup("etc").kind is Kind.DIR


def test_keep_holds_only_the_files_asked_for(tmp_path):
    img = archive.read_image(write(tmp_path, image(FILES)), keep=lambda name: name.startswith("etc/"))
    assert img.lookup("etc/multipath.conf").data
    rules = img.lookup("lib/udev/rules.d/62-pymultipath.rules")
    assert rules.data is None and rules.size == 8


def test_hard_links_share_their_content(tmp_path):
    data = (cpio_entry("bin", DIR) + cpio_entry("bin/a", FILE, b"", ino=7, nlink=2)
            + cpio_entry("bin/b", FILE, b"busybox", ino=7, nlink=2) + cpio_entry("TRAILER!!!", 0))
    img = archive.read_image(write(tmp_path, data))
    assert img.lookup("bin/a").data == img.lookup("bin/b").data == b"busybox"


def test_symlinks_never_lead_out_of_the_image(tmp_path):
    files = {"etc/multipath.conf": "->../../../../etc/shadow", "etc/abs": "->/etc/passwd",
             "etc/passwd": "inside\n", "loop1": "->loop2", "loop2": "->loop1"}
    img = archive.read_image(write(tmp_path, cpio(files)))
    assert img.resolve("etc/multipath.conf") == "etc/shadow"
    assert img.lookup("etc/multipath.conf") is None  # not the host's /etc/shadow
    assert img.lookup("etc/abs").data == b"inside\n"
    assert img.lookup("loop1") is None and img.resolve("loop1/x") is None


def test_dotdot_names_stay_inside_and_are_warned_about(tmp_path):
    img = archive.read_image(write(tmp_path, cpio({"../../etc/multipath.conf": "x"})))
    assert list(img.entries) == ["etc", "etc/multipath.conf"]
    assert "climbs above" in img.warnings[0]


# -------------------------------------------------------------------------------------- hostile images

def _fails(tmp_path, data: bytes, *words: str, limits: Limits | None = None) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ArchiveError) as info:
        archive.read_image(path, limits)
    text = str(info.value)
    assert text.startswith(path + ":"), text
    for w in words:
        assert w in text, text
    return text


def test_a_huge_declared_size_is_refused(tmp_path):
    _fails(tmp_path, cpio_entry("big", FILE, b"abc", size=0xFFFFFFFF), "declares 4294967295 bytes")
    _fails(tmp_path, cpio_entry("big", FILE, b"abc", size=1 << 20), "truncated")


def test_a_long_name_or_a_bad_one_is_refused(tmp_path):
    _fails(tmp_path, cpio_entry("x" * 5000), "name size 5001")
    _fails(tmp_path, cpio_entry("abc", namesize=2), "NUL")
    _fails(tmp_path, cpio_entry("big", LINK, b"t" * 5000), "symlink")


def test_truncated_images(tmp_path):
    whole = cpio({"etc/multipath.conf": "x" * 1000})
    _fails(tmp_path, whole[:50], "truncated cpio header at byte 0")
    _fails(tmp_path, whole[:300], "truncated")
    _fails(tmp_path, cpio({"a": "1"}, trailer=False), "byte 116: no cpio magic")  # zeros, then no trailer
    _fails(tmp_path, cpio({"a": "1"}, trailer=False)[:116], "truncated cpio header at byte 116")
    _fails(tmp_path, gzip.compress(whole)[:100], "gzip", "ends early")
    _fails(tmp_path, b"0707" + b"Z" * 106, "no cpio magic")
    _fails(tmp_path, b"070701" + b"G" * 104, "not hexadecimal")
    _fails(tmp_path, MICROCODE + b"garbage!" * 10, "neither a cpio archive nor compressed data")
    _fails(tmp_path, gzip.compress(cpio({"a": "1"}) + b"junk"), "junk after a cpio archive")


def test_corrupt_compressed_data(tmp_path):
    data = bytearray(lzma.compress(cpio({"a": "x" * 5000})))
    data[40] ^= 0xFF
    _fails(tmp_path, bytes(data), "xz")


def test_a_decompression_bomb_stops_at_the_cap(tmp_path):
    bomb = gzip.compress(cpio({"zeros": b"\0" * (8 << 20)}))
    assert len(bomb) < 20_000
    _fails(tmp_path, bomb, "more than 1048576 bytes", limits=Limits(max_total=1 << 20))


@pytest.mark.parametrize("tool", ["zstd", "lz4"])
def test_a_bomb_through_a_tool_stops_at_the_cap(tmp_path, tool):
    bomb = tool_compress(tool, cpio({"zeros": b"\0" * (8 << 20)}))
    _fails(tmp_path, bomb, "more than 1048576 bytes", limits=Limits(max_total=1 << 20))


def test_entry_count_and_file_size_limits(tmp_path):
    many = cpio({f"f{i}": "" for i in range(20)})
    _fails(tmp_path, many, "more than 10 entries", limits=Limits(max_entries=10))
    _fails(tmp_path, cpio({"f": "x" * 100}), "declares 100 bytes", limits=Limits(max_file=50))


def test_a_missing_tool_is_named_with_its_package(tmp_path, monkeypatch):
    data = image(FILES, "zstd")
    monkeypatch.setattr(archive.shutil, "which", lambda name: None)
    _fails(tmp_path, data, "the zstd program is needed", "Debian package zstd")


def test_a_failing_tool_says_why(tmp_path):
    data = bytearray(image(FILES, "zstd", early=False))
    data[20:40] = b"\xff" * 20
    _fails(tmp_path, bytes(data), "zstd failed")


def test_unreadable_empty_and_zero_files(tmp_path):
    with pytest.raises(ArchiveError, match="cannot read"):
        archive.read_image(str(tmp_path / "missing"))
    _fails(tmp_path, b"", "empty file")
    _fails(tmp_path, b"\0" * 1000, "only zero bytes")
    _fails(tmp_path, b"\x89LZO\0" * 4, "LZO")


def test_resolve_inside_is_chroot_like():
    links = {"a": "b/c", "b": "/d", "d/c": "../../e"}
    assert archive.resolve_inside("a/f", links.get) == "e/f"
    assert archive.resolve_inside("a", links.get, follow_last=False) == "a"
    assert archive.normalize("../../x/./y/../z") == "x/z"


def test_the_lz4_frame_format_and_padding_after_it(tmp_path):
    exe = shutil.which("lz4")
    assert exe, "lz4 is needed (make setup installs it)"
    frame = subprocess.run([exe, "-q", "-c", "--content-size", "-BD"], input=cpio({"a": "frame"}),
                           capture_output=True, check=True, timeout=60).stdout
    data = MICROCODE + frame + b"\0" * 12 + gzip.compress(cpio({"b": "2"}))
    img = archive.read_image(write(tmp_path, data))
    assert (img.lookup("a").data, img.lookup("b").data) == (b"frame", b"2")


def test_the_content_held_is_bounded_over_all_files(tmp_path):
    files = {f"etc/f{i}": "x" * 40 for i in range(3)}
    _fails(tmp_path, cpio(files), "'etc/f2' has 40", "hold more than 100 bytes (the limit)",
           limits=Limits(max_kept=100))
    # a file not asked for is listed with its size only, and counts nothing
    img = archive.read_image(write(tmp_path, cpio({**files, "etc/big": "x" * 1000})), Limits(max_kept=100),
                             keep=lambda name: name != "etc/big" and name != "etc/f2")
    assert (img.lookup("etc/big").data, img.lookup("etc/big").size) == (None, 1000)
    assert img.lookup("etc/f1").data == b"x" * 40
