"""The -IS launcher scripts `make install` and the VM bed write (pymultipathd/cli/launcher.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pymultipathd
from pymultipathd.cli import launcher

SITE = os.path.dirname(os.path.dirname(pymultipathd.__file__))


def test_site_dirs_are_what_site_py_adds() -> None:
    dirs = launcher.site_dirs(sys.executable)
    bare = subprocess.run([sys.executable, "-IS", "-c", "import sys; print(sys.path)"], capture_output=True,
                          text=True, check=True).stdout
    assert all(d not in bare for d in dirs)
    import pyudev  # a dependency: the launcher must find it without site.py

    assert any(pyudev.__file__.startswith(d) for d in dirs + [SITE])


def test_launcher_runs_the_cli_without_site(tmp_path) -> None:
    rc = launcher.main(["--bindir", str(tmp_path / "bin"), "--python", sys.executable, "--site", SITE])
    assert rc == 0
    script = tmp_path / "bin" / "pymultipath"
    first = script.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    assert os.access(script, os.X_OK)
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.startswith("usage: pymultipath")
    # the daemon's launcher reaches its dependencies too (pyudev is imported by the daemon only)
    probe = subprocess.run([sys.executable, "-IS", "-c",
                            f"import sys; sys.path += {launcher.site_dirs(sys.executable) + [SITE]!r}; "
                            "import pyudev, pymultipathd.cli.pymultipathd"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


def test_launcher_refuses_a_site_without_the_package(tmp_path, capsys) -> None:
    bindir = str(tmp_path / "bin")
    rc = launcher.main(["--bindir", bindir, "--python", sys.executable, "--site", str(tmp_path)])
    assert rc == 1
    assert "no pymultipathd package under" in capsys.readouterr().err
    assert not (tmp_path / "bin").exists()
