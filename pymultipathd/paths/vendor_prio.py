"""Prioritizers that ask the array itself, over SG_IO, with vendor-specific INQUIRY pages or commands.

Each takes (disk name, prio_args, seconds per command) like every prioritizer (pymultipathd.paths.prio) and
gives upstream multipath-tools 0.9.4's values for the same replies, including what upstream gives when a
command fails or a reply is not in the expected format: some answer 0 then, others "undefined" (UNDEF, -1,
which prio.priority reports as such). Reply layouts come from the vendors' documentation as upstream uses
them; every byte looked at is bounds-checked, a short reply reads as zeros (upstream clears its buffers).

emc       DGC CLARiiON / VNX / Unity: VPD page C0h ("unit path report")
ontap     NetApp ONTAP: vendor command C0h (attribute page 41h) and VPD page C1h (proxy path)
rdac      LSI / Engenio / NetApp E-Series: VPD page C9h ("volume access control")
hp_sw     HP active/standby arrays (HSG80, MSA, HSV): the answer to TEST UNIT READY
hds       Hitachi modular arrays: controller and LDEV numbers in the standard INQUIRY data
datacore  DataCore SANsymphony: the server ("SDS") name in the standard INQUIRY data, against prio_args
"""

from __future__ import annotations

import os

from pymultipathd.paths import sgio
from pymultipathd.record import record

UNDEF = -1  # = prio.PRIO_UNDEF (that module imports this one, so the value is repeated, not imported)
VPD_REPLY = 128  # allocation length of the vendor VPD pages (what upstream asks for)
INQUIRY_REPLY = 255  # allocation length of the standard INQUIRY (hds, datacore)
HP_SW_ATTEMPTS = 4  # TEST UNIT READY tries while the array reports a reset (upstream retries without end)


def _ms(timeout: float) -> int:
    return max(int(timeout * 1000), 0)


def _padded(data: bytes, size: int) -> bytes:
    """The reply as upstream's zero-filled buffer of `size` bytes holds it."""
    return data[:size].ljust(size, b"\0")


class _Disk:
    """The disk's SG_IO node, open for a few commands: `with _Disk(dev) as disk: disk.ask(...)`. Opening and
    each command give None instead of raising, since every prioritizer maps "could not ask" to a value."""

    def __init__(self, dev: str) -> None:
        self.dev = dev
        self.fd: int | None = None

    def __enter__(self) -> _Disk:
        try:
            self.fd = sgio.open_path(os.path.join("/dev", self.dev))
        except OSError:
            self.fd = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def ask(self, cdb: bytes, data_len: int, timeout_ms: int) -> sgio.SgResult | None:
        if self.fd is None:
            return None
        try:
            return sgio.sg_io(self.fd, cdb, data_len=data_len, timeout_ms=timeout_ms)
        except OSError:
            return None


def _good_data(dev: str, cdb: bytes, data_len: int, timeout: float) -> bytes | None:
    """One command; its data, zero-filled to data_len, if it completed without error; None otherwise."""
    with _Disk(dev) as disk:
        res = disk.ask(cdb, data_len, _ms(timeout))
    if res is None or not res.ok:
        return None
    return _padded(res.data, data_len)


# --- emc ----------------------------------------------------------------------------------------------------


def emc_value(page: bytes) -> int:
    """Priority from a VPD page C0h reply (zero-filled to VPD_REPLY bytes): the LUN state byte (4: 0
    unbound, 1 bound, 2 owned) plus 2 when this path's storage processor is the LUN's default owner (byte 5,
    the current SP, equal to byte 8, the default SP). UNDEF when the page is not revision 0 of C0h, when the
    path is not set up for failover (initiator type byte 27 must be 3, failover mode in byte 28 bits 0-2
    must be 4 or 6, arraycommpath bit 2 of byte 30 set), or when the LUN is not in normal operation (byte
    48 non-zero)."""
    p = _padded(page, VPD_REPLY)
    if p[1] != 0xC0 or p[9] != 0x00:
        return UNDEF
    if p[27] != 0x03 or (p[28] & 0x07) not in (0x04, 0x06) or not p[30] & 0x04:
        return UNDEF
    if p[48] != 0x00:
        return UNDEF
    return p[4] + (2 if p[5] == p[8] else 0)


