"""What the initramfs needs of this host to run pymultipathd: the list the initramfs hook and the dracut
module copy (initramfs/ in the source tree).

    python -m pymultipathd.initrd.manifest --launcher BINDIR/pymultipath [--sysfs /sys]

prints one line per item, "KIND<TAB>VALUE", for the shell of either generator to act on with its own
helpers (initramfs-tools' copy_file/copy_exec/manual_add_modules, dracut's inst/inst_binary/instmods):

    exec    a program or shared object to copy with the libraries it links (the interpreter, extension
            modules, the libraries ctypes opened, ldconfig which ctypes.util runs to find them)
    file    a file to copy as is (Python sources and their compiled caches, the package, pyvenv.cfg)
    module  a kernel module: device mapper, the SCSI device handlers, the transport drivers of the paths
            of the multipath maps that exist now
    wwid    the WWID of a multipath map holding / or /usr now: the boot script waits for these maps

The Python part is measured, not listed by hand: a subprocess of the interpreter the launcher names, with
the launcher's sys.path, imports the programs' modules (the daemon, `pymultipath -u` and the CLI actions a
boot may need), then every module those import inside functions (found in their source), and reports
sys.modules and the shared objects mapped into it. Of the standard library only what was imported goes
in (the `encodings` package whole: codecs are looked up by name at run time); a third-party package that
was imported goes in whole, since its own lazy imports cannot be seen from outside (a package may load
its modules on first use). Values with a newline are refused: the shell reads the list by line.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator

from pymultipathd.errors import PymultipathError

# The kernel modules every image gets: device mapper, multipath and its path selectors (a table naming one
# whose module is missing does not load: "unknown path selector type"), the SCSI device handlers (a map's
# paths need theirs attached before the first I/O), the SCSI disk driver and the test bed's controller.
BASE_MODULES = ("dm-mod", "dm-multipath", "dm-service-time", "dm-round-robin", "dm-queue-length",
                "dm-historical-service-time", "scsi_dh_alua", "scsi_dh_emc", "scsi_dh_rdac", "scsi_dh_hp_sw",
                "sd_mod", "virtio_scsi")
ISCSI_MODULES = ("iscsi_tcp",)

# The programs' entry modules. The CLI's actions come from its own tables (pymultipath.FLAGS, SUBCOMMANDS),
# less those that analyse offline and have no use at boot: they would bring pydantic (~10 MB).
ENTRIES = ("pymultipathd.cli.pymultipath", "pymultipathd.cli.pymultipathd", "pymultipathd.daemon.main",
           "pymultipathd.cli.persist_cmd")
# The boot script turns the link watch off (--no-linkwatch): the initramfs daemon runs for seconds, and the
# root's daemon watches links after. The watch itself is ours (daemon/rtnl.py) and costs next to nothing.
OFFLINE = ("pymultipathd.cli.classify_cmd", "pymultipathd.cli.verify_cmd", "pymultipathd.cli.manpages",
           "pymultipathd.cli.compat_install", "pymultipathd.cli.launcher", "pymultipathd.initrd")
# stdlib modules imported on paths the probe does not walk (time.strptime, the thread pool of to_thread)
EXTRA_STDLIB = ("_strptime", "concurrent.futures.thread", "logging.handlers", "ctypes.util")
# Imported, but only under `try: ... except ImportError`: asyncio takes ssl if it is there. Nothing here
# speaks TLS, and ssl brings libssl and libcrypto (about 6 MB).
DROP = ("ssl", "_ssl")
# libraries opened with ctypes on first use (pyudev: libudev, at its first Context)
CTYPES_LIBS = {"pyudev": ["udev"]}

PROBE = r"""
import ast, importlib, json, os, pkgutil, sys
paths, entries, offline, extra, ctypes_libs, drop = json.loads(sys.argv[1])
sys.path += paths
for d in drop:  # as if absent: `import ssl` raises ImportError, as it will in the image
    sys.modules[d] = None
