"""The ALUA prioritizer over a fake SG_IO: RTPG parsing and the retry after a UNIT ATTENTION."""

from __future__ import annotations

import os

import pytest

from pymultipathd.paths import prio, sgio, sysinfo
from tests.unit.fakesg import FakeSg

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
    # the fallback, told apart from any RTPG value and from PRIO_UNDEF
    monkeypatch.setattr(prio, "prio_sysfs", lambda dev, args="", timeout=30.0: -7)
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
    assert prio.prio_alua("sdb") == -7 and len(calls) == 1


# --- exclusive_pref_bit (alua and sysfs) --------------------------------------------------------------------

def _rtpg(aas: int, pref: bool) -> bytes:
    # one descriptor for group 1: byte 0 = PREF bit (7) | asymmetric access state (bits 0-3)
    return (8).to_bytes(4, "big") + bytes([(0x80 if pref else 0) | aas, 0, 0, 1, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("aas", "pref", "args", "value"),
    [
        (0x0, False, "", 50),
        (0x0, True, "", 50),                        # optimized and preferred: groups with the optimized
        (0x0, True, "exclusive_pref_bit", 130),     # ... unless asked to stand apart
        (0x1, True, "", 90),
        (0x1, True, "exclusive_pref_bit", 90),
        (0x1, False, "exclusive_pref_bit", 10),
        (0x4, False, "", 5),
        (0x2, True, "", 81),
        (0x3, False, "", 0),                        # unavailable
        (0x3, True, "", 80),
        (0xE, False, "", 0),                        # offline
        (0xF, True, "", 80),                        # transitioning
    ],
)
def test_rtpg_values_and_the_preferred_bonus(monkeypatch, aas, pref, args, value):
    _fake(monkeypatch, [_result(True, _rtpg(aas, pref))])
    assert prio.prio_alua("sdb", args) == value


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        ("exclusive_pref_bit", True),
        ("  exclusive_pref_bit", True),
        ("\texclusive_pref_bit\t", True),
        ("foo exclusive_pref_bit bar", True),
        ("", False),
        ("exclusive_pref_bits", False),
        ("xexclusive_pref_bit", False),
        ("exclusive_pref_bit=1", False),
        ("exclusive_pref", False),
        ("exclusive_pref_bitx exclusive_pref_bit", False),  # only the first occurrence is looked at
        ("exclusive_pref_bit\n", False),                   # blank and tab only, as upstream
    ],
)
def test_exclusive_pref_bit_syntax(args, wanted):
    assert prio.exclusive_pref(args) is wanted


@pytest.mark.parametrize(
    ("state", "pref", "args", "value"),
    [
        ("active/optimized", False, "", 50),
        ("active/optimized", True, "", 50),
        ("active/optimized", True, "exclusive_pref_bit", 130),
        ("active/non-optimized", False, "", 10),
        ("active/non-optimized", True, "", 90),
        ("lba-dependent", False, "", 5),
        ("standby", False, "", 1),
        ("standby", True, "", 81),
        ("unavailable", False, "", 0),
        ("transitioning", True, "", 80),
        ("", False, "", prio.PRIO_UNDEF),              # no ALUA device handler: nothing known
        ("", True, "exclusive_pref_bit", prio.PRIO_UNDEF),
    ],
)
def test_sysfs_values(monkeypatch, state, pref, args, value):
    attributes = {"access_state": state, "preferred_path": "1" if pref else "0"}
    monkeypatch.setattr(sysinfo, "device_attribute", lambda dev, attribute: attributes[attribute])
    assert prio.prio_sysfs("sdb", args) == value
    # the checker's kept descriptors read the same attributes, and priority() hands its reader over
    asked = []

    def kept(dev: str, attribute: str) -> str:
        asked.append((dev, attribute))
        return attributes[attribute]

    assert prio.priority("sysfs", "sdb", args, read=kept) == value
    assert asked and {a for _, a in asked} <= set(prio.SYSFS_ATTRIBUTES) and {d for d, _ in asked} == {"sdb"}


def test_the_sysfs_fallback_gets_the_arguments(monkeypatch):
    seen = []
    monkeypatch.setattr(prio, "read_bytes", lambda path: b"")  # no port group designator
    monkeypatch.setattr(prio, "prio_sysfs", lambda dev, args="", timeout=30.0: seen.append(args) or 3)
    assert prio.prio_alua("sdb", "exclusive_pref_bit") == 3 and seen == ["exclusive_pref_bit"]


def test_a_device_that_cannot_be_asked_has_no_priority(monkeypatch):
    _fake(monkeypatch, [])
    FakeSg(open_error=OSError(6, "No such device or address")).install(monkeypatch)
    assert prio.prio_alua("sdb") == prio.PRIO_UNDEF
    FakeSg().on(sgio.report_target_port_groups()[:2], OSError(5, "I/O error")).install(monkeypatch)
    assert prio.prio_alua("sdb") == prio.PRIO_UNDEF
