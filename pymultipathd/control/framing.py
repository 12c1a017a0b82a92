"""Upstream's control-socket framing (pure, sans-I/O).

Each message is a native size_t length (8 bytes little endian on x86-64) that counts the bytes that follow,
including a trailing NUL, then the bytes. Requests and replies are framed alike, and one connection may carry
several. The decoder is fed whatever the socket returned and yields complete messages, so a slow client
sending a byte at a time costs only a small buffer, and a huge length word is refused before any allocation.
"""

from __future__ import annotations

import struct

from pymultipathd.errors import PymultipathError

_LEN = struct.Struct("@N")  # native size_t, as upstream's clients write it
HEADER_SIZE = _LEN.size
MAX_COMMAND = 512           # upstream's limit on one request, NUL included
MAX_REPLY = 64 << 20        # a client's sanity limit on one reply


class FrameError(PymultipathError, ValueError):
    """Bytes that are not a frame of the control protocol (a length past the limit, say)."""


def encode(text: str) -> bytes:
    # surrogateescape: a name or serial read as bytes that are not UTF-8 goes out as those bytes, as
    # upstream's C sends it, rather than failing the reply
    body = text.encode("utf-8", "surrogateescape") + b"\0"
    return _LEN.pack(len(body)) + body


class Decoder:
    """Messages out of the bytes received. `push` what a read returned, then `pop` messages one at a time
    (the server answers each before taking the next, so a read full of small requests is never turned into
    thousands of strings at once); `feed` does both for a client that wants every complete message."""

    def __init__(self, max_len: int = MAX_COMMAND) -> None:
        self._buf = bytearray()
        self._pos = 0  # where the next message starts: messages taken are cut off at the next push, at once
        self._max = max_len

    def push(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def pop(self) -> str | None:
        """The next complete message (trailing NUL removed), or None until more bytes come."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_SIZE:
            return None
        (length,) = _LEN.unpack_from(buf, pos)
        if length > self._max:
            raise FrameError(f"message of {length} bytes exceeds the limit of {self._max}")
        end = pos + HEADER_SIZE + length
        if len(buf) < end:
            return None
        body = bytes(buf[pos + HEADER_SIZE:end])
        self._pos = end
        if body.endswith(b"\0"):
            body = body[:-1]
        return body.decode(errors="replace")

    def feed(self, data: bytes) -> list[str]:
        """Add received bytes; return the messages now complete (trailing NUL removed)."""
        self.push(data)
        out: list[str] = []
        while (message := self.pop()) is not None:
            out.append(message)
        return out

    @property
    def pending(self) -> int:
        """Bytes received and not yet taken as messages."""
        return len(self._buf) - self._pos
