"""The initramfs fingerprint: what the initramfs classified paths with, compared by the root's daemon.

The initramfs integration (initramfs/ in the source tree) computes a fingerprint of the image's
classification inputs when it builds the image (`python -m pymultipathd.initrd.fingerprint --root DESTDIR`:
the image's files are fixed from then on, so no Python start is spent on it at boot), and its boot script
copies it to RUN_DIR/initramfs-fingerprint.json when it starts the daemon there. After switching root, the
daemon computes the same fingerprint of the root's inputs and compares (`check_initramfs_fingerprint`): a
difference means the next boot's initramfs classifies otherwise than the booted system, so the warning names
each difference and the command that rebuilds the image. Nothing is reclassified.

The format is JSON, `format` 1 (keys are only ever added):

    {"format": 1, "stage": "initramfs"|"root", "kernel": "...",     # not compared
     "config": {"find_multipaths": "strict", "defaults": {kw: value}, "overrides": {kw: value},
                "blacklist": {"devnode": [...], "wwid": [...], "property": [...], "protocol": [...],
                              "device": [[vendor, product], ...]},
                "blacklist_exceptions": {...}, "devices": DIGEST, "multipaths": DIGEST},
     "config_error": null | "why the configuration did not load",
     "wwids": {"count": N, "digest": DIGEST, "list": [...] (absent beyond LIST_MAX)},
     "bindings": {"count": N, "digest": DIGEST, "map": {alias: wwid} (absent beyond LIST_MAX)},
     "rules": DIGEST | null,        # 62-pymultipath.rules as udev would read it; null: none
     "code": DIGEST | null}         # the classifying modules (inputs.CLASSIFY_FILES)

DIGEST is a sha256 in hex. `compute` and `compare` are pure; the rest reads files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from enum import Enum

from pymultipathd import locations, store
from pymultipathd.config.model import BlacklistSpec, Config
from pymultipathd.errors import PymultipathError
from pymultipathd.record import record

FORMAT = 1
FILE_NAME = locations.INITRAMFS_FINGERPRINT  # in locations.run_dir()
MAX_FILE = 1 << 20  # bytes read of a fingerprint file; ours are a few kilobytes (LIST_MAX bounds the lists)
LIST_MAX = 2000  # wwids or bindings listed by value; beyond, only their count and digest
FIX = "pymultipath verify --fix (or update-initramfs -u / dracut -f)"


class Kind(Enum):
    FORMAT = "format"  # the two fingerprints cannot be compared
    CONFIG = "config"
    WWIDS = "wwids"
    BINDINGS = "bindings"
    RULES = "rules"
    CODE = "code"


@record(frozen=True)
class Difference:
    kind: Kind
    subject: str  # "find_multipaths", "defaults: polling_interval", "wwids", ...
    initramfs: str  # what the initramfs had, as said to a person
    root: str

    def __str__(self) -> str:
        return f"{self.subject}: initramfs {self.initramfs}, root {self.root}"


class FingerprintError(PymultipathError):
    """A fingerprint file that is not one (bad JSON, wrong shape); the message says what is wrong."""


# ------------------------------------------------------------------------------------------- computing

def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def _plain(value: object) -> object:
    """A typed configuration value as JSON (enums by value; anything else unknown by its repr, which is
    stable for the records and enums the configuration holds)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (frozenset, set)) else items
    return repr(value)


def _spec(spec: BlacklistSpec) -> dict[str, object]:
    return {"devnode": list(spec.devnode), "wwid": list(spec.wwid), "property": list(spec.property),
            "protocol": list(spec.protocol), "device": [[d.vendor, d.product] for d in spec.device]}


def config_summary(config: Config) -> dict[str, object]:
    """What of a loaded configuration decides a classification, as JSON; file names and warnings are left
    out (the image names its files otherwise). Small sections by value, so a difference can be named."""
    return {
        "find_multipaths": config.find_multipaths(),
        "defaults": _plain(config.defaults),
        "overrides": _plain(config.overrides),
        "blacklist": _spec(config.blacklist),
        "blacklist_exceptions": _spec(config.blacklist_exceptions),
        "devices": _digest(_plain(config.devices)),
        "multipaths": _digest(_plain(config.multipaths)),
    }


def _listing(values: Sequence[object] | Mapping[str, str], key: str) -> dict[str, object]:
    plain = _plain(values)
    out: dict[str, object] = {"count": len(values), "digest": _digest(plain)}
    if len(values) <= LIST_MAX:
        out[key] = plain
    return out


