"""Man pages pymultipath(8), pymultipathd(8), pympathpersist(8) and pymultipath.conf(5), generated from
what the programs themselves know: the keyword table, the daemon's option parser, the control-command
grammar and the `pymultipath` and `pympathpersist` usage texts. Generated at install time, so a page
cannot drift from the code.

    python -m pymultipathd.cli.manpages OUTDIR     writes OUTDIR/man8/*.8 and OUTDIR/man5/*.5
"""

from __future__ import annotations

import argparse
import os
import sys

DATE = "2026-11"
SOURCE = "pymultipathd"


def esc(text: str) -> str:
    """Roff-safe text: backslashes and hyphens escaped, a leading control character defused."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + out if out.startswith((".", "'")) else out


def _head(name: str, section: int, title: str) -> list[str]:
    return [f'.TH {name.upper()} {section} "{DATE}" "{SOURCE}" "{title}"', ".SH NAME",
            f"{esc(name)} \\- {esc(title)}"]


def _block(text: str) -> list[str]:
    """Preformatted lines (usage texts, command lists)."""
    return [".nf", *(esc(line) for line in text.rstrip("\n").splitlines()), ".fi"]


def _para(text: str) -> list[str]:
    return [".PP", esc(text)]


def daemon_page() -> str:
    from pymultipathd.control import grammar
    from pymultipathd.daemon import main

    parser = main.build_parser()
    lines = _head("pymultipathd", 8, "multipath daemon")
    options = [a for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"]
    synopsis = [f"[\\fB{esc(a.option_strings[0])}\\fR"
                + (f" \\fI{esc(str(a.metavar))}\\fR]" if a.metavar else "]") for a in options]
    lines += [".SH SYNOPSIS", ".B pymultipathd", " ".join(synopsis),
              ".br", ".B pymultipathd", ".I command words ...", ".br", ".B pymultipathd",
              ".BI \\-k command", "| \\fB\\-k\\fR"]
    lines += [".SH DESCRIPTION"]
    lines += _para("pymultipathd keeps device-mapper multipath maps right while paths come, go, fail and "
                   "return: it classifies every disk as pymultipath -u does, assembles maps, checks each "
                   "path, fails paths over and back per the configuration, and answers the control protocol "
                   "of upstream's multipathd, so its clients and scripts work unchanged. With a command (or "
                   "-k) it is the client of a running daemon instead.")
    lines += [".SH OPTIONS"]
    for a in parser._actions:
        if not a.option_strings:
            continue
        flag = ", ".join(a.option_strings)
        lines += [".TP", f".B {esc(flag)}" + (f" \\fI{esc(str(a.metavar))}\\fR" if a.metavar else ""),
                  esc(a.help or "")]
    lines += [".SH COMMANDS"]
    lines += _para("Sent over the control socket (@/org/kernel/linux/storage/multipathd and "
                   "/run/multipathd.socket). Keywords may be shortened to a unique prefix. Anyone may run "
                   "show and list commands; the others need root.")
    lines += _block(grammar.reference())
    lines += [".SH SIGNALS", ".TP", ".B SIGHUP", "reload the configuration (kept on error)", ".TP",
              ".B SIGTERM, SIGINT", "stop; maps stay in place"]
    lines += [".SH FILES", ".TP", ".I /etc/multipath.conf", "configuration, see pymultipath.conf(5)",
              ".TP", ".I /etc/multipath/wwids", "WWIDs of the maps made", ".TP", ".I /etc/multipath/bindings",
              "user_friendly_names aliases"]
    lines += [".SH SEE ALSO", ".BR pymultipath (8),", ".BR pymultipath.conf (5),", ".BR dmsetup (8)"]
    return "\n".join(lines) + "\n"


def tool_page() -> str:
    from pymultipathd.cli import pymultipath

    lines = _head("pymultipath", 8, "classify paths and manage multipath maps")
    globals_ = "[\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fB\\-\\-config\\-dir\\fR \\fIDIR\\fR]"
    lines += [".SH SYNOPSIS", ".B pymultipath", globals_ + " [\\fB\\-v\\fR \\fIN\\fR] [\\fB\\-d\\fR] "
              "[\\fB\\-r\\fR] [\\fB\\-q\\fR] [\\fB\\-p\\fR \\fIPOLICY\\fR] [\\fB\\-b\\fR \\fIFILE\\fR] "
              "[\\fB\\-B\\fR] [\\fIDEV\\fR|\\fIWWID\\fR|\\fIMAP\\fR ...]", ".br", ".B pymultipath",
              globals_ + " \\fIACTION\\fR"]
    lines += [".SH DESCRIPTION"]
    lines += _para("pymultipath is the udev helper that decides whether a disk is a multipath path (the same "
                   "classifier as the daemon's), and the administrator's tool for the configuration, the "
                   "wwids file and the maps. Without an action it makes the maps of the given devices (or of "
                   "every device) as the daemon would; with pymultipathd running it asks the daemon instead, "
                   "which stays the one writer of its maps.")
    lines += [".SH ACTIONS"]
    lines += _block(pymultipath.USAGE.split("\n\n", 1)[1])
    lines += [".SH EXIT STATUS", "0 on success; 1 when the action failed (or, for \\-c, the device is not a "
              "path; or, for making maps, the command line makes no sense, as upstream); 2 for a usage error "
              "of another action. verify: 0 when the root and the initramfs image agree, 1 when they differ, "
              "2 when the image or the root cannot be read, 3 when \\-\\-fix could not rebuild the image."]
    lines += [".SH SEE ALSO", ".BR pymultipathd (8),", ".BR pymultipath.conf (5)"]
    return "\n".join(lines) + "\n"


def conf_page() -> str:
    from pymultipathd.config import keywords

    lines = _head("pymultipath.conf", 5, "configuration of pymultipathd")
    lines += [".SH SYNOPSIS", ".I /etc/multipath.conf", "and", ".I /etc/multipath/conf.d/*.conf"]
    lines += [".SH DESCRIPTION"]
    lines += _para("The file format of upstream's multipath.conf: sections (defaults, blacklist, "
                   "blacklist_exceptions, devices, multipaths, overrides) holding \"keyword value\" lines; "
                   "# and ! start comments. A bad line is an error naming the file and line, and a running "
                   "daemon keeps its previous configuration. pymultipath -t prints the effective "
                   "configuration.")
    lines += [".SH KEYWORDS"]
    for kw in keywords.KEYWORDS:
        if kw.synonym_of:
            continue
        sections = ", ".join(sorted(kw.sections))
        default = kw.default if not callable(kw.default) else "(derived)"
        lines += [".TP", f".B {esc(kw.name)}", esc(kw.doc or "")]
        lines += [".br", esc(f"Value: {kw.type.describe}. Default: {default}. Sections: {sections}.")]
        unsupported = getattr(kw, "unsupported", None)
        if unsupported:
            lines += [".br", esc(f"No effect in pymultipathd: {unsupported}.")]
        if kw.deprecated:
            lines += [".br", esc(f"Deprecated: {kw.deprecated}.")]
    lines += [".SH SEE ALSO", ".BR pymultipathd (8),", ".BR pymultipath (8)"]
    return "\n".join(lines) + "\n"


def persist_page() -> str:
    from pymultipathd.cli import persist_cmd

    lines = _head("pympathpersist", 8, "persistent reservations on multipath maps")
    lines += [".SH SYNOPSIS", ".B pympathpersist", "\\fB\\-\\-in\\fR|\\fB\\-\\-out\\fR \\fIACTION\\fR "
              "[\\fIOPTIONS\\fR] \\fIDEVICE\\fR"]
    lines += [".SH DESCRIPTION"]
    lines += _para("pympathpersist sends SCSI-3 persistent reservation commands to a multipath map, with the "
                   "options, output and exit codes of upstream's mpathpersist. A key is registered through "
                   "every usable path of the map (each path is its own I_T nexus); a reservation is made "
                   "through one. After a registration the daemon is told, and registers the map's "
                   "reservation_key through paths that join the map or come back, but only while the key is "
                   "still registered on the logical unit: a host another node has fenced off stays fenced.")
    lines += [".SH OPTIONS"]
    lines += _block(persist_cmd.USAGE.split("\n\n", 2)[2])
    lines += [".SH FILES", ".TP", ".I /etc/multipath/prkeys",
              "keys of maps whose reservation_key is \"file\" (one \"0x<key> <wwid>\" line per map)"]
    lines += [".SH SEE ALSO", ".BR pymultipathd (8),", ".BR pymultipath.conf (5),", ".BR sg_persist (8)"]
    return "\n".join(lines) + "\n"


PAGES = {"man8/pymultipathd.8": daemon_page, "man8/pymultipath.8": tool_page,
         "man8/pympathpersist.8": persist_page, "man5/pymultipath.conf.5": conf_page}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pymultipathd.cli.manpages",
                                 description="write the man pages under OUTDIR (man5/, man8/)")
    ap.add_argument("outdir")
    opts = ap.parse_args(argv)
    for rel, make in PAGES.items():
        path = os.path.join(opts.outdir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(make())
        os.replace(path + ".tmp", path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
