"""Locations follow the environment a test sets.

A program reads its environment once, at its entry, into the locations it installs (pymultipathd.locations);
a library caller that installed none gets those of os.environ, read on first use and kept. Tests point the
code at fake trees with `monkeypatch.setenv("PYMULTIPATH_...")`, so here every change a MonkeyPatch makes to
the environment (setenv, delenv, and undo at the end of a test) forgets the installed locations, and so does
the start of every test (an entry called in-process, `pymultipath.main([...])`, installs its own): the next
call reads the environment as the test left it.
"""

from __future__ import annotations

import functools

import pytest

from pymultipathd import locations


def _forgets_locations(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        finally:
            locations.install(None)

    return wrapper


@pytest.fixture(autouse=True, scope="session")
def _locations_follow_monkeypatched_env():
    patch = pytest.MonkeyPatch()
    for name in ("setenv", "delenv", "undo"):
        patch.setattr(pytest.MonkeyPatch, name, _forgets_locations(getattr(pytest.MonkeyPatch, name)))
    yield
    patch.undo()
    locations.install(None)


@pytest.fixture(autouse=True)
def _fresh_locations(_locations_follow_monkeypatched_env):
    locations.install(None)
    yield
    locations.install(None)
