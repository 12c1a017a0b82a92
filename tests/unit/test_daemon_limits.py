"""max_fds: the open-file limit the daemon sets itself (pymultipathd.daemon.limits)."""

from __future__ import annotations

import resource

import pytest

from pymultipathd.config import load
from pymultipathd.daemon import limits


@pytest.mark.parametrize(("value", "nr_open", "want"), [
    ("max", 1048576, 1048576), (None, 4096, 4096), (8192, 1048576, 8192),
    (2_000_000, 1048576, 1048576),   # the kernel refuses more than nr_open: capped
])
def test_the_limit_max_fds_asks_for(value, nr_open, want):
    assert limits.nofile_limit(value, nr_open) == want


def test_max_fds_of_the_configuration_is_set_on_both_limits(monkeypatch):
    calls = []
    monkeypatch.setattr(limits.resource, "setrlimit", lambda which, pair: calls.append((which, pair)))
    monkeypatch.setattr(limits.sysread, "read_text", lambda path: "65536" if path == limits.NR_OPEN else None)
    conf = load.parse_text("defaults {\n max_fds 4096\n}\n")
    assert limits.apply_max_fds(conf.resolve("max_fds")) == 4096
    assert limits.apply_max_fds(load.parse_text("").resolve("max_fds")) == 65536  # built-in "max"
    assert calls == [(resource.RLIMIT_NOFILE, (4096, 4096)), (resource.RLIMIT_NOFILE, (65536, 65536))]


def test_a_refused_limit_is_logged_and_the_old_one_stays(monkeypatch, caplog):
    def refuse(which, pair):
        raise ValueError("not allowed to raise maximum limit")
    monkeypatch.setattr(limits.resource, "setrlimit", refuse)
    assert limits.apply_max_fds(1 << 19) is None
    assert "cannot set the open-file limit" in caplog.text
