"""`pymultipath -f MAP [--deferred]`, `-F`, `holders MAP`: flush maps, or explain who holds them."""

from __future__ import annotations

import sys

USAGE = """\
usage: pymultipath -f MAP [--deferred]   remove a multipath map (and its partition maps) if nothing holds it
       pymultipath -F [--deferred]       the same for every multipath map
       pymultipath holders MAP           list what holds MAP open and how to release each holder

A map in use is never removed: the report lists every holder (mounts, in any mount namespace; lazy unmounts;
partition maps; LVM and other stacked devices; processes and virtual machines with it open; swap; queued I/O)
top-most first, with the command that releases it. --deferred asks the kernel to remove the map when its
last holder closes it.
"""


def main(argv: list[str]) -> int:
    from pymultipathd import flush
    from pymultipathd.dm import maps as dmmaps
    from pymultipathd.dm.errors import DMError
    from pymultipathd.dm.ioctl import Control

    action, rest = argv[0], argv[1:]
    deferred = "--deferred" in rest
    rest = [a for a in rest if a != "--deferred"]
    if any(a.startswith("-") for a in rest) or (action in ("-f", "holders") and len(rest) != 1) \
            or (action == "-F" and rest):
        sys.stderr.write(USAGE)
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
        failed = 0
        for name in names:
            res = flush.flush(ctl, name, deferred=deferred)
            (sys.stdout if res.removed or res.deferred else sys.stderr).write(res.report)
            failed += not (res.removed or res.deferred)
        return 1 if failed else 0
    except DMError as err:  # no such map, no device mapper: the message names which
        print(f"pymultipath: {err}", file=sys.stderr)
        return 1
