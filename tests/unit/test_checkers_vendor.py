"""emc_clariion, hp_sw, rdac and cciss_tur against byte-exact replies.

The vendor pages are written here byte by byte from their published layouts: EMC CLARiiON/VNX unit report
(INQUIRY VPD C0h), RDAC volume access control (VPD C9h, as Linux's scsi_dh_rdac reads it), unit serial number
(VPD 80h, SPC-4 7.8.15); sense data from SPC-4 (fakesg). The CCISS structures follow <linux/cciss_ioctl.h>.
"""

import ctypes
import errno
import sys
import threading

import pytest

from pymultipathd.paths import checkers, sgio, vendor_checkers
from pymultipathd.paths.vendor_checkers import ClariionMemory
from pymultipathd.policy.state import PathCheck
from tests.unit.fakesg import (
    DID_NO_CONNECT,
    DID_TIME_OUT,
    DID_TRANSPORT_DISRUPTED,
    DRIVER_SENSE,
    FakeSg,
    check_condition,
    descriptor_sense,
    fixed_sense,
    good,
    host_error,
)

UP, DOWN, GHOST, SHAKY = PathCheck.UP, PathCheck.DOWN, PathCheck.GHOST, PathCheck.SHAKY
WILD = PathCheck.WILD  # upstream's PATH_WILD: the checker cannot judge the device
DID_BUS_BUSY, DID_ERROR, DID_SOFT_ERROR = 0x02, 0x07, 0x0B
READ = b"\x28"  # READ(10)
TUR = sgio.TEST_UNIT_READY


def seq(*answers):
    """Answers given in turn, the last one repeated."""
    left = list(answers)

    def answer(cdb):
        return left.pop(0) if len(left) > 1 else left[0]

    return answer


def recovered(data: bytes) -> sgio.SgResult:
    """CHECK CONDITION with RECOVERED ERROR sense: the command worked, the data came."""
    return sgio.SgResult(ok=False, status=sgio.CHECK_CONDITION, host_status=0, driver_status=DRIVER_SENSE,
                         sense=fixed_sense(sgio.RECOVERED_ERROR, 0x17, 0x01), data=data)


def test_all_upstream_checkers_are_registered():
    assert {"emc_clariion", "hp_sw", "rdac", "cciss_tur"} <= set(checkers.CHECKERS)
    assert checkers.CHECKERS["rdac"] is vendor_checkers.rdac


# --- emc_clariion -----------------------------------------------------------------------------------------

WWN_A = bytes.fromhex("6006016012345678abcdef0011223344")
WWN_B = bytes.fromhex("600601609999999999999999aaaaaaaa")
C0 = sgio.inquiry(0xC0, 128)


def clariion_page(*, lun_state=2, default_sp=0, port=1, current_sp=0, wwn=WWN_A, initiator_type=3,
                  failover=0x04, arraycommpath=True, lun_operation=0, page=0xC0, revision=0) -> bytes:
    b = bytearray(66)
    b[0] = 0x00                 # peripheral qualifier 0, direct access block device
    b[1] = page                 # page code C0h
    b[3] = len(b) - 4           # page length
    b[4] = lun_state            # 0 unbound / LUNZ, 1 bound (peer SP owns), 2 owned by this path's SP
    b[5] = default_sp           # default owner: 0 SP A, 1 SP B
    b[7] = port                 # SP port of this path
    b[8] = current_sp           # SP this path goes through
    b[9] = revision
    b[10:26] = wwn              # LUN unique id
    b[27] = initiator_type      # effective initiator type (3: the one multipath needs)
    b[28] = failover            # failover mode bits: 4 PNR, 6 ALUA
    b[30] = 0x04 if arraycommpath else 0x00
    b[48] = lun_operation       # 0: normal operations
    b[50:66] = b"APM00123456789  "
    return bytes(b)


def emc(monkeypatch, page, read=None, memory=None, dev="/dev/sdx", timeout=2.5):
    fake = FakeSg().on(C0[:3], good(page) if isinstance(page, bytes) else page)
    fake.on(READ, read if read is not None else good(bytes(512)))
    fake.install(monkeypatch)
    res = vendor_checkers.emc_clariion(dev, timeout, memory if memory is not None else ClariionMemory())
    return res, fake


def test_emc_active_path_is_read_and_up(monkeypatch):
    res, fake = emc(monkeypatch, clariion_page(lun_state=2, current_sp=0))
    assert res.state == UP
    assert "active path is healthy" in res.message and "SP A owns the LUN" in res.message
    assert fake.calls == [bytes([0x12, 0x01, 0xC0, 0x00, 0x80, 0x00]), sgio.read10(0, 1)]
    assert fake.timeouts_ms == [2500, 2500]


