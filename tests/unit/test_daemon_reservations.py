"""The daemon's side of persistent reservations, with no device: the pr control commands, the prkeys file
behind `reservation_key file`, and the registration of a path that joins a map or comes back (READ KEYS
first: a host whose key another node removed never registers itself again)."""

from __future__ import annotations

import asyncio
import types

import pytest

from pymultipathd.classify import PathFacts
from pymultipathd.config import load
from pymultipathd.control import grammar
from pymultipathd.control.server import CommandFailed
from pymultipathd.daemon import handlers
from pymultipathd.daemon.core import Core
from pymultipathd.policy.state import MapState, PathCheck, PathState
from pymultipathd.reservation import keys, mapops

WWID = "36001405aaaa"


def _daemon(conf: str, tmp_path) -> types.SimpleNamespace:
    core = Core(load.parse_text(conf), ctl=None)
    core.pr.prkeys_file = str(tmp_path / "prkeys")
    m = MapState(name="mpatha", wwid=WWID)
    core.state.maps["mpatha"] = m
    for dev in ("sdb", "sdc"):
        p = PathState(dev=dev, dev_t="8:16" if dev == "sdb" else "8:32",
                      facts=PathFacts(dev=dev, wwid=WWID), chk_state=PathCheck.UP, map="mpatha")
        core.state.paths[dev] = p
    core.state.set_paths(m, ["sdb", "sdc"])
    return types.SimpleNamespace(core=core)


def _run(d: types.SimpleNamespace, *texts: str) -> list[str]:
    async def go() -> list[str]:
        try:
            return [await handlers.dispatch(d, grammar.parse(t)) for t in texts]
        finally:
            await d.core.close()
    return asyncio.run(go())


KEYED = f"multipaths {{\n multipath {{\n  wwid {WWID}\n  reservation_key 0x123abc:aptpl\n }}\n}}\n"
FILE = "defaults {\n reservation_key file\n}\n"


def test_prstatus_is_set_and_unset_and_read_as_upstream_0_9_4_prints_it(tmp_path):
    d = _daemon(KEYED, tmp_path)
    assert _run(d, "getprstatus map mpatha", "setprstatus map mpatha", "getprstatus map mpatha",
                "unsetprstatus map mpatha", "getprstatus map mpatha") == ["0", "", "1", "", "0"]


def test_getprkey_shows_a_configured_key_and_setprkey_refuses_to_change_it(tmp_path):
    d = _daemon(KEYED, tmp_path)
    assert _run(d, "getprkey map mpatha") == ["0x123abc:aptpl\n"]
    with pytest.raises(CommandFailed, match="set in multipath.conf"):
        _run(_daemon(KEYED, tmp_path), "setprkey map mpatha key 0x5")
    with pytest.raises(CommandFailed, match="set in multipath.conf"):
        _run(_daemon(KEYED, tmp_path), "unsetprkey map mpatha")
    assert not (tmp_path / "prkeys").exists(), "a refused command wrote nothing"


def test_without_a_key_getprkey_says_none_and_unsetprkey_has_nothing_to_do(tmp_path):
    assert _run(_daemon("", tmp_path), "getprkey map mpatha", "unsetprkey map mpatha") == ["none\n", ""]
    with pytest.raises(CommandFailed, match="not set"):
        _run(_daemon("", tmp_path), "setprkey map mpatha key 0x5")


def test_file_keys_are_written_to_the_prkeys_file_and_removed_again(tmp_path):
    d = _daemon(FILE, tmp_path)
    assert _run(d, "getprkey map mpatha", "setprkey map mpatha key 0xabc:aptpl",
                "getprkey map mpatha") == ["none\n", "", "0xabc:aptpl\n"]
    assert keys.read_prkeys(str(tmp_path / "prkeys")) == {WWID: keys.Key(0xABC, aptpl=True)}
    assert f"0X0000000000000abc {WWID}" in (tmp_path / "prkeys").read_text()
    d = _daemon(FILE, tmp_path)
    asyncio.run(d.core.pr.load(str(tmp_path / "prkeys")))  # a restarted daemon reads it back
    assert _run(d, "getprkey map mpatha", "unsetprkey map mpatha", "getprkey map mpatha") == [
        "0xabc:aptpl\n", "", "none\n"]
    assert keys.read_prkeys(str(tmp_path / "prkeys")) == {}


