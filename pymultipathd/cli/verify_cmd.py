"""`pymultipath verify [--initrd FILE] [--root DIR] [--json] [--fix]`: do the root and an initramfs image
classify paths alike?

Reads both sides' classification inputs (pymultipathd/initrd/inputs.py), compares them with the present
paths' facts (pymultipathd/initrd/compare.py) and prints each difference with its consequence. Exit 0 when
they agree, 1 when they differ, 2 when the image or the root cannot be read (or a usage error), 3 when --fix
could not rebuild the image. --fix runs the distribution's generator, never without being asked, then
verifies again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

from pymultipathd.classify import PathFacts
from pymultipathd.errors import PymultipathError
from pymultipathd.initrd import archive, compare, inputs

AGREE, DIFFER, UNREADABLE, FIX_FAILED = 0, 1, 2, 3
GENERATOR_TIMEOUT = 900  # seconds: dracut under emulation takes minutes

DESCRIPTION = """\
Compare what decides a path's classification in the running root with what an initramfs image holds:
multipath.conf and conf.d (blacklist and exceptions, find_multipaths, force_wwids, uid attributes, other
keywords), the wwids and bindings files, failed markers, our udev rules (and multipath-tools' competing
ones), our helper program and its classifier code, kernel modules (device mapper, SCSI device handlers,
transport drivers) and kernel command-line options (nompath, multipath=off, rd.multipath=0,
modprobe.blacklist, rd.driver.blacklist). Each difference is printed with its consequence: the present paths
the initramfs would classify otherwise at boot, with both verdicts and the rules that decide them.

exit status: 0 they agree; 1 they differ; 2 the image or the root cannot be read (or a usage error);
3 --fix could not rebuild the image
"""


def clean(text: str, *, controls: bool = True) -> str:
    """`text` safe to print: bytes that were not UTF-8 (surrogate escapes) as \\xNN, and with `controls`
    control characters too (a name in an image could otherwise forge lines or drive the terminal)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        elif controls and (o < 0x20 or 0x7F <= o < 0xA0):
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{o:02x}"))
        else:
            out.append(ch)
    return "".join(out)


def _clean_json(value: object) -> object:
    """Every string of a JSON value valid Unicode (json escapes control characters itself)."""
    if isinstance(value, str):
        return clean(value, controls=False)
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    return value


def _error(text: str) -> None:
    print(clean(f"pymultipath verify: {text}"), file=sys.stderr)


def kernel_of(image: str) -> str | None:
    """The kernel an image is for, from its name as initramfs-tools (initrd.img-KVER) and dracut
    (initramfs-KVER.img) write it; None for any other name."""
    base = os.path.basename(image)
    if base.startswith("initrd.img-") and len(base) > len("initrd.img-"):
        return base[len("initrd.img-"):]
    if base.startswith("initramfs-") and base.endswith(".img") and not base.endswith("kdump.img"):
        return base[len("initramfs-"):-len(".img")] or None
    return None


def image_candidates(kernel: str, boot: str = "/boot") -> list[str]:
    """The images of `kernel` as Debian's initramfs-tools and dracut name them, in the order tried."""
    return [os.path.join(boot, f"initrd.img-{kernel}"), os.path.join(boot, f"initramfs-{kernel}.img")]


def generator(image: str, kernel: str) -> list[str] | None:
    """The command that rebuilds `image` for `kernel` (None: no generator for it is installed)."""
    base = os.path.basename(image)
    debian = base == f"initrd.img-{kernel}" and os.path.dirname(os.path.abspath(image)) == "/boot"
    if debian and shutil.which("update-initramfs"):
        return ["update-initramfs", "-u", "-k", kernel]
    if shutil.which("dracut"):  # Debian's dracut package writes initrd.img-KVER too
        return ["dracut", "-f", image, kernel]
    if shutil.which("mkinitramfs"):
        return ["mkinitramfs", "-o", image, kernel]
    return None


def running_root(root: str) -> bool:
    """Is `root` the running system's? The generators build the image from that one only."""
    return os.path.realpath(root) == "/"


