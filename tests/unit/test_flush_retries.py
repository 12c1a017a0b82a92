"""remove_retries: `pymultipath -f` looks at a held map again, a second apart, before reporting its
holders; the map goes as soon as its last holder lets go, and is never removed while held."""

from __future__ import annotations

import pytest

from pymultipathd import flush, holders
from pymultipathd.config import load


class Snap:
    """The part of a holders snapshot flush reads itself."""

    def __init__(self, held: bool) -> None:
        self.held, self.queueing = held, False


class FakeDM:
    """A map held for the first `held_for` looks; what flush removes is recorded."""

    def __init__(self, held_for: int) -> None:
        self.looks, self.held_for, self.removed = 0, held_for, []

    def snapshot(self, ctl, name):
        self.looks += 1
        return Snap(self.looks <= self.held_for)

    def find_holders(self, snap):
        return [holders.Holder("process", "mpatha", "backup (pid 42)", "kill 42")] if snap.held else []


@pytest.fixture
def dm(monkeypatch):
    def make(held_for: int) -> FakeDM:
        fake = FakeDM(held_for)
        monkeypatch.setattr(flush, "snapshot_if_held", fake.snapshot)
        monkeypatch.setattr(flush.holders, "find_holders", fake.find_holders)
        monkeypatch.setattr(flush.holders, "explain", lambda snap, found: f"held by {found[0].what}\n")
        monkeypatch.setattr(flush.dmmaps, "remove_map", lambda ctl, name, deferred: fake.removed.append(name))
        monkeypatch.setattr(flush, "HELD_RETRY_DELAY", 0.0)
        return fake
    return make


def test_without_retries_a_held_map_is_reported_at_once(dm):
    fake = dm(held_for=1)
    res = flush.flush(None, "mpatha", retries=0)
    assert not res.removed and "backup" in res.report and fake.removed == [] and fake.looks == 1


def test_retries_wait_for_the_last_holder_then_remove(dm):
    fake = dm(held_for=3)
    heard = []
    res = flush.flush(None, "mpatha", retries=5, on_retry=lambda n, of, by: heard.append((n, of, by[0].what)))
    assert res.removed and fake.removed == ["mpatha"] and fake.looks == 4
    assert heard == [(n, 5, "backup (pid 42)") for n in (1, 2, 3)]


def test_retries_run_out_and_the_map_stays(dm):
    fake = dm(held_for=99)
    res = flush.flush(None, "mpatha", retries=2)
    assert not res.removed and fake.removed == [] and fake.looks == 3


def test_the_command_line_takes_remove_retries_from_the_configuration(monkeypatch, capsys):
    from pymultipathd.cli import flush_cmd

    monkeypatch.setattr("pymultipathd.config.load_config",
                        lambda *a, **k: load.parse_text("defaults {\n remove_retries 4\n}\n"))
    assert flush_cmd._remove_retries() == 4
    monkeypatch.setattr("pymultipathd.config.load_config",
                        lambda *a, **k: load.parse_text("defaults {\n remove_retries x\n}\n"))
    assert flush_cmd._remove_retries() == 0 and "without remove_retries" in capsys.readouterr().err
