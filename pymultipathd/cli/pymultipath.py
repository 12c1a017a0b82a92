"""`pymultipath`: the udev helper and administrator's command line.

Upstream-style flags (`-u DEV`, `-c DEV`, `-t`, `-a`, `-w`, `-W`, `-f`, `-F`, `-ll`) plus named subcommands
(`classify`, `snapshot`, ...); without an action it makes maps, as upstream's `multipath [DEV ...]` does
(cli/assemble_cmd.py). Each action lives in its own module under pymultipathd.cli and is imported only when
used: `-u` runs from udev for every disk event, so its path imports nothing it does not need.
"""

from __future__ import annotations

import os
import sys

from pymultipathd import locations

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping

# subcommand word -> module under pymultipathd.cli exposing main(argv) -> int
SUBCOMMANDS = {
    "classify": "classify_cmd",
    "snapshot": "classify_cmd",
    "holders": "flush_cmd",
    "verify": "verify_cmd",
}

USAGE = """\
usage: pymultipath [-v N] [-d] [-r] [-q] [-p POLICY] [-b FILE] [-B] [DEV|WWID|MAP ...]
       pymultipath ACTION [ARGUMENTS]
       (--config FILE and --config-dir DIR may come first in either form)

Classify block devices for multipath and manage multipath maps (compatible with multipath-tools).

making maps (no action given; upstream's default operation mode):
  pymultipath [DEV|WWID|MAP ...]
                    classify the given devices (default: every disk) with the daemon's classifier and
                    create or reload their maps as the daemon would; a device named here counts as if its
                    WWID were in the wwids file, and the WWIDs of new maps are recorded there
  -v N              0 print nothing; 1 the names of the maps created or reloaded; 2 (default) each with
                    its topology; 3 also each path's classification rule and each map's decision and table
  -d                dry run: print what would be done and why, change nothing (no device-mapper change,
                    no file written, the daemon not asked)
  -r                force a reload of the maps (of the named devices, else of all)
  -q                allow queue_if_no_path when pymultipathd is not running (without it, maps made or
                    reloaded then fail I/O once no path is left, as upstream: nothing would reinstate one)
  -p POLICY         path grouping of new maps: failover, multibus, group_by_serial, group_by_prio or
                    group_by_node_name (existing maps are not modified)
  -b FILE           the bindings file of user_friendly_names aliases (default /etc/multipath/bindings)
  -B                treat the bindings file as read only: a new map without an alias is named by its WWID
  -R N, -e, -D      refused: retried removals of busy maps, foreign libraries and skipping the daemon are
                    not supported
  DEV               a path (/dev/sdb, sdb, 8:16): the map of its WWID
  MAP               a map (name, /dev/mapper/NAME, dm-N, major:minor) or an alias of the bindings file or
                    of a multipaths entry
  WWID              the map of that WWID
  with pymultipathd running, the daemon stays the one writer of its maps: pymultipath asks it to create
  ("add map WWID") and reload ("reload map NAME") them instead of changing device mapper itself; -r is
  delegated as upstream does ("reconfigure", then "reload map" of each map concerned); -p, -b and -B are
  refused then (the daemon groups and names maps by its own configuration); -d never asks the daemon

udev helper:
  -u DEV            classify DEV for udev; prints FIND_MULTIPATHS_WAIT_UNTIL= and DM_MULTIPATH_DEVICE_PATH=
  -c DEV            exit 0 if DEV is a multipath path, 1 if not (no timer, no side effects)
  -u/-c --explain   print the rule chain that decided, in words, on stderr
  -i                deprecated (upstream's ignore_wwids): warns, then acts as find_multipaths greedy (also
                    for making maps)

configuration:
  -t                print the effective configuration in multipath.conf syntax
  -T                like -t, but only what differs from the built-in defaults

wwids file (/etc/multipath/wwids):
  -a DEV|WWID       add the WWID of DEV (or WWID itself) to the wwids file
  -w DEV|WWID       remove the WWID from the wwids file
  -W                reset the wwids file to the WWIDs of the multipath maps that exist now

maps:
  -l [MAP|DEV]      show the multipath topology from device mapper and sysfs (no I/O to the paths); MAP
                    as for making maps, DEV one of its paths (sdb, /dev/sdb, 8:16)
  -ll [MAP|DEV]     the same with current path states (from the daemon, or by checking each path)
  -f MAP            flush (remove) MAP if nothing holds it; otherwise list its holders and how to release them
  -F                flush every multipath map that nothing holds
  -f MAP --error-io [--yes]
                    last resort for a LUN gone for good: every I/O of MAP fails (queued writes are lost),
                    MAP goes once its holders let go; asks first (--yes in scripts)
  holders MAP       list what holds MAP open and the command that releases each holder
  -C DEV            exit 0 if the multipath map DEV has a usable path, 1 if not (no I/O is sent)
  -U                the same for the device of the udev event (MAJOR, MINOR), for udev rules
  (-v N before or after these actions is accepted and changes nothing: only map making prints by level)

offline and diagnostics:
  classify --facts FILE [--json] [--explain]   classify a JSON snapshot without touching the system
  snapshot [-o FILE]                           write a JSON snapshot of this system's paths and maps
  verify [--initrd FILE] [--root DIR] [--json] [--fix]
                    compare the root's classification inputs with an initramfs image's (default: the
                    running kernel's) and say which present paths each difference classifies otherwise;
                    exit 0 agree, 1 differ, 2 unreadable, 3 --fix failed; --fix rebuilds the image

global options:
  --config FILE     main configuration file (default /etc/multipath.conf; env PYMULTIPATH_CONF)
  --config-dir DIR  drop-in directory (default /etc/multipath/conf.d; env PYMULTIPATH_CONFDIR)
  -h, --help        this help

exit status: 0 success; 1 failure (and, for map making, a command line that makes no sense, as upstream);
2 a usage error of another action
"""