def test_emc_passive_path_is_up_not_ghost_and_not_read(monkeypatch):
    res, fake = emc(monkeypatch, clariion_page(lun_state=1, current_sp=1))
    assert res.state == UP  # upstream: a healthy passive CLARiiON path is up, not ghost
    assert "passive path is healthy" in res.message
    assert "SP A owns the LUN, this path goes through SP B" in res.message
    assert not any(c.startswith(READ) for c in fake.calls)


def test_emc_unbound_or_lunz_is_down(monkeypatch):
    res, _ = emc(monkeypatch, clariion_page(lun_state=0))
    assert res.state == DOWN and "unbound" in res.message and "LUNZ" in res.message


def test_emc_lun_in_a_software_upgrade_is_shaky(monkeypatch):
    res, fake = emc(monkeypatch, clariion_page(lun_operation=0x01))
    assert res.state == SHAKY and "not available for normal operations" in res.message
    assert len(fake.calls) == 1


@pytest.mark.parametrize(("change", "words"), [
    ({"initiator_type": 2}, "initiator type 2"),
    ({"failover": 0x01}, "failover mode bits 1"),
    ({"arraycommpath": False}, "arraycommpath off"),
])
def test_emc_path_not_set_up_for_failover_is_down(monkeypatch, change, words):
    res, _ = emc(monkeypatch, clariion_page(**change))
    assert res.state == DOWN and "not set up for failover" in res.message and words in res.message


def test_emc_alua_failover_mode_is_accepted(monkeypatch):
    assert emc(monkeypatch, clariion_page(failover=0x06))[0].state == UP


@pytest.mark.parametrize("change", [{"page": 0x83}, {"revision": 1}])
def test_emc_page_in_unknown_format_is_down(monkeypatch, change):
    res, _ = emc(monkeypatch, clariion_page(**change))
    assert res.state == DOWN and "unknown format" in res.message


def test_emc_short_reply_reads_as_zeros(monkeypatch):
    # as upstream: bytes past the reply's end are zero, so the initiator type (byte 27) is wrong
    res, _ = emc(monkeypatch, clariion_page()[:20])
    assert res.state == DOWN and "initiator type 0" in res.message


def test_emc_wwn_change_fails_the_path_until_it_is_forgotten(monkeypatch):
    monkeypatch.setattr(vendor_checkers, "CLARIION_MEMORY", ClariionMemory())
    check = checkers.CHECKERS["emc_clariion"]
    FakeSg().on(C0[:3], data=clariion_page(wwn=WWN_A)).on(READ, data=bytes(512)).install(monkeypatch)
    assert check("/dev/sdx", 1.0).state == UP
    FakeSg().on(C0[:3], data=clariion_page(wwn=WWN_B)).on(READ, data=bytes(512)).install(monkeypatch)
    res = check("/dev/sdx", 1.0)
    assert res.state == DOWN and "WWN has changed" in res.message
    assert WWN_A.hex() in res.message and WWN_B.hex() in res.message
    assert check("/dev/sdx", 1.0).state == DOWN  # the first WWN stays the reference
    assert check("/dev/sdy", 1.0).state == UP    # another path has its own
    vendor_checkers.forget_path("/dev/sdx")
    assert check("/dev/sdx", 1.0).state == UP


def test_emc_a_recreated_device_node_is_a_new_path(monkeypatch):
    mem = ClariionMemory()
    node = [(11, 0x0810)]
    monkeypatch.setattr(vendor_checkers, "_node_identity", lambda devnode: node[0])
    assert emc(monkeypatch, clariion_page(wwn=WWN_A), memory=mem)[0].state == UP
    node[0] = (12, 0x0810)  # sdx removed and added again, now another LUN
    assert emc(monkeypatch, clariion_page(wwn=WWN_B), memory=mem)[0].state == UP


