"""The device-mapper layer (pymultipathd.dm) against the real kernel, with dmsetup as the independent oracle.

Runs inside the test VM. Every map made here is named with PREFIX and removed at the end of its test.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import struct
import tempfile
import threading
import uuid
import zlib

import pytest

from pymultipathd.dm import maps
from pymultipathd.dm.errors import (
    DMBusy,
    DMError,
    DMExists,
    DMNameTooLong,
    DMNoSuchDevice,
    DMTableRejected,
)
from pymultipathd.dm.ioctl import DM_SUBSYSTEM_UDEV_FLAG1, Control
from pymultipathd.dm.table import (
    Features,
    MultipathTable,
    PathGroup,
    PathSpec,
    parse_multipath_line,
    parse_multipath_status,
)
from tests.vm import dm as beddm
from tests.vm.sysutil import CommandError, read_sysfs, run, settle, wait_for

pytestmark = pytest.mark.vm

PREFIX = "pympdm"
SD_SIZE_MB = 64
SECTORS = SD_SIZE_MB * 2048
NO_KPARTX = DM_SUBSYSTEM_UDEV_FLAG1  # keeps the system's 95-kpartx.rules off our maps


# --- oracle helpers ----------------------------------------------------------------------------------


def dmsetup(*args: str) -> str:
    return run(["dmsetup", *args])


def norm(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def our_names() -> list[str]:
    out = run(["dmsetup", "ls"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def dmsetup_ls() -> dict[str, tuple[int, int]]:
    out = {}
    for line in run(["dmsetup", "ls"], check=False).splitlines():
        m = re.match(r"^(\S+)\s+\((\d+)[:,]\s*(\d+)\)", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def dmsetup_info_c(name: str) -> dict[str, str]:
    fields = "name,uuid,major,minor,open,events,segments,attr"
    line = dmsetup("info", "-c", "--noheadings", "--separator", ";", "-o", fields, name).strip()
    return dict(zip(fields.split(","), line.split(";"), strict=True))


def dmsetup_tree() -> dict[str, set[tuple[int, int]]]:
    """Roots of `dmsetup ls --tree` -> devnos of their direct children."""
    tree: dict[str, set[tuple[int, int]]] = {}
    root = None
    tree_chars = "│├└|`"  # UTF-8 or ASCII drawing, depending on the locale
    for line in run(["dmsetup", "ls", "--tree"], check=False).splitlines():
        m = re.search(r"\((\d+)[:,]\s*(\d+)\)", line)
        if not m:
            continue
        if not line[0].isspace() and line[0] not in tree_chars:
            root = line.split()[0]
            tree[root] = set()
            continue
        branch = re.search(r"[├└|`][─-]", line)  # "│"/"|" alone only continues an outer level
        pos = branch.start() if branch else -1
        if root is not None and pos == 1:  # direct child of the root
            tree[root].add((int(m.group(1)), int(m.group(2))))
    return tree


def assert_agrees_with_dmsetup(ctl: Control, name: str) -> None:
    """table, status, info -c, ls and ls --tree of one map: the layer and dmsetup must say the same.

    Settles first: udevd and blkid open the map (open count) and read through it (current group) while they
    handle its events, which would change the answers between the two queries. Not on a suspended map: a
    udev worker reading it waits for the resume, so the queue cannot empty (settle before suspending)."""
    if not ctl.info(name).suspended:
        settle()
    assert [" ".join(t.line().split()) for t in ctl.table(name)] == norm(dmsetup("table", name))
    assert [" ".join(t.line().split()) for t in ctl.status(name)] == norm(dmsetup("status", name))
    info = ctl.info(name)
    c = dmsetup_info_c(name)
    assert (c["name"], c["uuid"]) == (info.name, info.uuid)
    assert (int(c["major"]), int(c["minor"])) == (info.major, info.minor)
    assert (int(c["open"]), int(c["events"]), int(c["segments"])) == (
        info.open_count, info.event_nr, info.target_count)
    attr = c["attr"]
    assert ("L" in attr, "I" in attr, "s" in attr, "r" in attr) == (
        info.live_table, info.inactive_table, info.suspended, info.readonly), attr
    listed = {d.name: (d.major, d.minor) for d in ctl.list_devices()}
    assert listed == dmsetup_ls()
    uuids = {d.name: d.uuid for d in ctl.list_devices()}
    assert uuids[name] in (info.uuid, None)
    tree = dmsetup_tree()
    if name in tree:
        assert tree[name] == set(ctl.deps(name))
    deps = re.findall(r"\((\d+)[:,]\s*(\d+)\)", dmsetup("deps", name).partition(":")[2])
    assert {(int(a), int(b)) for a, b in deps} == set(ctl.deps(name))


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def ctl(scsi_debug, iscsi_bed):
    """The layer's control handle; its maps go before the path devices under them (hence the deps)."""
    c = Control()
    yield c
    # A failed test may leave a map suspended or queueing with no path: either would hang every later
    # reader (udev workers too). Resume and stop queueing first, then remove.
    for name in our_names():
        try:
            if c.info(name).suspended:
                c.resume(name)
            c.message(name, "fail_if_no_path")
        except DMError:
            pass  # not a multipath map (partitions) or already gone
    # Partition maps sort after their map ("x-part1" > "x"): remove in reverse order.
    settle()
    for name in sorted(our_names(), reverse=True):
        beddm.remove(name)
    c.close()


