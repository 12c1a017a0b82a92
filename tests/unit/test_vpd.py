"""recheck_wwid's reading of a path's identity: VPD page 83h designators as WWIDs (pymultipathd.paths.vpd)."""

from __future__ import annotations

from pymultipathd.paths import vpd


def designator(code_set: int, assoc: int, kind: int, body: bytes) -> bytes:
    return bytes([code_set, (assoc << 4) | kind, 0, len(body)]) + body


def page(*descs: bytes) -> bytes:
    body = b"".join(descs)
    return bytes([0, 0x83]) + len(body).to_bytes(2, "big") + body


NAA = bytes.fromhex("6001405aaaabbbbccccddddeeeeffff0")  # NAA 6 (IEEE registered extended), as LIO gives
LIO_WWID = "36001405aaaabbbbccccddddeeeeffff0"
OTHER = bytes.fromhex("6001405111122223333444455556666f")
# what LIO's page 83h carries besides: a T10 vendor id (LU), the target port's designators (assoc 1)
T10 = designator(2, 0, 1, b"LIO-ORG lun0 aaaabbbb")
PORT = designator(1, 1, 4, bytes([0, 0, 0, 1]))


def test_the_logical_units_designators_as_wwids_naa_first():
    p = page(T10, designator(3, 1, 8, b"iqn.2003-01.org.x:tgt\0\0\0"), designator(1, 0, 3, NAA), PORT,
             designator(3, 0, 8, b"iqn.2003-01.org.x:lu\0\0\0\0"), designator(1, 0, 2, bytes(range(8))))
    assert vpd.lu_designators(p) == [LIO_WWID, "20001020304050607", "8iqn.2003-01.org.x:lu"]


def test_the_same_lun_is_not_changed_and_another_is():
    assert vpd.changed(LIO_WWID, page(T10, designator(1, 0, 3, NAA), PORT)) is None
    now = vpd.changed(LIO_WWID, page(T10, designator(1, 0, 3, OTHER), PORT))
    assert now == "3" + OTHER.hex()


def test_what_cannot_be_compared_is_never_taken_for_changed():
    other = page(designator(1, 0, 3, OTHER))
    assert vpd.changed("SATA_disk_1234", other) is None        # a WWID of another form (uid_attribute)
    assert vpd.changed("1LIO-ORG_lun0", other) is None           # a T10 vendor id WWID
    assert vpd.changed(LIO_WWID, page(T10, PORT)) is None        # no logical-unit NAA/EUI/name to compare
    assert vpd.changed(LIO_WWID, b"") is None
    assert vpd.changed(LIO_WWID, bytes([0, 0x80, 0, 4, 1, 2, 3, 4])) is None  # not page 83h
    assert vpd.changed("", other) is None


def test_a_cut_off_or_lying_page_is_read_no_further_than_it_holds():
    full = page(designator(1, 0, 3, NAA))
    assert vpd.lu_designators(full[:-3]) == []                       # the designator cut off
    lying = bytearray(full)
    lying[2:4] = (4000).to_bytes(2, "big")                           # a page length past the reply
    assert vpd.lu_designators(bytes(lying)) == [LIO_WWID]
    huge = bytes([1, 0x03, 0, 250]) + bytes(5)                        # a length past the page
    assert vpd.lu_designators(page(huge)) == []
