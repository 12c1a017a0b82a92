"""struct dm_ioctl and friends vs linux/dm-ioctl.h (interface 4.47). Pure: no device is opened.

The expected numbers were taken from the header with a C program (sizeof/offsetof/_IOWR on x86-64):
dm_ioctl 312 bytes (data_size 12, data_start 16, target_count 20, open_count 24, flags 28, event_nr 32,
padding 36, dev 40, name 48, uuid 176, data 305); dm_target_spec 40 (status 16, next 20, target_type 24);
dm_target_deps 8; dm_name_list name at 12; dm_target_versions name at 16; dm_target_msg 8;
DM_VERSION 0xc138fd00, DM_TABLE_LOAD 0xc138fd09, DM_TARGET_MSG 0xc138fd0e, DM_GET_TARGET_VERSION 0xc138fd11.
"""

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultipathd.dm import ioctl as dm
from pymultipathd.dm.errors import DMError, DMNameTooLong
from pymultipathd.dm.table import TargetLine


def test_struct_sizes():
    assert dm.DM_IOCTL.size == 312
    assert dm.DM_TARGET_SPEC.size == 40
    assert dm.DM_TARGET_DEPS.size == 8
    assert dm.DM_TARGET_MSG.size == 8
    assert dm.DM_TARGET_VERSIONS.size == 16  # name follows at offset 16
    assert dm.DM_NAME_LIST.size == 12  # name follows at offset 12 (sizeof is 16 with tail padding)


def test_dm_ioctl_field_offsets():
    h = dm.Header(version=(4, 47, 0), data_size=0x11111111, data_start=0x22222222, target_count=0x33333333,
                  open_count=-2, flags=0x44444444, event_nr=0x55555555, dev=0x0102030405060708,
                  name="n" * 127, uuid="u" * 128)
    raw = h.pack()
    assert len(raw) == 312
    assert struct.unpack_from("=3I", raw, 0) == (4, 47, 0)
    assert struct.unpack_from("=I", raw, 12)[0] == 0x11111111
    assert struct.unpack_from("=I", raw, 16)[0] == 0x22222222
    assert struct.unpack_from("=I", raw, 20)[0] == 0x33333333
    assert struct.unpack_from("=i", raw, 24)[0] == -2
    assert struct.unpack_from("=I", raw, 28)[0] == 0x44444444
    assert struct.unpack_from("=I", raw, 32)[0] == 0x55555555
    assert struct.unpack_from("=I", raw, 36)[0] == 0  # padding
    assert struct.unpack_from("=Q", raw, 40)[0] == 0x0102030405060708
    assert raw[48:175] == b"n" * 127 and raw[175] == 0
    assert raw[176:304] == b"u" * 128 and raw[304] == 0
    assert raw[305:312] == b"\0" * 7
    assert dm.Header.unpack(raw) == h


def test_ioctl_numbers():
    assert dm.ioctl_number(dm.DM_VERSION_CMD) == 0xC138FD00
    assert dm.ioctl_number(dm.DM_TABLE_LOAD_CMD) == 0xC138FD09
    assert dm.ioctl_number(dm.DM_TARGET_MSG_CMD) == 0xC138FD0E
    assert dm.ioctl_number(dm.DM_GET_TARGET_VERSION_CMD) == 0xC138FD11


def test_flag_values():
    assert (dm.DM_SUSPEND_FLAG, dm.DM_STATUS_TABLE_FLAG, dm.DM_BUFFER_FULL_FLAG) == (2, 16, 256)
    assert (dm.DM_SKIP_LOCKFS_FLAG, dm.DM_NOFLUSH_FLAG, dm.DM_UUID_FLAG) == (1 << 10, 1 << 11, 1 << 14)
    assert (dm.DM_DATA_OUT_FLAG, dm.DM_DEFERRED_REMOVE) == (1 << 16, 1 << 17)


@given(st.integers(0, 4095), st.integers(0, (1 << 20) - 1))
def test_dev_encoding_matches_the_kernel_and_glibc(major, minor):
    enc = dm.encode_dev(major, minor)
    assert dm.decode_dev(enc) == (major, minor)
    assert enc == os.makedev(major, minor)  # glibc's 64-bit dev_t agrees for these ranges


def test_dev_encoding_examples():
    assert dm.encode_dev(253, 0) == 0xFD00
    assert dm.encode_dev(8, 256) == 0x100800  # minor bits above 8 go to bit 20


def test_udev_cookie_is_flags_only():
    c = dm.udev_cookie(dm.DM_UDEV_PRIMARY_SOURCE_FLAG | dm.DM_UDEV_DISABLE_LIBRARY_FALLBACK)
    assert c == 0x600000  # what `dmsetup udevflags` decodes to PRIMARY_SOURCE + DISABLE_LIBRARY_FALLBACK
    assert c & 0xFFFF == 0  # no semaphore part: `dmsetup udevcomplete` returns at once