import pymultipathd.cli.pymultipath as cli
wanted = list(entries) + ["pymultipathd.cli." + m for m, _ in cli.FLAGS.values()]
wanted += ["pymultipathd.cli." + m for m in cli.SUBCOMMANDS.values()] + list(extra)
def excluded(name):
    return any(name == o or name.startswith(o + ".") for o in offline)
def imports_of(module):
    # every import statement of the module's source, those inside functions too, and import_module("x")
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return []
    with open(path, "rb") as f:
        tree = ast.parse(f.read())
    found = []  # (name, whether it may be a name inside a module rather than a module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, False))
            found += [(node.module + "." + a.name, True) for a in node.names]
        elif isinstance(node, ast.Call):
            # import_module("x"), or the function handed on with its argument: to_thread(import_module, "x")
            args = [node.func, *node.args]
            for i, a in enumerate(args[:-1]):
                b = args[i + 1]
                named = getattr(a, "attr", getattr(a, "id", ""))
                if named == "import_module" and isinstance(b, ast.Constant) and isinstance(b.value, str):
                    found.append((b.value, False))
    return found
failed = {}
done = set()
wanted = [(n, False) for n in wanted]
while wanted:
    name, maybe = wanted.pop()
    if name in done or excluded(name):
        continue
    done.add(name)
    try:
        importlib.import_module(name)
    except Exception as e:  # an optional dependency (systemd-python) may be absent
        if not maybe:
            failed[name] = f"{type(e).__name__}: {e}"
        continue
    for n in list(sys.modules):
        if n.startswith("pymultipathd") and n not in done and not excluded(n):
            done.add(n)
            wanted += imports_of(sys.modules[n])
    wanted += imports_of(sys.modules[name]) if name.startswith("pymultipathd") else []
# libraries a package opens with ctypes when first used, not on import: open them, so they show as mapped
import ctypes, ctypes.util
for module, libs in ctypes_libs.items():
    if module in sys.modules:
        for lib in libs:
            found = ctypes.util.find_library(lib)
            if found:
                ctypes.CDLL(found)
            else:
                failed["lib" + lib] = "ctypes.util.find_library found nothing"
# third-party packages go in whole: import their submodules too, for the stdlib modules those need
third = set()
stdlib = os.path.dirname(os.__file__)
def is_stdlib(f):
    parts = f.split(os.sep)
    return f.startswith(stdlib + os.sep) and "site-packages" not in parts and "dist-packages" not in parts
for n, m in list(sys.modules.items()):
    f = getattr(m, "__file__", None)
    if f and not n.startswith("pymultipathd") and not is_stdlib(f):
        third.add(n.split(".")[0])
for top in sorted(third):
    pkg = sys.modules.get(top)
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), top + ".", onerror=lambda n: None):
        if "test" in info.name.split(".")[-1]:
            continue
        try:
            importlib.import_module(info.name)
        except Exception:
            pass
modules = {}
for n, m in list(sys.modules.items()):
    if m is None:
        continue
    f = getattr(m, "__file__", None)
    if f:
        modules[n] = [f, getattr(m, "__cached__", None)]
    elif getattr(m, "__path__", None) is not None:
        modules[n] = [None, None]
with open("/proc/self/maps") as f:
    mapped = sorted({line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6
                     and ".so" in line.split(None, 5)[5] and line.split(None, 5)[5].startswith("/")})
print(json.dumps({"modules": modules, "mapped": mapped, "failed": failed, "third": sorted(third),
                  "stdlib": stdlib, "executable": sys.executable, "prefix": sys.prefix,
                  "base_prefix": sys.base_prefix, "cache_tag": sys.implementation.cache_tag}))
"""


class ManifestError(PymultipathError):
    """What the manifest cannot be made without; the message names the file or program."""


def launcher_python(text: str) -> tuple[str, list[str]]:
    """(the interpreter, the sys.path entries) of a launcher pymultipathd.cli.launcher wrote."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#!"):
        raise ManifestError("not a launcher: no #! line")
    words = lines[0][2:].split()
    paths: list[str] | None = None
    for line in lines:
        if line.startswith("sys.path += "):
            value = ast.literal_eval(line[len("sys.path += "):])
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                paths = value
    if not words or paths is None:
        raise ManifestError("not a launcher: no interpreter or no sys.path line")
    return words[0], paths


