"""The built-in hardware table against Debian's own: `/sbin/multipath -t` (multipath-tools 0.9.4) and our
`pymultipath -t`, both with no configuration file, compared entry by entry (devices, and the blacklist's
device entries) by tests/hwtable_compare.py, with the same known differences as tests/unit/test_hwtable.py.
No devices, no daemon: a few seconds."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pytest

from tests import hwtable_compare
from tests.unit.test_hwtable import KNOWN_DIFFERENCES, UPSTREAM_T, unexplained
from tests.vm.bench_udev import OURS, UPSTREAM
from tests.vm.sysutil import SavedFiles, run

pytestmark = pytest.mark.vm

CONF = "/etc/multipath.conf"
CONFD = "/etc/multipath/conf.d"  # both tools' default drop-in directory


@pytest.fixture
def no_config_files() -> Iterator[None]:
    """Neither tool reads a configuration file (Debian ships none; a test may have left one): the files are
    moved out of the way and put back after."""
    saved = SavedFiles([CONF, *glob.glob(os.path.join(CONFD, "*.conf"))])
    for path, data in saved.data.items():
        if data is not None:
            os.unlink(path)
    try:
        yield
    finally:
        saved.restore()


def _t(argv: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYMULTIPATH_")}  # the default locations
    return run([*argv, "-t"], env=env)


def test_our_t_prints_debians_hardware_table(no_config_files: None) -> None:
    theirs = _t([UPSTREAM])
    ours = _t([OURS])
    parsed = hwtable_compare.parse(theirs)
    assert len(parsed["devices"]) == 123 and parsed["blacklist"], "Debian's multipath -t printed no table"
    # the capture our data file was made from is what this guest's multipath prints
    with open(UPSTREAM_T) as f:
        assert [str(d) for d in hwtable_compare.compare(hwtable_compare.parse(f.read()), parsed)] == []
    left, seen = unexplained(theirs, ours)
    assert left == [], "\n".join(left)
    assert seen == set(KNOWN_DIFFERENCES), "a known difference no longer happens: remove it"
