"""Persistent reservations through a map's paths (reservation/mapops.py) and through one path
(reservation/device.py: SCSI status and sense to mpathpersist's exit codes, retries).

mapops is tested against a fake logical unit that keeps the state SPC-4 (5.12) describes: one registration
per I_T nexus (here: per path devnode), the reservation holder and type, and PRgeneration. It decodes the
parameter lists it is sent byte by byte, so the tests check what ends up registered and reserved, not only
which calls were made.
"""

from __future__ import annotations

import os

import pytest

from pymultipathd.paths import sgio
from pymultipathd.reservation import codec, device, mapops
from pymultipathd.reservation.codec import PrIn, PrOut, PrType
from pymultipathd.reservation.device import PrStatus, Reply
from pymultipathd.reservation.mapops import Path, Registration
from tests.unit.fakesg import DID_NO_CONNECT, check_condition, descriptor_sense, fixed_sense, good, host_error

K = 0x123ABC
OTHER = 0xDEAD
WE_RO = PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


class Lun:
    """One logical unit's persistent-reservation state, reached through I_T nexuses named by devnode."""

    def __init__(self, hosts: dict[str, int | None] | None = None) -> None:
        self.regs: dict[str, int] = {}          # nexus -> registered key
        self.holder: str | None = None          # the nexus holding the reservation
        self.prtype = 0
        self.generation = 0
        self.hosts = hosts or {}                # nexus -> initiator port (SCSI host), for ALL_TG_PT
        self.unreached: set[str] = set()        # nexuses a command cannot reach (the path is gone)
        self.prin_status: PrStatus | None = None  # force every PR IN to fail this way
        self.log: list[tuple[str, str]] = []    # (nexus, service action), in order
        self.flags: list[int] = []              # byte 20 of each parameter list received

    # -- helpers
    def _drop(self, nexus: str) -> None:
        self.regs.pop(nexus, None)
        if self.holder == nexus:
            self.holder, self.prtype = None, 0

    def _nexuses(self, nexus: str, all_tg_pt: bool) -> list[str]:
        if not all_tg_pt:
            return [nexus]
        host = self.hosts.get(nexus)
        return [n for n, h in self.hosts.items() if h == host] if host is not None else [nexus]

    def reservation(self) -> tuple[int, int] | None:
        return None if self.holder is None else (self.regs[self.holder], self.prtype)

    # -- PERSISTENT RESERVE IN
    def prin(self, devnode: str, action: PrIn, timeout: float, alloc_len: int = 8192) -> Reply:
        self.log.append((devnode, action.name))
        if devnode in self.unreached:
            return Reply(PrStatus.FILE_ERROR, detail="gone")
        if self.prin_status is not None:
            return Reply(self.prin_status)
        gen = self.generation.to_bytes(4, "big")
        if action is PrIn.READ_KEYS:
            body = b"".join(k.to_bytes(8, "big") for k in self.regs.values())
        elif action is PrIn.READ_RESERVATION:
            body = b""
            if self.holder is not None:
                body = self.regs[self.holder].to_bytes(8, "big") + bytes(5) + bytes([self.prtype]) + bytes(2)
        else:
            raise AssertionError(action)
        return Reply(PrStatus.SUCCESS, (gen + len(body).to_bytes(4, "big") + body)[:alloc_len])

    # -- PERSISTENT RESERVE OUT
    def prout(self, devnode: str, action: PrOut, prtype: PrType, params: bytes, timeout: float) -> Reply:
        self.log.append((devnode, action.name))
        if devnode in self.unreached:
            return Reply(PrStatus.FILE_ERROR, detail="gone")
        assert len(params) == 24
        key, sa = int.from_bytes(params[0:8], "big"), int.from_bytes(params[8:16], "big")
        self.flags.append(params[20])
        conflict = Reply(PrStatus.RESERVATION_CONFLICT)
        mine = self.regs.get(devnode)
        if action in (PrOut.REGISTER, PrOut.REGISTER_AND_IGNORE):
            if action is PrOut.REGISTER and key != (mine or 0):
                return conflict
            for n in self._nexuses(devnode, bool(params[20] & 0x04)):
                if sa:
                    self.regs[n] = sa
                else:
                    self._drop(n)
            self.generation += 1
            return Reply(PrStatus.SUCCESS)
        if mine is None or mine != key:
            return conflict
        if action is PrOut.RESERVE:
            if self.holder is None:
                self.holder, self.prtype = devnode, int(prtype)
                return Reply(PrStatus.SUCCESS)
            return Reply(PrStatus.SUCCESS) if (self.holder, self.prtype) == (devnode, prtype) else conflict
        if action is PrOut.RELEASE:
            if self.holder == devnode:
                if self.prtype != prtype:
                    return Reply(PrStatus.ILLEGAL_REQUEST)
                self.holder, self.prtype = None, 0
            return Reply(PrStatus.SUCCESS)
        if action is PrOut.CLEAR:
            self.regs.clear()
            self.holder, self.prtype = None, 0
            self.generation += 1
            return Reply(PrStatus.SUCCESS)
        if action in (PrOut.PREEMPT, PrOut.PREEMPT_AND_ABORT):
            holder_key = self.regs[self.holder] if self.holder is not None else None
            victims = [n for n, k in self.regs.items() if k == sa and n != devnode]
            if sa == holder_key:
                for n in victims:
                    self._drop(n)
                self.holder, self.prtype = devnode, int(prtype)
            elif not victims:
                return conflict
            else:
                for n in victims:
                    self._drop(n)
            self.generation += 1
            return Reply(PrStatus.SUCCESS)
        raise AssertionError(action)

    def install(self, monkeypatch) -> Lun:
        monkeypatch.setattr(mapops, "prin", self.prin)
        monkeypatch.setattr(mapops, "prout", self.prout)
        return self

    def sent(self, action: str) -> list[str]:
        return [n for n, a in self.log if a == action]