def compute(config: Config | None, wwids_text: str | None, rules_text: str | None, code_digest: str | None,
            *, bindings_text: str | None = None, config_error: str | None = None, stage: str = "root",
            kernel: str | None = None) -> dict[str, object]:
    """The fingerprint of one side's inputs (pure): its loaded configuration (None: it did not load,
    `config_error` says why), the wwids file's text (None: no file), our udev rules' text (None: none),
    the digest of the classifying code (inputs.fingerprint), the bindings file's text."""
    wwids = sorted(set(store.wwids_from_text(wwids_text or "", "wwids")))
    bindings = store.bindings_from_text(bindings_text or "", "bindings")
    return {
        "format": FORMAT,
        "stage": stage,
        "kernel": kernel,
        "config": config_summary(config) if config is not None else None,
        "config_error": config_error,
        "wwids": _listing(wwids, "list"),
        "bindings": _listing(dict(sorted(bindings.items())), "map"),
        "rules": hashlib.sha256(rules_text.encode("utf-8", "surrogateescape")).hexdigest()
        if rules_text is not None else None,
        "code": code_digest,
    }


# ------------------------------------------------------------------------------------------- comparing

def parse(text: str) -> dict[str, object]:
    """A fingerprint from its file's text. FingerprintError if it is not one of a format we read."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise FingerprintError(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise FingerprintError("not a JSON object")
    if data.get("format") != FORMAT:
        raise FingerprintError(f"format {data.get('format')!r}, expected {FORMAT}")
    for key, kinds in (("config", (dict, type(None))), ("wwids", (dict,)), ("bindings", (dict,)),
                       ("rules", (str, type(None))), ("code", (str, type(None)))):
        if not isinstance(data.get(key), kinds):
            raise FingerprintError(f"{key!r} missing or of the wrong type")
    return data


def _short(values: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def _say(value: object) -> str:
    if value is None:
        return "not set"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _config_diffs(image: dict[str, object], root: dict[str, object]) -> list[Difference]:
    out: list[Difference] = []
    if image.get("find_multipaths") != root.get("find_multipaths"):
        out.append(Difference(Kind.CONFIG, "find_multipaths", _say(image.get("find_multipaths")),
                              _say(root.get("find_multipaths"))))
    for section in ("defaults", "overrides"):
        a, b = _dict(image.get(section)), _dict(root.get(section))
        for kw in sorted(set(a) | set(b)):
            if kw != "find_multipaths" and a.get(kw) != b.get(kw):
                out.append(Difference(Kind.CONFIG, f"{section}: {kw}", _say(a.get(kw)), _say(b.get(kw))))
    for section in ("blacklist", "blacklist_exceptions"):
        a, b = _dict(image.get(section)), _dict(root.get(section))
        for what in sorted(set(a) | set(b)):
            ia, ib = a.get(what) or [], b.get(what) or []
            if ia != ib:
                ia_s = [_say(x) for x in ia] if isinstance(ia, list) else [_say(ia)]
                ib_s = [_say(x) for x in ib] if isinstance(ib, list) else [_say(ib)]
                out.append(Difference(Kind.CONFIG, f"{section}: {what}", _short(ia_s) or "none",
                                      _short(ib_s) or "none"))
    for section in ("devices", "multipaths"):
        if image.get(section) != root.get(section):
            out.append(Difference(Kind.CONFIG, f"{section} section", "one version", "another"))
    return out


def _set_diff(kind: Kind, image: dict[str, object], root: dict[str, object], key: str) -> list[Difference]:
    if image.get("digest") == root.get("digest"):
        return []
    a, b = image.get(key), root.get(key)
    if isinstance(a, list) and isinstance(b, list):
        only_image = sorted(set(map(str, a)) - set(map(str, b)))
        only_root = sorted(set(map(str, b)) - set(map(str, a)))
        return [Difference(kind, kind.value, f"only: {_short(only_image) or 'nothing'}",
                           f"only: {_short(only_root) or 'nothing'}")]
    if isinstance(a, dict) and isinstance(b, dict):
        aliases = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return [Difference(kind, f"{kind.value}: {alias}", _say(a.get(alias)), _say(b.get(alias)))
                for alias in aliases[:LIST_MAX]]
    return [Difference(kind, kind.value, f"{image.get('count')} entries", f"{root.get('count')} entries "
                       "(another list)")]


def compare(image: Mapping[str, object], root: Mapping[str, object]) -> list[Difference]:
    """What differs between the initramfs's fingerprint and the root's (pure; both as `parse` returns or
    `compute` makes them). Empty: they classify alike."""
    if image.get("format") != root.get("format"):
        return [Difference(Kind.FORMAT, "fingerprint format", _say(image.get("format")),
                           _say(root.get("format")))]
    out: list[Difference] = []
    ic, rc = image.get("config"), root.get("config")
    if isinstance(ic, dict) and isinstance(rc, dict):
        out += _config_diffs(ic, rc)
    elif ic != rc or image.get("config_error") != root.get("config_error"):
        out.append(Difference(Kind.CONFIG, "configuration",
                              "did not load" if ic is None else "loaded",
                              "did not load" if rc is None else "loaded"))
    out += _set_diff(Kind.WWIDS, _dict(image.get("wwids")), _dict(root.get("wwids")), "list")
    out += _set_diff(Kind.BINDINGS, _dict(image.get("bindings")), _dict(root.get("bindings")), "map")
    if image.get("rules") != root.get("rules"):
        out.append(Difference(Kind.RULES, "udev rules 62-pymultipath.rules",
                              "absent" if image.get("rules") is None else "one version",
                              "absent" if root.get("rules") is None else "another version"))
    if image.get("code") != root.get("code"):
        out.append(Difference(Kind.CODE, "classifying code", _code(image.get("code")),
                              _code(root.get("code"))))
    return out


def _code(digest: object) -> str:
    return f"digest {digest[:12]}" if isinstance(digest, str) else "absent"


# ------------------------------------------------------------------------------------------- the files

def of_tree(root: str, package: str | None, *, stage: str, kernel: str | None = None,
            locs: locations.Locations | None = None, config: Config | None = None) -> dict[str, object]:
    """The fingerprint of the file tree at `root` ("/" or an image being built), read at the programs'
    locations below it; `package`: the directory holding pymultipathd/ as seen inside the tree (None: not
    there); `config`: the configuration already loaded from it (None: load it here)."""
    from pymultipathd.initrd import inputs

    locs = locs or locations.current()
    tree = inputs.DirTree(root)
    error = None
    if config is None:
        _names, config, error = inputs.read_config(tree, locs)
    rules = next((r for r in inputs.rule_files(tree) if r.name == inputs.OUR_RULES), None)
    code = inputs.fingerprint(tree, os.path.relpath(package, "/")) if package else None
    return compute(config, tree.text(locs.wwids_file.lstrip("/")), rules.text if rules else None, code,
                   bindings_text=tree.text(locs.bindings_file.lstrip("/")), config_error=error, stage=stage,
                   kernel=kernel)


def _own_package() -> str:
    import pymultipathd

    return os.path.dirname(os.path.dirname(os.path.abspath(pymultipathd.__file__)))


def check_initramfs_fingerprint(config: Config, path: str | None = None) -> list[str]:
    """Warnings for the log and `show status`: the differences between what this boot's initramfs
    classified with (the file its boot script left in RUN_DIR) and the root's inputs now, and how to fix
    them. No file (not booted with our initramfs, or multipath off in it): nothing to say. Never raises
    for a bad file: that is a warning too."""
    path = path or locations.initramfs_fingerprint()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"initramfs fingerprint {path}: cannot read: {e.strerror or e}; not compared"]
    if len(data) > MAX_FILE:
        return [f"initramfs fingerprint {path}: larger than {MAX_FILE} bytes; not compared"]
    try:
        image = parse(data.decode("utf-8", errors="replace"))
    except FingerprintError as e:
        return [f"initramfs fingerprint {path}: {e}; not compared (rebuild the image: {FIX})"]
    try:
        root = of_tree("/", _own_package(), stage="root", config=config)
    except Exception as e:  # noqa: BLE001 - a start-up check: a failure is a warning, never a stopped daemon
        return [f"initramfs fingerprint: cannot read the root's inputs: {e}; not compared"]
    diffs = compare(image, root)
    if not diffs:
        return []
    head = (f"the initramfs of this boot classified paths with other inputs than the root ({len(diffs)} "
            f"difference{'s' if len(diffs) != 1 else ''}): the next boot will too until the image is "
            f"rebuilt: {FIX}")
    return [head] + [f"initramfs fingerprint: {d}" for d in diffs]


def main(argv: list[str] | None = None) -> int:
    """`python -m pymultipathd.initrd.fingerprint --root DESTDIR --package DIR [--kernel V] --output FILE`:
    the fingerprint of an image being built (the initramfs hook and dracut module run it)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pymultipathd.initrd.fingerprint", description=main.__doc__)
    ap.add_argument("--root", required=True, help="the image's staging directory")
    ap.add_argument("--package", help="the directory holding pymultipathd/ inside the image")
    ap.add_argument("--kernel", help="the kernel version the image is for (recorded, not compared)")
    ap.add_argument("--output", required=True, help="where to write it ('-': standard output)")
    ns = ap.parse_args(argv)
    locations.install(locations.Locations())  # the image's daemon runs with upstream's locations
    fp = of_tree(ns.root, ns.package, stage="initramfs", kernel=ns.kernel)
    text = json.dumps(fp, sort_keys=True, indent=1) + "\n"
    if ns.output == "-":
        sys.stdout.write(text)
        return 0
    tmp = f"{ns.output}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, ns.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
