"""The vendor prioritizers (emc, ontap, rdac, hp_sw, hds, datacore) over a fake SG_IO.

Replies are written byte by byte from the layouts the vendors document (as upstream multipath-tools reads
them): one test per value each prioritizer can give, and the failure paths (SCSI error, ioctl error, device
that cannot be opened, reply in another format)."""

from __future__ import annotations

import pytest

from pymultipathd.paths import prio, sgio, vendor_prio
from pymultipathd.paths.vendor_prio import UNDEF
from tests.unit.fakesg import (
    DID_NO_CONNECT,
    FakeSg,
    check_condition,
    descriptor_sense,
    fixed_sense,
    good,
    host_error,
)

NOT_SUPPORTED = check_condition(fixed_sense(sgio.ILLEGAL_REQUEST, 0x24, 0x00))
NO_DEVICE = OSError(6, "No such device or address")


def test_undef_is_the_registrys():
    assert vendor_prio.UNDEF == prio.PRIO_UNDEF


@pytest.mark.parametrize("name", ["emc", "ontap", "rdac", "hp_sw", "hds", "datacore"])
def test_registered(name):
    assert prio.PRIORITIZERS[name].__module__ == vendor_prio.__name__
    assert prio.choose(name, False, "") == name


# --- emc: VPD page C0h, "unit path report" ------------------------------------------------------------------


def emc_page(*, lun_state=0x02, current_sp=0x00, default_sp=0x00, revision=0x00, initiator=0x03,
             failover=0x04, arraycommpath=True, lun_ops=0x00, page=0xC0) -> bytes:
    p = bytearray(128)
    p[0], p[1], p[3] = 0x00, page, 124       # direct access device, page code, page length
    p[4] = lun_state                         # 0 unbound, 1 bound, 2 owned
    p[5] = current_sp                        # SP the LUN is on now (0 = SP A, 1 = SP B)
    p[8] = default_sp                        # SP that owns it by default
    p[9] = revision
    p[27] = initiator                        # effective initiator type (3 = failover-capable host)
    p[28] = failover                         # failover mode, bits 0-2
    p[30] = 0x04 if arraycommpath else 0x00  # arraycommpath, bit 2
    p[48] = lun_ops                          # 0 = normal operations
    return bytes(p)


def _emc(monkeypatch, reply) -> FakeSg:
    fake = FakeSg()
    if reply is not None:
        fake.on(sgio.inquiry(0xC0)[:3], reply if isinstance(reply, (sgio.SgResult, BaseException)) else None,
                data=reply if isinstance(reply, bytes) else None)
    return fake.install(monkeypatch)


@pytest.mark.parametrize(
    ("page", "value"),
    [
        (emc_page(lun_state=0, current_sp=1, default_sp=0), 0),   # unbound, not on its default SP
        (emc_page(lun_state=1, current_sp=1, default_sp=0), 1),   # bound
        (emc_page(lun_state=2, current_sp=1, default_sp=0), 2),   # owned, through the other SP
        (emc_page(lun_state=1, current_sp=1, default_sp=1), 3),   # bound, on its default SP
        (emc_page(lun_state=2, current_sp=0, default_sp=0), 4),   # owned, on its default SP
        (emc_page(failover=0x06), 4),                             # the other accepted failover mode
        (emc_page(failover=0x0C), 4),                             # only bits 0-2 count
    ],
)
def test_emc_values(monkeypatch, page, value):
    fake = _emc(monkeypatch, page)
    assert prio.priority("emc", "sdb", "", 7) == value
    assert fake.calls == [bytes([0x12, 0x01, 0xC0, 0x00, 0x80, 0x00])] and fake.timeouts_ms == [7000]
    assert fake.opened == ["/dev/sdb"]


@pytest.mark.parametrize(
    "page",
    [
        emc_page(page=0xC1),            # another page
        emc_page(revision=0x01),        # another revision of the page
        emc_page(initiator=0x01),       # host not registered as failover-capable
        emc_page(failover=0x01),        # failover mode neither 4 nor 6
        emc_page(arraycommpath=False),
        emc_page(lun_ops=0x01),         # LUN not in normal operation
        b"",                            # empty reply: a zero-filled buffer is no page C0h
    ],
)
def test_emc_undefined_for_a_page_it_cannot_use(monkeypatch, page):
    _emc(monkeypatch, page)
    assert vendor_prio.prio_emc("sdb") == UNDEF and prio.priority("emc", "sdb") == prio.PRIO_UNDEF