@pytest.mark.parametrize("bad", ["0", "0x", "12345678901234567", "0x1:apt", "zz"])
def test_a_key_that_does_not_parse_is_refused_with_the_reason(tmp_path, bad):
    with pytest.raises(CommandFailed, match="invalid key"):
        _run(_daemon(FILE, tmp_path), f"setprkey map mpatha key {bad}")


def test_a_prkeys_file_that_cannot_be_written_is_a_fail_and_the_key_stays(tmp_path):
    d = _daemon(FILE, tmp_path)
    d.core.pr.prkeys_file = str(tmp_path / "missing-dir-file" / "sub" / "prkeys")
    (tmp_path / "missing-dir-file").write_text("a file where a directory should be")
    with pytest.raises(CommandFailed, match="prkeys"):
        _run(d, "setprkey map mpatha key 0x5")
    assert d.core.pr.prkeys == {}


class FakeLun:
    """READ KEYS and REGISTER AND IGNORE as the logical unit answers them, per path (I_T nexus)."""

    def __init__(self, keys_on_lun: set[int]) -> None:
        self.keys = keys_on_lun
        self.registered: list[str] = []

    def register_path(self, devnode: str, key: int, aptpl: bool, all_tg_pt: bool, timeout: float):
        if key not in self.keys:
            return mapops.Registration.NOT_OURS, "absent"
        self.registered.append(devnode)
        return mapops.Registration.REGISTERED, "ok"

    def key_present(self, devnode: str, key: int, timeout: float):
        return key in self.keys


def _registering(monkeypatch, d, lun: FakeLun, *calls: str) -> None:
    monkeypatch.setattr(mapops, "register_path", lun.register_path)
    monkeypatch.setattr(mapops, "key_present", lun.key_present)

    async def go() -> None:
        try:
            for c in calls:
                if c == "sync":
                    d.core.pr.sync_soon(d.core.state.maps["mpatha"])
                else:
                    d.core.pr.register_soon("mpatha", c)
            while d.core.pr._tasks:
                await asyncio.sleep(0.01)
        finally:
            await d.core.close()
    asyncio.run(go())


def test_a_path_is_registered_only_while_the_key_is_on_the_lun_and_prflag_is_set(tmp_path, monkeypatch):
    d = _daemon(KEYED, tmp_path)
    lun = FakeLun({0x123ABC})
    _registering(monkeypatch, d, lun, "sdb")
    assert lun.registered == [], "prflag unset: nothing is registered"
    d = _daemon(KEYED, tmp_path)
    d.core.state.maps["mpatha"].prflag = True
    _registering(monkeypatch, d, lun, "sdb")
    assert lun.registered == ["/dev/sdb"]


def test_a_fenced_host_is_not_registered_again_and_prflag_is_cleared(tmp_path, monkeypatch, caplog):
    d = _daemon(KEYED, tmp_path)
    d.core.state.maps["mpatha"].prflag = True
    lun = FakeLun({0xFE0CE})  # another node preempted our key
    _registering(monkeypatch, d, lun, "sdc")
    assert lun.registered == [] and d.core.state.maps["mpatha"].prflag is False
    assert "no longer registered on the logical unit" in caplog.text


def test_start_up_learns_prflag_and_registers_every_usable_path(tmp_path, monkeypatch):
    d = _daemon(KEYED, tmp_path)
    lun = FakeLun({0x123ABC})
    _registering(monkeypatch, d, lun, "sync")
    assert d.core.state.maps["mpatha"].prflag is True
    assert sorted(lun.registered) == ["/dev/sdb", "/dev/sdc"]
    d = _daemon(KEYED, tmp_path)
    lun = FakeLun(set())
    _registering(monkeypatch, d, lun, "sync")
    assert d.core.state.maps["mpatha"].prflag is False and lun.registered == []


def test_a_hung_path_is_given_up_on_and_does_not_stop_the_others(tmp_path, monkeypatch):
    import threading

    from pymultipathd.daemon import reservations

    monkeypatch.setattr(reservations, "MARGIN", 0.2)
    d = _daemon(KEYED, tmp_path)
    d.core.pr._timeout_of = lambda p: 0.1
    d.core.state.maps["mpatha"].prflag = True
    release = threading.Event()
    lun = FakeLun({0x123ABC})
    plain = lun.register_path

    def hang_on_sdb(devnode, key, aptpl, all_tg_pt, timeout):
        if devnode == "/dev/sdb":
            release.wait(5)
        return plain(devnode, key, aptpl, all_tg_pt, timeout)
    lun.register_path = hang_on_sdb
    try:
        _registering(monkeypatch, d, lun, "sdb", "sdc")
    finally:
        release.set()
    assert lun.registered == ["/dev/sdc"]


