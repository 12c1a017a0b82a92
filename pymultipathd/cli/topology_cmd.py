"""`pymultipath -l` / `-ll`: the multipath topology, from the daemon if it runs, else from DM and sysfs.

-ll asks the daemon (its checker states are current) or, without a daemon, runs each path's checker once;
-l never sends I/O to the paths: checker states show as "undef", like upstream's -l.
"""

from __future__ import annotations

import os
import sys


def _from_daemon(map_name: str | None) -> str | None:
    from pymultipathd.control import client

    try:
        reply = client.send(f"show map {map_name} topology" if map_name else "show topology", timeout=10)
    except client.ClientError:
        return None
    return None if reply.startswith("fail") else reply


def _offline(check: bool, map_name: str | None) -> str:
    from pymultipathd import topology
    from pymultipathd.config import load_config
    from pymultipathd.control import format as fmt
    from pymultipathd.dm.ioctl import Control
    from pymultipathd.paths import checkers

    config = load_config()
    state, problems = topology.read_all(Control(), config)
    for name, err in problems:
        print(f"pymultipath: {name}: {err}", file=sys.stderr)
    maps = [m for m in state.maps.values() if map_name in (None, m.name, m.wwid, m.dm_dev)]
    if check:
        wanted = {d for m in maps for d in m.paths}
        for p in state.paths.values():
            if p.dev in wanted:
                # each path's own deadline (checker_timeout, else its SCSI timeout), as the daemon's
                timeout = topology.check_timeout(topology.resolver(config, p.wwid, p.facts.vendor,
                                                                   p.facts.product), p)
                res = checkers.check_now(os.path.join("/dev", p.dev), p.checker, timeout)
                p.chk_state = res.state
    return "".join(fmt.topology(state, m) for m in sorted(maps, key=lambda m: m.name))


def main(argv: list[str]) -> int:
    check = argv[0] == "-ll"
    map_name = argv[1] if len(argv) > 1 else None
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
