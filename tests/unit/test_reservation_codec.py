"""SCSI-3 persistent reservations as bytes (pymultipathd.reservation.codec).

Every CDB, parameter list and reply here is written out byte by byte from the T10 SPC-4 layout (6.15
PERSISTENT RESERVE IN, 6.16 PERSISTENT RESERVE OUT), never built with the code under test.
"""

from __future__ import annotations

import pytest

from pymultipathd.reservation import codec
from pymultipathd.reservation.codec import PrIn, PrOut, PrType

# ---- PERSISTENT RESERVE IN (5Eh): byte 1 service action (bits 4-0), bytes 7-8 allocation length,
# byte 9 control


@pytest.mark.parametrize(
    ("action", "alloc_len", "cdb"),
    [
        (PrIn.READ_KEYS, 8192, bytes([0x5E, 0x00, 0, 0, 0, 0, 0, 0x20, 0x00, 0x00])),
        (PrIn.READ_RESERVATION, 24, bytes([0x5E, 0x01, 0, 0, 0, 0, 0, 0x00, 0x18, 0x00])),
        (PrIn.REPORT_CAPABILITIES, 8, bytes([0x5E, 0x02, 0, 0, 0, 0, 0, 0x00, 0x08, 0x00])),
        (PrIn.READ_FULL_STATUS, 0xFFFF, bytes([0x5E, 0x03, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x00])),
        (PrIn.READ_KEYS, 1, bytes([0x5E, 0x00, 0, 0, 0, 0, 0, 0x00, 0x01, 0x00])),
    ],
)
def test_prin_cdb_bytes(action, alloc_len, cdb):
    assert codec.prin_cdb(action, alloc_len) == cdb


def test_prin_cdb_default_allocation_length_is_8192():
    assert codec.prin_cdb(PrIn.READ_KEYS) == bytes([0x5E, 0, 0, 0, 0, 0, 0, 0x20, 0x00, 0])


@pytest.mark.parametrize("alloc_len", [0, -1, 0x10000])
def test_prin_cdb_refuses_allocation_length_outside_two_bytes(alloc_len):
    with pytest.raises(codec.CodecError):
        codec.prin_cdb(PrIn.READ_KEYS, alloc_len)


# ---- PERSISTENT RESERVE OUT (5Fh): byte 1 service action, byte 2 scope (7-4) / type (3-0),
# bytes 5-8 parameter list length, byte 9 control


@pytest.mark.parametrize(
    ("action", "prtype", "cdb"),
    [
        (PrOut.REGISTER, PrType.NONE, bytes([0x5F, 0x00, 0x00, 0, 0, 0, 0, 0, 0x18, 0x00])),
        (PrOut.RESERVE, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
         bytes([0x5F, 0x01, 0x05, 0, 0, 0, 0, 0, 0x18, 0x00])),
        (PrOut.RELEASE, PrType.EXCLUSIVE_ACCESS, bytes([0x5F, 0x02, 0x03, 0, 0, 0, 0, 0, 0x18, 0x00])),
        (PrOut.CLEAR, PrType.NONE, bytes([0x5F, 0x03, 0x00, 0, 0, 0, 0, 0, 0x18, 0x00])),
        (PrOut.PREEMPT, PrType.WRITE_EXCLUSIVE, bytes([0x5F, 0x04, 0x01, 0, 0, 0, 0, 0, 0x18, 0x00])),
        (PrOut.PREEMPT_AND_ABORT, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
         bytes([0x5F, 0x05, 0x08, 0, 0, 0, 0, 0, 0x18, 0x00])),
        (PrOut.REGISTER_AND_IGNORE, PrType.NONE, bytes([0x5F, 0x06, 0x00, 0, 0, 0, 0, 0, 0x18, 0x00])),
    ],
)
def test_prout_cdb_bytes(action, prtype, cdb):
    assert codec.prout_cdb(action, prtype) == cdb


def test_prout_cdb_parameter_list_length_is_four_bytes_big_endian():
    assert codec.prout_cdb(PrOut.REGISTER, PrType.NONE, 0x01020304) == bytes(
        [0x5F, 0x00, 0x00, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x00])


# ---- the 24-byte parameter list: 0-7 key, 8-15 service action key, 16-19 obsolete, byte 20 flags
# (SPEC_I_PT 0x08, ALL_TG_PT 0x04, APTPL 0x01), 21 reserved, 22-23 obsolete


