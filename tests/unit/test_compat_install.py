"""`make install COMPAT=1`: the drop-in names `multipath`/`multipathd` (pymultipathd/cli/compat_install.py),
with a fake dpkg-query standing for the Debian package database and DESTDIR in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pymultipathd.cli import compat_install

REPO = Path(__file__).resolve().parents[2]

# dpkg-query -S as bookworm's answers it: multipath-tools ships /sbin/multipath and /sbin/multipathd (merged
# /usr makes them /usr/sbin/... too, a name dpkg does not know); exit 1 and a message for anything else
FAKE_DPKG_QUERY = """\
#!/bin/sh
[ "$1" = -S ] || exit 2
echo "$2" >> "$(dirname "$0")/asked"
case "$2" in
  /sbin/multipath|/sbin/multipathd) echo "multipath-tools: $2" ;;
  /usr/local/sbin/multipath) echo "diversion by local from: $2"; echo "diversion by local to: $2.x" ;;
  *) echo "dpkg-query: no path found matching pattern $2" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def dpkg_query(tmp_path) -> str:
    d = tmp_path / "fakebin"
    d.mkdir()
    path = d / "dpkg-query"
    path.write_text(FAKE_DPKG_QUERY)
    path.chmod(0o755)
    return str(path)


def staged(root: Path, prefix: str) -> Path:
    """A DESTDIR after `make install`: our launchers in PREFIX/bin."""
    bindir = root / prefix.lstrip("/") / "bin"
    bindir.mkdir(parents=True)
    for prog in compat_install.NAMES.values():
        (bindir / prog).write_text("#!/bin/sh\n")
        (bindir / prog).chmod(0o755)
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = compat_install.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_links_point_at_our_commands_and_a_second_run_is_fine(tmp_path, dpkg_query, capsys):
    root = staged(tmp_path / "dest", "/usr/local")
    for _ in range(2):  # idempotent: the second run replaces its own links
        rc, out, err = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)
        assert rc == 0, err
        for name, prog in compat_install.NAMES.items():
            link = root / "usr/local/sbin" / name
            # the target as seen on the installed system, never the staging directory
            assert os.readlink(link) == f"/usr/local/bin/{prog}"
            assert f"{link} -> /usr/local/bin/{prog}" in out
    assert sorted(p.name for p in (root / "usr/local/sbin").iterdir()) == sorted(compat_install.NAMES)
    # both spellings were asked about only where /usr merging makes two: not for /usr/local
    assert (Path(dpkg_query).parent / "asked").read_text().split() == [
        "/usr/local/sbin/multipath", "/usr/local/sbin/multipathd", "/usr/local/sbin/mpathpersist"] * 2


@pytest.mark.parametrize("prefix", ["/usr", "/"])
def test_a_name_a_debian_package_owns_is_refused_with_the_file_and_package(tmp_path, dpkg_query, capsys,
                                                                        prefix):
    root = staged(tmp_path / "dest", prefix)
    sbin = root / prefix.lstrip("/") / "sbin"
    sbin.mkdir()
    (sbin / "multipath").write_text("upstream")  # what the package put there
    rc, out, err = run(capsys, "--root", str(root), "--prefix", prefix, "--dpkg-query", dpkg_query)
    assert rc == 1
    link = os.path.join(prefix, "sbin", "multipath")
    assert f"refusing: {link}" in err and "belongs to the Debian package multipath-tools" in err, err
    assert "dpkg-query -S /sbin/multipath" in err
    if prefix == "/usr":  # merged /usr: dpkg knows the file as /sbin/multipath only
        assert "(/sbin/multipath, the same name under merged /usr)" in err
    # the daemon's name too (nothing exists there yet: owning the path is enough)
    assert "belongs to the Debian package multipath-tools (dpkg-query -S /sbin/multipathd)" in err
    # how to proceed, and that nothing was done: not even the name dpkg does not own
    assert "PREFIX=/usr/local" in err and "update-alternatives" in err
    assert "no drop-in name was installed" in err
    assert (sbin / "multipath").read_text() == "upstream"
    assert sorted(p.name for p in sbin.iterdir()) == ["multipath"]


def test_check_refuses_before_anything_is_installed(tmp_path, dpkg_query, capsys):
    # `make install COMPAT=1` runs --check first, when PREFIX/bin holds nothing of ours yet
    rc, _, err = run(capsys, "--root", str(tmp_path), "--prefix", "/usr", "--check",
                     "--dpkg-query", dpkg_query)
    assert rc == 1 and "/usr/sbin/multipath (/sbin/multipath," in err
    assert list(tmp_path.iterdir()) == [Path(dpkg_query).parent]
    rc, out, err = run(capsys, "--root", str(tmp_path), "--prefix", "/opt/mp", "--check",
                       "--dpkg-query", dpkg_query)
    assert rc == 0 and ("/opt/mp/sbin/multipath, /opt/mp/sbin/multipathd, /opt/mp/sbin/mpathpersist may be "
                        "installed") in out, err
    assert list(tmp_path.iterdir()) == [Path(dpkg_query).parent]


def test_a_foreign_regular_file_is_never_replaced(tmp_path, dpkg_query, capsys):
    root = staged(tmp_path / "dest", "/usr/local")
    sbin = root / "usr/local/sbin"
    sbin.mkdir()
    (sbin / "multipathd").write_text("someone's wrapper")
    rc, _, err = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)
    assert rc == 1
    assert f"refusing: {sbin / 'multipathd'} exists and is not a symlink this installer made" in err, err
    assert (sbin / "multipathd").read_text() == "someone's wrapper"
    assert not os.path.lexists(sbin / "multipath")  # all or nothing
    # a directory in the way is refused the same way
    (sbin / "multipathd").unlink()
    (sbin / "multipathd").mkdir()
    rc, _, err = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)
    assert rc == 1 and "is not a symlink this installer made" in err