@pytest.mark.parametrize("reply", [NOT_SUPPORTED, host_error(DID_NO_CONNECT), OSError(5, "I/O error")])
def test_emc_undefined_when_the_inquiry_fails(monkeypatch, reply):
    _emc(monkeypatch, reply)
    assert vendor_prio.prio_emc("sdb") == UNDEF


def test_emc_undefined_when_the_device_cannot_be_opened(monkeypatch):
    FakeSg(open_error=NO_DEVICE).install(monkeypatch)
    assert vendor_prio.prio_emc("sdb") == UNDEF


# --- rdac: VPD page C9h, "volume access control" ------------------------------------------------------------


def rdac_page(*, owner=False, preferred=0x00, ioship=False, ident=b"vac", page=0xC9, length=0x2C) -> bytes:
    p = bytearray(128)
    p[1], p[3] = page, length
    p[4:7] = ident
    p[8] = (0x01 if owner else 0) | (0x20 if ioship else 0)  # current volume path bit, I/O shipping bit
    p[9] = preferred                                         # volume preferred path priority (low nibble)
    return bytes(p)


@pytest.mark.parametrize(
    ("page", "value"),
    [
        (rdac_page(), 0),
        (rdac_page(preferred=0x02), 1),                          # secondary path
        (rdac_page(owner=True), 2),
        (rdac_page(owner=True, preferred=0x02), 3),
        (rdac_page(preferred=0x01), 4),                          # preferred path
        (rdac_page(owner=True, preferred=0x01), 6),
        (rdac_page(ioship=True), 8),
        (rdac_page(ioship=True, preferred=0x02), 9),
        (rdac_page(ioship=True, owner=True), 10),
        (rdac_page(ioship=True, owner=True, preferred=0x02), 11),
        (rdac_page(ioship=True, preferred=0x01), 12),
        (rdac_page(ioship=True, owner=True, preferred=0x01), 14),
        (rdac_page(preferred=0x03), 0),                          # reserved value
        (rdac_page(owner=True, preferred=0xF1), 6),              # only the low nibble counts
    ],
)
def test_rdac_values(monkeypatch, page, value):
    fake = FakeSg().on(sgio.inquiry(0xC9)[:3], data=page).install(monkeypatch)
    assert prio.priority("rdac", "sdb", "", 3) == value
    assert fake.calls == [bytes([0x12, 0x01, 0xC9, 0x00, 0x80, 0x00])] and fake.timeouts_ms == [3000]


@pytest.mark.parametrize(
    "page",
    [rdac_page(owner=True, page=0xC8), rdac_page(owner=True, length=0x2B),
     rdac_page(owner=True, ident=b"vaC")],
)
def test_rdac_zero_for_a_page_in_another_format(monkeypatch, page):
    FakeSg().on(sgio.inquiry(0xC9)[:3], data=page).install(monkeypatch)
    assert vendor_prio.prio_rdac("sdb") == 0


@pytest.mark.parametrize("reply", [NOT_SUPPORTED, host_error(DID_NO_CONNECT), OSError(5, "I/O error")])
def test_rdac_zero_when_the_inquiry_fails(monkeypatch, reply):
    FakeSg().on(sgio.inquiry(0xC9)[:3], reply).install(monkeypatch)
    assert vendor_prio.prio_rdac("sdb") == 0


def test_rdac_zero_when_the_device_cannot_be_opened(monkeypatch):
    FakeSg(open_error=NO_DEVICE).install(monkeypatch)
    assert vendor_prio.prio_rdac("sdb") == 0


# --- ontap: vendor command C0h (attribute page 41h), VPD page C1h -------------------------------------------

GVA_CDB = bytes([0xC0, 0x00, 0x01, 0x0A, 0x98, 0x0A, 0x41, 0x80, 0x00, 0x00])


def gva_reply(initiator: bytes | None, *, tag=bytes([0x0A, 0x98, 0x0A, 0x01]), page=0x41) -> bytes:
    r = bytearray(64)
    r[4:8] = tag
    if initiator is None:
        r[0:4] = (8).to_bytes(4, "big")  # no attribute follows the header
        return bytes(r)
    r[0:4] = (20).to_bytes(4, "big")
    r[8] = page
    r[12 : 12 + len(initiator)] = initiator
    return bytes(r)


def proxy_page(proxy: bool, *, tag=bytes([0x0A, 0x98, 0x0A, 0x00, 0xC1, 0x00])) -> bytes:
    p = bytearray(128)
    p[1], p[3] = 0xC1, 124
    p[8:14] = tag
    p[19] = 0x02 if proxy else 0x00
    return bytes(p)