def test_prkeys_file_says_where_the_keys_are(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(keys.PRKEYS_HEADER + keys.render_line(keys.Key(0x77), WWID) + "\n")
    d = _daemon(f"defaults {{\n reservation_key file\n prkeys_file {elsewhere}\n}}\n", tmp_path)
    asyncio.run(d.core.pr.load(str(d.core.resolver(None, None, None)("prkeys_file"))))
    assert d.core.pr.prkeys_file == str(elsewhere)
    assert _run(d, "getprkey map mpatha") == ["0x77\n"]


def test_a_path_that_joins_while_the_keys_are_read_is_registered(tmp_path, monkeypatch):
    import threading

    from pymultipathd.policy import decide

    d = _daemon(KEYED, tmp_path)
    core, m = d.core, d.core.state.maps["mpatha"]
    gate, registered = threading.Event(), []
    monkeypatch.setattr(mapops, "key_present", lambda dev, key, t: gate.wait(5) and True)
    monkeypatch.setattr(mapops, "register_path", lambda dev, key, aptpl, atp, t: (
        registered.append(dev), (mapops.Registration.REGISTERED, ""))[1])

    async def go() -> None:
        core.pr.sync_soon(m)
        await asyncio.sleep(0.05)
        # a reload adds sdd while READ KEYS is in flight: prflag is still unset, so no RegisterKey for it
        core.state.paths["sdd"] = PathState(dev="sdd", dev_t="8:48", facts=PathFacts(dev="sdd", wwid=WWID),
                                            chk_state=PathCheck.UNDEF, map="mpatha")
        before = m.paths
        core.state.set_paths(m, [*before, "sdd"])
        assert decide.members_joined(m, before) == []
        gate.set()
        while core.pr._tasks:
            await asyncio.sleep(0.01)
        await core.close()
    asyncio.run(go())
    assert m.prflag and "/dev/sdd" not in registered  # not active in the kernel's table yet, not checked
    assert sorted(registered) == ["/dev/sdb", "/dev/sdc"]


def test_an_administrators_word_during_the_sync_wins(tmp_path, monkeypatch):
    import threading

    d = _daemon(KEYED, tmp_path)
    core, m = d.core, d.core.state.maps["mpatha"]
    gate = threading.Event()
    monkeypatch.setattr(mapops, "key_present", lambda dev, key, t: gate.wait(5) and True)

    async def go() -> None:
        core.pr.sync_soon(m)
        await asyncio.sleep(0.05)
        await handlers.dispatch(d, grammar.parse("unsetprstatus map mpatha"))  # mpathpersist unregistered
        gate.set()
        while core.pr._tasks:
            await asyncio.sleep(0.01)
        await core.close()
    asyncio.run(go())
    assert m.prflag is False


def test_hung_paths_hold_neither_the_prkeys_file_nor_the_other_paths(tmp_path, monkeypatch):
    import threading

    from pymultipathd.daemon import reservations

    monkeypatch.setattr(reservations, "MARGIN", 0.1)
    d = _daemon(FILE, tmp_path)
    core, m = d.core, d.core.state.maps["mpatha"]
    core.pr._timeout_of = lambda p: 0.1
    core.pr.prkeys[WWID] = keys.Key(0x1)
    m.prflag = True
    gate = threading.Event()
    monkeypatch.setattr(mapops, "register_path", lambda *a: gate.wait(10))  # SG_IO that does not return

    async def go() -> dict[str, str]:
        core.pr.register_soon("mpatha", "sdb")
        core.pr.register_soon("mpatha", "sdc")
        await asyncio.sleep(0.5)  # both given up on; their threads still stuck
        res = {}
        for name, coro in (("load", core.pr.load(str(tmp_path / "prkeys"))),
                           ("setprkey", handlers.dispatch(d, grammar.parse("setprkey map mpatha key 0x2")))):
            try:
                await asyncio.wait_for(coro, 5)
                res[name] = "ok"
            except TimeoutError:
                res[name] = "hung"
        # a path with a command still in the kernel gets no second one
        sdb = core.state.paths["sdb"]
        res["again"] = str(await core.pr._call(sdb, mapops.register_path, 1, False, False))
        gate.set()
        await core.close()
        return res
    assert asyncio.run(go()) == {"load": "ok", "setprkey": "ok", "again": "None"}
