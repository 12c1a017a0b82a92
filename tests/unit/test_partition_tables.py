"""The partition-table parser (pure) and its I/O adapter, over crafted disk images: the kernel's rules, and
bounded reads whatever the table says."""

import errno
import logging
import re
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymultipathd.dm import maps
from pymultipathd.dm.errors import DMError
from pymultipathd.dm.ioctl import DeviceInfo
from pymultipathd.dm.maps import (
    GPT_MAX_ARRAY,
    MAX_EBRS,
    MAX_PARTITIONS,
    MAX_READ,
    MAX_TABLE_READ,
    Partition,
    PartitionTable,
    PartitionTableError,
    parse_partition_table,
)
from pymultipathd.dm.table import LinearTable

MIB = 1 << 20


class Disk:
    """A sparse image ({byte offset: bytes}) of `size` bytes whose read() records every request."""

    def __init__(self, image: dict[int, bytes], size: int) -> None:
        self.image = image
        self.size = size
        self.reads: list[tuple[int, int]] = []

    def read(self, offset, length):
        self.reads.append((offset, length))
        if length > MIB:  # recorded for the assertion; not allocated (a crafted header asks for 256 GiB)
            return b""
        out = bytearray(length)
        for off, data in self.image.items():
            lo, hi = max(off, offset), min(off + len(data), offset + length)
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - off : hi - off]
        return bytes(out)

    def parse(self, ssz=512) -> PartitionTable:
        return parse_partition_table(self.read, self.size, ssz)

    def assert_bounded(self):
        """No read over 1 MiB, none outside the disk, and not more than MAX_TABLE_READ in all."""
        assert self.reads
        assert max(n for _, n in self.reads) <= MIB, self.reads
        assert all(off >= 0 and off + n <= self.size for off, n in self.reads), self.reads
        assert sum(n for _, n in self.reads) <= MAX_TABLE_READ


def mbr(*entries, status=0, sig=True) -> bytes:
    """An MBR or EBR sector; entries are (type, first lba, sectors) for slots 1, 2, ..."""
    s = bytearray(512)
    for i, (ptype, lba, n) in enumerate(entries):
        struct.pack_into("<B3sB3sII", s, 446 + 16 * i, status, b"", ptype, b"", lba, n)
    if sig:
        s[510:512] = b"\x55\xaa"
    return bytes(s)


def gpt_header(*, ssz=512, my_lba=1, alt_lba=0, first_usable=34, last_usable=100, entries_lba=2, count=128,
               esize=128, ecrc=0, hsize=92) -> bytes:
    h = bytearray(ssz)
    h[:8] = b"EFI PART"
    struct.pack_into("<II", h, 8, 0x00010000, hsize)
    struct.pack_into("<QQQQ", h, 24, my_lba, alt_lba, first_usable, last_usable)
    struct.pack_into("<QIII", h, 72, entries_lba, count, esize, ecrc)
    struct.pack_into("<I", h, 16, zlib.crc32(bytes(h[:hsize])))
    return bytes(h)


def entry_array(parts, count=128) -> bytes:
    """`count` 128-byte entries; parts are (number, first lba, last lba)."""
    a = bytearray(count * 128)
    for num, first, last in parts:
        off = (num - 1) * 128
        a[off : off + 16] = b"\x11" * 16  # any non-zero type GUID
        a[off + 16 : off + 32] = num.to_bytes(16, "little")
        struct.pack_into("<QQ", a, off + 32, first, last)
    return bytes(a)


def gpt_disk(parts, *, sectors=2048, ssz=512, count=128, primary=True, backup=False, **header) -> Disk:
    """A protective MBR, a GPT header in LBA 1 with its entries from LBA 2 and, with `backup`, the backup
    header in the last LBA with its entries before it. `header` overrides header fields (both copies)."""
    last = sectors - 1
    # no array for a count no disk could hold: the header is refused before it is read
    entries = entry_array(parts, count) if count * 128 <= 2 * GPT_MAX_ARRAY else b""
    fields = {"ssz": ssz, "count": count, "last_usable": last - 33, "ecrc": zlib.crc32(entries)} | header
    image = {0: mbr((0xEE, 1, min(sectors - 1, 0xFFFFFFFF)))}
    if primary:
        image[ssz] = gpt_header(**fields)
        image[2 * ssz] = entries
    if backup:
        image[last * ssz] = gpt_header(**(fields | {"my_lba": last, "entries_lba": last - 32}))
        image[(last - 32) * ssz] = entries
    return Disk(image, sectors * ssz)


