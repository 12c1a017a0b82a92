"""Drop-in names: `multipath`, `multipathd` and `mpathpersist` as symlinks to our `pymultipath`,
`pymultipathd` and `pympathpersist`.

    python -m pymultipathd.cli.compat_install --prefix PREFIX [--root DESTDIR] [--check | --remove]

`make install COMPAT=1` runs it twice: with --check before anything is installed (a refusal leaves the
system as it was), then without, once PREFIX/bin holds our launchers. The links go to PREFIX/sbin and point
at PREFIX/bin (as seen on the target system, without DESTDIR); our commands do not look at argv[0], so a
symlink is all a drop-in name needs. multipath-tools' kpartx has no counterpart here, so no name is
installed for it: a link to nothing would only turn "command not found" into a stranger error.

Refused, for every name, before any link is made: a path a Debian package owns (`dpkg-query -S` finds it,
as the path itself or as its merged-/usr twin), and an existing file that is not one of our own earlier
symlinks. --remove deletes only our own symlinks. Exit status 0 on success, 1 on a refusal or an error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from pymultipathd.errors import PymultipathError

PROG = "compat_install"
# drop-in name -> our command it stands for (both installed by `make install` into PREFIX/bin)
NAMES = {"multipath": "pymultipath", "multipathd": "pymultipathd", "mpathpersist": "pympathpersist"}
HOW_TO_PROCEED = ("install them under a prefix whose sbin comes first in root's PATH "
                  "(make install COMPAT=1 PREFIX=/usr/local), or manage them with update-alternatives "
                  "(docs/cli.md, \"Drop-in names\")")


class Refused(PymultipathError):
    """A drop-in name that may not be installed; the message names the file and why."""


def link_path(prefix: str, name: str) -> str:
    return os.path.join(prefix, "sbin", name)


def target_path(prefix: str, name: str) -> str:
    return os.path.join(prefix, "bin", NAMES[name])


def dpkg_names(path: str) -> list[str]:
    """The spellings of `path` dpkg may record. With merged /usr (bookworm's default) /sbin is a symlink to
    usr/sbin, and dpkg knows multipath-tools' file as /sbin/multipath only: asking for /usr/sbin/multipath
    finds nothing. On an unmerged system the twin is a separate file, but still on PATH beside ours."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "usr" and parts[2] in ("bin", "sbin"):
        return [path, "/" + "/".join(parts[2:])]
    if len(parts) > 2 and parts[1] in ("bin", "sbin"):
        return [path, "/usr" + path]
    return [path]


def dpkg_owner(path: str, dpkg_query: str | None) -> str | None:
    """The package(s) owning `path` as `dpkg-query -S` prints them, None if none (or no dpkg here)."""
    if dpkg_query is None:
        return None  # not a Debian system: no package database to protect
    try:
        p = subprocess.run([dpkg_query, "-S", path], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Refused(f"cannot ask {dpkg_query} who owns {path}: {e}") from e
    if p.returncode == 1:
        return None  # "no path found matching pattern"
    if p.returncode != 0:
        # an unreadable package database is no proof the path is free: refuse rather than guess
        raise Refused(f"cannot ask dpkg who owns {path}: {dpkg_query} -S exited with {p.returncode}: "
                      f"{p.stderr.strip()}")
    for line in p.stdout.splitlines():
        # "pkg1, pkg2: /path"; a diversion adds "diversion by PKG from: /path" lines, which own nothing
        owners, sep, found = line.rpartition(": ")
        if sep and found == path and not owners.startswith("diversion by "):
            return owners
    return None


def is_ours(link: str, name: str) -> bool:
    """A symlink an earlier run made: it points at our command of that name (wherever PREFIX was)."""
    return os.path.islink(link) and os.path.basename(os.readlink(link)) == NAMES[name]


def check(prefix: str, root: str, dpkg_query: str | None) -> list[str]:
    """Why each drop-in name may not be installed (empty: all may)."""
    problems = []
    for name in NAMES:
        final = link_path(prefix, name)
        staged = root + final
        try:
            for spelling in dpkg_names(final):
                owner = dpkg_owner(spelling, dpkg_query)
                if owner is not None:
                    same = "" if spelling == final else f" ({spelling}, the same name under merged /usr)"
                    raise Refused(f"{final}{same} belongs to the Debian package {owner} "
                                  f"(dpkg-query -S {spelling}); replacing it would break that package and "
                                  f"its next upgrade would put it back")
        except Refused as e:
            problems.append(str(e))
            continue
        if os.path.islink(staged) and not is_ours(staged, name):
            problems.append(f"{staged} exists and is a symlink to {os.readlink(staged)}, not to our "
                            f"{NAMES[name]} (an alternatives link or another tool's): left alone")
        elif os.path.lexists(staged) and not os.path.islink(staged):
            problems.append(f"{staged} exists and is not a symlink this installer made: left alone "
                            "(move it away first if it should go)")
    return problems


def install(prefix: str, root: str, dpkg_query: str | None) -> list[str]:
    """Check every name, then link every name (all or none); the links made."""
    problems = check(prefix, root, dpkg_query)
    for name in NAMES:
        target = root + target_path(prefix, name)
        if not os.path.isfile(target):
            problems.append(f"{target} does not exist: run `make install` (PREFIX={prefix}) first, a "
                            f"drop-in name must not point at nothing")
    if problems:
        raise Refused("\n".join(problems))
    made = []
    for name in NAMES:
        staged = root + link_path(prefix, name)
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        # a new link renamed over the old one: the name never goes missing while a script may call it
        tmp = f"{staged}.tmp{os.getpid()}"
        os.symlink(target_path(prefix, name), tmp)
        os.replace(tmp, staged)
        made.append(staged)
    return made


def remove(prefix: str, root: str) -> tuple[list[str], list[str]]:
    """Remove our symlinks: (removed, left alone because they are not ours)."""
    removed, kept = [], []
    for name in NAMES:
        staged = root + link_path(prefix, name)
        if is_ours(staged, name):
            os.unlink(staged)
            removed.append(staged)
        elif os.path.lexists(staged):
            kept.append(staged)
    return removed, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pymultipathd.cli.compat_install", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", required=True, help="PREFIX of `make install` (links in PREFIX/sbin)")
    ap.add_argument("--root", default="", help="staging root (DESTDIR) prefixed to every path written")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only say whether the names may be installed")
    mode.add_argument("--remove", action="store_true", help="remove the links an earlier run made")
    ap.add_argument("--dpkg-query", default=shutil.which("dpkg-query"),
                    help="dpkg-query to ask who owns a path (default: the one on PATH; none: no check)")
    ns = ap.parse_args(argv)
    if not os.path.isabs(ns.prefix):
        ap.error(f"{ns.prefix}: --prefix must be an absolute path")
    prefix, root, dpkg_query = os.path.normpath(ns.prefix), ns.root.rstrip("/"), ns.dpkg_query or None
    if ns.remove:
        removed, kept = remove(prefix, root)
        for path in removed:
            print(f"{PROG}: removed {path}")
        for path in kept:
            print(f"{PROG}: left {path} alone: not a symlink this installer made")
        return 0
    try:
        if ns.check:
            problems = check(prefix, root, dpkg_query)
            if problems:
                raise Refused("\n".join(problems))
            print(f"{PROG}: {', '.join(link_path(prefix, n) for n in NAMES)} may be installed")
            return 0
        for path in install(prefix, root, dpkg_query):
            print(f"{PROG}: {path} -> {os.readlink(path)}")
    except Refused as e:
        for line in str(e).splitlines():
            print(f"{PROG}: refusing: {line}", file=sys.stderr)
        print(f"{PROG}: no drop-in name was installed; instead, {HOW_TO_PROCEED}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