def _ontap(monkeypatch, gva, proxy=None) -> FakeSg:
    fake = FakeSg()
    fake.on(GVA_CDB[:7], gva if isinstance(gva, (sgio.SgResult, BaseException)) else None,
            data=gva if isinstance(gva, bytes) else None)
    if proxy is not None:
        fake.on(sgio.inquiry(0xC1)[:3], proxy if isinstance(proxy, (sgio.SgResult, BaseException)) else None,
                data=proxy if isinstance(proxy, bytes) else None)
    return fake.install(monkeypatch)


def test_ontap_software_iscsi(monkeypatch):
    fake = _ontap(monkeypatch, gva_reply(b"ism_sw"))
    assert prio.priority("ontap", "sdb", "", 5) == 2
    assert fake.calls == [GVA_CDB] and fake.timeouts_ms == [5000]


def test_ontap_software_iscsi_older_name(monkeypatch):
    _ontap(monkeypatch, gva_reply(b"iswt"))
    assert vendor_prio.prio_ontap("sdb") == 2


def test_ontap_iscsi_hba(monkeypatch):
    _ontap(monkeypatch, gva_reply(b"ism_sn"))
    assert vendor_prio.prio_ontap("sdb") == 3


def test_ontap_fcp_proxy(monkeypatch):
    fake = _ontap(monkeypatch, gva_reply(None), proxy_page(True))
    assert vendor_prio.prio_ontap("sdb") == 1
    assert fake.calls == [GVA_CDB, bytes([0x12, 0x01, 0xC1, 0x00, 0x80, 0x00])]


def test_ontap_fcp_through_the_owner(monkeypatch):
    _ontap(monkeypatch, gva_reply(None), proxy_page(False))
    assert vendor_prio.prio_ontap("sdb") == 4


@pytest.mark.parametrize("gva", [gva_reply(b"fcp_xx"), gva_reply(b"ism_sw", page=0x42)])
def test_ontap_other_attributes_ask_for_the_proxy_page(monkeypatch, gva):
    _ontap(monkeypatch, gva, proxy_page(True))
    assert vendor_prio.prio_ontap("sdb") == 1


@pytest.mark.parametrize("proxy", [NOT_SUPPORTED, proxy_page(True, tag=bytes(6)), OSError(5, "I/O error")])
def test_ontap_unknown_proxy_state_counts_as_the_owner(monkeypatch, proxy):
    _ontap(monkeypatch, gva_reply(None), proxy)
    assert vendor_prio.prio_ontap("sdb") == 4


@pytest.mark.parametrize(
    "gva", [NOT_SUPPORTED, gva_reply(b"ism_sw", tag=bytes([0x0A, 0x98, 0x0A, 0x02])), OSError(5, "I/O error")]
)
def test_ontap_zero_when_the_attribute_command_fails(monkeypatch, gva):
    fake = _ontap(monkeypatch, gva, proxy_page(True))
    assert vendor_prio.prio_ontap("sdb") == 0 and len(fake.calls) == 1


def test_ontap_zero_when_the_device_cannot_be_opened(monkeypatch):
    FakeSg(open_error=NO_DEVICE).install(monkeypatch)
    assert vendor_prio.prio_ontap("sdb") == 0


# --- hp_sw: TEST UNIT READY ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        (good(), 4),
        (check_condition(fixed_sense(sgio.RECOVERED_ERROR, 0x17, 0x01)), 4),
        (check_condition(descriptor_sense(sgio.RECOVERED_ERROR)), 4),
        # NOT READY, LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED: the standby controller
        (check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x02)), 2),
        (check_condition(descriptor_sense(sgio.NOT_READY, 0x04, 0x02)), 2),
        (check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x03)), 0),   # manual intervention required
        (check_condition(fixed_sense(sgio.MEDIUM_ERROR, 0x11, 0x00)), 0),
        (check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x2A, 0x06)), 0),  # not a reset: not retried
        (host_error(DID_NO_CONNECT), 0),
        (sgio.SgResult(ok=False, status=sgio.BUSY, host_status=0, driver_status=0, sense=b"", data=b""), 0),
        (check_condition(b"\x70\x00"), 0),                               # sense too short to read
    ],
)
def test_hp_sw_values(monkeypatch, reply, value):
    fake = FakeSg().on(sgio.TEST_UNIT_READY, reply).install(monkeypatch)
    assert prio.priority("hp_sw", "sdb", "", 9) == value
    assert fake.calls == [bytes(6)] and fake.timeouts_ms == [9000]


