"""Write the `pymultipath`, `pymultipathd` and `pympathpersist` launcher scripts.

udev runs `pymultipath -u` for every add/change event of every disk, so its start-up matters. The scripts pip
generates start python normally: site.py then detects the venv, reads every .pth file and imports
sitecustomize, about 60 ms of a 200 ms start in the TCG test guest. These launchers run `python -IS` (no
site, no PYTHON* environment, no script directory on sys.path) and put on sys.path, by hand, the directory
holding the installed package and the site directories the interpreter would have added (asked of it once,
here), where pyudev and the other dependencies live.

    python -m pymultipathd.cli.launcher --bindir DIR --python PYTHON --site SITEDIR [--root DESTDIR]

--site is the directory that holds pymultipathd/ as seen on the target system; with --root (a staging
DESTDIR) the scripts go to ROOT/BINDIR but name the paths without ROOT.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SCRIPTS = {"pymultipath": "pymultipath", "pymultipathd": "pymultipathd",  # script -> pymultipathd.cli module
           "pympathpersist": "persist_cmd"}

TEMPLATE = """\
#!{python} -IS
# Written by pymultipathd.cli.launcher: python without site start-up (udev runs this for every disk event).
import sys
sys.path += {paths!r}
from pymultipathd.cli.{module} import main
sys.exit(main())
"""


def script_text(python: str, paths: list[str], module: str) -> str:
    return TEMPLATE.format(python=python, paths=paths, module=module)


def site_dirs(python: str) -> list[str]:
    """What site.py adds to sys.path of `python`: venv or system site-packages, dist-packages, .pth lines."""
    probe = "import json, sys; print(json.dumps(sys.path))"
    full, bare = (json.loads(subprocess.run([python, *flags, "-c", probe], capture_output=True, text=True,
                                            check=True).stdout) for flags in (["-I"], ["-IS"]))
    return [p for p in full if p not in bare]


def write(bindir: str, python: str, paths: list[str]) -> list[str]:
    """Write every launcher into bindir atomically (a running udev worker may exec one at any moment)."""
    os.makedirs(bindir, exist_ok=True)
    written = []
    for name, module in SCRIPTS.items():
        final = os.path.join(bindir, name)
        tmp = f"{final}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(script_text(python, paths, module))
        os.chmod(tmp, 0o755)
        os.replace(tmp, final)
        written.append(final)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pymultipathd.cli.launcher", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bindir", required=True, help="where the scripts go, e.g. /usr/local/bin")
    ap.add_argument("--python", required=True, help="absolute path of the interpreter on the target system")
    ap.add_argument("--site", required=True, help="directory holding the installed pymultipathd package")
    ap.add_argument("--root", default="", help="staging root (DESTDIR) prefixed to --bindir and --site")
    ns = ap.parse_args(argv)
    for what in (ns.python, ns.site, ns.bindir):
        if not os.path.isabs(what):
            ap.error(f"{what}: must be an absolute path")
    root = ns.root.rstrip("/")
    if not os.path.isfile(os.path.join(root + ns.site, "pymultipathd", "__init__.py")):
        print(f"launcher: no pymultipathd package under {root + ns.site}", file=sys.stderr)
        return 1
    try:
        extra = site_dirs(ns.python)
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        print(f"launcher: cannot ask {ns.python} for its site directories: {e}", file=sys.stderr)
        return 1
    paths = [ns.site] + [p for p in extra if p != ns.site]
    for path in write(root + ns.bindir, ns.python, paths):
        print(f"launcher: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