def test_prout_params_layout():
    got = codec.prout_params(0x0123456789ABCDEF, 0xFEDCBA9876543210)
    assert got == bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                         0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
                         0, 0, 0, 0,
                         0x00, 0, 0, 0])


@pytest.mark.parametrize(
    ("aptpl", "all_tg_pt", "flags"),
    [(False, False, 0x00), (True, False, 0x01), (False, True, 0x04), (True, True, 0x05)],
)
def test_prout_params_flag_byte(aptpl, all_tg_pt, flags):
    got = codec.prout_params(0, 0x123ABC, aptpl=aptpl, all_tg_pt=all_tg_pt)
    assert got == bytes(8) + bytes([0, 0, 0, 0, 0, 0x12, 0x3A, 0xBC]) + bytes(4) + bytes([flags, 0, 0, 0])
    assert not got[20] & 0x08  # SPEC_I_PT: no TransportIDs are ever sent


def test_prout_params_extreme_keys():
    got = codec.prout_params(0xFFFFFFFFFFFFFFFF, 1)
    assert got[:16] == b"\xff" * 8 + b"\x00" * 7 + b"\x01"


@pytest.mark.parametrize(("key", "sa_key"), [(1 << 64, 0), (0, 1 << 64), (-1, 0)])
def test_prout_params_refuses_keys_that_do_not_fit(key, sa_key):
    with pytest.raises(codec.CodecError):
        codec.prout_params(key, sa_key)


# ---- READ KEYS: PRgeneration (4), ADDITIONAL LENGTH (4), keys of 8 bytes


def test_parse_keys_two_keys():
    reply = bytes([0x00, 0x00, 0x00, 0x11,
                   0x00, 0x00, 0x00, 0x10,
                   0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x3A, 0xBC,
                   0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x00, 0x00, 0x01])
    k = codec.parse_keys(reply)
    assert k.generation == 0x11
    assert k.keys == (0x123ABC, 0xDEADBEEF00000001)
    assert not k.truncated


def test_parse_keys_none_registered():
    k = codec.parse_keys(bytes([0, 0, 0x01, 0x02, 0, 0, 0, 0]))
    assert (k.generation, k.keys, k.truncated) == (0x102, (), False)


def test_parse_keys_cut_by_allocation_length_is_truncated():
    # the device has 3 keys (additional length 24) but the transfer stopped after 2 and a half
    reply = bytes([0, 0, 0, 5, 0, 0, 0, 0x18]) + bytes([0] * 7 + [1]) + bytes([0] * 7 + [2]) + bytes(4)
    k = codec.parse_keys(reply)
    assert k.keys == (1, 2)
    assert k.truncated


def test_parse_keys_ignores_bytes_past_the_additional_length():
    reply = bytes([0, 0, 0, 1, 0, 0, 0, 0x08]) + bytes([0] * 7 + [7]) + b"\xff" * 16  # padding
    k = codec.parse_keys(reply)
    assert k.keys == (7,)
    assert not k.truncated


@pytest.mark.parametrize("reply", [b"", bytes(7)])
def test_parse_keys_shorter_than_the_header_is_refused(reply):
    with pytest.raises(codec.CodecError):
        codec.parse_keys(reply)


# ---- READ RESERVATION: generation, additional length (0 or 16), key (8), obsolete (4), reserved (1),
# scope/type, obsolete (2)


def test_parse_reservation_none_held():
    r = codec.parse_reservation(bytes([0, 0, 0, 0x07, 0, 0, 0, 0]))
    assert r.generation == 7
    assert r.key is None


def test_parse_reservation_held():
    reply = bytes([0x00, 0x00, 0x00, 0x2A,
                   0x00, 0x00, 0x00, 0x10,
                   0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x3A, 0xBC,
                   0x00, 0x00, 0x00, 0x00,
                   0x00,
                   0x05,
                   0x00, 0x00])
    r = codec.parse_reservation(reply)
    assert (r.generation, r.key, r.prtype, r.scope) == (
        0x2A, 0x123ABC, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 0)


def test_parse_reservation_scope_is_the_high_nibble():
    reply = bytes([0, 0, 0, 1, 0, 0, 0, 0x10]) + bytes([0] * 7 + [9]) + bytes(5) + bytes([0x23, 0, 0])
    r = codec.parse_reservation(reply)
    assert (r.key, r.scope, r.prtype) == (9, 2, PrType.EXCLUSIVE_ACCESS)