def test_emc_inactive_snapshot_fails_active_and_passive_paths(monkeypatch):
    mem = ClariionMemory()
    snap = check_condition(fixed_sense(sgio.ILLEGAL_REQUEST, 0x25, 0x01))
    res, _ = emc(monkeypatch, clariion_page(lun_state=2), read=snap, memory=mem, dev="/dev/sda")
    assert res.state == DOWN and "active path to inactive snapshot" in res.message
    # the passive path answers the unit report normally: only the remembered snapshot state fails it
    res, fake = emc(monkeypatch, clariion_page(lun_state=1, current_sp=1), memory=mem, dev="/dev/sdb")
    assert res.state == DOWN and "passive path to inactive snapshot" in res.message
    assert WWN_A.hex() in res.message and len(fake.calls) == 1
    # the snapshot is activated: the active path reads, and the passive one is healthy again
    assert emc(monkeypatch, clariion_page(lun_state=2), memory=mem, dev="/dev/sda")[0].state == UP
    res, _ = emc(monkeypatch, clariion_page(lun_state=1, current_sp=1), memory=mem, dev="/dev/sdb")
    assert res.state == UP and "passive path is healthy" in res.message


def test_emc_other_read_error_on_the_active_path_is_down(monkeypatch):
    mem = ClariionMemory()
    medium_error = check_condition(fixed_sense(sgio.MEDIUM_ERROR, 0x11, 0x00))  # unrecovered read error
    res, _ = emc(monkeypatch, clariion_page(), read=medium_error, memory=mem)
    assert res.state == DOWN and "read error" in res.message
    assert "sense key 0x3 asc/ascq 0x11/0x00" in res.message
    # a read error is no snapshot: the passive path is not failed for it
    assert emc(monkeypatch, clariion_page(lun_state=1), memory=mem, dev="/dev/sdb")[0].state == UP


def test_emc_read_retries_unit_attentions(monkeypatch):
    ua = check_condition(descriptor_sense(sgio.UNIT_ATTENTION, 0x29, 0x00))
    res, fake = emc(monkeypatch, clariion_page(), read=seq(ua, good(bytes(512))))
    assert res.state == UP and fake.calls.count(sgio.read10(0, 1)) == 2
    res, fake = emc(monkeypatch, clariion_page(), read=ua)
    assert res.state == DOWN and fake.calls.count(sgio.read10(0, 1)) == 3


def test_emc_read_without_host_memory_takes_the_path_as_up(monkeypatch):
    res, _ = emc(monkeypatch, clariion_page(), read=OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert res.state == UP


def test_emc_refused_page_is_unsupported(monkeypatch):
    FakeSg().install(monkeypatch)  # no page C0h: ILLEGAL REQUEST, INVALID FIELD IN CDB
    res = vendor_checkers.emc_clariion("/dev/sdx", 1.0, ClariionMemory())
    assert res.state == WILD and "not supported by this device" in res.message and "0xC0" in res.message


def test_emc_without_sg_io_is_unsupported(monkeypatch):
    res, _ = emc(monkeypatch, OSError(errno.ENOTTY, "Inappropriate ioctl for device"))
    assert res.state == WILD and "not supported by this device" in res.message and "SG_IO" in res.message
    res, _ = emc(monkeypatch, OSError(errno.EIO, "Input/output error"))
    assert res.state == DOWN and "query failed" in res.message and "Input/output error" in res.message


def test_emc_retries_transport_errors_a_bounded_number_of_times(monkeypatch):
    res, fake = emc(monkeypatch, seq(host_error(DID_TRANSPORT_DISRUPTED), good(clariion_page())))
    assert res.state == UP and fake.calls.count(C0) == 2
    res, fake = emc(monkeypatch, host_error(DID_ERROR))
    assert res.state == DOWN and "unit report query failed" in res.message and fake.calls.count(C0) == 5
    res, fake = emc(monkeypatch, host_error(DID_ERROR), timeout=0.0)  # no time left: no retry
    assert fake.calls.count(C0) == 1


def test_emc_transport_timeout_is_down_without_retry(monkeypatch):
    res, fake = emc(monkeypatch, host_error(DID_TIME_OUT))
    assert res.state == DOWN and "timed out" in res.message and fake.calls == [C0]


@pytest.mark.parametrize("answer", [
    check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x03)),
    recovered(clariion_page()),  # the reply is flagged as an error: upstream fails the path
    host_error(DID_NO_CONNECT),
])
def test_emc_failed_query_is_down(monkeypatch, answer):
    res, fake = emc(monkeypatch, answer)
    assert res.state == DOWN and "unit report query failed" in res.message and fake.calls == [C0]