def test_bounds():
    assert MAX_READ <= MIB and MAX_READ % 128 == 0
    assert GPT_MAX_ARRAY == 4 * MIB  # efi.c: KMALLOC_MAX_SIZE with 4 KiB pages
    assert MAX_PARTITIONS == 255  # DISK_MAX_PARTS less the whole disk


# --- MBR ---------------------------------------------------------------------------------------------------


def test_no_partition_table():
    assert Disk({}, MIB).parse() == PartitionTable()
    assert Disk({0: mbr((0x83, 2048, 100), sig=False)}, MIB).parse() == PartitionTable()
    assert Disk({}, 100).parse() == PartitionTable()  # smaller than a sector: nothing to read


def test_mbr_primaries_and_logicals():
    ext_start = 10000
    disk = Disk({
        0: mbr((0x83, 2048, 4096), (0, 0, 0), (0x05, ext_start, 20000), (0x82, 40000, 1000)),
        # first EBR: logical 5 at ext+63, next EBR at ext+5000
        ext_start * 512: mbr((0x83, 63, 1000), (0x05, 5000, 2000)),
        (ext_start + 5000) * 512: mbr((0x83, 63, 500)),
    }, 1 << 30)
    assert disk.parse() == PartitionTable((
        Partition(1, 2048, 4096),
        Partition(4, 40000, 1000),
        Partition(5, ext_start + 63, 1000),
        Partition(6, ext_start + 5000 + 63, 500),
    ))
    disk.assert_bounded()


def test_mbr_on_4k_sectors_is_reported_in_512_byte_sectors():
    disk = Disk({0: mbr((0x83, 256, 512), (0x05, 1024, 1024)), 1024 * 4096: mbr((0x83, 1, 100))}, 64 * MIB)
    assert disk.parse(4096).partitions == (Partition(1, 2048, 4096), Partition(5, 8192 + 8, 800))


def test_mbr_primaries_past_the_end_are_skipped_or_truncated_as_the_kernel_does():
    # 2048 sectors: 2 starts past the end (skipped), 3 runs past it (truncated, core.c blk_add_partition)
    table = Disk({0: mbr((0x83, 100, 100), (0x83, 5000, 10), (0x83, 2000, 100))}, MIB).parse()
    assert table.partitions == (Partition(1, 100, 100), Partition(3, 2000, 48))
    assert len(table.problems) == 2
    assert "partition 2 starts at sector 5000, past the end" in table.problems[0]
    assert "partition 3 (100 sectors at 2000) extends past the end" in table.problems[1]
    assert "truncated to 48 sectors" in table.problems[1]


def test_zero_size_entries_are_skipped_silently():
    disk = Disk({0: mbr((0x83, 100, 0), (0x05, 200, 100)), 200 * 512: mbr((0x83, 1, 0))}, MIB)
    assert disk.parse() == PartitionTable()


def test_a_boot_indicator_other_than_0_or_0x80_is_not_a_partition_table():
    # msdos.c: 55AA with a bad boot indicator is a FAT boot sector (or garbage), not partitions
    assert Disk({0: mbr((0x83, 100, 100), status=0x29)}, MIB).parse() == PartitionTable()
    assert Disk({0: mbr((0x83, 100, 100), status=0x80)}, MIB).parse().partitions == (Partition(1, 100, 100),)


def test_ebr_loop_a_b_a_stops_with_a_reason():
    # EBR a (sector 100) links to b (150), whose link (offset 0 in the extended partition) is a again.
    disk = Disk({
        0: mbr((0x0F, 100, 1000)),
        100 * 512: mbr((0x83, 1, 10), (0x05, 50, 10)),
        150 * 512: mbr((0x83, 1, 10), (0x05, 0, 10)),
    }, MIB)
    table = disk.parse()
    assert table.partitions == (Partition(5, 101, 10), Partition(6, 151, 10))
    assert table.problems == ("the EBR chain loops back to sector 100: stopped there",)
    assert disk.reads == [(0, 512), (100 * 512, 512), (150 * 512, 512)]


