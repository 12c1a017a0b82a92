"""The policy does no I/O: importing it pulls in no adapter of the project and no stdlib module that talks to
the system (sockets, processes, threads, the event loop, ioctls). Checked in a fresh interpreter, so what
other tests imported does not hide anything."""

from __future__ import annotations

import json
import subprocess
import sys

POLICY = ("pymultipathd.policy.decide", "pymultipathd.policy.plan", "pymultipathd.policy.settings",
          "pymultipathd.policy.marginal",
          "pymultipathd.policy.state", "pymultipathd.policy.events", "pymultipathd.policy.actions")
# the pure core the policy may build on: records, the classifier's facts, configuration values, DM tables
PURE = {"pymultipathd", "pymultipathd.policy", "pymultipathd.record", "pymultipathd.errors",
        "pymultipathd.classify", "pymultipathd.blacklist", "pymultipathd.config", "pymultipathd.config.model",
        "pymultipathd.config.keywords", "pymultipathd.config.hwtable", "pymultipathd.config.ere",
        "pymultipathd.config.parser", "pymultipathd.dm", "pymultipathd.dm.table", "pymultipathd.paths",
        "pymultipathd.paths.grouping", *POLICY}
TALKS_TO_THE_SYSTEM = {"socket", "subprocess", "asyncio", "threading", "concurrent.futures", "fcntl",
                       "select", "selectors", "mmap", "pyudev", "pyroute2", "systemd", "logging"}
# what a policy module may import itself: no os, time, random, ... (the interpreter loads `time` at start-up,
# so the closure cannot show it; the sources can)
POLICY_STDLIB = {"__future__", "collections.abc", "enum"}


def _imported_by(modules: tuple[str, ...]) -> list[str]:
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_the_policy_imports_only_the_pure_core():
    loaded = _imported_by(POLICY)
    ours = {m for m in loaded if m.startswith("pymultipathd")}
    assert ours - PURE == set(), "the policy must not import adapters or the daemon"
    assert TALKS_TO_THE_SYSTEM & set(loaded) == set()


def test_policy_sources_import_no_clock_or_environment():
    import ast
    import pathlib

    import pymultipathd.policy

    for path in pathlib.Path(pymultipathd.policy.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.startswith("pymultipathd.") or name in POLICY_STDLIB, f"{path.name}: {name}"


def test_the_guard_notices_an_adapter():
    # the same check fails for a module that does I/O, so a pass above means something
    loaded = _imported_by(("pymultipathd.paths.checkers",))
    assert {m for m in loaded if m.startswith("pymultipathd")} - PURE
    assert TALKS_TO_THE_SYSTEM & set(loaded)