@pytest.mark.parametrize(
    "reply",
    [
        bytes([0, 0, 0, 1, 0, 0, 0, 0x10]) + bytes(12),  # descriptor cut to 12 of its 16 bytes
        bytes([0, 0, 0, 1, 0, 0, 0, 0x08]) + bytes(16),  # additional length 8
        bytes(5),
    ],
)
def test_parse_reservation_malformed(reply):
    with pytest.raises(codec.CodecError):
        codec.parse_reservation(reply)


# ---- REPORT CAPABILITIES: length (2), byte 2 RLR_C 0x80 CRH 0x10 SIP_C 0x08 ATP_C 0x04 PTPL_C 0x01,
# byte 3 TMV 0x80 ALLOW COMMANDS (6-4) PTPL_A 0x01, bytes 4-5 type mask


def test_parse_capabilities_everything_set():
    c = codec.parse_capabilities(bytes([0x00, 0x08, 0x9D, 0xD1, 0xEA, 0x01, 0x00, 0x00]))
    assert (c.rlr_c, c.crh, c.sip_c, c.atp_c, c.ptpl_c) == (True,) * 5
    assert (c.tmv, c.allow_commands, c.ptpl_a) == (True, 5, True)
    assert c.types == {PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS,
                       PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
                       PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS}
    assert c.mask == 0xEA01


def test_parse_capabilities_nothing_set():
    c = codec.parse_capabilities(bytes([0x00, 0x08, 0, 0, 0, 0, 0, 0]))
    assert not (c.rlr_c or c.crh or c.sip_c or c.atp_c or c.ptpl_c or c.tmv or c.ptpl_a)
    assert c.allow_commands == 0
    assert c.types == frozenset()


@pytest.mark.parametrize(
    ("byte2", "field"),
    [(0x80, "rlr_c"), (0x10, "crh"), (0x08, "sip_c"), (0x04, "atp_c"), (0x01, "ptpl_c")],
)
def test_parse_capabilities_each_flag_of_byte_2(byte2, field):
    c = codec.parse_capabilities(bytes([0x00, 0x08, byte2, 0, 0, 0, 0, 0]))
    got = {f for f in ("rlr_c", "crh", "sip_c", "atp_c", "ptpl_c") if getattr(c, f)}
    assert got == {field}


@pytest.mark.parametrize(
    ("byte4", "byte5", "prtype"),
    [
        (0x80, 0x00, PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS),    # WR_EX_AR
        (0x40, 0x00, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY),  # EX_AC_RO
        (0x20, 0x00, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),   # WR_EX_RO
        (0x08, 0x00, PrType.EXCLUSIVE_ACCESS),                   # EX_AC
        (0x02, 0x00, PrType.WRITE_EXCLUSIVE),                    # WR_EX
        (0x00, 0x01, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS),   # EX_AC_AR
    ],
)
def test_parse_capabilities_each_type_mask_bit(byte4, byte5, prtype):
    c = codec.parse_capabilities(bytes([0x00, 0x08, 0x00, 0x80, byte4, byte5, 0, 0]))
    assert c.types == {prtype}


def test_parse_capabilities_reserved_mask_bits_name_no_type():
    c = codec.parse_capabilities(bytes([0x00, 0x08, 0x00, 0x80, 0x15, 0xFE, 0, 0]))
    assert c.types == frozenset()


def test_parse_capabilities_short_reply_refused():
    with pytest.raises(codec.CodecError):
        codec.parse_capabilities(bytes([0x00, 0x08, 0x9D, 0x91, 0xEA, 0x01, 0x00]))


# ---- READ FULL STATUS: header, then descriptors of 24 bytes plus a TransportID

ISCSI_NAME = b"iqn.1994-05.com.redhat:host1,i,0x23d000000001"  # 45 characters
ISCSI_TID = (bytes([0x45, 0x00, 0x00, 0x30])      # format 01b, protocol 5 (iSCSI); length 48
             + ISCSI_NAME + bytes(3))              # NUL-padded to a multiple of 4
HOLDER = (bytes([0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x3A, 0xBC])  # key
          + bytes(4)                                                 # reserved
          + bytes([0x01])                                            # R_HOLDER
          + bytes([0x05])                                            # LU_SCOPE, Write Exclusive RO
          + bytes(4)                                                 # reserved
          + bytes([0x00, 0x02])                                      # relative target port 2
          + bytes([0x00, 0x00, 0x00, 0x34]))                         # TransportID of 52 bytes