def two_group_table(paths, *, queue: bool = False, queue_mode: str | None = None) -> MultipathTable:
    return MultipathTable(
        SECTORS,
        tuple(PathGroup((PathSpec(p.devno),), "round-robin") for p in paths),
        Features(queue_if_no_path=queue, queue_mode=queue_mode),
    )


def direct_io(path: str, offset: int, data: bytes | None = None, length: int = 0) -> bytes:
    """One O_DIRECT write (data given) or read (length given), page-aligned buffer."""
    size = len(data) if data is not None else length
    buf = mmap.mmap(-1, size)
    fd = os.open(path, (os.O_RDWR if data is not None else os.O_RDONLY) | os.O_DIRECT)
    try:
        if data is not None:
            buf.write(data)
            assert os.pwritev(fd, [buf], offset) == size
            os.fsync(fd)
            return data
        assert os.preadv(fd, [buf], offset) == size
        return bytes(buf)
    finally:
        os.close(fd)


def _write_at(node: str, chunks: dict[int, bytes]) -> None:
    fd = os.open(node, os.O_WRONLY)
    try:
        for off, data in chunks.items():
            os.pwrite(fd, data, off)
        os.fsync(fd)
    finally:
        os.close(fd)


def _mbr_sector(entries: list[tuple[int, int, int]]) -> bytes:
    s = bytearray(512)
    for i, (ptype, lba, n) in enumerate(entries):
        struct.pack_into("<B3sB3sII", s, 446 + 16 * i, 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", lba, n)
    s[510:512] = b"\x55\xaa"
    return bytes(s)


def write_mbr(node: str, primaries: list[tuple[int, int, int]], logical: tuple[int, int]) -> None:
    """MBR with the given primaries; the extended one (type 5) holds one logical (offset in it, size)."""
    ext = next(lba for t, lba, _ in primaries if t == 0x05)
    _write_at(node, {0: _mbr_sector(primaries), ext * 512: _mbr_sector([(0x83, *logical)])})


def write_gpt(node: str, parts: list[tuple[int, int]], total: int) -> None:
    """GPT with primary and backup headers; parts are (first, last) LBAs (512-byte sectors)."""
    entries = bytearray(128 * 128)
    for i, (first, last) in enumerate(parts):
        e = i * 128
        entries[e : e + 16] = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le  # Linux data
        entries[e + 16 : e + 32] = uuid.uuid4().bytes_le
        struct.pack_into("<QQ", entries, e + 32, first, last)
    ecrc = zlib.crc32(entries)

    def header(my_lba: int, alt_lba: int, entries_lba: int) -> bytes:
        h = bytearray(92)
        h[:8] = b"EFI PART"
        struct.pack_into("<II", h, 8, 0x00010000, 92)
        struct.pack_into("<QQQQ", h, 24, my_lba, alt_lba, 34, total - 34)
        h[56:72] = uuid.uuid4().bytes_le
        struct.pack_into("<QIII", h, 72, entries_lba, 128, 128, ecrc)
        struct.pack_into("<I", h, 16, zlib.crc32(bytes(h)))
        return bytes(h) + bytes(420)

    last = total - 1
    _write_at(node, {
        0: _mbr_sector([(0xEE, 1, min(total - 1, 0xFFFFFFFF))]),
        512: header(1, last, 2), 1024: bytes(entries),
        (last - 32) * 512: bytes(entries), last * 512: header(last, 1, last - 32),
    })


def usable(path: str) -> bool:
    """True if the path serves I/O (sector 0 reads)."""
    try:
        direct_io(path, 0, length=4096)
        return True
    except OSError:
        return False


@pytest.fixture
def lun(scsi_debug):
    """Two usable paths of one scsi_debug LUN (64 MiB). Three hosts, so that at least two serve I/O whatever
    ALUA state scsi_debug derives from the host numbers (a path refusing reads was seen in this bed)."""
    sd = scsi_debug(1, paths=3, dev_size_mb=SD_SIZE_MB)
    paths = [p for p in sd.paths if usable(p.node)][:2]
    assert len(paths) == 2 and paths[0].wwid == paths[1].wwid, sd.paths
    return paths

# --- tests -------------------------------------------------------------------------------------------


def test_version_targets_and_listing(ctl):
    m = re.search(r"Driver version:\s+(\d+)\.(\d+)\.(\d+)", dmsetup("version"))
    assert m and ctl.version() == tuple(int(x) for x in m.groups())
    run(["modprobe", "dm_multipath"])
    assert ctl.target_version("multipath") >= (1, 0, 0)
    theirs = {}
    for line in dmsetup("targets").splitlines():
        name, ver = line.split()
        theirs[name] = tuple(int(x) for x in ver.lstrip("v").split("."))
    assert ctl.target_versions() == theirs
    assert ctl.target_versions()["multipath"] == ctl.target_version("multipath")
    assert {d.name: (d.major, d.minor) for d in ctl.list_devices()} == dmsetup_ls()


def test_create_matches_dmsetup_and_udev_makes_links(ctl, lun):
    name = f"{PREFIX}a"
    wwid = lun[0].wwid
    sems_before = run(["ipcs", "-s"])
    table = two_group_table(lun, queue=True)
    info = maps.create_multipath(ctl, name, wwid, table)
    assert info.live_table and not info.suspended and info.uuid == f"mpath-{wwid}"
    assert_agrees_with_dmsetup(ctl, name)
    # The kernel reads our table back; selectors may add per-path args, the shape stays.
    back = parse_multipath_line(ctl.table(name)[0].line())
    assert [p.dev for g in back.groups for p in g.paths] == [p.devno for p in lun]
    assert back.features.queue_if_no_path and back.size == SECTORS
    # udev: settle returns (no cookie left waiting) and the DM rules made the node and the by-id links.
    run(["udevadm", "settle", "--timeout=120"])
    node = f"/dev/mapper/{name}"
    assert os.path.realpath(node) == f"/dev/dm-{info.minor}"
    assert os.path.realpath(f"/dev/disk/by-id/dm-uuid-mpath-{wwid}") == f"/dev/dm-{info.minor}"
    assert os.path.realpath(f"/dev/disk/by-id/dm-name-{name}") == f"/dev/dm-{info.minor}"
    assert run(["ipcs", "-s"]) == sems_before  # no semaphore cookie was made
    maps.remove_map(ctl, name, retries=20)
    run(["udevadm", "settle", "--timeout=120"])
    assert name not in dmsetup_ls()
    assert not os.path.lexists(node) and not os.path.lexists(f"/dev/disk/by-id/dm-uuid-mpath-{wwid}")


def test_write_verify_through_layer_map(ctl, lun, write_verify):
    name = f"{PREFIX}wv"
    maps.create_multipath(ctl, name, lun[0].wwid, two_group_table(lun))
    settle()
    res = write_verify(f"/dev/mapper/{name}").run(passes=2)
    assert res.ok, str(res)
    # What went through the map is on the LUN: read it back through each path, bypassing the map.
    data = direct_io(f"/dev/mapper/{name}", 0, length=4096)
    for p in lun:
        assert direct_io(p.node, 0, length=4096) == data


def test_messages_change_status(ctl, lun):
    name = f"{PREFIX}msg"
    a, b = (p.devno for p in lun)
    maps.create_multipath(ctl, name, lun[0].wwid, two_group_table(lun))

    def st():
        settle()  # messages raise DM events; udev's probes through the map can move the current group
        mine = parse_multipath_status(ctl.status(name)[0].params)
        oracle = beddm.status(name)
        for g_mine, (g_state, g_paths) in zip(mine.groups, oracle.groups, strict=True):
            assert g_mine.state == g_state
            assert [(p.dev, "A" if p.active else "F", p.fail_count) for p in g_mine.paths] == [
                (p.devno, p.state, p.fail_count) for p in g_paths]
        return mine

    ev = ctl.info(name).event_nr
    ctl.message(name, f"fail_path {a}")
    assert ctl.wait_event(name, ev).event_nr > ev  # failing a path raises a DM event
    s = st()
    assert not s.path(a).active and s.path(a).fail_count == 1 and s.path(b).active
    ctl.message(name, f"reinstate_path {a}")
    assert st().path(a).active

    ctl.message(name, "queue_if_no_path")
    assert parse_multipath_line(ctl.table(name)[0].line()).features.queue_if_no_path
    assert "queue_if_no_path" in dmsetup("table", name)
    ctl.message(name, "fail_if_no_path")
    assert not parse_multipath_line(ctl.table(name)[0].line()).features.queue_if_no_path
    assert "queue_if_no_path" not in dmsetup("table", name)

    ctl.message(name, "switch_group 2")
    assert st().next_group == 2
    direct_io(f"/dev/dm-{ctl.info(name).minor}", 0, length=4096)  # I/O makes the switch happen
    s = st()
    assert s.active_group() == 2 and [g.state for g in s.groups] == ["E", "A"]

    ctl.message(name, "disable_group 1")
    assert st().groups[0].state == "D"
    ctl.message(name, "enable_group 1")
    assert st().groups[0].state in ("E", "A")  # no longer bypassed (I/O may have made it current again)
    assert_agrees_with_dmsetup(ctl, name)
    with pytest.raises(Exception, match=name) as e:
        ctl.message(name, "no_such_message 1")
    assert getattr(e.value, "errno", 0) == errno.EINVAL


def test_suspend_resume_flags_and_tables(ctl, lun):
    name = f"{PREFIX}sr"
    maps.create_multipath(ctl, name, lun[0].wwid, two_group_table(lun))
    for kw in ({}, {"noflush": True}, {"nolockfs": True}, {"noflush": True, "nolockfs": True}):
        settle()  # udev done with the map's events before it stops answering I/O
        assert ctl.suspend(name, **kw).suspended
        try:  # a map left suspended would hang every later reader (udev workers included)
            assert "SUSPENDED" in dmsetup("info", name)
            assert_agrees_with_dmsetup(ctl, name)
        finally:
            resumed = ctl.resume(name, **kw)
        assert not resumed.suspended
        assert "ACTIVE" in dmsetup("info", name)
    # an inactive table, cleared again
    other = MultipathTable(SECTORS, (PathGroup(tuple(PathSpec(p.devno) for p in lun), "round-robin"),))
    assert ctl.load(name, [other.line()]).inactive_table
    assert norm(dmsetup("table", "--inactive", name)) == [" ".join(t.line().split())
                                                           for t in ctl.table(name, inactive=True)]
    assert_agrees_with_dmsetup(ctl, name)
    assert not ctl.clear(name).inactive_table
    assert "INACTIVE" not in dmsetup("info", name)
    # reload = load + resume swaps the table in
    maps.reload_map(ctl, name, [other.line()])
    assert len(parse_multipath_line(ctl.table(name)[0].line()).groups) == 1
    assert_agrees_with_dmsetup(ctl, name)


@pytest.mark.parametrize("queue_mode", [None, "bio"])
def test_suspend_with_queued_io_then_resume_loses_nothing(ctl, lun, queue_mode):
    name = f"{PREFIX}q"
    table = two_group_table(lun, queue=True, queue_mode=queue_mode)
    info = maps.create_multipath(ctl, name, lun[0].wwid, table)
    dev = f"/dev/dm-{info.minor}"
    for p in lun:
        ctl.message(name, f"fail_path {p.devno}")
    assert parse_multipath_status(ctl.status(name)[0].params).active_paths() == 0
    payload = os.urandom(64 * 1024)
    offset = 40 * 1024 * 1024
    done: list[object] = []
    started = threading.Event()

    def writer():
        started.set()
        try:
            direct_io(dev, offset, payload)
            done.append("ok")
        except OSError as e:
            done.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    started.wait(30)
    if queue_mode == "bio":  # bio-based dm counts queued bios as in flight: prove the I/O is held
        wait_for(lambda: sum(int(x) for x in open(f"/sys/block/dm-{info.minor}/inflight").read().split()) > 0,
                 60, "the write to be queued")
    assert not done
    assert ctl.suspend(name, noflush=True).suspended
    # multipathd's way back: a fresh table (all paths usable) swapped in under the queued I/O
    ctl.load(name, [table.line()])
    ctl.resume(name, noflush=True)
    t.join(120)
    assert done == ["ok"]
    assert direct_io(dev, offset, length=len(payload)) == payload
    assert parse_multipath_status(ctl.status(name)[0].params).active_paths() == 2


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_partition_maps_appear_and_go_with_the_map(ctl, lun, label):
    name = f"{PREFIX}p"
    wwid = lun[0].wwid
    dev = lun[0].dev
    # primary 1 (8 MiB), then 16 MiB as partition 2 (GPT) or as logical 5 in extended 2 (MBR)
    if label == "gpt":
        write_gpt(lun[0].node, [(2048, 18431), (18432, 51199)], SECTORS)
        numbers = [1, 2]
    else:
        write_mbr(lun[0].node, [(0x83, 2048, 16384), (0x05, 20480, 49152)], logical=(2048, 32768))
        numbers = [1, 5]
    # Written through a path before the map exists, so no udev watch event on the map runs kpartx.
    run(["blockdev", "--rereadpt", lun[0].node])
    settle()
    # The oracle is the kernel's own partition parser, on the path device.
    expect = {n: (int(read_sysfs(f"/sys/block/{dev}/{dev}{n}/start")),
                  int(read_sysfs(f"/sys/block/{dev}/{dev}{n}/size"))) for n in numbers}
    info = maps.create_multipath(ctl, name, wwid, two_group_table(lun), udev_flags=NO_KPARTX)
    settle()
    assert not [n for n in our_names() if n != name]  # nobody else made partition maps
    made = maps.add_partition_maps(ctl, name)
    assert sorted(made) == sorted(f"{name}-part{n}" for n in expect)
    for n, (start, size) in expect.items():
        part = f"{name}-part{n}"
        assert norm(dmsetup("table", part)) == [f"0 {size} linear {info.devno} {start}"]
        assert dmsetup_info_c(part)["uuid"] == f"part{n}-mpath-{wwid}"
        assert ctl.deps(part) == [(info.major, info.minor)]
        assert_agrees_with_dmsetup(ctl, part)
    assert dmsetup_tree()[made[0]] == {(info.major, info.minor)}
    assert name not in dmsetup_tree()  # the map is held by its partitions: not a root of the tree
    # data written through a partition map lands at its offset in the map
    first = min(expect)
    settle()
    direct_io(f"/dev/mapper/{name}-part{first}", 0, b"P" * 4096)
    assert direct_io(f"/dev/mapper/{name}", expect[first][0] * 512, length=4096) == b"P" * 4096
    assert maps.add_partition_maps(ctl, name) == made  # idempotent: nothing reloaded or doubled
    # an open partition map keeps everything in place
    settle()
    fd = os.open(f"/dev/mapper/{name}-part{first}", os.O_RDONLY)
    try:
        with pytest.raises(DMBusy, match=f"{name}-part{first}"):
            maps.remove_map(ctl, name)
        assert set(our_names()) == {name, *made}
    finally:
        os.close(fd)
    maps.remove_map(ctl, name, retries=20)
    assert our_names() == []


def test_bad_input_gives_clear_errors_and_changes_nothing(ctl, lun):
    name = f"{PREFIX}bad"
    before = dmsetup_ls()
    bad = f"0 {SECTORS} multipath 0 0 1 1 round-robin 0 1 1 4095:4095 1"  # no such path device
    with pytest.raises(DMTableRejected) as e:
        maps.create_map(ctl, name, "mpath-bad", [bad])
    assert name in str(e.value) and "4095:4095" in str(e.value) and e.value.table == bad
    with pytest.raises(DMTableRejected, match="nonsense"):
        maps.create_map(ctl, name, "mpath-bad", [f"0 {SECTORS} multipath nonsense"])
    assert dmsetup_ls() == before  # the empty device went again
    with pytest.raises(CommandError):
        dmsetup("info", name)

    for op in (lambda: ctl.info("nosuchmap"), lambda: ctl.remove("nosuchmap"),
               lambda: ctl.status("nosuchmap"), lambda: ctl.message("nosuchmap", "fail_if_no_path")):
        with pytest.raises(DMNoSuchDevice, match="nosuchmap"):
            op()

    with pytest.raises(DMNameTooLong, match="longer than 127"):
        ctl.create("n" * 128)
    with pytest.raises(CommandError):  # the oracle agrees the kernel would not take it either
        dmsetup("create", "n" * 128, "--table", "0 8 zero")
    ctl.create("n" * 127)  # the longest name the kernel accepts
    maps.remove_map(ctl, "n" * 127, retries=20)
    assert dmsetup_ls() == before

    maps.create_multipath(ctl, name, lun[0].wwid, two_group_table(lun))
    live = norm(dmsetup("table", name))
    with pytest.raises(DMExists, match=name):
        ctl.create(name)
    with pytest.raises(DMTableRejected):  # a bad reload leaves the live table alone
        maps.reload_map(ctl, name, [bad])
    assert norm(dmsetup("table", name)) == live and not ctl.info(name).inactive_table

    settle()
    fd = os.open(f"/dev/mapper/{name}", os.O_RDONLY)
    try:
        with pytest.raises(DMBusy, match="open count 1") as busy:
            maps.remove_map(ctl, name)
        assert busy.value.open_count == 1
        with pytest.raises(DMBusy) as busy:
            ctl.remove(name)
        assert busy.value.open_count == 1 and busy.value.name == name
        assert norm(dmsetup("table", name)) == live
        # deferred remove: accepted while open, cancelled, then done on last close
        assert ctl.remove(name, deferred=True).deferred_remove
        assert ctl.info(name).deferred_remove
        ctl.cancel_deferred_remove(name)
        assert not ctl.info(name).deferred_remove
        ctl.remove(name, deferred=True)
    finally:
        os.close(fd)
    wait_for(lambda: name not in dmsetup_ls(), 60, f"deferred removal of {name}")


def test_rename_uuid_and_nodes_without_udev(ctl, lun):
    name, new = f"{PREFIX}r", f"{PREFIX}r2"
    maps.create_map(ctl, name, "", [f"0 {SECTORS} linear {lun[0].devno} 0"])
    ctl.rename(name, new)
    assert new in dmsetup_ls() and name not in dmsetup_ls()
    ctl.set_uuid(new, "mpath-renamed")
    assert dmsetup_info_c(new)["uuid"] == "mpath-renamed"
    with pytest.raises(DMNameTooLong):
        ctl.rename(new, "x" * 200)
    settle()
    assert os.path.realpath(f"/dev/mapper/{new}").startswith("/dev/dm-")
    maps.remove_map(ctl, new, retries=20)

    # Without udev the layer makes (and removes) the node itself.
    with tempfile.TemporaryDirectory() as d, Control(udev=False, mapper_dir=d) as raw:
        info = maps.create_map(raw, name, "", ["0 8 zero"])
        st = os.lstat(os.path.join(d, name))
        assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(info.major, info.minor)
        raw.rename(name, new)
        assert os.listdir(d) == [new]
        settle()
        maps.remove_map(raw, new, retries=20)
        assert os.listdir(d) == []


def test_iscsi_paths(ctl, iscsi_bed):
    bed = iscsi_bed()
    paths = bed.paths(0)
    name = f"{PREFIX}i"
    t = MultipathTable(bed.size_sectors(), (PathGroup(tuple(PathSpec(p.devno) for p in paths)),),
                       Features(queue_if_no_path=True))
    maps.create_multipath(ctl, name, paths[0].wwid, t)
    assert_agrees_with_dmsetup(ctl, name)
    ctl.message(name, f"fail_path {paths[0].devno}")
    assert not parse_multipath_status(ctl.status(name)[0].params).path(paths[0].devno).active
    assert beddm.status(name).path(paths[0].devno).state == "F"
    ctl.message(name, f"reinstate_path {paths[0].devno}")
    assert beddm.status(name).path(paths[0].devno).state == "A"
    settle()
    maps.remove_map(ctl, name, retries=20)
