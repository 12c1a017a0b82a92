"""A path's identity read fresh from the device: the Device Identification VPD page (83h) over SG_IO.

recheck_wwid needs it: after a path was down, the array may have mapped another logical unit behind the
same SCSI address, and everything the system remembers (sysfs's cached page, udev's ID_SERIAL) still says
the old one. The designators of the logical unit are rendered as WWIDs are written (scsi_id, udev and
upstream agree on these): "3" + the NAA identifier in hex, "2" + an EUI-64 in hex, "8" + a SCSI name
string. A WWID of another form (a vendor T10 identifier, a uid_attribute of the administrator's choosing)
cannot be compared, and is never taken for changed.
"""

from __future__ import annotations

import os

from pymultipathd.paths import sgio

PAGE = 0x83
ALLOC = 1024
COMPARABLE = ("3", "2", "8")  # leading digits of the WWIDs this module can render

NAA, EUI64, SCSI_NAME = 3, 2, 8


def lu_designators(page: bytes) -> list[str]:
    """The logical unit's designators as WWIDs, NAA first (pure); [] for anything that is no page 83h."""
    if len(page) < 4 or page[1] != PAGE:
        return []
    end = min(len(page), 4 + int.from_bytes(page[2:4], "big"))
    found: dict[int, list[str]] = {NAA: [], EUI64: [], SCSI_NAME: []}
    pos = 4
    while pos + 4 <= end:
        code_set, assoc_type, length = page[pos] & 0x0F, page[pos + 1], page[pos + 3]
        body = page[pos + 4:pos + 4 + length]
        pos += 4 + length
        if len(body) < length or (assoc_type >> 4) & 0x03 != 0:  # cut off, or not the logical unit's
            continue
        kind = assoc_type & 0x0F
        if kind in (NAA, EUI64) and code_set == 1 and body:
            found[kind].append(f"{kind}{body.hex()}")
        elif kind == SCSI_NAME and code_set == 3:
            found[kind].append("8" + body.split(b"\0", 1)[0].decode("ascii", "replace"))
    return found[NAA] + found[EUI64] + found[SCSI_NAME]


def changed(known: str, page: bytes) -> str | None:
    """The WWID the device reports now when it is not `known` (pure); None when it is the same, or when
    the two cannot be compared (another kind of WWID, an unreadable page)."""
    ids = lu_designators(page)
    if not ids or not known or not known.startswith(COMPARABLE):
        return None
    if known in ids:
        return None
    same_kind = [i for i in ids if i[0] == known[0]]
    return same_kind[0] if same_kind else ids[0]


def read_page(devnode: str, timeout: float) -> bytes | None:
    """INQUIRY EVPD 83h through the path; None if it cannot be read (blocking: run it off the loop)."""
    try:
        fd = sgio.open_path(devnode)
    except OSError:
        return None
    try:
        res = sgio.sg_io(fd, sgio.inquiry(PAGE, ALLOC), data_len=ALLOC, timeout_ms=int(timeout * 1000))
    except OSError:
        return None
    finally:
        os.close(fd)
    return res.data if res.ok and res.status == sgio.GOOD else None
