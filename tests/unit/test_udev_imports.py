"""The `-u` path stays lean: udev runs it for every disk event, and every module it imports costs start-up
time (most in the TCG test guest). A guard against an innocent-looking import bringing the heavy ones back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from sysfs_tree import Tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# top-level modules the udev helper must not load; the second line are what dataclasses and socket pulled in
FORBIDDEN = {
    "dataclasses", "inspect", "typing", "pydantic", "pyudev", "pyroute2", "asyncio", "argparse", "json",
    "ast", "dis", "tokenize", "socket", "selectors", "threading", "contextlib", "string", "logging",
    "tempfile",
}

# -S, as the installed launcher runs python (-IS); the repo goes on sys.path by hand
PROBE = ("import sys; sys.path.insert(0, {repo!r}); {body}; "
         "print('MODULES', *{{m.split('.')[0] for m in sys.modules}})")


def _loaded(body: str, env: dict[str, str] | None = None) -> set[str]:
    code = PROBE.format(repo=REPO, body=body)
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env=env, cwd="/")
    return set(out.stdout.splitlines()[-1].split()[1:])


def test_importing_the_udev_helper_loads_nothing_heavy():
    loaded = _loaded("import pymultipathd.cli.udev_helper")
    assert "pymultipathd" in loaded
    assert not loaded & FORBIDDEN, sorted(loaded & FORBIDDEN)


def test_running_u_loads_nothing_heavy(tmp_path):
    # a whole run with main()'s lazy imports: config loading, every rule up to a smart-mode wait, its timer
    tree = Tree(tmp_path)
    tree.disk("sdb", "8:16", "36001405aaaa")
    tree.config("defaults {\n find_multipaths smart\n}\n")
    drop = ("DEVPATH", "SUBSYSTEM", "PYMULTIPATH_FIND_MULTIPATHS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(tree.env())
    body = "from pymultipathd.cli.pymultipath import main; assert main(['-u', 'sdb']) == 0"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as daemon:  # where the daemon would listen
        daemon.bind("\0" + env["MULTIPATH_SOCKET_NAME"][1:])
        daemon.listen(8)
        loaded = _loaded(body, env)
    assert os.listdir(os.path.join(env["PYMULTIPATH_RUNDIR"], "find_multipaths")) == ["8:16"]
    assert "pymultipathd" in loaded
    assert not loaded & FORBIDDEN, sorted(loaded & FORBIDDEN)