def test_hp_sw_asks_again_after_a_reset(monkeypatch):
    replies = [check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x29, 0x00)), good()]
    fake = FakeSg().on(sgio.TEST_UNIT_READY, lambda cdb: replies.pop(0)).install(monkeypatch)
    assert vendor_prio.prio_hp_sw("sdb") == 4 and len(fake.calls) == 2


def test_hp_sw_gives_up_on_endless_resets(monkeypatch):
    ua = check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x29, 0x02))
    fake = FakeSg().on(sgio.TEST_UNIT_READY, ua).install(monkeypatch)
    assert vendor_prio.prio_hp_sw("sdb") == 0 and len(fake.calls) == vendor_prio.HP_SW_ATTEMPTS


@pytest.mark.parametrize("fake", [FakeSg(open_error=NO_DEVICE), FakeSg().on(bytes(6), OSError(5, "I/O"))])
def test_hp_sw_failed_when_the_device_cannot_be_asked(monkeypatch, fake):
    fake.install(monkeypatch)
    assert vendor_prio.prio_hp_sw("sdb") == 0


# --- hds: standard INQUIRY, controller and LDEV -------------------------------------------------------------


def hds_inquiry(ctrl: bytes, ldev: bytes) -> bytes:
    d = bytearray(96)
    d[0], d[2], d[3], d[4] = 0x00, 0x05, 0x02, 91   # disk, SPC-3, response format 2, additional length
    d[8:16] = b"HITACHI "
    d[16:32] = b"DF600F-CM       "
    d[32:36] = b"0000"
    d[40:44] = b"0105"                                # array serial
    d[44:48] = ldev                                   # LDEV number, 4 hex digits
    d[48:49] = b" "
    d[49:50] = ctrl                                   # controller
    d[50:51] = b"B"                                   # port
    return bytes(d)


@pytest.mark.parametrize(
    ("ctrl", "ldev", "value"),
    [
        (b"0", b"00C6", 1), (b"2", b"00CE", 1),          # even controller, even LDEV
        (b"0", b"00C7", 0), (b"8", b"00CB", 0),          # even controller, odd LDEV
        (b"1", b"00C6", 0), (b"3", b"00CA", 0),          # odd controller, even LDEV
        (b"1", b"00C5", 1), (b"9", b"00CF", 1),          # odd controller, odd LDEV
        (b"1", b"00Cf", UNDEF),                          # lower-case hex is not read as a digit
        (b"A", b"00C6", UNDEF),                          # not a controller digit
        (b"\0", b"00C6", UNDEF),
        (b"1", b"00\0\0", UNDEF),                        # LDEV field ends early
    ],
)
def test_hds_values(monkeypatch, ctrl, ldev, value):
    fake = FakeSg().on(sgio.inquiry(None)[:3], data=hds_inquiry(ctrl, ldev)).install(monkeypatch)
    assert vendor_prio.prio_hds("sdb", "", 4) == value
    assert fake.calls == [bytes([0x12, 0x00, 0x00, 0x00, 0xFF, 0x00])] and fake.timeouts_ms == [4000]


@pytest.mark.parametrize("fake", [FakeSg(open_error=NO_DEVICE), FakeSg().on(bytes([0x12, 0]), NOT_SUPPORTED),
                                  FakeSg().on(bytes([0x12, 0]), OSError(5, "I/O error"))])
def test_hds_undefined_when_the_inquiry_fails(monkeypatch, fake):
    fake.install(monkeypatch)
    assert vendor_prio.prio_hds("sdb") == UNDEF


def test_hds_short_reply_is_undefined(monkeypatch):
    FakeSg().on(bytes([0x12, 0]), data=hds_inquiry(b"1", b"00C5")[:48]).install(monkeypatch)
    assert vendor_prio.prio_hds("sdb") == UNDEF