def test_ebr_pointing_at_itself_stops():
    disk = Disk({0: mbr((0x05, 100, 1000)), 100 * 512: mbr((0x83, 1, 10), (0x05, 0, 10))}, MIB)
    table = disk.parse()
    assert table.partitions == (Partition(5, 101, 10),) and "loops back to sector 100" in table.problems[0]


def _chain(n, data=True, ext_start=2048):
    """An extended partition holding `n` EBRs 8 sectors apart, each (with `data`) with a 4-sector logical."""
    image = {0: mbr((0x05, ext_start, 8 * n))}
    for k in range(n):
        here = ext_start + 8 * k
        link = [(0x05, 8 * (k + 1), 8)] if k + 1 < n else []
        image[here * 512] = mbr(*([(0x83, 1, 4)] if data else [(0, 0, 0)]), *link)
    return Disk(image, (ext_start + 8 * n + 8) * 512)


def test_a_chain_of_1000_ebrs_stops_at_the_kernels_partition_limit():
    disk = _chain(1000)
    table = disk.parse()
    assert [p.number for p in table.partitions] == list(range(5, MAX_PARTITIONS + 1))
    assert table.problems == ("logical partitions after number 255 are not mapped (the kernel's limit)",)
    assert len(disk.reads) == 1 + 252  # sector 0, the 251 EBRs mapped, the one that went over
    disk.assert_bounded()


def test_a_chain_of_empty_ebrs_stops_after_100_links_as_the_kernel_does():
    disk = _chain(1000, data=False)
    table = disk.parse()
    assert table.partitions == ()
    assert len(table.problems) == 1 and "100 EBRs in a row without a logical partition" in table.problems[0]
    assert len(disk.reads) == 1 + 100


def test_ebrs_followed_are_capped_per_table():
    # every 90th EBR holds a logical: never 100 empty links in a row, never 251 logicals, still bounded
    ext_start, n = 2048, MAX_EBRS + 50
    image = {0: mbr((0x05, ext_start, 8 * n))}
    for k in range(n):
        data = [(0x83, 1, 4)] if k % 90 == 0 else [(0, 0, 0)]
        image[(ext_start + 8 * k) * 512] = mbr(*data, (0x05, 8 * (k + 1), 8))
    disk = Disk(image, (ext_start + 8 * n + 8) * 512)
    table = disk.parse()
    assert len(table.partitions) == 12  # EBRs 0, 90, ..., 990
    assert len(table.problems) == 1 and f"more than {MAX_EBRS} EBRs" in table.problems[0]
    assert len(disk.reads) == 1 + MAX_EBRS


def test_logicals_outside_their_extended_partition():
    # Extended partition: sectors 1000..1999 of a 4096-sector disk. msdos.c holds slots 3 and 4 of an EBR to
    # it; slots 1 and 2 only to the disk (core.c).
    disk = Disk({
        0: mbr((0x05, 1000, 1000)),
        1000 * 512: mbr((0x83, 1500, 100),  # slot 1: outside the extended partition, inside the disk: mapped
                        (0x83, 9000, 10),  # slot 2: past the end of the disk: numbered, skipped
                        (0x83, 100, 2000),  # slot 3: beyond the extended partition: skipped
                        (0x83, 10, 10)),  # slot 4: inside: mapped
    }, 4096 * 512)
    table = disk.parse()
    assert table.partitions == (Partition(5, 2500, 100), Partition(7, 1010, 10))
    assert len(table.problems) == 2
    assert "partition 6 starts at sector 10000, past the end" in table.problems[0]
    assert "slot 3, outside its extended partition" in table.problems[1]


def test_an_extended_partition_past_the_end_of_the_disk():
    table = Disk({0: mbr((0x83, 100, 100), (0x05, 5000, 100))}, MIB).parse()
    assert table.partitions == (Partition(1, 100, 100),)
    assert table.problems == ("an EBR at sector 5000 is past the end of the disk (2048 sectors): "
                              "the chain stops there",)


