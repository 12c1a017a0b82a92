"""pymultipathd's upstream options: -B (read-only bindings), -n (deprecated: strict), -w (no effect) are
accepted, so a unit or script written for multipathd starts ours, and each does what it says."""

from __future__ import annotations

from pymultipathd import store
from pymultipathd.daemon import main
from pymultipathd.daemon.persist import Persist


def test_upstream_options_are_accepted():
    opts = main.parse_args(["-d", "-s", "-v", "3", "-B", "-n", "-w"])
    assert (opts.bindings_read_only, opts.ignore_new, opts.event_threads, opts.v) == (True, True, True, 3)
    assert main.Daemon(opts).find_multipaths == "strict"
    assert main.Daemon(main.parse_args([])).find_multipaths is None


def test_read_only_bindings_use_existing_aliases_and_add_none(tmp_path, monkeypatch):
    bindings = tmp_path / "bindings"
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(bindings))
    bindings.write_text("mpatha 3600a\n")
    before = bindings.read_text()
    got = Persist(bindings_read_only=True).aliases(["3600a", "3600b"], "mpath", reserved=set())
    assert got == {"3600a": "mpatha"}  # 3600b: named after its WWID
    assert bindings.read_text() == before
    assert Persist().aliases(["3600b"], "mpath", reserved=set()) == {"3600b": "mpathb"}
    assert store.read_bindings() == {"mpatha": "3600a", "mpathb": "3600b"}
