"""`pymultipathd`: the daemon, and (with command words or -k) a client of its control socket."""

from __future__ import annotations

import sys

USAGE = """\
usage: pymultipathd [-d] [-v N]          run the daemon (-d: stay in the foreground, log to stderr)
       pymultipathd COMMAND WORDS...      send one command to the running daemon, e.g. `show paths`
       pymultipathd -k"COMMAND"           same, as one argument
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    print("pymultipathd: the daemon is not built yet (issue: the daemon)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
