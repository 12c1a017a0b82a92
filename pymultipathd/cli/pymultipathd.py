"""`pymultipathd`: the daemon, or (given command words or -k) a client of its control socket."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pymultipathd import locations

USAGE = """\
usage: pymultipathd [-d] [-v N] [-s]        run the daemon
       pymultipathd COMMAND WORDS...        send one command to the running daemon
       pymultipathd -k"COMMAND"             the same, the command as one argument
       pymultipathd -k                      interactive: history, Tab completes keywords

daemon options:
  -d        stay in the foreground and log to stderr (systemd runs it so, logging to the journal)
  -v N      verbosity 0..4 (default 2; 3 and more: debug)
  -s        no timestamps in stderr log lines

Commands are upstream multipathd's, e.g.:
  show paths | show maps | show topology | show map mpatha topology | show config
  disablequeueing map mpatha | restorequeueing map mpatha | reconfigure | shutdown
Keywords may be shortened to a unique prefix (`sho top`). `pymultipathd -k` then `help` lists them all.

The socket is the abstract @/org/kernel/linux/storage/multipathd (env MULTIPATH_SOCKET_NAME), then
/run/multipathd.socket. Exit status of a command: 0, or 1 if the reply starts with "fail".
"""

HISTORY = ".pymultipathd_history"  # in the user's home directory
# seconds a command waits for the daemon's reply: env PYMULTIPATH_CLIENT_TIMEOUT, else uxsock_timeout of the
# configuration, else this (when the configuration cannot be read)
CLIENT_TIMEOUT = 60.0


def _one(command: str, timeout: float = CLIENT_TIMEOUT) -> int:
    from pymultipathd.control import client

    try:
        reply = client.send(command, timeout=timeout)
    except client.ClientError as err:
        print(f"pymultipathd: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(client.as_printed(reply))
    return 1 if reply.startswith("fail") else 0


def _completer(text: str, state: int) -> str | None:
    import readline

    from pymultipathd.control import grammar

    line = readline.get_line_buffer()
    done = line[: readline.get_begidx()].split()
    canon = [grammar.find_keyword(w) for w in done]
    # A word after a parameter keyword is that keyword's value: no keyword completion there.
    if canon and canon[-1] is not None and canon[-1][1]:
        return None
    seq = tuple(c[0] for c in canon if c is not None)
    options = sorted(
        {w for w, (c, _) in grammar.KEYWORDS.items()
         if w.startswith(text) and any(cmd[: len(seq) + 1] == (*seq, c) for cmd in grammar.COMMANDS)}
    )
    return options[state] + " " if state < len(options) else None


def _history_file(env: Mapping[str, str]) -> str | None:
    """~/.pymultipathd_history: HOME, else the user's home directory in the password database."""
    home = env.get("HOME")
    if not home:
        import pwd

        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            return None
    return os.path.join(home, HISTORY)


def _interactive(history: str | None = None, timeout: float = CLIENT_TIMEOUT) -> int:
    """The `multipathd>` prompt; `history`: the file of earlier sessions' lines (None: none kept)."""
    import readline

    from pymultipathd.control import client, grammar

    readline.set_completer(_completer)
    readline.parse_and_bind("tab: complete")
    if history:
        try:
            readline.read_history_file(history)
        except OSError:
            pass
    try:
        client.connect().close()  # say at once when no daemon answers
    except client.ClientError as err:
        print(f"pymultipathd: {err}", file=sys.stderr)
        return 1
    try:
        while True:
            try:
                line = input("multipathd> ").strip()
            except EOFError:
                print()
                break
            if not line:
                continue
            if line in ("quit", "exit"):
                break
            if line in ("help", "?"):
                sys.stdout.write(grammar.reference())
                continue
            try:
                # a connection per command: the daemon ends a connection idle for 30 s, and a person at
                # the prompt may think for longer (or restart the daemon meanwhile)
                sys.stdout.write(client.as_printed(client.send(line, timeout=timeout)))
            except client.ClientError as err:
                print(f"pymultipathd: {err}", file=sys.stderr)
    finally:
        if history:
            try:
                readline.write_history_file(history)
            except OSError:
                pass
    return 0


def _configured_timeout() -> float:
    """uxsock_timeout (milliseconds) of the configuration; a configuration that does not load leaves the
    client its own default (a broken file must not keep the administrator from the daemon)."""
    from pymultipathd.config import load_config
    from pymultipathd.errors import PymultipathError

    try:
        ms = load_config().resolve("uxsock_timeout")
    except (PymultipathError, OSError):
        return CLIENT_TIMEOUT
    return ms / 1000.0 if isinstance(ms, int) and ms > 0 else CLIENT_TIMEOUT


def _client_timeout(env: Mapping[str, str]) -> float | None:
    raw = env.get("PYMULTIPATH_CLIENT_TIMEOUT")
    if not raw:
        return _configured_timeout()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:  # NaN too
        print(f"pymultipathd: PYMULTIPATH_CLIENT_TIMEOUT={raw!r}: expected seconds > 0", file=sys.stderr)
        return None
    return value


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """The entry: the environment (`env`, default os.environ) is read here, once, into the locations every
    module uses (pymultipathd.locations), a client's timeout and the prompt's history file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    locations.install(locations.Locations.from_env(env))
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if argv and (argv[0].startswith("-k") or not argv[0].startswith("-")):
        from pymultipathd.control.grammar import join_words

        timeout = _client_timeout(env)
        if timeout is None:
            return 2
        if argv[0].startswith("-k"):
            command = argv[0][2:] or join_words(argv[1:])
            return _one(command, timeout) if command else _interactive(_history_file(env), timeout)
        return _one(join_words(argv), timeout)
    # asyncio takes ssl when it can (`try: import ssl`), and ssl brings libssl and libcrypto: about 4 MB of a
    # daemon that never speaks TLS. As if absent, as it is in the initramfs (initrd/manifest.py).
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from pymultipathd.daemon import main as daemon_main

    return daemon_main.run(argv, env)


if __name__ == "__main__":
    sys.exit(main())