def test_clariion_memory_is_bounded_and_safe_across_threads():
    mem = ClariionMemory(limit=3)
    for i in range(5):
        mem.remembered_wwn(f"/dev/sd{i}", (i, 0), WWN_A)
        mem.set_inactive_snapshot(bytes([i]) * 16, True)
    assert len(mem) == 3
    assert mem.remembered_wwn("/dev/sd0", (0, 0), WWN_B) == WWN_B  # the oldest was dropped
    assert not mem.inactive_snapshot(bytes([0]) * 16) and mem.inactive_snapshot(bytes([4]) * 16)

    mem = ClariionMemory(limit=50)
    errors = []

    def hammer(t):
        try:
            for i in range(200):
                dev = f"/dev/t{t}-{i % 60}"
                assert mem.remembered_wwn(dev, (0, 0), WWN_A) == WWN_A
                mem.set_inactive_snapshot(WWN_A, i % 2 == 0)
                mem.forget(dev)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(mem) <= 50


# --- hp_sw ------------------------------------------------------------------------------------------------

SERIAL = bytes([0x00, 0x80, 0x00, 0x0A]) + b"P5WKGD1234"  # VPD 80h: page code, length 10, serial number
P80 = sgio.inquiry(0x80, 255)


def hp(monkeypatch, inquiry, tur=None):
    fake = FakeSg().on(P80[:3], inquiry).on(TUR, tur if tur is not None else good()).install(monkeypatch)
    return vendor_checkers.hp_sw("/dev/sdx", 3.0), fake


def test_hp_sw_active_controller_is_up(monkeypatch):
    res, fake = hp(monkeypatch, good(SERIAL))
    assert res.state == UP and "active controller" in res.message
    assert fake.calls == [bytes([0x12, 0x01, 0x80, 0x00, 0xFF, 0x00]), TUR]
    assert fake.timeouts_ms == [3000, 3000]


def test_hp_sw_passive_controller_is_ghost(monkeypatch):
    # the passive controller of an active/passive HP array: NOT READY, INITIALIZING COMMAND REQUIRED
    res, _ = hp(monkeypatch, good(SERIAL), check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x02)))
    assert res.state == GHOST and "passive" in res.message and "asc/ascq 0x04/0x02" in res.message


def test_hp_sw_any_tur_failure_after_a_good_inquiry_is_ghost(monkeypatch):
    res, _ = hp(monkeypatch, good(SERIAL), host_error(DID_TRANSPORT_DISRUPTED))
    assert res.state == GHOST
    res, _ = hp(monkeypatch, good(SERIAL), OSError(errno.EIO, "Input/output error"))
    assert res.state == GHOST and "not sent" in res.message


@pytest.mark.parametrize("answer", [
    check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x00)),
    host_error(DID_NO_CONNECT),
    host_error(DID_TIME_OUT),
])
def test_hp_sw_failed_inquiry_is_down_and_skips_the_tur(monkeypatch, answer):
    res, fake = hp(monkeypatch, answer)
    assert res.state == DOWN and "serial number INQUIRY failed" in res.message
    assert TUR not in fake.calls


def test_hp_sw_recovered_error_on_the_inquiry_goes_on(monkeypatch):
    assert hp(monkeypatch, recovered(SERIAL))[0].state == UP


def test_hp_sw_unsupported(monkeypatch):
    res, fake = hp(monkeypatch, check_condition(descriptor_sense(sgio.ILLEGAL_REQUEST, 0x24, 0x00)))
    assert res.state == WILD and "not supported by this device" in res.message and TUR not in fake.calls
    res, _ = hp(monkeypatch, OSError(errno.ENOTTY, "Inappropriate ioctl for device"))
    assert res.state == WILD and "not supported by this device" in res.message


# --- rdac -------------------------------------------------------------------------------------------------

C9 = sgio.inquiry(0xC9, 48)


def rdac_page(*, peripheral=0x00, owner=False, avt=False, ioship=False, tpg=False, preferred=False,
              aas_cur=0x0, why=0x00, aas_alt=0x0) -> bytes:
    b = bytearray(48)
    b[0] = peripheral           # peripheral qualifier (7-5), device type (4-0)
    b[1] = 0xC9                 # page code
    b[3] = len(b) - 4           # page length
    b[4:8] = b"vace"            # page identifier: volume access control
    b[8] = (0x80 if avt else 0) | (0x20 if ioship else 0) | (0x10 if tpg else 0) | (0x01 if owner else 0)
    b[9] = 0x01 if preferred else 0
    b[10], b[11], b[12] = aas_cur, why, aas_alt
    return bytes(b)


def rdac_check(monkeypatch, answer):
    fake = FakeSg().on(C9[:3], answer if not isinstance(answer, bytes) else good(answer)).install(monkeypatch)
    return vendor_checkers.rdac("/dev/sdx", 4.0), fake


