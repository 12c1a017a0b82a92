"""`pymultipath -l` / `-ll`: the multipath topology, from the daemon if it runs, else from DM and sysfs.

-ll asks the daemon (its checker states are current) or, without a daemon, runs each path's checker once and
then reads the priorities of the paths that answered; -l never sends I/O to the paths: checker states show
as "undef" and priorities as 0, like upstream's -l. The optional argument
names a map as upstream's does: its name, WWID, uuid, dm-N, major:minor or /dev path, or one of its paths
(sdb, /dev/sdb, 8:16); a device in no multipath map shows nothing.
"""

from __future__ import annotations

import functools
import os
import sys


def _from_daemon(map_name: str | None) -> str | None:
    from pymultipathd.control import client

    try:
        reply = client.send(f"show map {map_name} topology" if map_name else "show topology", timeout=10)
    except client.ClientError:
        return None
    return None if reply.startswith("fail") else reply


def map_of_path(ident: str) -> str | None:
    """The name of the multipath map that holds the disk `ident` (kernel name or major:minor), from sysfs;
    None if it is no disk or no multipath map holds it."""
    from pymultipathd import locations, sysread
    from pymultipathd.dm.maps import MPATH_UUID_PREFIX

    sysfs = locations.sysfs()
    if ":" in ident:  # major:minor
        link = os.path.join(sysfs, "dev", "block", ident)
        if not os.path.exists(link):
            return None
        ident = os.path.basename(os.path.realpath(link))
    if "/" in ident or ident in ("", ".", ".."):
        return None
    holders = os.path.join(sysfs, "class", "block", ident, "holders")
    try:
        names = sorted(os.listdir(holders))
    except OSError:
        return None
    for dm in names:
        dm_dir = os.path.join(sysfs, "class", "block", dm, "dm")
        if (sysread.read_text(os.path.join(dm_dir, "uuid")) or "").startswith(MPATH_UUID_PREFIX):
            return sysread.read_text(os.path.join(dm_dir, "name")) or None
    return None


def _offline(check: bool, map_name: str | None) -> str:
    from pymultipathd import mapmaker, topology
    from pymultipathd.config import load_config
    from pymultipathd.control import format as fmt
    from pymultipathd.dm.ioctl import Control
    from pymultipathd.paths import checkers

    config = load_config()
    state, problems = topology.read_all(Control(), config)
    for name, err in problems:
        print(f"pymultipath: {name}: {err}", file=sys.stderr)
    if map_name is None:
        maps = list(state.maps.values())
    else:
        m = state.find_map(map_name)
        maps = [m] if m is not None else []
    # every path of the maps shown at once: N hung paths cost one deadline, not N
    shown = {d: state.paths[d] for m in maps for d in m.paths if d in state.paths}
    if check:
        calls = {}
        for d, p in shown.items():
            # each path's own deadline (checker_timeout, else its SCSI timeout), as the daemon's
            timeout = topology.check_timeout(topology.resolver(config, p.wwid, p.facts.vendor,
                                                               p.facts.product, p.facts.revision), p)
            calls[d] = (functools.partial(checkers.check_now, os.path.join("/dev", d), p.checker, timeout),
                        timeout + 1.0)
        results = mapmaker.side_by_side(calls, "check")
        for d, p in shown.items():
            res = results.get(d)
            if isinstance(res, checkers.CheckResult):
                p.chk_state = res.state
            elif res is None:  # still waiting in the kernel past its deadline
                p.chk_state = checkers.TIMEOUT
            else:
                print(f"pymultipath: {d}: checker {p.checker} failed: {res}", file=sys.stderr)
        # then the priorities, of the paths that answered their check (one that did not would only cost
        # its prioritizer's deadline too); -l sends no I/O at all and shows prio 0, as upstream's
        due = {d: p for d, p in shown.items() if p.prio_due and p.usable}
        for line in mapmaker.read_priorities(due, config):
            print(f"pymultipath: {line}", file=sys.stderr)
    return "".join(fmt.topology(state, m) for m in sorted(maps, key=lambda m: m.name))


def main(argv: list[str]) -> int:
    from pymultipathd import mapmaker

    check = argv[0] == "-ll"
    map_name = None
    if len(argv) > 1:
        ident = mapmaker.identify(argv[1])
        map_name = map_of_path(ident) or ident  # a path names the map that holds it
    out = _from_daemon(map_name) if check else None
    if out is None:
        from pymultipathd.dm.errors import DMError

        try:
            out = _offline(check, map_name)
        except DMError as err:
            print(f"pymultipath: {err}", file=sys.stderr)
            return 1
    sys.stdout.write(out)
    return 0
