"""`pymultipath`: the udev helper and administrator's command line.

Upstream-style flags (`-u DEV`, `-c DEV`, `-t`, `-a`, `-w`, `-W`, `-f`, `-F`, `-ll`) plus named subcommands
(`classify`, `snapshot`, ...). Each action lives in its own module under pymultipathd.cli and is imported only
when used: `-u` runs from udev for every disk event, so its path imports nothing it does not need.
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
}

USAGE = """\
usage: pymultipath [--config FILE] [--config-dir DIR] ACTION

Classify block devices for multipath and manage multipath maps (compatible with multipath-tools).

udev helper:
  -u DEV            classify DEV for udev; prints FIND_MULTIPATHS_WAIT_UNTIL= and DM_MULTIPATH_DEVICE_PATH=
  -c DEV            exit 0 if DEV is a multipath path, 1 if not (no timer, no side effects)
  -u/-c --explain   print the rule chain that decided, in words, on stderr
  -i                deprecated (upstream's ignore_wwids): warns, then acts as find_multipaths greedy

configuration:
  -t                print the effective configuration in multipath.conf syntax
  -T                like -t, but only what differs from the built-in defaults

wwids file (/etc/multipath/wwids):
  -a DEV|WWID       add the WWID of DEV (or WWID itself) to the wwids file
  -w DEV|WWID       remove the WWID from the wwids file
  -W                reset the wwids file to the WWIDs of the multipath maps that exist now

maps:
  -l [MAP]          show the multipath topology from device mapper and sysfs (no I/O to the paths)
  -ll [MAP]         the same with current path states (from the daemon, or by checking each path)
  -f MAP            flush (remove) MAP if nothing holds it; otherwise list its holders and how to release them
  -F                flush every multipath map that nothing holds
  -f MAP --error-io [--yes]
                    last resort for a LUN gone for good: every I/O of MAP fails (queued writes are lost),
                    MAP goes once its holders let go; asks first (--yes in scripts)
  holders MAP       list what holds MAP open and the command that releases each holder
  -C DEV            exit 0 if the multipath map DEV has a usable path, 1 if not (no I/O is sent)
  -U                the same for the device of the udev event (MAJOR, MINOR), for udev rules

offline and diagnostics:
  classify --facts FILE [--json] [--explain]   classify a JSON snapshot without touching the system
  snapshot [-o FILE]                           write a JSON snapshot of this system's paths and maps

global options:
  --config FILE     main configuration file (default /etc/multipath.conf; env PYMULTIPATH_CONF)
  --config-dir DIR  drop-in directory (default /etc/multipath/conf.d; env PYMULTIPATH_CONFDIR)
  -h, --help        this help
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
    if not rest or rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if rest else 2
    if rest[0] in SUBCOMMANDS:
        return _run(SUBCOMMANDS[rest[0]], rest)
    flag = rest[0]
    find_multipaths = None  # the command line's find_multipaths: only the udev helper classifies
    if flag == "-i":  # deprecated, upstream mapped ignore_wwids to "greedy"
        print("pymultipath: -i is deprecated; use find_multipaths greedy in multipath.conf", file=sys.stderr)
        find_multipaths = "greedy"
        rest = rest[1:]
        if not rest:
            return 2
        flag = rest[0]
    if flag not in FLAGS:
        print(f"pymultipath: unknown action {flag!r}; see pymultipath --help", file=sys.stderr)
        return 2
    module, needs_arg = FLAGS[flag]
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