def test_pack_targets_layout():
    data = dm.pack_targets([TargetLine(0, 100, "linear", "8:0 0"), TargetLine(100, 50, "error", "")])
    start, length, status, nxt, ttype = dm.DM_TARGET_SPEC.unpack_from(data, 0)
    assert (start, length, status, ttype.rstrip(b"\0")) == (0, 100, 0, b"linear")
    assert nxt == 48 and data[40:46] == b"8:0 0\0"  # 40 + 6 bytes, aligned up to 8
    start, length, _, nxt2, ttype = dm.DM_TARGET_SPEC.unpack_from(data, nxt)
    assert (start, length, ttype.rstrip(b"\0")) == (100, 50, b"error")
    assert len(data) == 48 + 48 and len(data) % 8 == 0


def test_pack_targets_rejects_long_type():
    with pytest.raises(ValueError, match="longer than 15"):
        dm.pack_targets([TargetLine(0, 1, "x" * 16, "")])


def _status_reply(targets):
    """A DM_TABLE_STATUS reply body: `next` relative to the first spec (unlike load)."""
    out = bytearray()
    for start, length, ttype, params in targets:
        body = params.encode() + b"\0"
        nxt = len(out) + dm._align8(40 + len(body))
        out += dm.DM_TARGET_SPEC.pack(start, length, 0, nxt, ttype.encode()) + body
        out += b"\0" * (nxt - len(out))
    return bytes(out)


def test_unpack_targets():
    data = _status_reply([(0, 8, "multipath", "0 0 0 0"), (8, 8, "linear", "253:0 2048")])
    assert dm.unpack_targets(data, 2) == [TargetLine(0, 8, "multipath", "0 0 0 0"),
                                          TargetLine(8, 8, "linear", "253:0 2048")]
    assert dm.unpack_targets(data, 0) == []


def _name_list(entries, extras=True):
    out = bytearray()
    for i, (dev, name, event_nr, uuid) in enumerate(entries):
        rec = bytearray(dm.DM_NAME_LIST.pack(dev, 0) + name.encode() + b"\0")
        if extras:
            rec += b"\0" * (dm._align8(len(rec)) - len(rec))
            rec += struct.pack("=II", event_nr, dm.DM_NAME_LIST_FLAG_HAS_UUID if uuid else
                               dm.DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID)
            if uuid:
                rec += uuid.encode() + b"\0"
        rec += b"\0" * (dm._align8(len(rec)) - len(rec))
        if i < len(entries) - 1:
            struct.pack_into("=I", rec, 8, len(rec))
        out += rec
    return bytes(out)


def test_unpack_name_list_with_uuids():
    data = _name_list([(dm.encode_dev(253, 0), "mpatha", 3, "mpath-3600"),
                       (dm.encode_dev(253, 1), "x", 0, "")])
    assert dm.unpack_name_list(data, True) == [
        dm.ListedDevice("mpatha", 253, 0, 3, "mpath-3600"),
        dm.ListedDevice("x", 253, 1, 0, ""),
    ]


def test_unpack_name_list_old_kernel_and_empty():
    data = _name_list([(dm.encode_dev(253, 5), "a", 0, None)], extras=False)
    assert dm.unpack_name_list(data, False) == [dm.ListedDevice("a", 253, 5)]
    assert dm.unpack_name_list(bytes(16), True) == []
    assert dm.unpack_name_list(b"", True) == []  # no devices: data_size ends at data_start


def test_unpack_versions_and_deps():
    recs = bytearray()
    for i, (name, ver) in enumerate([("multipath", (1, 14, 0)), ("linear", (1, 4, 0))]):
        rec = bytearray(dm.DM_TARGET_VERSIONS.pack(0, *ver) + name.encode() + b"\0")
        rec += b"\0" * (dm._align8(len(rec)) - len(rec))
        if i == 0:
            struct.pack_into("=I", rec, 0, len(rec))
        recs += rec
    assert dm.unpack_versions(bytes(recs)) == {"multipath": (1, 14, 0), "linear": (1, 4, 0)}
    deps = struct.pack("=II2Q", 2, 0, dm.encode_dev(8, 16), dm.encode_dev(65, 300))
    assert dm.unpack_deps(deps) == [(8, 16), (65, 300)]


def test_name_checks():
    dm.check_name("create", "m" * 127)
    with pytest.raises(DMNameTooLong, match="longer than 127") as e:
        dm.check_name("create", "m" * 128)
    assert e.value.name == "m" * 128 and e.value.op == "create"
    for bad in ("", "a/b", ".", ".."):
        with pytest.raises(DMError, match="invalid map name"):
            dm.check_name("create", bad)
    dm.check_uuid("create", "m", "u" * 128)
    with pytest.raises(DMNameTooLong, match="uuid"):
        dm.check_uuid("create", "m", "u" * 129)


def test_device_info_flags():
    h = dm.Header(flags=dm.DM_SUSPEND_FLAG | dm.DM_ACTIVE_PRESENT_FLAG | dm.DM_DEFERRED_REMOVE,
                  dev=dm.encode_dev(253, 7), name="m", uuid="u", open_count=2, event_nr=5, target_count=1)
    info = dm.DeviceInfo.from_header(h)
    assert info.devno == "253:7" and info.suspended and info.live_table and info.deferred_remove
    assert not info.inactive_table and not info.readonly and info.open_count == 2
