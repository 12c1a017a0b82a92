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
    body = text.encode() + b"\0"
    return _LEN.pack(len(body)) + body


class Decoder:
    def __init__(self, max_len: int = MAX_COMMAND) -> None:
        self._buf = bytearray()
        self._max = max_len

    def feed(self, data: bytes) -> list[str]:
        """Add received bytes; return the messages now complete (trailing NUL removed)."""
        self._buf += data
        out: list[str] = []
        while len(self._buf) >= HEADER_SIZE:
            (length,) = _LEN.unpack_from(self._buf)
            if length > self._max:
                raise FrameError(f"message of {length} bytes exceeds the limit of {self._max}")
            if len(self._buf) < HEADER_SIZE + length:
                break
            body = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
            del self._buf[:HEADER_SIZE + length]
            if body.endswith(b"\0"):
                body = body[:-1]
            out.append(body.decode(errors="replace"))
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message still buffered."""
        return len(self._buf)