# flag -> (module, takes an argument)
FLAGS = {
    "-u": ("udev_helper", True),
    "-c": ("udev_helper", True),
    "-t": ("show_config", False),
    "-T": ("show_config", False),
    "-a": ("wwids_cmd", True),
    "-w": ("wwids_cmd", True),
    "-W": ("wwids_cmd", False),
    "-l": ("topology_cmd", False),
    "-ll": ("topology_cmd", False),
    "-f": ("flush_cmd", True),
    "-F": ("flush_cmd", False),
    "-C": ("usable_cmd", True),
    "-U": ("usable_cmd", False),
}


def _take_globals(argv: list[str]) -> tuple[list[str], dict[str, str]] | None:
    """Consume --config/--config-dir: (the other arguments, the locations they give by Locations field).
    None on error."""
    rest: list[str] = []
    given: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        for opt, name in (("--config", "config_file"), ("--config-dir", "config_dir")):
            if arg == opt:
                value = next(it, None)
                if value is None:
                    print(f"pymultipath: {opt} needs a value", file=sys.stderr)
                    return None
                given[name] = value
                break
            if arg.startswith(opt + "="):
                given[name] = arg.split("=", 1)[1]
                break
        else:
            rest.append(arg)
    return rest, given


# options that belong to map making only: given with another action they are an error, never ignored
# (upstream's `multipath -d -f MAP` flushes: its -d is dropped once -f changes the mode)
MAP_MAKING_ONLY = ("-d", "-r", "-q", "-p", "-b", "-B", "-R", "-e", "-D")