def prio_emc(dev: str, args: str = "", timeout: float = 30.0) -> int:
    page = _good_data(dev, sgio.inquiry(0xC0, VPD_REPLY), VPD_REPLY, timeout)
    return UNDEF if page is None else emc_value(page)


# --- rdac ---------------------------------------------------------------------------------------------------


def rdac_value(page: bytes) -> int:
    """Priority bits from a VPD page C9h reply (identifier "vac" at bytes 4-6, page length 2Ch): 2 if this
    controller owns the volume now (byte 8 bit 0), 4 if the path is the preferred one or 1 if it is the
    secondary one (byte 9 low nibble 1 or 2), 8 in I/O shipping mode (byte 8 bit 5). 0 for a page in
    another format."""
    p = _padded(page, VPD_REPLY)
    if p[1] != 0xC9 or p[3] != 0x2C or p[4:7] != b"vac":
        return 0
    value = 0x02 if p[8] & 0x01 else 0
    value |= {0x01: 0x04, 0x02: 0x01}.get(p[9] & 0x0F, 0)
    if p[8] & 0x20:
        value |= 0x08
    return value


def prio_rdac(dev: str, args: str = "", timeout: float = 30.0) -> int:
    page = _good_data(dev, sgio.inquiry(0xC9, VPD_REPLY), VPD_REPLY, timeout)
    return 0 if page is None else rdac_value(page)


# --- ontap --------------------------------------------------------------------------------------------------

ONTAP_FCP_PROXY, ONTAP_ISCSI_SW, ONTAP_ISCSI_HBA, ONTAP_OTHER = 1, 2, 3, 4
_GVA_PAGE = 0x41
_GVA_TAG = bytes([0x0A, 0x98, 0x0A, 0x01])  # offset 4 of a well-formed reply
_PROXY_TAG = bytes([0x0A, 0x98, 0x0A, 0x00, 0xC1, 0x00])  # offset 8 of a well-formed VPD page C1h


def ontap_initiator(gva: bytes) -> int | None:
    """From a well-formed attribute page 41h reply: ONTAP_ISCSI_SW or ONTAP_ISCSI_HBA when the array names
    the host's iSCSI initiator ("ism_sw"/"iswt", "ism_sn" at byte 12), None when it names neither (or the
    reply holds no attribute: total length at bytes 0-3 of 8 or less, or another page at byte 8)."""
    r = _padded(gva, 256)
    if int.from_bytes(r[0:4], "big") <= 8 or r[8] != _GVA_PAGE:
        return None
    name = r[12:18]
    if name == b"ism_sw" or name[:4] == b"iswt":
        return ONTAP_ISCSI_SW
    if name == b"ism_sn":
        return ONTAP_ISCSI_HBA
    return None


def ontap_proxy(page: bytes) -> bool | None:
    """From a VPD page C1h reply: whether the path goes through the partner controller (byte 19 bit 1);
    None for a page in another format."""
    p = _padded(page, 256)
    if p[1] != 0xC1 or p[8:14] != _PROXY_TAG:
        return None
    return bool(p[19] & 0x02)


def prio_ontap(dev: str, args: str = "", timeout: float = 30.0) -> int:
    """4 for an FCP path through the owning controller (or one whose kind cannot be told), 3 for an iSCSI
    HBA, 2 for a software iSCSI initiator, 1 for an FCP path through the partner (proxy); 0 when the
    attribute command itself fails or answers in another format."""
    with _Disk(dev) as disk:
        gva = disk.ask(sgio.netapp_gva(_GVA_PAGE, VPD_REPLY), VPD_REPLY, _ms(timeout))
        if gva is None or not gva.ok or _padded(gva.data, 8)[4:8] != _GVA_TAG:
            return 0
        kind = ontap_initiator(gva.data)
        if kind is not None:
            return kind
        res = disk.ask(sgio.inquiry(0xC1, VPD_REPLY), VPD_REPLY, _ms(timeout))
    proxy = ontap_proxy(res.data) if res is not None and res.ok else None
    return ONTAP_FCP_PROXY if proxy else ONTAP_OTHER


