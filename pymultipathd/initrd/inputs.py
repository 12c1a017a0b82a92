"""The classification inputs of a file tree: the running root (a directory) or an initramfs image.

What `pymultipath -u` and the daemon decide with, besides the devices themselves: multipath.conf and
conf.d/*.conf (parsed by the project's own loader, from text, under names that say where they came from, so a
file:line in a message points into the image), the wwids and bindings files, failed markers an image would
carry, our udev rules and the competing ones of multipath-tools, our helper program and the code it runs, the
kernel modules, and the kernel command line. Everything is read at the same locations the programs use
(pymultipathd.locations), below the tree's root. compare.py does the judging; this module only reads.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from enum import Enum

from pymultipathd import locations, store
from pymultipathd.config.load import parse_files
from pymultipathd.config.model import Config, ConfigError
from pymultipathd.errors import PymultipathError
from pymultipathd.initrd import archive
from pymultipathd.record import record

MAX_READ = 64 << 20  # a file of the root read here; the ones that matter are a few kilobytes
MAX_PASSES = 3  # readings of an image: a file reached through a link the names did not show needs another

OUR_RULES = "62-pymultipath.rules"
# multipath-tools' rules: with ours they classify the same disks twice, with another classifier
COMPETING_RULES = ("11-dm-mpath.rules", "56-multipath.rules", "40-multipath.rules")
# udev's order of precedence: a file in an earlier directory hides one of the same name in a later one
RULES_DIRS = ("etc/udev/rules.d", "run/udev/rules.d", "usr/local/lib/udev/rules.d", "lib/udev/rules.d",
              "usr/lib/udev/rules.d")
LAUNCHERS = ("usr/local/bin/pymultipath", "usr/local/sbin/pymultipath", "usr/bin/pymultipath",
             "usr/sbin/pymultipath", "bin/pymultipath", "sbin/pymultipath")

# The helper's identity is a digest of the modules that decide a classification, not the package version:
# the version (pyproject's) is not bumped for each change, so an image built before an upgrade carries other
# code under the same version, and the digest tells exactly that. Modules that only do I/O for other
# commands are left out, so an unrelated change does not call for a rebuild.
CLASSIFY_FILES = (
    "classify.py", "blacklist.py", "store.py", "sysread.py", "locations.py", "udevlink.py",
    "paths/facts.py", "cli/udev_helper.py", "cli/pymultipath.py",
    "config/__init__.py", "config/ere.py", "config/hwtable.py", "config/hwtable.conf",
    "config/keywords.py", "config/load.py", "config/model.py", "config/parser.py",
)


class Stage(Enum):
    ROOT = "root"
    INITRAMFS = "initramfs"


class InputsError(PymultipathError):
    """A file of the tree that exists but cannot be read; the message names it and the reason."""


@record(frozen=True)
class RuleFile:
    name: str  # "62-pymultipath.rules"
    path: str  # where it was found, "/lib/udev/rules.d/62-pymultipath.rules"
    digest: str  # sha256 of the content
    text: str


@record(frozen=True)
class Helper:
    """Our udev helper as a tree holds it."""

    front: str | None = None  # the program our rules run (IMPORT{program}), if the rules are there
    front_present: bool = False
    launcher: str | None = None  # the `pymultipath` found (LAUNCHERS)
    package: str | None = None  # the directory holding pymultipathd/
    fingerprint: str | None = None  # sha256 over CLASSIFY_FILES
    version: str | None = None  # the installed distribution's version, if its metadata is there


@record(frozen=True)
class Inputs:
    origin: str  # "/" or the image's path
    stage: Stage
    config_files: tuple[str, ...] = ()
    config: Config | None = None  # None: config_error says why
    config_error: str | None = None
    wwids: frozenset[str] = frozenset()
    bindings: tuple[tuple[str, str], ...] = ()  # (alias, wwid), file order
    failed_markers: frozenset[str] = frozenset()
    rules: tuple[RuleFile, ...] = ()  # ours and the competing ones found
    helper: Helper = Helper()
    kernel: str | None = None
    modules: frozenset[str] | None = None  # None: not known
    cmdline: tuple[str, ...] | None = None  # root: /proc/cmdline; image: what it adds (etc/cmdline.d)
    notes: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------- the trees

class Tree:
    """Files below a root, by path relative to it ("etc/multipath.conf"); links resolved inside it."""

    origin = "/"

    def name(self, path: str) -> str:
        """How a file of this tree is named in messages."""
        raise NotImplementedError

    def read(self, path: str) -> bytes | None:
        """The content of a regular file; None if there is none. InputsError if it cannot be read."""
        raise NotImplementedError

    def listdir(self, path: str) -> list[str] | None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8", errors="surrogateescape")


class DirTree(Tree):
    def __init__(self, root: str) -> None:
        self.root = self.origin = root

    def _real(self, path: str) -> str | None:
        def readlink(p: str) -> str | None:
            try:
                return os.readlink(os.path.join(self.root, p))
            except OSError:
                return None

        inside = archive.resolve_inside(archive.normalize(path), readlink)
        return None if inside is None else os.path.join(self.root, inside)

    def name(self, path: str) -> str:
        return os.path.join(self.root, archive.normalize(path))

    def read(self, path: str) -> bytes | None:
        real = self._real(path)
        if real is None:
            return None
        try:
            # O_NONBLOCK: a FIFO must not block the open; only a regular file is read
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                data = f.read(MAX_READ + 1)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            raise InputsError(f"{self.name(path)}: cannot read: {e.strerror or e}") from None
        if len(data) > MAX_READ:
            raise InputsError(f"{self.name(path)}: larger than {MAX_READ} bytes; not read")
        return data

    def listdir(self, path: str) -> list[str] | None:
        real = self._real(path)
        try:
            return sorted(os.listdir(real)) if real is not None else None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise InputsError(f"{self.name(path)}: cannot read directory: {e.strerror or e}") from None

    def exists(self, path: str) -> bool:
        real = self._real(path)
        return real is not None and os.path.exists(real)


class ImageTree(Tree):
    def __init__(self, image: archive.Image) -> None:
        self.image = image
        self.origin = image.source
        self.missed: dict[int, str] = {}  # inode -> a name read whose content was not held (read_initrd)

    def name(self, path: str) -> str:
        return f"{self.image.source}:/{archive.normalize(path)}"

    def read(self, path: str) -> bytes | None:
        entry = self.image.lookup(path)
        if entry is None or entry.kind is not archive.Kind.FILE:
            return None
        if entry.data is None and entry.size:
            self.missed.setdefault(entry.inode, self.name(path))  # read_initrd reads again, holding it
            return b""
        return entry.data or b""

    def listdir(self, path: str) -> list[str] | None:
        return self.image.listdir(path)

    def exists(self, path: str) -> bool:
        return self.image.lookup(path) is not None

    def files_below(self, path: str) -> Iterator[str]:
        real = self.image.resolve(path)
        if real is None:
            return
        prefix = real + "/"
        for name, entry in self.image.entries.items():
            if name.startswith(prefix) and entry.kind is archive.Kind.FILE:
                yield name


def _rel(path: str) -> str:
    return archive.normalize(path)


# ------------------------------------------------------------------------------------------- the pieces

def read_config(tree: Tree, locs: locations.Locations) -> tuple[tuple[str, ...], Config | None, str | None]:
    sources: list[tuple[str, str]] = []
    main = tree.text(_rel(locs.config_file))
    if main is not None:
        sources.append((tree.name(_rel(locs.config_file)), main))
    confdir = _rel(locs.config_dir)
    for n in tree.listdir(confdir) or []:
        if n.endswith(".conf"):
            text = tree.text(f"{confdir}/{n}")
            if text is not None:
                sources.append((tree.name(f"{confdir}/{n}"), text))
    names = tuple(name for name, _ in sources)
    try:
        return names, parse_files(sources), None
    except ConfigError as e:
        return names, None, str(e)


def _lines(text: str | None) -> list[str]:
    lines = (text or "").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _stores(tree: Tree, locs: locations.Locations) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
    # store's own line parsers, so a line means here what it means to the programs
    wwids_at = _rel(locs.wwids_file)
    wwids = frozenset(store.wwids_from_text(tree.text(wwids_at) or "", tree.name(wwids_at)))
    bindings_at = _rel(locs.bindings_file)
    bindings = store.bindings_from_text(tree.text(bindings_at) or "", tree.name(bindings_at))
    return wwids, tuple(bindings.items())


def rule_files(tree: Tree) -> tuple[RuleFile, ...]:
    found: dict[str, RuleFile] = {}
    for d in RULES_DIRS:
        for name in (OUR_RULES, *COMPETING_RULES):
            if name in found:
                continue
            data = tree.read(f"{d}/{name}")
            if data is not None:
                found[name] = RuleFile(name, "/" + f"{d}/{name}", hashlib.sha256(data).hexdigest(),
                                       data.decode("utf-8", errors="surrogateescape"))
    return tuple(found[n] for n in sorted(found))


def front_of(rules_text: str) -> str | None:
    """The program our rules run to classify (the first word of IMPORT{program}="...")."""
    for line in rules_text.splitlines():
        line = line.strip()
        if line.startswith("IMPORT{program}=\""):
            words = line.split('"', 2)[1].split()
            return words[0] if words else None
    return None


def _launcher_paths(text: str) -> list[str]:
    """The sys.path entries a launcher (pymultipathd/cli/launcher.py) adds."""
    for line in text.splitlines():
        if line.startswith("sys.path += "):
            try:
                value = ast.literal_eval(line[len("sys.path += "):])
            except (ValueError, SyntaxError):
                return []
            return [str(v) for v in value] if isinstance(value, list) else []
    return []


def fingerprint(tree: Tree, package: str) -> str:
    """sha256 over CLASSIFY_FILES below `package` (the directory holding pymultipathd/)."""
    h = hashlib.sha256()
    for rel in CLASSIFY_FILES:
        data = tree.read(f"{package}/pymultipathd/{rel}")
        digest = hashlib.sha256(data).hexdigest() if data is not None else "missing"
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def _version(tree: Tree, package: str) -> str | None:
    for n in tree.listdir(package) or []:
        if n.startswith("pymultipathd-") and n.endswith(".dist-info"):
            for line in (tree.text(f"{package}/{n}/METADATA") or "").splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return None


def _helper(tree: Tree, rules: tuple[RuleFile, ...], own_package: str | None) -> Helper:
    ours = next((r for r in rules if r.name == OUR_RULES), None)
    front = front_of(ours.text) if ours is not None else None
    launcher = next((p for p in LAUNCHERS if tree.exists(p)), None)
    candidates = _launcher_paths(tree.text(launcher) or "") if launcher else []
    package = next((_rel(c) for c in candidates if tree.exists(f"{_rel(c)}/pymultipathd/classify.py")), None)
    if package is None and isinstance(tree, ImageTree):
        package = next((n[:-len("/pymultipathd/classify.py")] for n in tree.image.entries
                        if n.endswith("/pymultipathd/classify.py")), None)
    if package is None and own_package is not None:
        package = _rel(own_package)
    return Helper(front=front, front_present=front is not None and tree.exists(_rel(front)),
                  launcher="/" + launcher if launcher else None,
                  package="/" + package if package is not None else None,
                  fingerprint=fingerprint(tree, package) if package is not None else None,
                  version=_version(tree, package) if package is not None else None)


def module_name(filename: str) -> str | None:
    """The module a file of lib/modules/ is ("dm-multipath.ko.zst" -> "dm_multipath"), else None."""
    base = filename.rsplit("/", 1)[-1]
    stem, dot, _ = base.partition(".ko")
    return stem.replace("-", "_") if dot and stem else None


def _builtin(text: str | None) -> set[str]:
    return {m for line in _lines(text) if (m := module_name(line.strip())) is not None}


def _image_modules(tree: ImageTree,
                   kernel: str | None) -> tuple[str | None, frozenset[str] | None, str | None]:
    """(kernel version, modules of the image for it, a note)."""
    versions = tree.listdir("lib/modules") or []
    if kernel not in versions:
        if len(versions) != 1:
            held = ", ".join(versions) or "no kernel"
            return kernel, None, f"the image holds modules for {held}, not for {kernel}: modules not compared"
        kernel = versions[0]
    base = f"lib/modules/{kernel}"
    found = {m for n in tree.files_below(base) if (m := module_name(n)) is not None}
    found |= _builtin(tree.text(f"{base}/modules.builtin"))
    return kernel, frozenset(found), None


def _root_modules(tree: Tree, proc: str, kernel: str) -> frozenset[str] | None:
    try:
        with open(os.path.join(proc, "modules"), encoding="utf-8", errors="replace") as f:
            loaded = {line.split()[0] for line in f if line.split()}
    except OSError:
        return None
    return frozenset(loaded | _builtin(tree.text(f"lib/modules/{kernel}/modules.builtin")))


def _image_cmdline(tree: Tree) -> tuple[str, ...]:
    """What the image adds to the kernel's command line (dracut reads etc/cmdline and etc/cmdline.d/*.conf
    in the initramfs as if they were on it)."""
    texts = [tree.text("etc/cmdline")]
    texts += [tree.text(f"etc/cmdline.d/{n}") for n in tree.listdir("etc/cmdline.d") or []
              if n.endswith(".conf")]
    words: list[str] = []
    for text in texts:
        for line in _lines(text):
            words += line.split("#", 1)[0].split()
    return tuple(words)


# ------------------------------------------------------------------------------------------- the entries

def read_tree(tree: Tree, stage: Stage, locs: locations.Locations | None = None, *,
              kernel: str | None = None, modules: frozenset[str] | None = None,
              cmdline: tuple[str, ...] | None = None, own_package: str | None = None,
              notes: tuple[str, ...] = ()) -> Inputs:
    """The inputs of `tree`, read at the programs' locations (default: the installed ones)."""
    locs = locs or locations.current()
    files, config, error = read_config(tree, locs)
    wwids, bindings = _stores(tree, locs)
    rules = rule_files(tree)
    failed: frozenset[str] = frozenset()
    if stage is Stage.INITRAMFS:  # the root's markers are this boot's and go with it; an image's come back
        failed = frozenset(tree.listdir(_rel(locs.failed_wwids_dir)) or ())
    return Inputs(origin=tree.origin, stage=stage, config_files=files, config=config, config_error=error,
                  wwids=wwids, bindings=bindings, failed_markers=failed, rules=rules,
                  helper=_helper(tree, rules, own_package), kernel=kernel, modules=modules, cmdline=cmdline,
                  notes=notes)