def _paths(args: argparse.Namespace, root: inputs.Inputs) -> tuple[list[PathFacts], str | None]:
    """The present paths' facts (a snapshot with --facts), and a note if there are none to be had."""
    if args.facts:
        from pymultipathd.cli.classify_cmd import load_facts

        return list(load_facts(args.facts).paths), None
    from pymultipathd.paths import facts

    try:
        return list(facts.world_all(root.config).paths), None
    except (OSError, PymultipathError) as e:
        return [], f"the present paths could not be read ({e}): consequences are not computed"


def _outcome(o: compare.Outcome) -> dict[str, str]:
    return {"decision": o.decision.value, "rule": o.rule, "words": o.words}


def _consequence(c: compare.Consequence) -> dict[str, object]:
    return {"dev": c.dev, "root": _outcome(c.root), "initramfs": _outcome(c.initramfs)}


def document(report: compare.Report, root: str, image: str, kernel: str | None) -> dict[str, object]:
    """The --json document (format 1: keys are only ever added)."""
    return {
        "format": 1, "root": root, "initrd": image, "kernel": kernel, "agree": report.agree,
        "differences": _differences(report),
        "paths": [_consequence(c) for c in report.paths],
        "warnings": list(report.warnings),
    }


def _differences(report: compare.Report) -> list[dict[str, object]]:
    return [{"kind": d.kind.value, "subject": d.subject, "root": d.root, "initramfs": d.initramfs,
             "explanation": d.explanation, "note": d.note,
             "consequences": [_consequence(c) for c in d.consequences]} for d in report.differences]


def render(report: compare.Report) -> list[str]:
    """The human report: a line per difference, its consequences indented, then a summary."""
    lines = []
    for d in report.differences:
        lines.append(f"{d.kind.value}: {d.explanation}")
        lines.append(f"  root: {d.root}")
        lines.append(f"  initramfs: {d.initramfs}")
        for c in d.consequences:
            lines.append(f"  {c.text()}")
        if d.note:
            lines.append(f"  {d.note}")
        elif not d.consequences:
            lines.append("  no present path affected")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    changed = [c for c in report.paths if c.root.decision != c.initramfs.decision]
    if report.agree:
        lines.append(f"agree: the initramfs classifies the {len(report.paths)} present path(s) as the root "
                     "does")
    else:
        kinds = ", ".join(dict.fromkeys(d.kind.value for d in report.differences))
        lines.append(f"differ: {len(report.differences)} difference(s) ({kinds}); at boot "
                     f"{len(changed)} of {len(report.paths)} present path(s) would be classified otherwise"
                     + (":" if changed else ""))
        lines += [f"  {c.text()}" for c in changed]
    return lines


def _read(args: argparse.Namespace, image: str, kernel: str) -> tuple[inputs.Inputs, inputs.Inputs]:
    limits = archive.Limits(max_total=args.max_size) if args.max_size is not None else None
    root = inputs.read_root(args.root, kernel=kernel)
    return root, inputs.read_initrd(image, kernel=kernel, limits=limits)


def _verify(args: argparse.Namespace, image: str,
            kernel: str) -> tuple[int, compare.Report | None, list[str]]:
    try:
        root, initrd = _read(args, image, kernel)
        paths, note = _paths(args, root)
    except (archive.ArchiveError, inputs.InputsError, PymultipathError) as e:
        _error(str(e))
        return UNREADABLE, None, []
    report = compare.compare(root, initrd, paths)
    return (AGREE if report.agree else DIFFER), report, [note] if note else []