def seq(calls):
    return {name: fn() for name, (fn, _timeout) in calls.items()}


def path(dev: str, usable: bool = True, host: int | None = 1) -> Path:
    return Path(dev=dev, devnode=f"/dev/{dev}", usable=usable, host=host, timeout=30.0)


def _lun(monkeypatch, paths: list[Path]) -> Lun:
    return Lun({p.devnode: p.host for p in paths}).install(monkeypatch)


# ---- read


def test_read_goes_through_the_first_usable_path(monkeypatch):
    paths = [path("sda", usable=False), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sdb": K}
    out = mapops.read(paths, PrIn.READ_KEYS)
    assert out.ok and out.via == "sdb"
    assert codec.parse_keys(out.data).keys == (K,)
    assert lun.log == [("/dev/sdb", "READ_KEYS")]


def test_read_tries_the_next_path_only_when_one_is_not_reached(monkeypatch):
    paths = [path("sda"), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.unreached = {"/dev/sda"}
    out = mapops.read(paths, PrIn.READ_RESERVATION)
    assert out.ok and out.via == "sdb"
    assert [n for n, _ in lun.log] == ["/dev/sda", "/dev/sdb"]


def test_read_a_device_answer_is_final(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.prin_status = PrStatus.ILLEGAL_REQUEST
    out = mapops.read(paths, PrIn.READ_KEYS)
    assert out.status is PrStatus.ILLEGAL_REQUEST
    assert [n for n, _ in lun.log] == ["/dev/sda"]


def test_read_without_usable_path(monkeypatch):
    lun = _lun(monkeypatch, [])
    out = mapops.read([path("sda", usable=False)], PrIn.READ_KEYS)
    assert out.status is PrStatus.DMMP_ERROR
    assert lun.log == []


def test_read_all_paths_unreached_reports_the_last(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.unreached = {"/dev/sda", "/dev/sdb"}
    out = mapops.read(paths, PrIn.READ_KEYS)
    assert out.status is PrStatus.FILE_ERROR and out.via == "sdb"


# ---- register


def test_register_goes_through_every_usable_path(monkeypatch):
    paths = [path("sda"), path("sdb", usable=False), path("sdc"), path("sdd")]
    lun = _lun(monkeypatch, paths)
    out = mapops.register(paths, PrOut.REGISTER, 0, K, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.ok and not out.notes
    assert lun.regs == {"/dev/sda": K, "/dev/sdc": K, "/dev/sdd": K}
    assert [d for d, _ in out.per_path] == ["sda", "sdc", "sdd"]
    assert lun.flags == [0, 0, 0]


def test_register_aptpl_sets_the_flag(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    mapops.register(paths, PrOut.REGISTER, 0, K, aptpl=True, all_tg_pt=False, parallel=seq)
    assert lun.flags == [0x01, 0x01]


def test_register_changes_the_key_on_every_path(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K}
    out = mapops.register(paths, PrOut.REGISTER, K, 0x456, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.ok
    assert lun.regs == {"/dev/sda": 0x456, "/dev/sdb": 0x456}


def test_register_all_tg_pt_uses_one_path_per_initiator_port(monkeypatch):
    paths = [path("sda", host=1), path("sdb", host=2), path("sdc", host=1), path("sdd", host=2),
             path("sde", host=3, usable=False), path("sdf", host=3)]
    lun = _lun(monkeypatch, paths)
    out = mapops.register(paths, PrOut.REGISTER, 0, K, aptpl=False, all_tg_pt=True, parallel=seq)
    assert out.ok
    assert lun.sent("REGISTER") == ["/dev/sda", "/dev/sdb", "/dev/sdf"]
    assert lun.flags == [0x04, 0x04, 0x04]
    assert set(lun.regs) == {p.devnode for p in paths}  # ALL_TG_PT registered every target port


def test_one_per_host_keeps_paths_of_unknown_host():
    paths = [path("sda", host=None), path("sdb", host=None), path("sdc", host=0), path("sdd", host=0)]
    assert [p.dev for p in mapops.one_per_host(paths)] == ["sda", "sdb", "sdc"]


def test_register_conflict_rolls_back_the_paths_that_took_it(monkeypatch):
    paths = [path("sda"), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sdb": OTHER}  # that nexus holds another key: REGISTER 0 -> K conflicts there
    out = mapops.register(paths, PrOut.REGISTER, 0, K, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.status is PrStatus.RESERVATION_CONFLICT
    assert lun.regs == {"/dev/sdb": OTHER}  # sda and sdc were unregistered again
    assert lun.sent("REGISTER") == ["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sda", "/dev/sdc"]
    assert any("rolled back" in n and "sda" in n and "sdc" in n for n in out.notes)
    assert dict(out.per_path)["sdb"].status is PrStatus.RESERVATION_CONFLICT


def test_register_conflict_during_a_key_change_restores_the_old_key(monkeypatch):
    paths = [path("sda"), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": OTHER, "/dev/sdc": K}
    out = mapops.register(paths, PrOut.REGISTER, K, 0x456, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.status is PrStatus.RESERVATION_CONFLICT
    assert lun.regs == {"/dev/sda": K, "/dev/sdb": OTHER, "/dev/sdc": K}


def test_register_unregistration_conflict_is_not_rolled_back(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": OTHER}
    out = mapops.register(paths, PrOut.REGISTER, K, 0, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.status is PrStatus.RESERVATION_CONFLICT
    assert not out.notes
    assert lun.regs == {"/dev/sdb": OTHER}
    assert len(lun.sent("REGISTER")) == 2


def test_register_and_ignore_replaces_whatever_key(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": OTHER}
    out = mapops.register(paths, PrOut.REGISTER_AND_IGNORE, 0, K, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.ok
    assert lun.regs == {"/dev/sda": K, "/dev/sdb": K}


def test_register_first_failure_is_the_status_and_no_rollback_without_conflict(monkeypatch):
    paths = [path("sda"), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.unreached = {"/dev/sdb"}
    out = mapops.register(paths, PrOut.REGISTER, 0, K, aptpl=False, all_tg_pt=False, parallel=seq)
    assert out.status is PrStatus.FILE_ERROR
    assert out.disagree
    assert lun.regs == {"/dev/sda": K, "/dev/sdc": K}


def test_register_without_usable_path_sends_nothing(monkeypatch):
    lun = _lun(monkeypatch, [])
    out = mapops.register([path("sda", usable=False)], PrOut.REGISTER, 0, K, aptpl=False, all_tg_pt=False,
                          parallel=seq)
    assert out.status is PrStatus.DMMP_ERROR
    assert lun.log == []


def test_register_path_that_did_not_answer_in_time_or_raised(monkeypatch):
    paths = [path("sda"), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)

    def parallel(calls):
        assert all(t == 32.0 for _, t in calls.values())  # the path's timeout plus a margin
        return {"sda": calls["sda"][0](), "sdc": RuntimeError("thread died")}

    out = mapops.register(paths, PrOut.REGISTER, 0, K, aptpl=False, all_tg_pt=False, parallel=parallel)
    got = dict(out.per_path)
    assert got["sdb"].status is PrStatus.THREAD_ERROR
    assert got["sdc"].status is PrStatus.OTHER and "thread died" in got["sdc"].detail
    assert out.status is PrStatus.THREAD_ERROR
    assert lun.regs == {"/dev/sda": K}


# ---- through one path: RESERVE, PREEMPT, CLEAR


def test_reserve_through_the_first_usable_path(monkeypatch):
    paths = [path("sda", usable=False), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sdb": K, "/dev/sdc": K}
    out = mapops.through_one(paths, PrOut.RESERVE, WE_RO, K, 0)
    assert out.ok and out.via == "sdb"
    assert (lun.holder, lun.reservation()) == ("/dev/sdb", (K, WE_RO))
    assert lun.generation == 0  # RESERVE does not change PRgeneration


def test_reserve_falls_back_only_when_a_path_is_not_reached(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K}
    lun.unreached = {"/dev/sda"}
    out = mapops.through_one(paths, PrOut.RESERVE, WE_RO, K, 0)
    assert out.ok and out.via == "sdb"
    assert lun.holder == "/dev/sdb"


def test_reserve_conflict_is_the_devices_verdict(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": OTHER, "/dev/sdb": K}
    out = mapops.through_one(paths, PrOut.RESERVE, WE_RO, K, 0)
    assert out.status is PrStatus.RESERVATION_CONFLICT and out.via == "sda"
    assert lun.sent("RESERVE") == ["/dev/sda"]
    assert lun.holder is None


def test_through_one_all_unreached_and_none_usable(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.unreached = {"/dev/sda", "/dev/sdb"}
    assert mapops.through_one(paths, PrOut.CLEAR, PrType.NONE, K, 0).status is PrStatus.FILE_ERROR
    assert mapops.through_one([path("sda", usable=False)], PrOut.CLEAR, PrType.NONE, K, 0).status \
        is PrStatus.DMMP_ERROR


def test_preempt_and_abort_fences_another_host(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K, "other-host-1": OTHER, "other-host-2": OTHER}
    lun.holder, lun.prtype = "other-host-1", WE_RO
    out = mapops.through_one(paths, PrOut.PREEMPT_AND_ABORT, WE_RO, K, OTHER)
    assert out.ok
    assert lun.regs == {"/dev/sda": K, "/dev/sdb": K}
    assert lun.holder == "/dev/sda"


def test_clear_removes_every_registration(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K, "elsewhere": OTHER}
    lun.holder, lun.prtype = "/dev/sdb", WE_RO
    assert mapops.through_one(paths, PrOut.CLEAR, PrType.NONE, K, 0).ok
    assert lun.regs == {} and lun.holder is None


# ---- release


def test_release_through_the_holding_path(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K}
    lun.holder, lun.prtype = "/dev/sdb", WE_RO
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert out.ok and not out.notes
    assert lun.holder is None
    assert lun.regs == {"/dev/sda": K, "/dev/sdb": K}
    assert lun.sent("RELEASE") == ["/dev/sda", "/dev/sdb"]
    assert "PREEMPT" not in {a for _, a in lun.log}


def test_release_when_the_holder_path_is_unusable_preempts_and_releases_elsewhere(monkeypatch):
    paths = [path("sda", usable=False), path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K, "/dev/sdc": K, "elsewhere": OTHER}
    lun.holder, lun.prtype = "/dev/sda", WE_RO
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert out.ok
    assert lun.holder is None
    # the preemption took our key off every other nexus; it is registered again on the usable ones only
    assert lun.regs == {"/dev/sdb": K, "/dev/sdc": K, "elsewhere": OTHER}
    assert lun.sent("PREEMPT") == ["/dev/sdb"]
    assert lun.sent("REGISTER_AND_IGNORE") == ["/dev/sdc"]
    assert "/dev/sda" not in {n for n, _ in lun.log}
    assert any("not usable" in n for n in out.notes)


def test_release_workaround_preempt_refused(monkeypatch):
    paths = [path("sda", usable=False), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K}
    lun.holder, lun.prtype = "/dev/sda", WE_RO
    real = lun.prout

    def prout(devnode, action, prtype, params, timeout):
        if action is PrOut.PREEMPT:
            return Reply(PrStatus.ILLEGAL_REQUEST)
        return real(devnode, action, prtype, params, timeout)

    monkeypatch.setattr(mapops, "prout", prout)
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert out.status is PrStatus.ILLEGAL_REQUEST
    assert lun.holder == "/dev/sda"


def test_release_of_another_hosts_reservation_changes_nothing(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K, "/dev/sdb": K, "elsewhere": OTHER}
    lun.holder, lun.prtype = "elsewhere", WE_RO
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert out.ok
    assert lun.reservation() == (OTHER, WE_RO)
    assert "PREEMPT" not in {a for _, a in lun.log}


def test_release_reading_back_fails(monkeypatch):
    paths = [path("sda")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K}
    lun.prin_status = PrStatus.HARDWARE_ERROR
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert out.status is PrStatus.HARDWARE_ERROR
    assert out.notes == ("could not read the reservation back",)


def test_release_without_usable_path(monkeypatch):
    lun = _lun(monkeypatch, [])
    assert mapops.release([path("sda", usable=False)], WE_RO, K, parallel=seq).status is PrStatus.DMMP_ERROR
    assert lun.log == []


def test_release_succeeds_when_a_usable_path_is_not_registered(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sda": K}            # sdb came back and was not registered (yet)
    lun.holder, lun.prtype = "/dev/sda", WE_RO
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert lun.holder is None             # the release did happen ...
    assert out.ok                         # ... but it is reported as RESERVATION_CONFLICT


def test_release_by_an_unregistered_host_is_a_conflict(monkeypatch):
    paths = [path("sda"), path("sdb")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"elsewhere": OTHER}
    lun.holder, lun.prtype = "elsewhere", WE_RO
    out = mapops.release(paths, WE_RO, K, parallel=seq)
    assert [r.status for _, r in out.per_path] == [PrStatus.RESERVATION_CONFLICT] * 2
    assert out.status is PrStatus.RESERVATION_CONFLICT


# ---- register_path: the daemon's registration of a path that joins the map or comes back


def test_register_path_when_the_key_is_on_the_lun(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sda": K, "elsewhere": OTHER}
    got, why = mapops.register_path("/dev/sdb", K, True, False, 30.0)
    assert got is Registration.REGISTERED, why
    assert lun.regs == {"/dev/sda": K, "/dev/sdb": K, "elsewhere": OTHER}
    # the probe (REGISTER with the key: a conflict from a nexus without it), keys again, the registration,
    # and the generation read back
    assert lun.log == [("/dev/sdb", "READ_KEYS"), ("/dev/sdb", "REGISTER"), ("/dev/sdb", "READ_KEYS"),
                       ("/dev/sdb", "REGISTER"), ("/dev/sdb", "READ_KEYS")]
    assert lun.flags == [0x01, 0x01]  # APTPL as the key asks


def test_register_path_leaves_a_nexus_that_has_the_key_as_it_is(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sdb": K}
    lun.holder, lun.prtype = "/dev/sdb", WE_RO
    got, _ = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.ALREADY
    assert lun.reservation() == (K, WE_RO), "the holder's reservation is untouched"


def test_register_path_undoes_a_registration_when_a_fence_lands_in_between(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sda": K, "other": OTHER}
    plain = lun.prout
    fenced = []

    def prout(devnode, action, prtype, params, timeout):
        got = plain(devnode, action, prtype, params, timeout)
        if action is PrOut.REGISTER and not fenced and devnode in lun.regs:
            # the other node's PREEMPT AND ABORT lands right after our registration
            fenced.append(1)
            lun.regs = {n: k for n, k in lun.regs.items() if k != K or n == devnode}
            lun.generation += 1
        return got
    monkeypatch.setattr(mapops, "prout", prout)
    got, why = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.NOT_OURS, why
    assert lun.regs == {"other": OTHER}, "the fenced host's key is not left on the LUN"


def test_register_path_starts_over_after_a_unit_attention(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sda": K}
    plain, said = lun.prout, []

    def prout(devnode, action, prtype, params, timeout):
        if not said:  # the target reports that another nexus changed the registrations: not carried out
            said.append(1)
            lun.regs = {"other": OTHER}
            return Reply(PrStatus.UNIT_ATTENTION)
        return plain(devnode, action, prtype, params, timeout)
    monkeypatch.setattr(mapops, "prout", prout)
    got, _ = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.NOT_OURS and lun.regs == {"other": OTHER}


def test_register_path_with_all_tg_pt_sets_the_flag(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sda": K}
    assert mapops.register_path("/dev/sdb", K, False, True, 30.0)[0] is Registration.REGISTERED
    assert all(f & 0x04 for f in lun.flags)


def test_register_path_does_not_register_a_fenced_host(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"elsewhere": OTHER}  # another node preempted (and aborted) us: our key is gone
    lun.holder, lun.prtype = "elsewhere", WE_RO
    got, why = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.NOT_OURS
    assert "0x123abc" in why
    assert lun.regs == {"elsewhere": OTHER}
    assert lun.log == [("/dev/sdb", "READ_KEYS")]


def test_register_path_read_keys_fails(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.unreached = {"/dev/sdb"}
    got, why = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.FAILED and why.startswith("READ KEYS")
    assert lun.log == [("/dev/sdb", "READ_KEYS")]


def test_register_path_malformed_read_keys_reply(monkeypatch):
    sent = []
    monkeypatch.setattr(mapops, "prin", lambda *a, **k: Reply(PrStatus.SUCCESS, bytes(5)))
    monkeypatch.setattr(mapops, "prout", lambda *a, **k: sent.append(a))
    got, _ = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.FAILED
    assert sent == []


def test_register_path_registration_refused(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sda": K}
    monkeypatch.setattr(mapops, "prout", lambda *a: Reply(PrStatus.ILLEGAL_REQUEST))
    got, why = mapops.register_path("/dev/sdb", K, False, False, 30.0)
    assert got is Registration.FAILED and "REGISTER" in why and "illegal request" in why


def test_key_present(monkeypatch):
    lun = Lun().install(monkeypatch)
    lun.regs = {"/dev/sda": K}
    assert mapops.key_present("/dev/sda", K, 30.0) is True
    assert mapops.key_present("/dev/sda", OTHER, 30.0) is False
    lun.unreached = {"/dev/sda"}
    assert mapops.key_present("/dev/sda", K, 30.0) is None


# ==== device.py: one command through one path


def _res(status: int, sense: bytes = b"", host: int = 0, driver: int = 0) -> sgio.SgResult:
    return sgio.SgResult(ok=False, status=status, host_status=host, driver_status=driver, sense=sense,
                         data=b"")


@pytest.mark.parametrize("make", [fixed_sense, descriptor_sense])
@pytest.mark.parametrize(
    ("key", "asc", "ascq", "expected"),
    [
        (sgio.NO_SENSE, 0, 0, PrStatus.NO_SENSE),
        (sgio.RECOVERED_ERROR, 0x17, 0x01, PrStatus.SUCCESS),
        (sgio.NOT_READY, 0x04, 0x01, PrStatus.NOT_READY),
        (sgio.MEDIUM_ERROR, 0x11, 0, PrStatus.MEDIUM_ERROR),
        (sgio.HARDWARE_ERROR, 0x44, 0, PrStatus.HARDWARE_ERROR),
        (sgio.ILLEGAL_REQUEST, 0x24, 0x00, PrStatus.ILLEGAL_REQUEST),   # invalid field in CDB
        (sgio.ILLEGAL_REQUEST, 0x26, 0x00, PrStatus.ILLEGAL_REQUEST),   # invalid field in parameter list
        (sgio.ILLEGAL_REQUEST, 0x20, 0x00, PrStatus.INVALID_OP),        # invalid command operation code
        (sgio.UNIT_ATTENTION, 0x29, 0x00, PrStatus.UNIT_ATTENTION),
        (sgio.DATA_PROTECT, 0x27, 0, PrStatus.OTHER),
        (sgio.ABORTED_COMMAND, 0x47, 0, PrStatus.ABORTED_COMMAND),
        (0x0D, 0, 0, PrStatus.OTHER),                                   # VOLUME OVERFLOW
    ],
)
def test_status_of_check_condition(make, key, asc, ascq, expected):
    assert device.status_of(check_condition(make(key, asc, ascq))) is expected


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (good(b"\0" * 8), PrStatus.SUCCESS),
        (_res(0x18), PrStatus.RESERVATION_CONFLICT),
        (_res(0x19), PrStatus.RESERVATION_CONFLICT),          # reserved bit 0 of the status byte masked
        (_res(0x18, driver=0x08, sense=fixed_sense(sgio.UNIT_ATTENTION)), PrStatus.RESERVATION_CONFLICT),
        (_res(0x08), PrStatus.OTHER),                         # BUSY
        (_res(0x28), PrStatus.OTHER),                         # TASK SET FULL
        (_res(0x02), PrStatus.OTHER),                         # CHECK CONDITION without sense data
        (_res(0x22, sense=fixed_sense(sgio.MEDIUM_ERROR)), PrStatus.MEDIUM_ERROR),  # COMMAND TERMINATED
        (host_error(DID_NO_CONNECT), PrStatus.OTHER),
        (_res(0x00, driver=0x06), PrStatus.OTHER),            # DRIVER_TIMEOUT
    ],
)
def test_status_of_other_replies(res, expected):
    assert device.status_of(res) is expected


def test_pr_status_numbers_are_mpathpersists_exit_codes():
    assert [(s.name, int(s)) for s in PrStatus] == [
        ("SUCCESS", 0), ("SYNTAX_ERROR", 1), ("NOT_READY", 2), ("MEDIUM_ERROR", 3), ("HARDWARE_ERROR", 4),
        ("ILLEGAL_REQUEST", 5), ("UNIT_ATTENTION", 6), ("INVALID_OP", 7), ("ABORTED_COMMAND", 8),
        ("NO_SENSE", 9), ("MALFORMED", 10), ("RESERVATION_CONFLICT", 11), ("FILE_ERROR", 12),
        ("DMMP_ERROR", 13), ("THREAD_ERROR", 14), ("OTHER", 15)]
    assert all(s.text for s in PrStatus)


class Sg:
    """SG_IO answering from a script (the last answer repeats); records every command."""

    def __init__(self, *answers: sgio.SgResult | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[dict] = []
        self.opened: list[tuple[str, bool]] = []
        self.fds: list[int] = []
        self.open_error: OSError | None = None

    def open_path(self, devnode: str, *, write: bool = False) -> int:
        self.opened.append((devnode, write))
        if self.open_error is not None:
            raise self.open_error
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def sg_io(self, fd: int, cdb: bytes, data_len: int = 0, timeout_ms: int = 30000,
              data_out: bytes | None = None) -> sgio.SgResult:
        self.calls.append({"cdb": bytes(cdb), "data_len": data_len, "timeout_ms": timeout_ms,
                           "data_out": data_out})
        ans = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(ans, BaseException):
            raise ans
        return ans

    def install(self, monkeypatch) -> Sg:
        monkeypatch.setattr(sgio, "open_path", self.open_path)
        monkeypatch.setattr(sgio, "sg_io", self.sg_io)
        return self

    def all_closed(self) -> bool:
        for fd in self.fds:
            try:
                os.fstat(fd)
            except OSError:
                continue
            return False
        return True


UA = check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x2A, 0x03))   # reservations preempted
RESET = check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x29, 0x00))  # power on, reset
IN_PROGRESS = check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x07))


def test_prin_sends_the_cdb_and_returns_the_data(monkeypatch):
    reply = bytes([0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0x12, 0x3A, 0xBC])
    sg = Sg(good(reply)).install(monkeypatch)
    r = device.prin("/dev/sdb", PrIn.READ_KEYS, 2.5, alloc_len=0x100)
    assert r.ok and r.data == reply
    assert sg.calls == [{"cdb": bytes([0x5E, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0]), "data_len": 0x100,
                         "timeout_ms": 2500, "data_out": None}]
    assert sg.opened == [("/dev/sdb", True)]
    assert sg.all_closed()


def test_prout_sends_the_parameter_list(monkeypatch):
    sg = Sg(good()).install(monkeypatch)
    params = bytes([0] * 8 + [0, 0, 0, 0, 0, 0x12, 0x3A, 0xBC] + [0] * 4 + [0x01, 0, 0, 0])
    r = device.prout("/dev/sdc", PrOut.REGISTER, PrType.NONE, params, 30)
    assert r.ok
    assert sg.calls[0]["cdb"] == bytes([0x5F, 0x00, 0x00, 0, 0, 0, 0, 0, 0x18, 0x00])
    assert sg.calls[0]["data_out"] == params
    assert sg.calls[0]["data_len"] == 0
    assert sg.all_closed()


def test_unit_attention_is_retried(monkeypatch):
    sg = Sg(RESET, RESET, good()).install(monkeypatch)
    r = device.prout("/dev/sdb", PrOut.RESERVE, WE_RO, bytes(24), 30)
    assert r.ok
    assert len(sg.calls) == 3
    assert len(sg.opened) == 1 and sg.all_closed()
    sg = Sg(UA, good()).install(monkeypatch)
    assert device.prin("/dev/sdb", PrIn.READ_KEYS, 30).ok  # a PR IN reads the new state: asked again


def test_a_pr_out_is_not_sent_again_after_the_registrations_changed(monkeypatch):
    # the target did not carry it out, and what it was decided on is stale (a fence may have landed)
    sg = Sg(UA, good()).install(monkeypatch)
    r = device.prout("/dev/sdb", PrOut.REGISTER, PrType.NONE, bytes(24), 30)
    assert r.status is PrStatus.UNIT_ATTENTION and len(sg.calls) == 1


def test_unit_attention_retries_are_bounded(monkeypatch):
    sg = Sg(UA).install(monkeypatch)
    r = device.prin("/dev/sdb", PrIn.READ_KEYS, 30)
    assert r.status is PrStatus.UNIT_ATTENTION
    assert len(sg.calls) == device.MAX_TRIES
    assert "sense key 0x6" in r.detail
    assert sg.all_closed()


def test_not_ready_operation_in_progress_is_retried(monkeypatch):
    sg = Sg(IN_PROGRESS, good()).install(monkeypatch)
    assert device.prin("/dev/sdb", PrIn.READ_KEYS, 30).ok
    assert len(sg.calls) == 2


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (check_condition(fixed_sense(sgio.NOT_READY, 0x04, 0x01)), PrStatus.NOT_READY),   # becoming ready
        (_res(0x18), PrStatus.RESERVATION_CONFLICT),
        (check_condition(fixed_sense(sgio.ILLEGAL_REQUEST, 0x20, 0x00)), PrStatus.INVALID_OP),
        (host_error(DID_NO_CONNECT), PrStatus.OTHER),
    ],
)
def test_other_failures_are_not_retried(monkeypatch, answer, status):
    sg = Sg(answer).install(monkeypatch)
    r = device.prin("/dev/sdb", PrIn.READ_RESERVATION, 30)
    assert r.status is status and not r.ok and r.data == b""
    assert len(sg.calls) == 1
    assert str(r).startswith(status.text + " (status 0x")


def test_open_failure_is_file_error(monkeypatch):
    sg = Sg(good())
    sg.open_error = OSError(6, "No such device or address")
    sg.install(monkeypatch)
    r = device.prout("/dev/sdz", PrOut.CLEAR, PrType.NONE, bytes(24), 30)
    assert r.status is PrStatus.FILE_ERROR
    assert "/dev/sdz" in r.detail and "No such device" in r.detail
    assert sg.calls == []


def test_ioctl_failure_is_other_and_closes(monkeypatch):
    sg = Sg(OSError(5, "Input/output error")).install(monkeypatch)
    r = device.prin("/dev/sdb", PrIn.READ_KEYS, 30)
    assert r.status is PrStatus.OTHER and "SG_IO" in r.detail
    assert sg.all_closed()


def test_a_fence_answered_with_a_unit_attention_is_not_undone_by_a_resend(monkeypatch):
    # another node preempts us right after our READ KEYS: the target answers our REGISTER with UNIT
    # ATTENTION 2A/05 and does not carry it out; sending it again would give the fenced host its key back
    lun = {"keys": {K}, "ua": False}

    def sg_io(fd, cdb, data_len=0, timeout_ms=0, data_out=None):
        if cdb[0] == codec.PRIN_OPCODE:
            body = b"".join(k.to_bytes(8, "big") for k in lun["keys"])
            res = good((1).to_bytes(4, "big") + len(body).to_bytes(4, "big") + body)
            if K in lun["keys"]:
                lun["keys"].clear()
                lun["ua"] = True
            return res
        if lun["ua"]:
            lun["ua"] = False
            return check_condition(fixed_sense(sgio.UNIT_ATTENTION, 0x2A, 0x05))
        key, sa = int.from_bytes(data_out[0:8], "big"), int.from_bytes(data_out[8:16], "big")
        if key:  # REGISTER with a key from a nexus without one
            return sgio.SgResult(ok=False, status=sgio.RESERVATION_CONFLICT, host_status=0, driver_status=0,
                                 sense=b"", data=b"")
        lun["keys"].add(sa)
        return good()
    monkeypatch.setattr(sgio, "open_path", lambda d, write=False: os.open("/dev/null", os.O_RDONLY))
    monkeypatch.setattr(sgio, "sg_io", sg_io)
    outcome, _ = mapops.register_path("/dev/sdc", K, False, False, 30.0)
    assert outcome is Registration.NOT_OURS and K not in lun["keys"]


def test_release_with_a_type_that_is_not_the_reservations_is_refused_as_the_device_says(monkeypatch):
    # the holder answers ILLEGAL REQUEST: a definite refusal, not an unreachable holder to work around
    paths = [path("sdb"), path("sdc")]
    lun = _lun(monkeypatch, paths)
    lun.regs = {"/dev/sdb": K, "/dev/sdc": K}
    lun.holder, lun.prtype = "/dev/sdb", int(WE_RO)
    out = mapops.release(paths, PrType.EXCLUSIVE_ACCESS, K, parallel=seq)
    assert lun.sent("PREEMPT") == [] and out.status is PrStatus.ILLEGAL_REQUEST
    assert lun.reservation() == (K, WE_RO)


def test_release_with_a_malformed_read_back_is_reported_as_such(monkeypatch):
    monkeypatch.setattr(mapops, "prout", lambda *a: Reply(PrStatus.SUCCESS))
    monkeypatch.setattr(mapops, "prin", lambda *a: Reply(PrStatus.SUCCESS, bytes(7) + b"\x08" + bytes(8)))
    out = mapops.release([path("sdb")], PrType.WRITE_EXCLUSIVE, K, parallel=seq)
    assert out.status is PrStatus.MALFORMED and "malformed" in out.notes[0]