@pytest.mark.parametrize(("page", "state", "words"), [
    (rdac_page(owner=True, preferred=True), UP, "this controller owns the LUN; preferred path"),
    (rdac_page(owner=False), GHOST, "the other controller owns the LUN"),
    (rdac_page(owner=False, avt=True), GHOST, "auto volume transfer on"),
    (rdac_page(owner=False, ioship=True), UP, "ships I/O"),
    (rdac_page(peripheral=0x20, owner=True), DOWN, "LUN not connected"),
    (rdac_page(peripheral=0x7F, owner=True), DOWN, "LUN not connected"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x2), DOWN, "not responding"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x3), DOWN, "held in reset"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x4), DOWN, "firmware download"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x5), DOWN, "firmware download"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x6), DOWN, "quiesced"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x7), DOWN, "service mode"),
    (rdac_page(tpg=True, owner=True, aas_cur=0x3, why=0x42), DOWN, "unavailable (reason 0x42)"),
    (rdac_page(tpg=True, owner=True, aas_cur=0xF, aas_alt=0x0), DOWN, "starting up"),
    (rdac_page(tpg=True, owner=True, aas_cur=0xF, aas_alt=0xF), UP, "ownership change in progress"),
    (rdac_page(tpg=True, owner=False, aas_cur=0xE), GHOST, "other controller"),  # offline: ownership decides
    (rdac_page(tpg=False, owner=True, aas_cur=0x3, why=0x6), UP, "owns"),  # states without TPGDE ignored
])
def test_rdac_states(monkeypatch, page, state, words):
    res, fake = rdac_check(monkeypatch, page)
    assert res.state == state and words in res.message
    assert fake.calls == [bytes([0x12, 0x01, 0xC9, 0x00, 0x30, 0x00])] and fake.timeouts_ms == [4000]


def test_rdac_failed_inquiry(monkeypatch):
    res, _ = rdac_check(monkeypatch, check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x01)))
    assert res.state == DOWN and "INQUIRY page 0xC9 failed" in res.message
    res, _ = rdac_check(monkeypatch, check_condition(fixed_sense(sgio.ILLEGAL_REQUEST, 0x24, 0x00)))
    assert res.state == WILD and "not supported by this device" in res.message
    res, _ = rdac_check(monkeypatch, OSError(errno.ENOTTY, "Inappropriate ioctl for device"))
    assert res.state == WILD and "not supported by this device" in res.message
    res, _ = rdac_check(monkeypatch, OSError(errno.ENXIO, "No such device or address"))
    assert res.state == DOWN and "not sent" in res.message


def test_rdac_recovered_error_still_reads_the_page(monkeypatch):
    assert rdac_check(monkeypatch, recovered(rdac_page(owner=True)))[0].state == UP


def test_rdac_transport_retries(monkeypatch):
    busy = host_error(DID_BUS_BUSY)
    res, fake = rdac_check(monkeypatch, seq(busy, busy, good(rdac_page(owner=True))))
    assert res.state == UP and len(fake.calls) == 3
    res, fake = rdac_check(monkeypatch, host_error(DID_SOFT_ERROR))
    assert res.state == DOWN and len(fake.calls) == 5
    res, fake = rdac_check(monkeypatch, host_error(DID_NO_CONNECT))  # not a passing fault
    assert res.state == DOWN and len(fake.calls) == 1


# --- cciss_tur --------------------------------------------------------------------------------------------

def test_cciss_structures_match_the_kernel_abi():
    assert ctypes.sizeof(vendor_checkers.CcissLogvolInfo) == 12
    assert ctypes.sizeof(vendor_checkers.CcissRequestBlock) == 20
    assert ctypes.sizeof(vendor_checkers.CcissErrorInfo) == 48
    cmd = vendor_checkers.CcissCommand
    assert (cmd.request.offset, cmd.error_info.offset, cmd.buf_size.offset) == (8, 28, 76)
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert (cmd.buf.offset, ctypes.sizeof(cmd)) == (80, 88)
        assert vendor_checkers.CCISS_PASSTHRU == 0xC058420B      # _IOWR('B', 11, 88 bytes)
    assert vendor_checkers.CCISS_GETLUNINFO == 0x800C4211        # _IOR('B', 17, 12 bytes)


