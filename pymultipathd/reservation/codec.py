"""SCSI-3 persistent reservations as bytes: PERSISTENT RESERVE IN/OUT command blocks, the PR OUT parameter
list, and the four PR IN replies decoded into records (SPC-4, 6.15 and 6.16). Pure: no device is touched.
"""

from __future__ import annotations

import enum

from pymultipathd.errors import PymultipathError
from pymultipathd.record import record

PRIN_OPCODE, PROUT_OPCODE = 0x5E, 0x5F
PROUT_PARAM_LEN = 24          # the basic parameter list, without TransportIDs
DEFAULT_ALLOC_LEN = 8192      # enough for 1000 keys; a bigger reply says so in its ADDITIONAL LENGTH
MAX_ALLOC_LEN = 0xFFFF        # the CDB's ALLOCATION LENGTH field is two bytes
KEY_MAX = (1 << 64) - 1


class PrIn(enum.IntEnum):
    """PERSISTENT RESERVE IN service actions."""

    READ_KEYS = 0
    READ_RESERVATION = 1
    REPORT_CAPABILITIES = 2
    READ_FULL_STATUS = 3


class PrOut(enum.IntEnum):
    """PERSISTENT RESERVE OUT service actions."""

    REGISTER = 0
    RESERVE = 1
    RELEASE = 2
    CLEAR = 3
    PREEMPT = 4
    PREEMPT_AND_ABORT = 5
    REGISTER_AND_IGNORE = 6
    REGISTER_AND_MOVE = 7


class PrType(enum.IntEnum):
    """Reservation types (the TYPE field); 0 is "none" for service actions that take no type."""

    NONE = 0
    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 8


# the words sg_persist and mpathpersist print for each type
TYPE_NAMES = {
    PrType.NONE: "obsolete [0]",
    PrType.WRITE_EXCLUSIVE: "Write Exclusive",
    PrType.EXCLUSIVE_ACCESS: "Exclusive Access",
    PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: "Write Exclusive, registrants only",
    PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: "Exclusive Access, registrants only",
    PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: "Write Exclusive, all registrants",
    PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: "Exclusive Access, all registrants",
}

# PR OUT parameter list, byte 20
SPEC_I_PT, ALL_TG_PT, APTPL = 0x08, 0x04, 0x01


class CodecError(PymultipathError, ValueError):
    """A reply too short or inconsistent to decode, or a value that does not fit its field."""


def prin_cdb(action: PrIn, alloc_len: int = DEFAULT_ALLOC_LEN) -> bytes:
    if not 0 < alloc_len <= MAX_ALLOC_LEN:
        raise CodecError(f"allocation length {alloc_len} is not within 1..{MAX_ALLOC_LEN}")
    return bytes([PRIN_OPCODE, action & 0x1F, 0, 0, 0, 0, 0]) + alloc_len.to_bytes(2, "big") + b"\0"


def prout_cdb(action: PrOut, prtype: PrType = PrType.NONE, param_len: int = PROUT_PARAM_LEN) -> bytes:
    # byte 2: SCOPE in the high nibble (always LU_SCOPE, 0) and TYPE in the low one
    return bytes([PROUT_OPCODE, action & 0x1F, prtype & 0x0F, 0, 0]) + param_len.to_bytes(4, "big") + b"\0"


def _key(value: int, what: str) -> bytes:
    if not 0 <= value <= KEY_MAX:
        raise CodecError(f"{what} 0x{value:x} does not fit in 8 bytes")
    return value.to_bytes(8, "big")


def prout_params(key: int = 0, sa_key: int = 0, *, aptpl: bool = False, all_tg_pt: bool = False) -> bytes:
    """The 24-byte parameter list: RESERVATION KEY, SERVICE ACTION RESERVATION KEY, the flag byte."""
    flags = (APTPL if aptpl else 0) | (ALL_TG_PT if all_tg_pt else 0)
    return _key(key, "reservation key") + _key(sa_key, "service action key") + bytes(4) \
        + bytes([flags, 0, 0, 0])


# ---- PR IN replies

@record(frozen=True)
class Keys:
    generation: int
    keys: tuple[int, ...]
    truncated: bool = False   # the device had more than the allocation length held


@record(frozen=True)
class Reservation:
    generation: int
    key: int | None           # None: no reservation is held
    prtype: int = 0           # the TYPE field as sent (PrType, or an obsolete value printed as a number)
    scope: int = 0


@record(frozen=True)
class Capabilities:
    rlr_c: bool                # replace lost reservation capable
    crh: bool                  # compatible reservation handling
    sip_c: bool                # specify initiator ports capable
    atp_c: bool                # all target ports capable
    ptpl_c: bool               # persist through power loss capable
    tmv: bool                  # the type mask is valid
    allow_commands: int
    ptpl_a: bool               # persist through power loss activated
    types: frozenset[PrType]   # the types the device supports (when tmv)
    mask: int                  # the raw two-byte type mask


