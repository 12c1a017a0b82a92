"""The private link between `pymultipath -u|-c` and a running pymultipathd: wire format and client.

udev runs `pymultipath -u` for every event of every disk. Started cold, the helper pays for importing the
config parser and the classifier and for parsing multipath.conf each time (most of its run under TCG). The
daemon has all of that loaded, so when it runs the helper hands it the request and prints the answer: the
same decision function (cli.udev_helper.decide) runs, in the daemon's process, over facts it gathers afresh,
with the configuration the files on disk hold now. When no daemon answers (not running, starting, busy past
TIMEOUT, a different environment) the helper decides in its own process, exactly as before.

This module is imported on every udev event, so it needs only os and the C socket module.

Request: NUL-separated fields MAGIC, flag (-u|-c), device, explain (0|1), then the helper's environment as
KEY=VALUE (udev's event properties live there). One request per connection; the client shuts down its
writing side. Reply: b"R" rc NUL stdout NUL stderr, or b"D" reason (declined: decide yourself).
"""

from __future__ import annotations

import _socket  # socket.py builds IntEnums and imports selectors: milliseconds per udev event in the guest
import os
import time

from pymultipathd import locations, peer

MAGIC = b"PYMPU1"
LIMIT = 1 << 20  # bytes, each way: an environment is a few KiB; anything bigger is not ours
TIMEOUT = 3.0  # seconds the helper waits for the daemon, all told, before deciding itself
# set by the compiled front (udev/pymultipath-udev.c) when it runs `pymultipath`: it has asked already
ASKED_VAR = "PYMULTIPATH_DAEMON_ASKED"
# environment variables that change what a decision reads (locations, the -i override): a request whose
# values differ from the daemon's own is declined, so the helper's answer never depends on which process ran
CONTEXT_VARS = (*locations.ENV_VARS, "PYMULTIPATH_FIND_MULTIPATHS")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def encode_request(flag: str, dev: str, explain: bool, env: dict[str, str]) -> bytes:
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


def ask(flag: str, dev: str, explain: bool, env: dict[str, str] | None = None,
        timeout: float = TIMEOUT) -> tuple[int, str, str] | None:
    """The daemon's answer to `pymultipath FLAG DEV`, or None if there is none to be had in time.

    `timeout` bounds the whole exchange (connect, request, reply), not each call: a peer that trickles a
    byte at a time cannot keep a udev worker. A listener that is not root (peer.trusted) is not asked."""
    env = dict(os.environ) if env is None else env
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