# --- hp_sw --------------------------------------------------------------------------------------------------

HP_SW_ACTIVE, HP_SW_STANDBY, HP_SW_FAILED = 4, 2, 0


def _sense_fields(sense: bytes) -> tuple[int, int | None, int | None] | None:
    """(sense key, ASC, ASCQ) as upstream's hp_sw reads them: descriptor format when bit 1 of the response
    code is set, fixed format otherwise; ASC/ASCQ None when the sense data is too short to hold them."""
    if len(sense) <= 2:
        return None
    if sense[0] & 0x02:
        return sense[1] & 0x0F, sense[2], (sense[3] if len(sense) > 3 else None)
    return (sense[2] & 0x0F, sense[12] if len(sense) > 12 else None, sense[13] if len(sense) > 13 else None)


def hp_sw_value(res: sgio.SgResult) -> int | None:
    """The path state a TEST UNIT READY answer shows: HP_SW_ACTIVE (good, or a recovered error),
    HP_SW_STANDBY (NOT READY, 04h/02h: the controller waits for an initialising command), HP_SW_FAILED for
    anything else; None for a UNIT ATTENTION after a reset (ASC 29h), which is asked again."""
    status = res.status & 0x7E
    value = HP_SW_FAILED
    if status == 0 and res.host_status == 0 and res.driver_status == 0:
        value = HP_SW_ACTIVE
    if sgio.carries_sense(res):
        fields = _sense_fields(res.sense)
        if fields is not None:
            key, asc, ascq = fields
            if key == sgio.RECOVERED_ERROR:
                value = HP_SW_ACTIVE
            if key == sgio.NOT_READY and (asc, ascq) == (0x04, 0x02):
                value = HP_SW_STANDBY
            if key == sgio.UNIT_ATTENTION and asc == 0x29:
                return None
    return value


def prio_hp_sw(dev: str, args: str = "", timeout: float = 30.0) -> int:
    with _Disk(dev) as disk:
        for _ in range(HP_SW_ATTEMPTS):
            res = disk.ask(sgio.TEST_UNIT_READY, 0, _ms(timeout))
            if res is None:
                return HP_SW_FAILED
            value = hp_sw_value(res)
            if value is not None:
                return value
    return HP_SW_FAILED


# --- hds ----------------------------------------------------------------------------------------------------

_EVEN_CTRL, _ODD_CTRL = b"02468", b"13579"
_EVEN_LDEV, _ODD_LDEV = b"02468ACE", b"13579BDF"


def hds_value(inquiry: bytes) -> int:
    """From standard INQUIRY data: 1 when the controller digit (byte 49) and the last LDEV digit (byte 47,
    upper-case hex) are both even or both odd, 0 when one is even and the other odd, UNDEF when either is
    not such a digit. A NUL ends the 4-byte LDEV field (bytes 44-47) early, as upstream reads it."""
    data = _padded(inquiry, INQUIRY_REPLY)
    ldev = data[44:48].split(b"\0", 1)[0]
    ctrl, last = data[49:50], ldev[3:4]
    if not last or last not in _EVEN_LDEV + _ODD_LDEV or not ctrl or ctrl not in _EVEN_CTRL + _ODD_CTRL:
        return UNDEF
    return 1 if (ctrl in _EVEN_CTRL) == (last in _EVEN_LDEV) else 0


def prio_hds(dev: str, args: str = "", timeout: float = 30.0) -> int:
    data = _good_data(dev, sgio.inquiry(None, INQUIRY_REPLY), INQUIRY_REPLY, timeout)
    return UNDEF if data is None else hds_value(data)


# --- datacore -----------------------------------------------------------------------------------------------

DATACORE_TIMEOUT_MS = 2000  # the INQUIRY's timeout when prio_args gives none
DATACORE_TIMEOUT_RANGE = (500, 20000)  # ms, both ends allowed
_C_SPACE = " \t\n\v\f\r"


@record(frozen=True)
class DatacoreArgs:
    preferredsds: str
    timeout_ms: int = DATACORE_TIMEOUT_MS


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _C_SPACE:
        pos += 1
    return pos