def _fix(command: list[str] | None) -> tuple[int, str]:
    """Run the generator, its output to stderr (stdout is the report's), in a session of its own so a
    timeout ends everything it started. (AGREE or FIX_FAILED, what happened)."""
    if command is None:
        return FIX_FAILED, ("no initramfs generator found (update-initramfs, dracut, mkinitramfs); rebuild "
                            "the image by hand")
    print(clean(f"running: {' '.join(command)}"), file=sys.stderr)
    try:
        target: int = sys.stderr.fileno()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        target = subprocess.PIPE  # stderr is no file (a test's capture): copied below
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=target, start_new_session=True)
    except OSError as e:
        return FIX_FAILED, f"{command[0]}: {e.strerror or e}"
    try:
        out, _ = proc.communicate(timeout=GENERATOR_TIMEOUT)
    except BaseException as e:  # the timeout, or ^C: the generator and its children go too
        _kill_group(proc)
        if not isinstance(e, subprocess.TimeoutExpired):
            raise
        return FIX_FAILED, f"{command[0]} took longer than {GENERATOR_TIMEOUT} s; stopped"
    if out:
        sys.stderr.write(out.decode("utf-8", "replace"))
    if proc.returncode != 0:
        return FIX_FAILED, f"{command[0]} failed (exit {proc.returncode})"
    return AGREE, "rebuilt"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.communicate()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pymultipath verify", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--initrd", metavar="FILE", help="the image (default: the running kernel's, "
                        "/boot/initrd.img-KVER, else /boot/initramfs-KVER.img)")
    parser.add_argument("--root", metavar="DIR", default="/", help="the root file system (default /)")
    parser.add_argument("--kver", metavar="KVER", help="kernel version (default: the one the image's name "
                        "says, else the running kernel's)")
    parser.add_argument("--facts", metavar="FILE", help="the present paths from a snapshot (pymultipath "
                        "snapshot) instead of this system")
    parser.add_argument("--json", action="store_true", help="a JSON document instead of text")
    parser.add_argument("--fix", action="store_true", help="when they differ, rebuild the image with the "
                        "distribution's generator (update-initramfs or dracut; printed first), then verify "
                        "again")
    parser.add_argument("--max-size", metavar="BYTES", type=_positive, help="refuse images that unpack to "
                        f"more (default {archive.Limits().max_total})")
    args = parser.parse_args(list(argv[1:]))
    image = args.initrd
    named = kernel_of(image) if image is not None else None
    if named is not None and args.kver is not None and named != args.kver:
        _error(f"{image} is named for kernel {named}, --kver says {args.kver}: give one that agrees")
        return UNREADABLE
    kernel = args.kver or named or os.uname().release
    known = image is None or args.kver is not None or named is not None  # which kernel the image is for
    if image is None:
        tried = image_candidates(kernel)
        image = next((p for p in tried if os.path.exists(p)), None)
        if image is None:
            _error(f"no initramfs image for kernel {kernel}: tried {', '.join(tried)} (name one with "
                   "--initrd)")
            return UNREADABLE
        if not args.json:
            print(clean(f"image: {image} (the running kernel's)" if args.kver is None else f"image: {image}"))
    rc, report, notes = _verify(args, image, kernel)
    if report is None:
        return rc
    command = generator(image, kernel) if known else None
    fix: dict[str, object] | None = None
    if args.fix and rc == DIFFER:
        fix = {"command": command, "differences_before": _differences(report)}
        if not running_root(args.root):
            why, fixed = "--fix rebuilds the running system's image; not with --root", FIX_FAILED
        elif not known:
            why, fixed = (f"which kernel {image} is for is not in its name: give --kver", FIX_FAILED)
        else:
            if not args.json:
                _show(args, report, image, kernel, notes)
            fixed, why = _fix(command)
        fix["result"], fix["message"] = ("rebuilt" if fixed == AGREE else "failed"), why
        if fixed != AGREE:
            _error(why)
            if args.json:
                _show(args, report, image, kernel, notes, fix)
            return fixed
        rc, report, notes = _verify(args, image, kernel)
        if report is None:
            return rc
    _show(args, report, image, kernel, notes, fix)
    if rc == DIFFER and not args.fix and not args.json:
        how = (" ".join(command) if command else "your distribution's initramfs generator" if known else
               f"your distribution's initramfs generator, for the kernel {image} is for (give --kver to see "
               "the command)")
        print(clean(f"to rebuild the image: {how} (or pymultipath verify --fix)"))
    return rc


def _show(args: argparse.Namespace, report: compare.Report, image: str, kernel: str,
          notes: list[str], fix: dict[str, object] | None = None) -> None:
    if args.json:
        doc = document(report, args.root, image, kernel)
        doc["warnings"] = [*notes, *report.warnings]
        if fix is not None:
            doc["fix"] = fix
        json.dump(_clean_json(doc), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for n in notes:
        print(clean(f"note: {n}"))
    print("\n".join(clean(line) for line in render(report)))