def test_logicals_of_two_extended_partitions_are_numbered_on():
    disk = Disk({
        0: mbr((0x05, 100, 100), (0x05, 300, 100)),
        100 * 512: mbr((0x83, 1, 10)),
        300 * 512: mbr((0x83, 1, 20)),
    }, MIB)
    assert disk.parse().partitions == (Partition(5, 101, 10), Partition(6, 301, 20))


# --- GPT ---------------------------------------------------------------------------------------------------


def test_gpt_partitions():
    disk = gpt_disk([(1, 2048, 4095), (3, 4096, 8191)], sectors=1 << 21)
    assert disk.parse() == PartitionTable((Partition(1, 2048, 2048), Partition(3, 4096, 4096)))
    disk.assert_bounded()


def test_gpt_4k_sectors_are_reported_in_512_byte_sectors():
    disk = gpt_disk([(1, 256, 511)], ssz=4096, sectors=1 << 18, first_usable=6)
    assert disk.parse(4096) == PartitionTable((Partition(1, 2048, 2048),))


def test_gpt_bad_crc_is_an_error():
    with pytest.raises(PartitionTableError, match="no valid GPT header.*header fails its CRC"):
        Disk(gpt_disk([(1, 34, 100)]).image | {512 + 40: b"\x01"}, MIB).parse()
    disk = gpt_disk([(1, 34, 100)])
    disk.image[2 * 512] = b"\xff" + disk.image[2 * 512][1:]
    with pytest.raises(PartitionTableError, match="primary \\(LBA 1\\): partition entries fail their CRC"):
        disk.parse()


def test_gpt_backup_header_is_used_when_the_primary_is_unusable():
    disk = gpt_disk([(1, 34, 100)], backup=True)
    disk.image[512] = b"\0" * 512
    table = disk.parse()
    assert table.partitions == (Partition(1, 34, 67),)
    assert table.problems == ("primary GPT (LBA 1) unusable (no GPT signature): using the backup (LBA 2047)",)


@pytest.mark.parametrize("esize", [2**31, 64, 256, 0, 129, 2**32 - 1])
def test_gpt_entry_size_other_than_128_is_refused_before_the_entries_are_read(esize):
    disk = gpt_disk([(1, 34, 100)], esize=esize)
    with pytest.raises(PartitionTableError, match=f"partition entry size {esize} is not 128"):
        disk.parse()
    disk.assert_bounded()
    assert all(n <= 512 for _, n in disk.reads)  # sector 0 and the headers: no entry array