@record(frozen=True)
class Registrant:
    key: int
    holder: bool               # R_HOLDER: this I_T nexus holds the reservation
    all_tg_pt: bool
    scope: int
    prtype: int                # meaningful only for the holder
    rel_tgt_port: int          # RELATIVE TARGET PORT IDENTIFIER (0 with all_tg_pt)
    transport_id: bytes

    @property
    def initiator(self) -> str:
        return transport_id_text(self.transport_id)


@record(frozen=True)
class FullStatus:
    generation: int
    registrants: tuple[Registrant, ...]
    truncated: bool = False


def _header(data: bytes) -> tuple[int, int]:
    if len(data) < 8:
        raise CodecError(f"reply of {len(data)} bytes is shorter than the 8-byte header")
    return int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")


def parse_keys(data: bytes) -> Keys:
    gen, length = _header(data)
    body = data[8:8 + length]
    usable = len(body) - len(body) % 8
    keys = tuple(int.from_bytes(body[i:i + 8], "big") for i in range(0, usable, 8))
    return Keys(gen, keys, truncated=len(body) < length)


def parse_reservation(data: bytes) -> Reservation:
    gen, length = _header(data)
    if length == 0:
        return Reservation(gen, None)
    if length < 16 or len(data) < 24:
        raise CodecError(f"reservation descriptor of {min(length, len(data) - 8)} bytes, expected 16")
    scope_type = data[21]
    return Reservation(gen, int.from_bytes(data[8:16], "big"), scope_type & 0x0F, scope_type >> 4)


# bit of the two-byte type mask -> type (SPC-4 table 179)
_MASK_BITS = {
    0x8000: PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, 0x4000: PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
    0x2000: PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 0x0800: PrType.EXCLUSIVE_ACCESS,
    0x0200: PrType.WRITE_EXCLUSIVE, 0x0001: PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS}


def parse_capabilities(data: bytes) -> Capabilities:
    if len(data) < 8:
        raise CodecError(f"capabilities reply of {len(data)} bytes, expected 8")
    b2, b3 = data[2], data[3]
    mask = int.from_bytes(data[4:6], "big")
    return Capabilities(
        rlr_c=bool(b2 & 0x80), crh=bool(b2 & 0x10), sip_c=bool(b2 & 0x08), atp_c=bool(b2 & 0x04),
        ptpl_c=bool(b2 & 0x01), tmv=bool(b3 & 0x80), allow_commands=(b3 >> 4) & 0x07, ptpl_a=bool(b3 & 0x01),
        types=frozenset(t for bit, t in _MASK_BITS.items() if mask & bit), mask=mask)


def parse_full_status(data: bytes) -> FullStatus:
    gen, length = _header(data)
    end = min(len(data), 8 + length)
    out: list[Registrant] = []
    pos = 8
    while pos + 24 <= end:
        d = data[pos:pos + 24]
        tid_len = int.from_bytes(d[20:24], "big")
        tid = data[pos + 24:pos + 24 + tid_len]
        if len(tid) < tid_len:
            break  # cut off by the allocation length
        out.append(Registrant(key=int.from_bytes(d[0:8], "big"), holder=bool(d[12] & 0x01),
                              all_tg_pt=bool(d[12] & 0x02), scope=d[13] >> 4, prtype=d[13] & 0x0F,
                              rel_tgt_port=int.from_bytes(d[18:20], "big"), transport_id=tid))
        pos += 24 + tid_len
    return FullStatus(gen, tuple(out), truncated=pos < 8 + length)


# ---- TransportIDs (SPC-4 7.6.4), for printing who holds a registration

PROTOCOLS = {0: "FCP", 1: "SPI", 2: "SSA", 3: "SBP", 4: "SRP", 5: "iSCSI", 6: "SAS", 7: "ADT", 8: "ATA",
             9: "UAS", 10: "SOP"}


def printable(raw: bytes) -> str:
    """Device text for a terminal: anything but printable ASCII as \\xNN, so a target cannot forge lines."""
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


def iscsi_name(tid: bytes) -> str:
    """The name of an iSCSI TransportID (with ",i,0x<ISID>" in format 01b), printable."""
    length = int.from_bytes(tid[2:4], "big") if len(tid) >= 4 else 0
    return printable(tid[4:4 + length].split(b"\0", 1)[0])


def transport_id_text(tid: bytes) -> str:
    """A TransportID in words: "iSCSI iqn...,i,0x23d000000001", "FCP 0x21000024ff...", "SAS 0x5000c5...";
    anything else in hex."""
    if not tid:
        return "(none)"
    proto, fmt = tid[0] & 0x0F, tid[0] >> 6
    name = PROTOCOLS.get(proto, f"protocol {proto}")
    if proto == 5 and len(tid) >= 4:
        return f"{name} {iscsi_name(tid)}" if fmt in (0, 1) else f"{name} {tid.hex()}"
    if proto == 0 and len(tid) >= 16:
        return f"{name} 0x{tid[8:16].hex()}"
    if proto == 6 and len(tid) >= 12:
        return f"{name} 0x{tid[4:12].hex()}"
    return f"{name} {tid.hex()}"
