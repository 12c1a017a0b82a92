"""Control commands: what each upstream command does to the daemon, and what it answers.

Replies follow upstream: output text, "" for success without output (sent as "ok"), CommandFailed for a
refusal (sent as "fail\\n<reason>"). Reads are answered from DaemonState without waiting on device I/O.

A handler that never waits is a plain function: the server answers it within the read that brought the
request, with no task, timer or further turn of the loop (a `show` answered that way costs half as much as
one run as a task, and monitoring asks often). Handlers that act on maps or files are coroutines, run as
tasks under the command timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pymultipathd import store
from pymultipathd.control import format as fmt
from pymultipathd.control.grammar import Command
from pymultipathd.control.server import CommandFailed
from pymultipathd.daemon.core import CommandError
from pymultipathd.dm.errors import DMError
from pymultipathd.policy.state import DaemonState, MapState, PathState

if TYPE_CHECKING:
    from pymultipathd.daemon.main import Daemon

log = logging.getLogger("pymultipathd")
Handler = Callable[["Daemon", Command], "str | Awaitable[str]"]
HANDLERS: dict[tuple[str, ...], Handler] = {}


def handles(*keywords: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[tuple(keywords)] = fn
        return fn
    return deco


def answer(daemon: Daemon, cmd: Command) -> str | Awaitable[str]:
    """The reply of a handler that never waits, else the coroutine that makes it (the server's dispatch)."""
    handler = HANDLERS.get(cmd.keywords)
    if handler is None:
        raise CommandFailed(f"{cmd.name}: not supported by pymultipathd")
    try:
        out = handler(daemon, cmd)
    except CommandError as err:
        raise CommandFailed(str(err)) from None
    return out if isinstance(out, str) else _worded(out)


async def _worded(reply: Awaitable[str]) -> str:
    try:
        return await reply
    except CommandError as err:
        raise CommandFailed(str(err)) from None


async def dispatch(daemon: Daemon, cmd: Command) -> str:
    """`answer`, awaited."""
    out = answer(daemon, cmd)
    return out if isinstance(out, str) else await out


def _map(state: DaemonState, cmd: Command) -> MapState:
    m = state.find_map(cmd.params["map"])
    if m is None:
        raise CommandFailed("device not found")
    return m


def _path(state: DaemonState, cmd: Command) -> PathState:
    p = state.find_path(cmd.params["path"])
    if p is None:
        raise CommandFailed("device not found")
    return p


# --- show ---------------------------------------------------------------------------------------------

@handles("show", "paths")
def show_paths(d: Daemon, cmd: Command) -> str:
    return fmt.show_paths(d.core.state)


@handles("show", "paths", "format")
def show_paths_format(d: Daemon, cmd: Command) -> str:
    return fmt.show_paths(d.core.state, cmd.params["format"])


@handles("show", "paths", "raw", "format")
def show_paths_raw(d: Daemon, cmd: Command) -> str:
    return fmt.show_paths(d.core.state, cmd.params["format"], raw=True)


@handles("show", "path")
def show_path(d: Daemon, cmd: Command) -> str:
    p = _path(d.core.state, cmd)
    return fmt.show_paths(d.core.state, only=[p])


@handles("show", "status")
def show_status(d: Daemon, cmd: Command) -> str:
    counts: dict[str, int] = {}
    for p in d.core.state.listed_paths():
        word = fmt.CHK_WORDS.get(p.chk_state, p.chk_state)
        counts[word] = counts.get(word, 0) + 1
    lines = ["path checker states:"] + [f"{k:<20}{v}" for k, v in sorted(counts.items())]
    lines += ["", f"paths: {len(d.core.state.listed_paths())}", f"maps: {len(d.core.state.maps)}",
              f"busy: {d.core.busy}", f"uevents: {d.core.stats['uevents']}",
              f"batches: {d.core.stats['batches']}", f"map creates: {d.core.stats['creates']}",
              f"map reloads: {d.core.stats['reloads']}"]
    if d.initramfs_warnings:  # this boot's initramfs classified with other inputs (pymultipath verify)
        lines += ["", *d.initramfs_warnings]
    return "\n".join(lines) + "\n"


@handles("show", "daemon")
def show_daemon(d: Daemon, cmd: Command) -> str:
    return f"pid {os.getpid()} {'configure' if d.core.busy else 'running'}\n"


@handles("show", "maps")
def show_maps(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, settings_of=d.core.settings_of)


@handles("show", "maps", "status")
def show_maps_status(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, "%n %F %Q %N %t %o", settings_of=d.core.settings_of)


@handles("show", "maps", "stats")
def show_maps_stats(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, "%n %0 %1 %2 %3 %4", settings_of=d.core.settings_of)


@handles("show", "maps", "format")
def show_maps_format(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, cmd.params["format"], settings_of=d.core.settings_of)


@handles("show", "maps", "raw", "format")
def show_maps_raw(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, cmd.params["format"], raw=True, settings_of=d.core.settings_of)


@handles("show", "maps", "topology")
@handles("show", "topology")
def show_topology(d: Daemon, cmd: Command) -> str:
    return fmt.topology_all(d.core.state)


@handles("show", "maps", "json")
def show_maps_json(d: Daemon, cmd: Command) -> str:
    return fmt.maps_json(d.core.state, settings_of=d.core.settings_of)


@handles("show", "map", "topology")
def show_map_topology(d: Daemon, cmd: Command) -> str:
    return fmt.topology(d.core.state, _map(d.core.state, cmd))


@handles("show", "map", "json")
def show_map_json(d: Daemon, cmd: Command) -> str:
    return fmt.maps_json(d.core.state, [_map(d.core.state, cmd)], single=True, settings_of=d.core.settings_of)


@handles("show", "map", "format")
def show_map_format(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, cmd.params["format"], only=[_map(d.core.state, cmd)],
                         settings_of=d.core.settings_of)


@handles("show", "map", "raw", "format")
def show_map_raw(d: Daemon, cmd: Command) -> str:
    return fmt.show_maps(d.core.state, cmd.params["format"], raw=True, only=[_map(d.core.state, cmd)],
                         settings_of=d.core.settings_of)


@handles("show", "config")
@handles("show", "config", "local")
def show_config(d: Daemon, cmd: Command) -> str:
    from pymultipathd.config import render

    return render.render(d.core.config)


@handles("show", "blacklist")
def show_blacklist(d: Daemon, cmd: Command) -> str:
    from pymultipathd.config import render

    return render.render_blacklists(d.core.config)


@handles("show", "devices")
def show_devices(d: Daemon, cmd: Command) -> str:
    lines = ["available block devices:"]
    for p in sorted(d.core.state.paths.values(), key=lambda p: p.dev):
        where = f"in map {p.map}" if p.map else "not in a map"
        lines.append(f"    {p.dev} {p.verdict or 'unclassified'}, {where}")
    return "\n".join(lines) + "\n"


@handles("show", "wildcards")
def show_wildcards(d: Daemon, cmd: Command) -> str:
    return fmt.wildcards()


# --- paths --------------------------------------------------------------------------------------------

@handles("add", "path")
async def add_path(d: Daemon, cmd: Command) -> str:
    dev = cmd.params["path"].removeprefix("/dev/")
    if not os.path.exists(os.path.join("/sys/block", dev)):
        raise CommandFailed("device not found")
    d.core.on_uevent("add", dev)
    await d.core.settle()
    p = d.core.state.paths.get(dev)
    if p is None:
        raise CommandFailed(f"{dev}: cannot read its properties")
    if p.map is None:
        raise CommandFailed(f"{dev}: not added to a map: {p.verdict}")
    return ""


@handles("del", "path")
async def del_path(d: Daemon, cmd: Command) -> str:
    p = _path(d.core.state, cmd)
    d.core.on_uevent("remove", p.dev)
    await d.core.settle()
    return ""


@handles("fail", "path")
@handles("reinstate", "path")
async def fail_or_reinstate_path(d: Daemon, cmd: Command) -> str:
    await d.core.set_path(_path(d.core.state, cmd), up=cmd.keywords[0] == "reinstate")
    return ""


# --- maps ---------------------------------------------------------------------------------------------

@handles("add", "map")
async def add_map(d: Daemon, cmd: Command) -> str:
    ident = cmd.params["map"]
    known = d.core.state.find_map(ident)
    if known is not None:
        return ""
    wwid = next((p.wwid for p in d.core.state.paths.values() if ident in (p.wwid, p.dev)), None)
    if wwid is None:
        wwid = store.read_bindings().get(ident)
    if wwid is None:
        raise CommandFailed("device not found")
    store.add_wwid(wwid)  # an explicit request: the wwids file makes the classifier claim its paths
    if await d.core.add_map(wwid) is None:
        raise CommandFailed(f"{wwid}: no usable path for a map (see `show devices`)")
    return ""


async def _remove(d: Daemon, m: MapState) -> None:
    """Flush a map; if anything holds it, the reply lists every holder and how to release it."""
    try:
        res = await d.core.remove_map(m)
    except DMError as err:
        raise CommandFailed(str(err)) from None
    if not res.removed:
        raise CommandFailed(f"map or partition in use\n{res.report}")


@handles("del", "map")
async def del_map(d: Daemon, cmd: Command) -> str:
    await _remove(d, _map(d.core.state, cmd))
    return ""


@handles("del", "maps")
async def del_maps(d: Daemon, cmd: Command) -> str:
    busy = []
    for m in list(d.core.state.maps.values()):
        try:
            await _remove(d, m)
        except CommandFailed:
            busy.append(m.name)
    if busy:
        raise CommandFailed(f"map or partition in use: {' '.join(busy)}")
    return ""


@handles("switchgroup", "map", "group")
async def switch_group(d: Daemon, cmd: Command) -> str:
    m = _map(d.core.state, cmd)
    try:
        group = int(cmd.params["group"])
    except ValueError:
        raise CommandFailed(f"invalid group {cmd.params['group']!r}") from None
    await d.core.switch_group(m, group)
    return ""


@handles("suspend", "map")
@handles("resume", "map")
async def suspend_or_resume_map(d: Daemon, cmd: Command) -> str:
    await d.core.suspend(_map(d.core.state, cmd), on=cmd.keywords[0] == "suspend")
    return ""


@handles("reload", "map")
@handles("reset", "map")
@handles("resize", "map")
async def reload_map(d: Daemon, cmd: Command) -> str:
    """Rebuild the table from the paths as they are now (re-reading sizes: also the resize command)."""
    await d.core.reload(_map(d.core.state, cmd))
    return ""


@handles("reset", "map", "stats")
def reset_map_stats(d: Daemon, cmd: Command) -> str:
    d.core.reset_stats([_map(d.core.state, cmd)])
    return ""


@handles("reset", "maps", "stats")
def reset_maps_stats(d: Daemon, cmd: Command) -> str:
    d.core.reset_stats(list(d.core.state.maps.values()))
    return ""


@handles("disablequeueing", "map")
async def disable_queueing(d: Daemon, cmd: Command) -> str:
    await d.core.set_queueing([_map(d.core.state, cmd)], on=False)
    return ""


@handles("restorequeueing", "map")
async def restore_queueing(d: Daemon, cmd: Command) -> str:
    await d.core.set_queueing([_map(d.core.state, cmd)], on=True)
    return ""


@handles("disablequeueing", "maps")
async def disable_queueing_all(d: Daemon, cmd: Command) -> str:
    await d.core.set_queueing(list(d.core.state.maps.values()), on=False)
    return ""


@handles("restorequeueing", "maps")
async def restore_queueing_all(d: Daemon, cmd: Command) -> str:
    await d.core.set_queueing(list(d.core.state.maps.values()), on=True)
    return ""


@handles("forcequeueing", "daemon")
def force_queueing(d: Daemon, cmd: Command) -> str:
    d.queue_without_daemon = True
    return ""


@handles("restorequeueing", "daemon")
def restore_queueing_daemon(d: Daemon, cmd: Command) -> str:
    d.queue_without_daemon = None
    return ""


# --- daemon -------------------------------------------------------------------------------------------

@handles("reconfigure")
@handles("reconfigure", "all")
async def reconfigure(d: Daemon, cmd: Command) -> str:
    err = await d.core.run_internal(d.reconfigure())  # half a reconfigure is worse than a late answer
    if err:
        raise CommandFailed(err)
    return ""


@handles("shutdown")
def shutdown(d: Daemon, cmd: Command) -> str:
    asyncio.get_running_loop().call_soon(d.stop)
    return ""


# --- persistent reservations (the daemon/reservations.py docstring says what prflag and the keys do) -----

@handles("getprstatus", "map")
def getprstatus(d: Daemon, cmd: Command) -> str:
    return str(int(_map(d.core.state, cmd).prflag))  # upstream 0.9.4's reply: "1" or "0"


@handles("setprstatus", "map")
@handles("unsetprstatus", "map")
def setprstatus(d: Daemon, cmd: Command) -> str:
    m = _map(d.core.state, cmd)
    m.prflag = cmd.keywords[0] == "setprstatus"
    m.pr_epoch += 1
    log.info("%s: prflag %s", m.name, "set" if m.prflag else "unset")
    return ""


@handles("getprkey", "map")
def getprkey(d: Daemon, cmd: Command) -> str:
    key = d.core.pr.map_key(_map(d.core.state, cmd)).key
    return f"{key}\n" if key is not None else "none\n"


@handles("setprkey", "map", "key")
@handles("unsetprkey", "map")
async def setprkey(d: Daemon, cmd: Command) -> str:
    from pymultipathd.reservation import keys

    m = _map(d.core.state, cmd)
    key = None
    if cmd.keywords[0] == "setprkey":
        try:
            key = keys.parse_key(cmd.params["key"])
        except keys.BadKey as err:
            raise CommandFailed(f"{m.name}: {err}") from None
    source = d.core.pr.map_key(m).source
    if source is keys.Source.NONE and key is None:
        return ""  # no key to forget
    if source is not keys.Source.FILE:
        where = "set in multipath.conf" if source is keys.Source.CONFIG else "not set"
        raise CommandFailed(f"{m.name}: its reservation_key is {where}; only a map with "
                            "`reservation_key file` takes its key from the prkeys file")
    try:
        await d.core.pr.set_file_key(m, key)
    except store.StoreError as err:
        raise CommandFailed(f"{m.name}: {err}") from None
    log.info("%s: prkey %s", m.name, f"set to {key}" if key else "unset")
    return ""


# --- marginal paths (marginal_pathgroups on: a marginal path is grouped apart, used last) ------------------

@handles("setmarginal", "path")
@handles("unsetmarginal", "path")
async def set_marginal(d: Daemon, cmd: Command) -> str:
    p = _path(d.core.state, cmd)
    m = d.core.state.maps.get(p.map or "")
    if m is None:
        raise CommandFailed(f"{p.dev} is not in a map")
    await d.core.set_marginal(m, [p], on=cmd.keywords[0] == "setmarginal")
    return ""


@handles("unsetmarginal", "map")
async def unset_marginal_map(d: Daemon, cmd: Command) -> str:
    m = _map(d.core.state, cmd)
    await d.core.set_marginal(m, d.core.state.paths_of(m), on=False)
    return ""
