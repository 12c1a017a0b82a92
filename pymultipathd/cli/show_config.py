"""`pymultipath -t` / `-T`: print the effective configuration (or only what differs from the built-ins)."""

from __future__ import annotations

import sys

USAGE = "usage: pymultipath -t|-T   (print the effective configuration / only non-default values)"


def main(argv: list[str]) -> int:
    from pymultipathd.config import ConfigError, load_config
    from pymultipathd.config.render import render

    if not argv or argv[0] not in ("-t", "-T") or len(argv) > 1:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        config = load_config()
    except ConfigError as exc:
        for message in exc.messages:
            print(f"pymultipath: {message}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"pymultipath: warning: {warning}", file=sys.stderr)
    text = render(config, changed_only=argv[0] == "-T")
    sys.stdout.buffer.write(text.encode("utf-8", errors="surrogateescape"))
    sys.stdout.flush()
    return 0
