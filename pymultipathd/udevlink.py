"""The private link between `pymultipath -u|-c` and a running pymultipathd: wire format and client.

udev runs `pymultipath -u` for every event of every disk. Started cold, the helper pays for importing the
config parser and the classifier and for parsing multipath.conf each time (most of its run under TCG). The
daemon has all of that loaded, so when it runs the helper hands it the request and prints the answer: the
same decision function (cli.udev_helper.decide) runs, in the daemon's process, over facts it gathers afresh,
with the configuration the files on disk hold now. When no daemon answers (not running, starting, busy past
TIMEOUT, a different environment) the helper decides in its own process, exactly as before.

This module is imported on every udev event, so it needs only os and the C socket module.

Request: NUL-separated fields MAGIC, flag (-u|-c), device, explain (0|1), then the helper's environment as
KEY=VALUE (udev's event properties live there), its CONTEXT_VARS replaced by what the helper's entry made of
its environment and options (request_env). One request per connection; the client shuts down its writing
side. Reply: b"R" rc NUL stdout NUL stderr, or b"D" reason (declined: decide yourself).
"""

from __future__ import annotations

import _socket  # socket.py builds IntEnums and imports selectors: milliseconds per udev event in the guest
import os
import time

from pymultipathd import locations, peer

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping

MAGIC = b"PYMPU1"
LIMIT = 1 << 20  # bytes, each way: an environment is a few KiB; anything bigger is not ours
TIMEOUT = 3.0  # seconds the helper waits for the daemon, all told, before deciding itself
# set by the compiled front (udev/pymultipath-udev.c) when it runs `pymultipath`: it has asked already
ASKED_VAR = "PYMULTIPATH_DAEMON_ASKED"
# how a request names the deprecated `-i` (find_multipaths greedy from the command line)
FIND_MULTIPATHS_VAR = "PYMULTIPATH_FIND_MULTIPATHS"
# environment variables that change what a decision reads (locations, the -i override): a request whose
# values differ from the daemon's own is declined, so the helper's answer never depends on which process ran
CONTEXT_VARS = (*locations.ENV_VARS, FIND_MULTIPATHS_VAR)
_CONTEXT = frozenset(CONTEXT_VARS)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def request_env(event: Mapping[str, str], where: locations.Locations,
                find_multipaths: str | None = None) -> dict[str, str]:
    """The environment a request carries: udev's event properties (`event`, the helper's environment as its
    entry read it) with the context variables saying what the helper decides with: its locations (`where`,
    environment and options; only those that are not upstream's defaults) and the `-i` override. The
    event's other variables keep their order, so an unchanged environment goes out as the C front sends it."""
    context = where.env()
    if find_multipaths is not None:
        context[FIND_MULTIPATHS_VAR] = find_multipaths
    env = {}
    for key, value in event.items():
        if key not in _CONTEXT:
            env[key] = value
        elif key in context:
            env[key] = context.pop(key)
    env.update(context)
    return env


def foreign_context(env: Mapping[str, str], where: locations.Locations | None = None) -> str | None:
    """For the daemon: the first context variable by which a request's `env` would decide elsewhere than
    this process does (`where`: its locations, by default the installed ones; no `-i` override), or None.
    The locations compare by value: an unset or empty variable, and one naming upstream's default, agree."""
    ours = (where or locations.current()).env()
    theirs = locations.Locations.from_env(env).env()
    for var in locations.ENV_VARS:
        if ours.get(var) != theirs.get(var):
            return var
    return FIND_MULTIPATHS_VAR if env.get(FIND_MULTIPATHS_VAR) else None


def encode_request(flag: str, dev: str, explain: bool, env: Mapping[str, str]) -> bytes:
    fields = [MAGIC, _bytes(flag), _bytes(dev), b"1" if explain else b"0"]
    fields += [_bytes(f"{k}={v}") for k, v in env.items()]
    return b"\0".join(fields)


def decode_request(data: bytes) -> tuple[str, str, bool, dict[str, str]]:
    """ValueError on anything that is not a well-formed request."""
    fields = data.split(b"\0")
    if len(fields) < 4 or fields[0] != MAGIC:
        raise ValueError("not a pymultipath helper request")
    flag, dev, explain = _text(fields[1]), _text(fields[2]), fields[3]
    if flag not in ("-u", "-c") or not dev or "/" in dev or explain not in (b"0", b"1"):
        raise ValueError(f"bad helper request: {flag!r} {dev!r}")
    env = {}
    for item in fields[4:]:
        key, sep, value = _text(item).partition("=")
        if not sep or not key:
            raise ValueError(f"bad environment entry {item[:40]!r}")
        env[key] = value
    return flag, dev, explain == b"1", env


def encode_reply(rc: int, out: str, err: str) -> bytes:
    return b"R" + b"\0".join((str(rc).encode(), _bytes(out), _bytes(err)))


def encode_decline(reason: str) -> bytes:
    return b"D" + _bytes(reason)


def decode_reply(data: bytes) -> tuple[int, str, str] | None:
    """(rc, stdout, stderr), or None for a decline or anything malformed."""
    if not data.startswith(b"R"):
        return None
    fields = data[1:].split(b"\0")
    if len(fields) != 3 or not fields[0].removeprefix(b"-").isdigit():
        return None
    return int(fields[0]), _text(fields[1]), _text(fields[2])


def device_name(arg: str) -> str:
    """udev passes %k (sdb); people pass /dev/sdb or a sysfs path: the kernel name is the last component."""
    return os.path.basename(arg.rstrip("/"))


def parse_args(args: list[str]) -> tuple[str, bool] | None:
    """The arguments after -u/-c: (device name, --explain given), or None unless exactly one device."""
    devs = [a for a in args if a != "--explain"]
    return (device_name(devs[0]), "--explain" in args) if len(devs) == 1 else None


def ask(flag: str, dev: str, explain: bool, env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT, *, find_multipaths: str | None = None) -> tuple[int, str, str] | None:
    """The daemon's answer to `pymultipath FLAG DEV`, or None if there is none to be had in time.

    `env`: udev's event properties (the helper's environment, as its entry read it; None: no event);
    the request adds the installed locations and the `-i` override `find_multipaths` (request_env).
    `timeout` bounds the whole exchange (connect, request, reply), not each call: a peer that trickles a
    byte at a time cannot keep a udev worker. A listener that is not root (peer.trusted) is not asked."""
    env = request_env(env or {}, locations.current(), find_multipaths)
    deadline = time.monotonic() + timeout
    name = locations.helper_socket()
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)  # close-on-exec
    chunks: list[bytes] = []

    def within() -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        s.settimeout(left)

    try:
        within()
        s.connect(locations.unix_address(name))
        pid, uid, _gid = peer.credentials(s)
        if not peer.trusted(uid):
            peer.report_untrusted("pymultipath", name, pid, uid, locations.run_dir())
            return None
        request = encode_request(flag, dev, explain, env)
        sent = 0
        while sent < len(request):
            within()
            sent += s.send(request[sent:sent + 65536])
        s.shutdown(_socket.SHUT_WR)
        size = 0
        while size <= LIMIT:
            within()
            chunk = s.recv(65536)
            if not chunk:
                return decode_reply(b"".join(chunks))
            chunks.append(chunk)
            size += len(chunk)
        return None
    except OSError:  # refused, missing, timed out, reset: no daemon to ask
        return None
    finally:
        s.close()