FC_TID = bytes([0x00]) + bytes(7) + bytes.fromhex("21000024ff5b6c7d") + bytes(8)  # FCP, N_Port name at 8
OTHER = (bytes([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x00, 0x00, 0x01])
         + bytes(4)
         + bytes([0x02])                                             # ALL_TG_PT, not the holder
         + bytes([0x00])
         + bytes(4)
         + bytes([0x00, 0x00])
         + bytes([0x00, 0x00, 0x00, 0x18]))                          # 24-byte TransportID


def _full(gen: int, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return gen.to_bytes(4, "big") + n.to_bytes(4, "big") + body


def test_parse_full_status_two_registrants():
    s = codec.parse_full_status(_full(0x33, HOLDER + ISCSI_TID + OTHER + FC_TID))
    assert s.generation == 0x33
    assert not s.truncated
    first, second = s.registrants
    assert (first.key, first.holder, first.all_tg_pt, first.scope, first.prtype, first.rel_tgt_port) == (
        0x123ABC, True, False, 0, 5, 2)
    assert first.transport_id == ISCSI_TID
    assert first.initiator == "iSCSI iqn.1994-05.com.redhat:host1,i,0x23d000000001"
    assert (second.key, second.holder, second.all_tg_pt, second.rel_tgt_port) == (
        0xDEADBEEF00000001, False, True, 0)
    assert second.initiator == "FCP 0x21000024ff5b6c7d"


def test_parse_full_status_no_registrants():
    s = codec.parse_full_status(_full(4, b""))
    assert (s.generation, s.registrants, s.truncated) == (4, (), False)


def test_parse_full_status_cut_inside_a_transport_id_keeps_the_whole_descriptors():
    whole = HOLDER + ISCSI_TID + OTHER + FC_TID
    cut = _full(9, whole, len(whole))[: 8 + len(HOLDER) + len(ISCSI_TID) + 24 + 10]
    s = codec.parse_full_status(cut)
    assert [r.key for r in s.registrants] == [0x123ABC]
    assert s.truncated


def test_parse_full_status_cut_inside_a_descriptor_header():
    whole = HOLDER + ISCSI_TID + OTHER + FC_TID
    s = codec.parse_full_status(_full(9, whole)[:8 + 20])
    assert s.registrants == ()
    assert s.truncated


def test_parse_full_status_header_too_short():
    with pytest.raises(codec.CodecError):
        codec.parse_full_status(bytes(4))


# ---- TransportIDs in words


def test_transport_id_text_iscsi_name_format_0():
    tid = bytes([0x05, 0x00, 0x00, 0x14]) + b"iqn.2001-04.com.ex:a" + b""
    assert codec.transport_id_text(tid) == "iSCSI iqn.2001-04.com.ex:a"


def test_transport_id_text_iscsi_stops_at_nul():
    tid = bytes([0x45, 0x00, 0x00, 0x10]) + b"iqn.x:y,i,0x1\0\0\0"
    assert codec.transport_id_text(tid) == "iSCSI iqn.x:y,i,0x1"


def test_transport_id_text_sas():
    tid = bytes([0x06, 0, 0, 0]) + bytes.fromhex("5000c50012345678") + bytes(12)
    assert codec.transport_id_text(tid) == "SAS 0x5000c50012345678"


def test_transport_id_text_empty_and_unknown():
    assert codec.transport_id_text(b"") == "(none)"
    assert codec.transport_id_text(bytes([0x0E, 0xAB])) == "protocol 14 0eab"
    assert codec.transport_id_text(bytes([0x00, 0x01])) == "FCP 0001"  # too short for an N_Port name


def test_a_transport_id_cannot_forge_output_lines():
    # a target controls the iSCSI name it reports: newlines and escapes are shown, never obeyed
    name = b"iqn.x\n   Key = 0xdeadbeef\x1b[2J"
    tid = bytes([0x45, 0, 0, len(name)]) + name
    text = codec.transport_id_text(tid)
    assert "\n" not in text and "\x1b" not in text
    assert text == "iSCSI iqn.x\\x0a\\x20\\x20\\x20Key\\x20=\\x200xdeadbeef\\x1b[2J"