def _c_word(text: str, pos: int) -> tuple[str, int] | None:
    """scanf's %s: blanks skipped, then the run of non-blank characters (at least one)."""
    start = _skip_space(text, pos)
    end = start
    while end < len(text) and text[end] not in _C_SPACE:
        end += 1
    return (text[start:end], end) if end > start else None


def _c_int(text: str, pos: int) -> tuple[int, int] | None:
    """scanf's %i into an int: blanks skipped, a sign, then 0x/0X hex, 0 octal or decimal digits; the value
    wraps to 32 bits as the C library stores it (a value beyond a long saturates first)."""
    i = _skip_space(text, pos)
    sign = 1
    if i < len(text) and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    if text[i : i + 2] in ("0x", "0X") and i + 2 < len(text) and text[i + 2] in "0123456789abcdefABCDEF":
        base, i = 16, i + 2
    elif text[i : i + 1] == "0":
        base = 8
    else:
        base = 10
    digits = "0123456789abcdef"[:base]
    start = i
    while i < len(text) and text[i].lower() in digits:
        i += 1
    if i == start:
        return None
    value = sign * int(text[start:i], base)
    value = max(min(value, 2**63 - 1), -(2**63))  # strtol saturates at LONG_MAX / LONG_MIN
    value &= 0xFFFFFFFF
    return (value - 2**32 if value >= 2**31 else value), i


def _literal(text: str, pos: int, lit: str) -> int | None:
    """A format's literal: its blanks match any run of blanks (or none), other characters exactly."""
    for ch in lit:
        if ch == " ":
            pos = _skip_space(text, pos)
        elif text.startswith(ch, pos):
            pos += 1
        else:
            return None
    return pos


def parse_datacore_args(args: str) -> DatacoreArgs | None:
    """prio_args of datacore, in one of upstream's three forms: "timeout=<ms> preferredsds=<name>",
    "preferredsds=<name> timeout=<ms>" or "preferredsds=<name>" (anything after the name is then ignored,
    a malformed timeout included). <ms> is a C integer (decimal, 0x hex, 0 octal). None, which gives
    priority 0, for any other form, a name of fewer than 2 characters or a timeout outside 500-20000."""
    found: DatacoreArgs | None = None
    pos = _literal(args, 0, "timeout=")
    got = _c_int(args, pos) if pos is not None else None
    if got is not None:
        pos = _literal(args, got[1], " preferredsds=")
        word = _c_word(args, pos) if pos is not None else None
        if word is not None:
            found = DatacoreArgs(word[0], got[0])
    if found is None:
        pos = _literal(args, 0, "preferredsds=")
        word = _c_word(args, pos) if pos is not None else None
        if word is None:
            return None
        found = DatacoreArgs(word[0])
        pos = _literal(args, word[1], " timeout=")
        got = _c_int(args, pos) if pos is not None else None
        if got is not None:
            found = DatacoreArgs(word[0], got[0])
    low, high = DATACORE_TIMEOUT_RANGE
    if len(found.preferredsds) <= 1 or not low <= found.timeout_ms <= high:
        return None
    return found


def datacore_sds_name(inquiry: bytes) -> bytes:
    """The storage server's name in standard INQUIRY data: bytes 112-127, up to a NUL."""
    return _padded(inquiry, INQUIRY_REPLY)[112:128].split(b"\0", 1)[0]


def prio_datacore(dev: str, args: str = "", timeout: float = 30.0) -> int:
    """1 when the preferred SDS name occurs in the name of the server behind this path, 0 otherwise, and
    0 for malformed prio_args or a failed INQUIRY. The INQUIRY's timeout is the one in prio_args (default
    DATACORE_TIMEOUT_MS), never longer than the checker's."""
    parsed = parse_datacore_args(args)
    if parsed is None:
        return 0
    data = _good_data(dev, sgio.inquiry(None, INQUIRY_REPLY), INQUIRY_REPLY,
                      min(parsed.timeout_ms / 1000, timeout) if timeout > 0 else parsed.timeout_ms / 1000)
    if data is None:
        return 0
    wanted = parsed.preferredsds.encode("utf-8", "surrogateescape")
    return 1 if wanted in datacore_sds_name(data) else 0