@pytest.mark.skipif(sys.byteorder != "little", reason="bitfield bytes written for little-endian machines")
def test_cciss_tur_command_bytes():
    raw = bytes(vendor_checkers.cciss_tur_command(0x12345))
    assert raw[0:4] == (0x12345 | 0x40000000).to_bytes(4, "little")  # VolId, logical volume mode (01b)
    assert raw[8:12] == bytes([6, 0x20, 0, 0])  # CDB length 6; type command, attribute simple, no data
    assert raw[12:28] == bytes(16)              # TEST UNIT READY


class FakeCciss:
    def __init__(self, lun=7, command_status=0, scsi_status=0, fail=None):
        self.lun, self.command_status, self.scsi_status = lun, command_status, scsi_status
        self.fail = fail or {}
        self.requests = []

    def __call__(self, fd, request, arg):
        self.requests.append(request)
        if request in self.fail:
            raise self.fail[request]
        if request == vendor_checkers.CCISS_GETLUNINFO:
            arg.lun_id = self.lun
        elif request == vendor_checkers.CCISS_PASSTHRU:
            self.sent_lun = bytes(arg.lun_info)
            arg.error_info.command_status = self.command_status
            arg.error_info.scsi_status = self.scsi_status


@pytest.fixture
def cciss_dev(tmp_path):
    dev = tmp_path / "c0d0"
    dev.write_bytes(b"")
    return str(dev)


def test_cciss_tur_up(monkeypatch, cciss_dev):
    fake = FakeCciss(lun=7)
    monkeypatch.setattr(vendor_checkers, "cciss_ioctl", fake)
    res = vendor_checkers.cciss_tur(cciss_dev, 2.0)
    assert res.state == UP and res.message == "cciss_tur: path up"
    assert fake.requests == [vendor_checkers.CCISS_GETLUNINFO, vendor_checkers.CCISS_PASSTHRU]
    if sys.byteorder == "little":
        assert fake.sent_lun[:4] == (7 | 0x40000000).to_bytes(4, "little")  # the LUN GETLUNINFO gave


@pytest.mark.parametrize(("command_status", "scsi_status", "words"), [
    (0x7, 0x00, "connection lost"),
    (0xB, 0x00, "timeout"),
    (0x1, 0x02, "SCSI status 0x02"),
    (0x0, 0x18, "SCSI status 0x18"),
    (0x3F, 0x00, "command status 0x3f"),
])
def test_cciss_tur_failed_command_is_down(monkeypatch, cciss_dev, command_status, scsi_status, words):
    monkeypatch.setattr(vendor_checkers, "cciss_ioctl", FakeCciss(command_status=command_status,
                                                                  scsi_status=scsi_status))
    res = vendor_checkers.cciss_tur(cciss_dev, 2.0)
    assert res.state == DOWN and words in res.message


@pytest.mark.parametrize("code", [errno.ENOTTY, errno.EINVAL])
def test_cciss_tur_on_a_device_without_the_driver_says_so(monkeypatch, cciss_dev, code):
    fake = FakeCciss(fail={vendor_checkers.CCISS_GETLUNINFO: OSError(code, "refused")})
    monkeypatch.setattr(vendor_checkers, "cciss_ioctl", fake)
    res = vendor_checkers.cciss_tur(cciss_dev, 2.0)
    assert res.state == DOWN and "not a cciss logical volume" in res.message and "4.14" in res.message
    assert fake.requests == [vendor_checkers.CCISS_GETLUNINFO]


def test_cciss_tur_ioctl_errors(monkeypatch, cciss_dev):
    monkeypatch.setattr(vendor_checkers, "cciss_ioctl", FakeCciss(
        fail={vendor_checkers.CCISS_GETLUNINFO: OSError(errno.EIO, "Input/output error")}))
    res = vendor_checkers.cciss_tur(cciss_dev, 2.0)
    assert res.state == DOWN and "reading the volume's LUN failed" in res.message
    monkeypatch.setattr(vendor_checkers, "cciss_ioctl", FakeCciss(
        fail={vendor_checkers.CCISS_PASSTHRU: OSError(errno.EIO, "Input/output error")}))
    res = vendor_checkers.cciss_tur(cciss_dev, 2.0)
    assert res.state == DOWN and "not sent" in res.message


def test_cciss_tur_on_a_real_non_cciss_device():
    # the real ioctl: /dev/null refuses it as any device without the cciss driver does
    res = checkers.check_now("/dev/null", "cciss_tur", 1.0)
    assert res.state == DOWN and "not a cciss logical volume" in res.message
    assert checkers.check_now("/nonexistent/c0d0", "cciss_tur", 1.0).state == DOWN
