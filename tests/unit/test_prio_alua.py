"""The ALUA prioritizer over a fake SG_IO: RTPG parsing and the retry after a UNIT ATTENTION."""

from __future__ import annotations

import os

from pymultipathd.paths import prio, sgio

# device identification VPD page with a target port group designator (type 5) for group 1
VPD83 = bytes([0, 0x83, 0, 8]) + bytes([0x01, 0x05, 0, 4, 0, 0, 0, 1])
# RTPG reply: one descriptor, group 1, access state active/non-optimized (1), no target ports
RTPG = (8).to_bytes(4, "big") + bytes([0x01, 0, 0, 1, 0, 0, 0, 0])
UA_SENSE = bytes([0x70, 0, sgio.UNIT_ATTENTION, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2A, 0x06])


def _result(ok: bool, data: bytes = b"", sense: bytes = b"") -> sgio.SgResult:
    return sgio.SgResult(ok=ok, status=0 if ok else 2, host_status=0, driver_status=0, sense=sense, data=data)


def _fake(monkeypatch, replies):
    calls = []

    def sg_io(fd, cdb, data_len=0, timeout_ms=0):
        calls.append(cdb)
        return replies.pop(0)

    monkeypatch.setattr(prio, "read_bytes", lambda path: VPD83)
    monkeypatch.setattr(sgio, "open_path", lambda devnode: os.open("/dev/null", os.O_RDONLY))
    monkeypatch.setattr(sgio, "sg_io", sg_io)
    monkeypatch.setattr(prio, "prio_sysfs", lambda dev: -1)  # the fallback, told apart from any RTPG value
    return calls


def test_rtpg_state_gives_the_priority(monkeypatch):
    calls = _fake(monkeypatch, [_result(True, RTPG)])
    assert prio.prio_alua("sdb") == prio.alua_value("active/non-optimized") and len(calls) == 1


def test_a_unit_attention_is_retried_not_taken_for_the_sysfs_state(monkeypatch):
    # the array just changed its ALUA states: the next command reports that once, then answers
    calls = _fake(monkeypatch, [_result(False, sense=UA_SENSE), _result(True, RTPG)])
    assert prio.prio_alua("sdb") == prio.alua_value("active/non-optimized") and len(calls) == 2


def test_other_errors_fall_back_to_sysfs_without_retrying(monkeypatch):
    not_ready = bytes([0x70, 0, sgio.NOT_READY, 0, 0, 0, 0, 10])
    calls = _fake(monkeypatch, [_result(False, sense=not_ready), _result(True, RTPG)])
    assert prio.prio_alua("sdb") == -1 and len(calls) == 1