# --- datacore: prio_args and the SDS name in the standard INQUIRY data --------------------------------------


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        ("preferredsds=sds1", ("sds1", 2000)),
        ("timeout=1000 preferredsds=sds1", ("sds1", 1000)),
        ("preferredsds=sds1 timeout=1000", ("sds1", 1000)),
        ("timeout=1000preferredsds=sds1", ("sds1", 1000)),      # a format blank matches no blanks too
        ("timeout= 1000   preferredsds=  sds1", ("sds1", 1000)),
        ("timeout=0x3e8 preferredsds=sds1", ("sds1", 1000)),    # %i: hex
        ("timeout=01750 preferredsds=sds1", ("sds1", 1000)),    # %i: octal
        ("timeout=+500 preferredsds=ab", ("ab", 500)),
        ("timeout=20000 preferredsds=ab", ("ab", 20000)),
        ("timeout=4294967796 preferredsds=ab", ("ab", 500)),    # wraps to 32 bits as C stores it
        ("preferredsds=sds1 timeout=abc", ("sds1", 2000)),      # the third form: the rest is ignored
        ("preferredsds=sds1 whatever", ("sds1", 2000)),
        ("preferredsds=sds1 timeout=1000 extra", ("sds1", 1000)),
    ],
)
def test_datacore_args(args, parsed):
    assert vendor_prio.parse_datacore_args(args) == vendor_prio.DatacoreArgs(*parsed)


@pytest.mark.parametrize(
    "args",
    [
        "",
        "preferredsds=a",                     # 1 character is too short
        "preferredsds=",
        "sds1",
        " preferredsds=sds1",                 # the literal must start the arguments
        "timeout=1000",
        "timeout=1000 preferredsds=",
        "timeout=abc preferredsds=sds1",
        "timeout=499 preferredsds=sds1",      # timeout out of [500, 20000]
        "timeout=20001 preferredsds=sds1",
        "timeout=-1000 preferredsds=sds1",
        "preferredsds=sds1 timeout=100",
        "PreferredSDS=sds1",
    ],
)
def test_datacore_malformed_args(args):
    assert vendor_prio.parse_datacore_args(args) is None


def datacore_inquiry(sds_name: bytes) -> bytes:
    d = bytearray(255)
    d[0], d[2], d[3], d[4] = 0x00, 0x05, 0x02, 250
    d[8:16] = b"DataCore"
    d[16:32] = b"Virtual Disk    "
    d[112 : 112 + len(sds_name)] = sds_name[:16]       # vendor-specific: the SDS serving this path
    return bytes(d)


@pytest.mark.parametrize(
    ("name", "args", "value"),
    [
        (b"SDS-EAST-01", "preferredsds=EAST", 1),              # a part of the name is enough
        (b"SDS-EAST-01", "preferredsds=SDS-EAST-01", 1),
        (b"SDS-WEST-01", "preferredsds=EAST", 0),
        (b"SDS-EAST-01", "preferredsds=east", 0),              # case matters
        (b"SDS\0EAST", "preferredsds=EAST", 0),                # the name ends at a NUL
        (b"0123456789ABCDEFGHIJ", "preferredsds=EFG", 0),      # only 16 bytes are the name
        (b"0123456789ABCDEFGHIJ", "preferredsds=CDEF", 1),
    ],
)
def test_datacore_values(monkeypatch, name, args, value):
    fake = FakeSg().on(sgio.inquiry(None)[:3], data=datacore_inquiry(name)).install(monkeypatch)
    assert prio.priority("datacore", "sdb", args, 30) == value
    assert fake.calls == [bytes([0x12, 0x00, 0x00, 0x00, 0xFF, 0x00])] and fake.timeouts_ms == [2000]


def test_datacore_timeout_from_args_within_the_checkers(monkeypatch):
    fake = FakeSg().on(bytes([0x12, 0]), data=datacore_inquiry(b"SDS1")).install(monkeypatch)
    assert vendor_prio.prio_datacore("sdb", "preferredsds=SDS1 timeout=5000", 30) == 1
    assert vendor_prio.prio_datacore("sdb", "preferredsds=SDS1 timeout=5000", 3) == 1
    assert fake.timeouts_ms == [5000, 3000]


def test_datacore_malformed_args_ask_nothing(monkeypatch):
    fake = FakeSg().on(bytes([0x12, 0]), data=datacore_inquiry(b"SDS1")).install(monkeypatch)
    assert vendor_prio.prio_datacore("sdb", "preferredsds=S") == 0 and fake.calls == []


@pytest.mark.parametrize("fake", [FakeSg(open_error=NO_DEVICE), FakeSg().on(bytes([0x12, 0]), NOT_SUPPORTED),
                                  FakeSg().on(bytes([0x12, 0]), OSError(5, "I/O error"))])
def test_datacore_zero_when_the_inquiry_fails(monkeypatch, fake):
    fake.install(monkeypatch)
    assert vendor_prio.prio_datacore("sdb", "preferredsds=SDS1") == 0