def probe(python: str, paths: list[str], timeout: float = 300.0) -> dict:
    """Run the probe in `python` with `paths` added to sys.path; its report."""
    arg = json.dumps([paths, list(ENTRIES), list(OFFLINE), list(EXTRA_STDLIB), CTYPES_LIBS, list(DROP)])
    try:
        done = subprocess.run([python, "-IS", "-c", PROBE, arg], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ManifestError(f"{python}: cannot run the import probe: {e}") from None
    if done.returncode != 0:
        raise ManifestError(f"{python}: the import probe failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def _tree_files(top: str, cache_tag: str) -> Iterator[str]:
    """Every file below `top`, compiled caches only of this interpreter."""
    for d, dirs, files in os.walk(top):
        dirs[:] = sorted(x for x in dirs if x not in ("tests", "test"))
        for f in sorted(files):
            if os.path.basename(d) == "__pycache__" and f".{cache_tag}." not in f:
                continue
            yield os.path.join(d, f)


def _is_stdlib(path: str, stdlib: str) -> bool:
    parts = path.split(os.sep)
    return path.startswith(stdlib + os.sep) and "site-packages" not in parts and "dist-packages" not in parts


def python_items(report: dict, package_site: str | None = None) -> list[tuple[str, str]]:
    """The interpreter, the standard library's modules imported, the imported third-party packages whole,
    our package whole (data files such as config/hwtable.conf with it), the shared objects mapped."""
    items: list[tuple[str, str]] = [("exec", report["executable"])]
    if report["prefix"] != report["base_prefix"]:  # a venv's interpreter finds its home through this
        cfg = os.path.join(os.path.dirname(os.path.dirname(report["executable"])), "pyvenv.cfg")
        if os.path.isfile(cfg):
            items.append(("file", cfg))
    stdlib = report["stdlib"]
    tag = report["cache_tag"]
    tops: dict[str, str] = {}
    for name, (path, cached) in sorted(report["modules"].items()):
        if path is None:
            continue
        top = name.split(".")[0]
        if _is_stdlib(path, stdlib):
            if path.endswith(".so"):
                items.append(("exec", path))
                continue
            items.append(("file", path))
            if cached and os.path.isfile(cached):
                items.append(("file", cached))
        elif top == "pymultipathd" or top in report["third"]:
            root = report["modules"].get(top, [None])[0]
            if root is not None:
                tops[top] = os.path.dirname(root) if os.path.basename(root).startswith("__init__.") else root
    # the encodings package whole: a codec is imported by name when first used (bytes.decode("latin-1"))
    enc = os.path.join(stdlib, "encodings")
    items += [("file", f) for f in _tree_files(enc, tag)]
    for _top, where in sorted(tops.items()):
        if os.path.isdir(where):
            for f in _tree_files(where, tag):
                items.append(("exec" if f.endswith(".so") else "file", f))
        else:
            items.append(("exec" if where.endswith(".so") else "file", where))
    for lib in report["mapped"]:
        items.append(("exec", lib))
    if any("ctypes" == n for n in report["modules"]):
        # ctypes.util.find_library (pyudev finds libudev with it) runs `/sbin/ldconfig -p`
        items.append(("exec", "/sbin/ldconfig"))
    seen: set[tuple[str, str]] = set()
    out = []
    for kind, value in items:
        if (kind, value) not in seen:
            seen.add((kind, value))
            out.append((kind, value))
    return out


# ------------------------------------------------------------------------------------------- sysfs

def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return None


def multipath_maps(sysfs: str) -> dict[str, str]:
    """dm-N -> WWID of every multipath map (dm/uuid "mpath-WWID")."""
    out = {}
    block = os.path.join(sysfs, "block")
    for name in sorted(os.listdir(block)) if os.path.isdir(block) else []:
        uuid = _read(os.path.join(block, name, "dm", "uuid"))
        if uuid and uuid.startswith("mpath-"):
            out[name] = uuid[len("mpath-"):]
    return out


def _slaves(sysfs: str, dev: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(sysfs, "block", dev, "slaves")))
    except OSError:
        return []


def drivers_of(sysfs: str, dev: str) -> list[str]:
    """The modules of the drivers bound along a block device's device path (sd_mod, virtio_scsi,
    virtio_pci, mpt3sas, nvme, ...), from the device up to the bus: what must be loaded to see it."""
    here = os.path.realpath(os.path.join(sysfs, "block", dev, "device"))
    top = os.path.realpath(os.path.join(sysfs, "devices"))
    found: list[str] = []
    while here.startswith(top + os.sep):
        module = os.path.join(here, "driver", "module")
        if os.path.islink(module):
            name = os.path.basename(os.readlink(module))
            if name not in found:
                found.append(name)
        here = os.path.dirname(here)
    return found


def transport_modules(sysfs: str) -> list[str]:
    """The drivers of every path of every multipath map, and iscsi_tcp when iSCSI sessions exist."""
    found: list[str] = []
    for dm in multipath_maps(sysfs):
        for slave in _slaves(sysfs, dm):
            found += [m for m in drivers_of(sysfs, slave) if m not in found]
    sessions = os.path.join(sysfs, "class", "iscsi_session")
    if os.path.isdir(sessions) and os.listdir(sessions):
        found += [m for m in ISCSI_MODULES if m not in found]
    return found


def _below(sysfs: str, dev: str, depth: int = 0) -> Iterator[str]:
    """`dev` and every block device under it (LVM on multipath: the LV's slave is the map)."""
    yield dev
    if depth < 8:
        for s in _slaves(sysfs, dev):
            yield from _below(sysfs, s, depth + 1)


def root_wwids(sysfs: str, mounts: Iterable[str] = ("/", "/usr")) -> list[str]:
    """WWIDs of the multipath maps holding the file systems at `mounts` now."""
    maps = multipath_maps(sysfs)
    out: list[str] = []
    for mount in mounts:
        try:
            st = os.stat(mount)
        except OSError:
            continue
        link = os.path.join(sysfs, "dev", "block", f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
        if not os.path.exists(link):
            continue
        dev = os.path.basename(os.path.realpath(link))
        out += [maps[d] for d in _below(sysfs, dev) if d in maps and maps[d] not in out]
    return out


def kernel_items(sysfs: str) -> list[tuple[str, str]]:
    mods = list(BASE_MODULES) + [m for m in transport_modules(sysfs) if m not in BASE_MODULES]
    return [("module", m) for m in mods] + [("wwid", w) for w in root_wwids(sysfs)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pymultipathd.initrd.manifest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launcher", required=True, help="the installed `pymultipath` launcher")
    ap.add_argument("--sysfs", default="/sys", help="where sysfs is (default /sys)")
    ap.add_argument("--no-python", action="store_true", help="the kernel part only")
    ns = ap.parse_args(argv)
    items: list[tuple[str, str]] = []
    try:
        if not ns.no_python:
            try:
                with open(ns.launcher, encoding="utf-8") as f:
                    python, paths = launcher_python(f.read(65536))
            except OSError as e:
                raise ManifestError(f"{ns.launcher}: cannot read: {e.strerror or e}") from None
            except (ManifestError, ValueError, SyntaxError) as e:
                raise ManifestError(f"{ns.launcher}: {e}") from None
            report = probe(python, paths)
            for name, why in sorted(report["failed"].items()):
                print(f"manifest: {name} not importable, left out: {why}", file=sys.stderr)
            items += python_items(report)
        items += kernel_items(ns.sysfs)
    except ManifestError as e:
        print(f"manifest: {e}", file=sys.stderr)
        return 1
    for kind, value in items:
        if "\n" in value or "\t" in value:
            print(f"manifest: {value!r}: a newline or tab in a name; left out", file=sys.stderr)
            continue
        sys.stdout.write(f"{kind}\t{value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