def _skip_verbosity(args: list[str], *, anywhere: bool = False) -> list[str]:
    """`args` without the -v N / -vN options at their start (or `anywhere`): upstream takes them with every
    action; only map making prints by level here."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-v") and (a[2:].isdigit() or (a == "-v" and i + 1 < len(args)
                                                        and args[i + 1].isdigit())):
            i += 1 if a[2:] else 2
            continue
        if not anywhere:
            return out + args[i:]
        out.append(a)
        i += 1
    return out


def _map_making_option(args: list[str]) -> str | None:
    """Why a map-making option among another action's arguments is refused (None: there is none)."""
    for a in args:
        if len(a) >= 2 and a[:2] in MAP_MAKING_ONLY:
            from pymultipathd.cli import assemble_cmd

            spec = assemble_cmd.OPTIONS[a[1]]
            if spec.role is assemble_cmd.Role.REFUSED:
                return f"{a[:2]}: {spec.text}"
            return (f"{a[:2]} ({spec.text}) belongs to making maps and cannot be combined with another "
                    "action; run that action on its own")
    return None


def _run(module: str, argv: list[str], **settings: object) -> int:
    name = f"pymultipathd.cli.{module}"
    __import__(name)  # importlib would cost `-u` its own import (and warnings') on every udev event
    return int(sys.modules[name].main(argv, **settings) or 0)


def _ask_daemon(flag: str, args: list[str], env: Mapping[str, str] | None = None,
                find_multipaths: str | None = None) -> int | None:
    """-u/-c answered by the running daemon (pymultipathd.udevlink); None: decide here. `env`: this
    program's environment, udev's event properties (default: none); `find_multipaths`: the `-i` override."""
    from pymultipathd import udevlink

    env = {} if env is None else env
    parsed = udevlink.parse_args(args)
    if parsed is None or env.get(udevlink.ASKED_VAR):
        return None  # the helper prints the usage; or the compiled front asked, with no answer to print
    answer = udevlink.ask(flag, *parsed, env, find_multipaths=find_multipaths)
    if answer is None:
        return None
    rc, out, err = answer
    sys.stderr.write(err)
    sys.stdout.write(out)
    return rc


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """The entry: the environment (`env`, default os.environ) is read here, once. Locations come from it and
    the global options, and are installed for every module (pymultipathd.locations); the udev helper also
    gets the environment itself, as the udev event's properties, and the `-i` override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    taken = _take_globals(argv)
    if taken is None:
        return 2
    rest, given = taken
    locations.install(locations.Locations.from_env(env, **given))
    if rest and rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if rest and rest[0] in SUBCOMMANDS:
        return _run(SUBCOMMANDS[rest[0]], rest)
    find_multipaths = None  # the command line's find_multipaths: only the classifying actions take it
    if rest and rest[0] == "-i":  # deprecated, upstream mapped ignore_wwids to "greedy"
        print("pymultipath: -i is deprecated; use find_multipaths greedy in multipath.conf", file=sys.stderr)
        find_multipaths = "greedy"
        rest = rest[1:]
    after = _skip_verbosity(rest)
    if not after or after[0] not in FLAGS:
        # no action: make maps (upstream's default mode); the module parses and judges every option
        return _run("assemble_cmd", rest, find_multipaths=find_multipaths)
    rest = after
    flag = rest[0]
    module, needs_arg = FLAGS[flag]
    if flag not in ("-u", "-c", "-U"):  # udev's calls carry no such options: no cost on every disk event
        mixed = _map_making_option(rest[1:])
        if mixed is not None:
            print(f"pymultipath: {mixed}", file=sys.stderr)
            return 1
        rest = [flag, *_skip_verbosity(rest[1:], anywhere=True)]
    if needs_arg and len(rest) < 2:
        print(f"pymultipath: {flag} needs a device or WWID argument", file=sys.stderr)
        return 2
    if flag in ("-u", "-c"):
        rc = _ask_daemon(flag, rest[1:], env, find_multipaths)
        if rc is not None:
            return rc
        return _run(module, rest, env=env, find_multipaths=find_multipaths)
    if flag == "-U":
        return _run(module, rest, env=env)  # the udev event's MAJOR and MINOR
    return _run(module, rest)


if __name__ == "__main__":
    sys.exit(main())