def test_a_foreign_symlink_is_left_alone_but_an_earlier_link_of_ours_is_replaced(tmp_path, dpkg_query,
                                                                                capsys):
    root = staged(tmp_path / "dest", "/usr/local")
    sbin = root / "usr/local/sbin"
    sbin.mkdir()
    os.symlink("/etc/alternatives/multipath", sbin / "multipath")
    rc, _, err = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)
    assert rc == 1
    assert "is a symlink to /etc/alternatives/multipath, not to our pymultipath" in err, err
    assert os.readlink(sbin / "multipath") == "/etc/alternatives/multipath"
    # a link of an earlier install (another spelling of our command) is ours to replace
    (sbin / "multipath").unlink()
    os.symlink("../bin/pymultipath", sbin / "multipath")
    rc, _, err = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)
    assert rc == 0, err
    assert os.readlink(sbin / "multipath") == "/usr/local/bin/pymultipath"


def test_no_link_to_a_command_that_is_not_installed(tmp_path, dpkg_query, capsys):
    rc, _, err = run(capsys, "--root", str(tmp_path), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)
    assert rc == 1
    assert f"{tmp_path}/usr/local/bin/pymultipath does not exist: run `make install`" in err, err
    assert not (tmp_path / "usr/local/sbin").exists()


def test_a_diversion_line_owns_nothing(tmp_path, dpkg_query):
    assert compat_install.dpkg_owner("/usr/local/sbin/multipath", dpkg_query) is None
    assert compat_install.dpkg_owner("/sbin/multipath", dpkg_query) == "multipath-tools"
    assert compat_install.dpkg_owner("/sbin/multipath", None) is None  # no dpkg: nothing to protect


def test_a_broken_package_database_refuses_rather_than_guesses(tmp_path, capsys):
    broken = tmp_path / "dpkg-query"
    broken.write_text("#!/bin/sh\necho 'dpkg-query: error: cannot read status' >&2\nexit 2\n")
    broken.chmod(0o755)
    root = staged(tmp_path / "dest", "/usr/local")
    rc, _, err = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", str(broken))
    assert rc == 1
    assert "cannot ask dpkg who owns /usr/local/sbin/multipath" in err and "cannot read status" in err, err
    assert not (root / "usr/local/sbin").exists()


def test_merged_usr_spellings():
    assert compat_install.dpkg_names("/usr/sbin/multipath") == ["/usr/sbin/multipath", "/sbin/multipath"]
    assert compat_install.dpkg_names("/sbin/multipath") == ["/sbin/multipath", "/usr/sbin/multipath"]
    assert compat_install.dpkg_names("/usr/local/sbin/multipath") == ["/usr/local/sbin/multipath"]
    assert compat_install.dpkg_names("/opt/x/sbin/multipath") == ["/opt/x/sbin/multipath"]


def test_remove_takes_only_our_links_and_is_idempotent(tmp_path, dpkg_query, capsys):
    root = staged(tmp_path / "dest", "/usr/local")
    assert run(capsys, "--root", str(root), "--prefix", "/usr/local", "--dpkg-query", dpkg_query)[0] == 0
    sbin = root / "usr/local/sbin"
    (sbin / "multipathd").unlink()
    (sbin / "multipathd").write_text("an admin's own file")
    rc, out, _ = run(capsys, "--root", str(root), "--prefix", "/usr/local", "--remove")
    assert rc == 0
    assert f"removed {sbin / 'multipath'}" in out and f"left {sbin / 'multipathd'} alone" in out
    assert not os.path.lexists(sbin / "multipath")
    assert (sbin / "multipathd").read_text() == "an admin's own file"
    assert run(capsys, "--root", str(root), "--prefix", "/usr/local", "--remove")[0] == 0


def test_the_default_dpkg_query_is_the_one_on_path(tmp_path, dpkg_query):
    # as `make install` runs it: python -m, dpkg-query found through PATH
    root = staged(tmp_path / "dest", "/usr")
    env = {**os.environ, "PATH": f"{os.path.dirname(dpkg_query)}:{os.environ['PATH']}"}
    p = subprocess.run([sys.executable, "-m", "pymultipathd.cli.compat_install", "--root", str(root),
                        "--prefix", "/usr"], capture_output=True, text=True, env=env, cwd=REPO)
    assert p.returncode == 1 and "belongs to the Debian package multipath-tools" in p.stderr, p.stderr


def test_make_install_runs_it_only_with_compat(tmp_path):
    def recipe(*args: str) -> list[str]:
        # -n prints the recipe, but still runs the line holding $(MAKE): MAKE=true builds nothing there, and
        # DESTDIR in tmp_path keeps the rest of that line away from the system
        out = subprocess.run(["make", "-n", "MAKE=true", "install", f"DESTDIR={tmp_path}", "PREFIX=/opt/mp",
                              *args],
                             capture_output=True, text=True, cwd=REPO, check=True).stdout
        return [ln for ln in out.splitlines() if "compat_install" in ln]

    lines = recipe("COMPAT=1")
    assert len(lines) == 2 and lines[0].endswith("--check")  # checked before anything is installed
    assert f'--root "{tmp_path}" --prefix "/opt/mp"' in lines[1]
    assert recipe() == [] and recipe("COMPAT=0") == []