@pytest.mark.parametrize("count", [2**32 - 1, GPT_MAX_ARRAY // 128 + 1])
def test_gpt_entry_count_over_the_kernels_limit_is_refused(count):
    disk = gpt_disk([], count=count, sectors=1 << 16)
    with pytest.raises(PartitionTableError, match=f"{count} partition entries .* over the kernel's limit"):
        disk.parse()
    disk.assert_bounded()
    assert all(n <= 512 for _, n in disk.reads)


def test_gpt_largest_array_the_kernel_accepts_is_read_in_bounded_chunks():
    count = GPT_MAX_ARRAY // 128  # 32768 entries, 4 MiB
    disk = gpt_disk([(1, 2048, 4095), (255, 4096, 4097), (256, 8192, 8193), (32768, 9000, 9001)],
                    count=count, sectors=1 << 16)
    table = disk.parse()
    assert table.partitions == (Partition(1, 2048, 2048), Partition(255, 4096, 2))
    assert table.problems == ("2 GPT partition(s) after entry 255 not mapped (the kernel's limit is 255 "
                              "partitions)",)
    disk.assert_bounded()
    assert [n for _, n in disk.reads] == [512, 512] + [MIB] * 4


def test_gpt_without_entries_is_unusable():
    with pytest.raises(PartitionTableError, match="no partition entries"):
        gpt_disk([], count=0).parse()


@pytest.mark.parametrize("entries_lba", [2047, 2040, 2**64 - 1])
def test_gpt_entry_array_past_the_end_of_the_disk(entries_lba):
    disk = gpt_disk([(1, 34, 100)], entries_lba=entries_lba)
    with pytest.raises(PartitionTableError, match=f"entries at LBA {entries_lba} .* past the end of the"):
        disk.parse()
    disk.assert_bounded()


@pytest.mark.parametrize(("fields", "reason"), [
    ({"my_lba": 2}, "header says it is at LBA 2"),
    ({"first_usable": 2048}, "usable LBAs 2048..2014 go past the last LBA 2047"),
    ({"last_usable": 2048}, "usable LBAs 34..2048 go past the last LBA 2047"),
    ({"first_usable": 100, "last_usable": 99}, "usable LBAs 100..99 are reversed"),
    ({"hsize": 91}, "header size 91 is not within 92..512"),
    ({"hsize": 513}, "header size 513 is not within 92..512"),
])
def test_gpt_header_fields_must_agree_with_the_disk(fields, reason):
    with pytest.raises(PartitionTableError, match=reason):
        gpt_disk([(1, 34, 100)], **fields).parse()


def test_gpt_partitions_outside_the_disk_are_skipped():
    table = gpt_disk([
        (1, 34, 100),
        (2, 200, 199),  # first > last
        (3, 5000, 5010),  # starts past the end
        (4, 2000, 2048),  # ends past the end: efi.c skips it (no truncation for GPT)
        (5, 2047, 2047),  # the last LBA: fine
        (6, 1, 33),  # outside the usable LBAs but inside the disk: efi.c maps it, so do we
    ]).parse()
    assert table.partitions == (Partition(1, 34, 67), Partition(5, 2047, 1), Partition(6, 1, 33))
    assert table.problems == (
        "GPT partition 2: first LBA 200 is after its last LBA 199: skipped",
        "GPT partition 3 starts at LBA 5000, past the last LBA 2047: skipped",
        "GPT partition 4 ends at LBA 2048, past the last LBA 2047: skipped, as the kernel does",
    )


def test_protective_mbr_entry_must_start_at_lba_1():
    disk = gpt_disk([(1, 34, 100)])
    disk.image[0] = mbr((0xEE, 2, 2000))
    table = disk.parse()
    assert table.partitions == () and "does not start at LBA 1" in table.problems[0]


def test_gpt_on_a_disk_too_small_for_one():
    with pytest.raises(PartitionTableError, match="no room for a GPT"):
        Disk({0: mbr((0xEE, 1, 1))}, 1024).parse()


def test_problems_are_capped():
    table = gpt_disk([(n, 5000, 5001) for n in range(1, 101)]).parse()
    assert len(table.problems) == 16 and table.problems[-1] == "and 85 more problems"


def test_reads_are_checked_whatever_the_caller_answers():
    with pytest.raises(PartitionTableError, match="read 100 of 512 bytes"):
        parse_partition_table(lambda off, n: b"\0" * 100, MIB)
    with pytest.raises(PartitionTableError, match="logical block size 1000"):
        parse_partition_table(Disk({}, MIB).read, MIB, 1000)


def _u64s():
    return st.one_of(st.integers(0, 3000), st.integers(0, 2**64 - 1))


def _u32s():
    return st.one_of(st.integers(0, 3000), st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(
    sectors=st.sampled_from([3, 40, 2048, 9000]),
    count=st.one_of(st.integers(0, 300), st.sampled_from([32768, 32769]), st.integers(0, 2**32 - 1)),
    esize=st.sampled_from([128, 128, 0, 64, 256, 2**31]),
    entries_lba=st.one_of(st.integers(0, 40), _u64s()),
    my_lba=st.sampled_from([1, 1, 1, 0, 2]),
    first_usable=_u64s(),
    last_usable=_u64s(),
    parts=st.lists(st.tuples(st.integers(1, 300), _u64s(), _u64s()), max_size=8),
)
def test_any_gpt_header_gives_bounded_reads_and_partitions_inside_the_disk(
    sectors, count, esize, entries_lba, my_lba, first_usable, last_usable, parts
):
    disk = gpt_disk([p for p in parts if p[0] <= count], sectors=sectors, count=count, esize=esize,
                    entries_lba=entries_lba, my_lba=my_lba, first_usable=first_usable,
                    last_usable=last_usable)
    try:
        table = disk.parse()
    except PartitionTableError:
        pass
    else:
        _inside(table, sectors)
    disk.assert_bounded()


@settings(max_examples=150, deadline=None)
@given(
    primaries=st.lists(st.tuples(st.sampled_from([0, 0x83, 0x05, 0x0F, 0x85]), _u32s(), _u32s()), max_size=4),
    ebrs=st.dictionaries(st.integers(0, 3000), st.lists(
        st.tuples(st.sampled_from([0, 0x83, 0x05]), st.integers(0, 4000), st.integers(0, 4000)), max_size=4)),
)
def test_any_mbr_gives_bounded_reads_and_partitions_inside_the_disk(primaries, ebrs):
    image = {0: mbr(*primaries)} | {s * 512: mbr(*e) for s, e in ebrs.items() if s}
    disk = Disk(image, 3000 * 512)
    _inside(disk.parse(), 3000)
    disk.assert_bounded()


def _inside(table, sectors):
    numbers = [p.number for p in table.partitions]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= MAX_PARTITIONS for n in numbers)
    assert all(p.size > 0 and p.start + p.size <= sectors for p in table.partitions), table


# --- the I/O adapter: read_partitions, add_partition_maps --------------------------------------------------


INFO = DeviceInfo(name="mpatha", uuid="mpath-3600a", major=253, minor=3, open_count=0, event_nr=1,
                  target_count=1, flags=0)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A 1 MiB file standing in for the map's device node; returns a function writing {offset: bytes}."""
    path = tmp_path / "dm-3"
    path.write_bytes(bytes(MIB))
    monkeypatch.setattr(maps, "_device_node", lambda info: str(path))
    monkeypatch.setattr(maps, "_sector_size", lambda info: 512)

    def write(image: dict[int, bytes]) -> str:
        with open(path, "r+b") as f:
            for off, data in image.items():
                f.seek(off)
                f.write(data)
        return str(path)

    return write


def test_read_partitions_logs_each_problem_once_with_map_and_node(node, caplog):
    path = node({0: mbr((0x83, 100, 100), (0x83, 5000, 10), (0x83, 2000, 100))})
    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        table = maps.read_partitions(INFO)
    assert table.partitions == (Partition(1, 100, 100), Partition(3, 2000, 48))
    assert [r.getMessage() for r in caplog.records] == [f"mpatha: partition table on {path}: {p}"
                                                        for p in table.problems]
    assert len(caplog.records) == 2 and all(r.MAP == "mpatha" for r in caplog.records)


def test_read_partitions_unusable_table_is_a_dm_error(node):
    disk = gpt_disk([(1, 34, 100)], esize=2**31)
    path = node(disk.image)
    with pytest.raises(DMError, match=re.escape(path) + ": no valid GPT header.*entry size 2147483648") as e:
        maps.read_partitions(INFO)
    assert e.value.errno == errno.EINVAL and e.value.name == "mpatha"


@pytest.mark.parametrize(("offset", "length"), [(0, MAX_READ + 1), (MIB - 256, 512), (-1, 512), (0, 0)])
def test_read_partitions_refuses_reads_the_parser_should_never_ask_for(node, monkeypatch, offset, length):
    node({})

    def rogue(read, total, ssz):
        read(offset, length)
        return PartitionTable()

    monkeypatch.setattr(maps, "parse_partition_table", rogue)
    with pytest.raises(DMError, match=f"refused to read {length} bytes at byte {offset}"):
        maps.read_partitions(INFO)


class FakeCtl:
    """Just enough of Control for add_partition_maps on a map without partition maps yet."""

    def __init__(self) -> None:
        self.loaded: dict[str, list] = {}

    def info(self, name):
        return INFO

    def create(self, name, uuid):
        self.loaded[name] = []

    def load(self, name, lines, readonly=False):
        self.loaded[name] = [str(line) for line in lines]

    def resume(self, name, udev_flags=0):
        return INFO


def test_add_partition_maps_maps_what_the_kernel_would(node, caplog):
    node({0: mbr((0x83, 100, 100), (0x83, 5000, 10), (0x83, 2000, 100))})
    ctl = FakeCtl()
    with caplog.at_level(logging.WARNING, logger="pymultipathd"):
        made = maps.add_partition_maps(ctl, "mpatha", devices=[])
    assert made == ["mpatha-part1", "mpatha-part3"]
    assert ctl.loaded == {
        "mpatha-part1": [str(LinearTable(100, "253:3", 100).line())],
        "mpatha-part3": [str(LinearTable(48, "253:3", 2000).line())],
    }
    assert len(caplog.records) == 2