def read_root(root: str = "/", locs: locations.Locations | None = None, *, proc: str | None = None,
              kernel: str | None = None) -> Inputs:
    """The inputs of the running root (or of the root file system mounted at `root`). Modules (loaded or
    built in) and the command line come from `proc` (default: the programs' /proc for "/", ROOT/proc for
    another root); the package is the one this command runs from when no launcher names one."""
    locs = locs or locations.current()
    kernel = kernel or os.uname().release
    tree = DirTree(root)
    if proc is None:
        proc = locs.proc if os.path.realpath(root) == "/" else os.path.join(root, "proc")
    cmdline: tuple[str, ...] | None
    try:
        with open(os.path.join(proc, "cmdline"), encoding="utf-8", errors="replace") as f:
            cmdline = tuple(f.read().split())
    except OSError:
        cmdline = None
    own = None
    if os.path.realpath(root) == "/":
        import pymultipathd

        own = os.path.dirname(os.path.dirname(os.path.abspath(pymultipathd.__file__)))
    return read_tree(tree, Stage.ROOT, locs, kernel=kernel, modules=_root_modules(tree, proc, kernel),
                     cmdline=cmdline, own_package=own)


def wanted(locs: locations.Locations) -> Callable[[str], bool]:
    """Which files of an image to hold in memory: exactly those read_tree reads, by the name they are
    created at. One reached only through a link (a symlinked wwids file, a hard link whose data came with
    another name) is found when read and held by a further reading (read_initrd)."""
    exact = {_rel(p) for p in (locs.config_file, locs.wwids_file, locs.bindings_file)}
    exact |= {f"{d}/{n}" for d in RULES_DIRS for n in (OUR_RULES, *COMPETING_RULES)}
    exact |= {*LAUNCHERS, "etc/cmdline"}
    in_dirs = {_rel(locs.config_dir), "etc/cmdline.d"}  # their *.conf
    package = tuple(f"/pymultipathd/{rel}" for rel in CLASSIFY_FILES)

    def keep(name: str) -> bool:
        parent, _, base = name.rpartition("/")
        return (name in exact or (parent in in_dirs and base.endswith(".conf"))
                or (base == "modules.builtin" and fnmatch.fnmatchcase(parent, "*lib/modules/*"))
                or f"/{name}".endswith(package)
                or (base == "METADATA" and fnmatch.fnmatchcase(parent, "*/pymultipathd-*.dist-info")))

    return keep


def read_initrd(path: str, locs: locations.Locations | None = None, *, kernel: str | None = None,
                limits: archive.Limits | None = None) -> Inputs:
    """The inputs of the initramfs image `path`. ArchiveError if it cannot be read (within one deadline,
    Limits.deadline, for all its readings)."""
    locs = locs or locations.current()
    limits = limits or archive.Limits()
    until = time.monotonic() + limits.deadline
    also: set[int] = set()
    for _ in range(MAX_PASSES):
        image = archive.read_image(path, limits, keep=wanted(locs), also=also, until=until)
        tree = ImageTree(image)
        kver, modules, note = _image_modules(tree, kernel or os.uname().release)
        notes = tuple(image.warnings) + ((note,) if note else ())
        found = read_tree(tree, Stage.INITRAMFS, locs, kernel=kver, modules=modules,
                          cmdline=_image_cmdline(tree), notes=notes)
        if not tree.missed.keys() - also:
            if not tree.missed:
                return found
            break  # asked for and still not held: the image changed between readings
        also |= tree.missed.keys()
    raise InputsError(f"{next(iter(tree.missed.values()))}: its content could not be held while reading the "
                      "image (it changed while being read?)")
