"""`pymultipath -l` / `-ll`: the multipath topology, from the daemon if it runs, else from DM and sysfs.

-ll asks the daemon (its checker states are current) or, without a daemon, runs each path's checker once;
-l never sends I/O to the paths: checker states show as "undef", like upstream's -l.
"""

from __future__ import annotations

import asyncio
import os
import sys

from pymultipathd import locations


def _from_daemon(map_name: str | None) -> str | None:
    from pymultipathd.control import client

    try:
        reply = client.send(f"show map {map_name} topology" if map_name else "show topology", timeout=10)
    except client.ClientError:
        return None
    return None if reply.startswith("fail") else reply


async def _offline(check: bool, map_name: str | None) -> str:
    from pymultipathd.config import load_config
    from pymultipathd.control import format as fmt
    from pymultipathd.daemon.core import Core
    from pymultipathd.dm.ioctl import Control
    from pymultipathd.paths import facts

    core = Core(load_config(), Control())
    try:
        await core.adopt_maps()
        for m in core.state.maps.values():
            for dev_t in (s.dev for g in (m.table.groups if m.table else ()) for s in g.paths):
                link = os.path.join(locations.sysfs(), "dev", "block", dev_t)
                dev = os.path.basename(os.path.realpath(link)) if os.path.exists(link) else None
                if dev is None:
                    continue
                try:
                    core.state.paths[dev] = core._path_from_facts(facts.path_facts(dev, core.config), None)
                except facts.FactsError:
                    continue
            core._relink(m)
        if check:
            for p in core.state.paths.values():
                res = await core.runner.check(os.path.join("/dev", p.dev), p.checker, 10.0)
                p.chk_state = res.state
        maps = [m for m in core.state.maps.values() if map_name in (None, m.name, m.wwid, m.dm_dev)]
        return "".join(fmt.topology(core.state, m) for m in sorted(maps, key=lambda m: m.name))
    finally:
        await core.close()


def main(argv: list[str]) -> int:
    check = argv[0] == "-ll"
    map_name = argv[1] if len(argv) > 1 else None
    out = _from_daemon(map_name) if check else None
    if out is None:
        from pymultipathd.dm.errors import DMError

        try:
            out = asyncio.run(_offline(check, map_name))
        except DMError as err:
            print(f"pymultipath: {err}", file=sys.stderr)
            return 1
    sys.stdout.write(out)
    return 0
