"""`pymultipath -f MAP [--deferred]`, `-F`, `holders MAP`: flush maps, or explain who holds them."""

from __future__ import annotations

import sys

USAGE = """\
usage: pymultipath -f MAP [--deferred]   remove a multipath map (and its partition maps) if nothing holds it
       pymultipath -F [--deferred]       the same for every multipath map
       pymultipath holders MAP           list what holds MAP open and how to release each holder
       pymultipath -f MAP --error-io [--yes]
                                         last resort for a LUN gone for good: make every I/O of MAP fail
                                         (queued writes are lost) and remove it once its holders let go

A map in use is never removed: the report lists every holder (mounts, in any mount namespace; lazy unmounts;
partition maps; LVM and other stacked devices; processes and virtual machines with it open; swap; queued I/O)
top-most first, with the command that releases it. --deferred asks the kernel to remove the map when its
last holder closes it.

--error-io is for processes hung in D state on I/O queued for a LUN that will not come back (what
`dmsetup remove -f` and `dmsetup clear` do by hand): it prints what will be lost, asks for the map's name
on a terminal (--yes instead, in scripts), replaces the table with an error target so the stuck I/O fails,
and removes the map as soon as nothing holds it. Data not yet on the LUN is lost.
"""


def _confirmed(name: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        sys.stderr.write(f"pymultipath: --error-io on {name} loses data: add --yes to confirm when not run "
                         "from a terminal\n")
        return False
    try:
        answer = input(f"Type the map's name ({name}) to make all its I/O fail and remove it: ")
    except EOFError:
        answer = ""
    if answer.strip() != name:
        sys.stderr.write(f"pymultipath: not confirmed; {name} is untouched\n")
        return False
    return True


def _remove_retries() -> int:
    """remove_retries from the configuration; a configuration that does not load costs the retries, never
    the flush (a map must stay removable while multipath.conf is being fixed)."""
    from pymultipathd.config import load_config
    from pymultipathd.errors import PymultipathError

    try:
        return int(load_config().resolve("remove_retries") or 0)  # type: ignore[call-overload]
    except PymultipathError as err:
        sys.stderr.write(f"pymultipath: {err}; flushing without remove_retries\n")
        return 0


def main(argv: list[str]) -> int:
    from pymultipathd import flush
    from pymultipathd.dm import maps as dmmaps
    from pymultipathd.dm.ioctl import Control
    from pymultipathd.errors import PymultipathError

    action, rest = argv[0], argv[1:]
    flags = {a for a in rest if a in ("--deferred", "--error-io", "--yes")}
    rest = [a for a in rest if a not in flags]
    deferred, error_io = "--deferred" in flags, "--error-io" in flags
    if any(a.startswith("-") for a in rest) or (action in ("-f", "holders") and len(rest) != 1) \
            or (action == "-F" and rest):
        sys.stderr.write(USAGE)
        return 2
    if (error_io or "--yes" in flags) and (action != "-f" or deferred or not error_io):
        sys.stderr.write("pymultipath: --error-io goes with -f MAP alone (one map, no --deferred); --yes "
                         "only with --error-io\n" + USAGE)
        return 2
    try:
        ctl = Control()
        if action == "-F":
            names = [d.name for d in ctl.list_devices()
                     if (d.uuid if d.uuid is not None else ctl.info(d.name).uuid)
                     .startswith(dmmaps.MPATH_UUID_PREFIX)]
        else:
            names = [rest[0].removeprefix("/dev/mapper/")]
        if action == "holders":
            from pymultipathd import holders
            from pymultipathd.paths import holderscan

            snap = holderscan.snapshot(ctl, names[0])
            sys.stdout.write(holders.explain(snap, holders.find_holders(snap)))
            return 0
        if error_io:
            from pymultipathd import holders
            from pymultipathd.paths import holderscan

            snap = holderscan.snapshot(ctl, names[0])
            sys.stderr.write(flush.loss_summary(snap, holders.find_holders(snap)))
            if not _confirmed(names[0], "--yes" in flags):
                return 1
            res = flush.error_out(ctl, names[0])
            sys.stdout.write(res.report)
            return 0
        retries = _remove_retries()

        def waiting(n: int, of: int, held_by: list) -> None:
            sys.stderr.write(f"pymultipath: {name}: in use ({held_by[0].what}"
                             f"{f' and {len(held_by) - 1} more' if len(held_by) > 1 else ''}); "
                             f"looking again in {flush.HELD_RETRY_DELAY:g} s ({n} of {of}, remove_retries)\n")

        failed = 0
        for name in names:
            res = flush.flush(ctl, name, deferred=deferred, retries=retries, on_retry=waiting)
            (sys.stdout if res.removed or res.deferred else sys.stderr).write(res.report)
            failed += not (res.removed or res.deferred)
        return 1 if failed else 0
    except PymultipathError as err:  # no such map, no device mapper, a table it cannot read: it says which
        print(f"pymultipath: {err}", file=sys.stderr)
        return 1
