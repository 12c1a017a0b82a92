"""Write-verify I/O: checksummed blocks written and read back with O_DIRECT, every error and mismatch kept.

Each block carries a header (magic, block number, generation, SHA-256 of the payload), so a read returning
stale data, another block's data or garbage is told apart from an I/O error. Runs one-shot (`run`) or in a
background thread while a test cuts a path (`start` ... `stop`).

    python -m tests.vm.writeverify /dev/mapper/X [--seconds 10] [--blocks 256]
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

MAGIC = b"PYMPWV01"
HEADER = struct.Struct("<8sQQ32s")  # magic, block, generation, sha256(payload)
BLOCK = 4096


@dataclass
class Result:
    device: str
    writes: int = 0
    reads: int = 0
    passes: int = 0
    errors: list[str] = field(default_factory=list)  # "write block 12: [Errno 5] Input/output error"
    mismatches: list[str] = field(default_factory=list)  # "block 12: generation 3, expected 4"

    @property
    def ok(self) -> bool:
        return not self.errors and not self.mismatches and self.writes > 0

    def __str__(self) -> str:
        s = (f"{self.device}: {self.passes} passes, {self.writes} block writes, {self.reads} block reads, "
             f"{len(self.errors)} I/O errors, {len(self.mismatches)} mismatches")
        details = (self.errors + self.mismatches)[:10]
        return s + "".join(f"\n  {d}" for d in details)


def _payload(block: int, gen: int) -> bytes:
    seed = hashlib.sha256(f"{block}:{gen}".encode()).digest()
    return (seed * (BLOCK // len(seed)))[: BLOCK - HEADER.size]


class WriteVerify:
    """Write-verify over the first `blocks` 4 KiB blocks of `device`."""

    def __init__(self, device: str, blocks: int = 256) -> None:
        self.device = device
        self.blocks = blocks
        self.result = Result(device)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buf = mmap.mmap(-1, BLOCK)  # page aligned, as O_DIRECT wants
        self._gen = 0
        self._written: dict[int, int] = {}  # block -> generation last written successfully

    def _open(self) -> int:
        return os.open(self.device, os.O_RDWR | os.O_DIRECT)

    def _write_block(self, fd: int, block: int, gen: int) -> None:
        payload = _payload(block, gen)
        self._buf.seek(0)
        self._buf.write(HEADER.pack(MAGIC, block, gen, hashlib.sha256(payload).digest()) + payload)
        try:
            n = os.pwritev(fd, [self._buf], block * BLOCK)
            if n != BLOCK:
                self.result.errors.append(f"write block {block}: short write {n}")
            else:
                self._written[block] = gen
            self.result.writes += 1
        except OSError as e:
            self.result.errors.append(f"write block {block}: {e}")

    def _verify_block(self, fd: int, block: int) -> None:
        try:
            n = os.preadv(fd, [self._buf], block * BLOCK)
            self.result.reads += 1
        except OSError as e:
            self.result.errors.append(f"read block {block}: {e}")
            return
        if n != BLOCK:
            self.result.errors.append(f"read block {block}: short read {n}")
            return
        data = bytes(self._buf)
        magic, bno, gen, digest = HEADER.unpack_from(data)
        payload = data[HEADER.size:]
        want = self._written.get(block)
        if magic != MAGIC or hashlib.sha256(payload).digest() != digest:
            self.result.mismatches.append(f"block {block}: bad magic or checksum")
        elif bno != block:
            self.result.mismatches.append(f"block {block}: holds block {bno}")
        elif want is not None and gen != want:
            self.result.mismatches.append(f"block {block}: generation {gen}, expected {want}")

    def one_pass(self, fd: int) -> None:
        """Write every block with a new generation, then read all of them back."""
        self._gen += 1
        for b in range(self.blocks):
            self._write_block(fd, b, self._gen)
        for b in range(self.blocks):
            self._verify_block(fd, b)
        self.result.passes += 1

    def run(self, passes: int = 1) -> Result:
        fd = self._open()
        try:
            for _ in range(passes):
                self.one_pass(fd)
        finally:
            os.close(fd)
        return self.result

    def verify_only(self) -> Result:
        """Read back what this instance wrote last, without writing (checks data survived)."""
        fd = self._open()
        try:
            for b in range(self.blocks):
                self._verify_block(fd, b)
        finally:
            os.close(fd)
        return self.result

    def start(self) -> WriteVerify:
        """Run passes in a background thread until stop()."""
        def loop() -> None:
            fd = self._open()
            try:
                while not self._stop.is_set():
                    self.one_pass(fd)
            finally:
                os.close(fd)

        self._thread = threading.Thread(target=loop, name=f"write-verify {self.device}", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def progress(self) -> int:
        """Block writes done so far (a test waits for it to grow to see I/O flowing)."""
        return self.result.writes

    def stop(self, timeout: float = 120) -> Result:
        """Stop the background loop after its current pass, then verify every block once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.result.errors.append(f"write-verify thread still blocked after {timeout} s")
                return self.result
            self._thread = None
        return self.verify_only()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write-verify checksummed blocks with O_DIRECT")
    ap.add_argument("device")
    ap.add_argument("--seconds", type=float, default=0, help="run in a loop this long (default: one pass)")
    ap.add_argument("--blocks", type=int, default=256)
    ns = ap.parse_args(argv)
    wv = WriteVerify(ns.device, ns.blocks)
    if ns.seconds:
        wv.start()
        time.sleep(ns.seconds)
        res = wv.stop()
    else:
        res = wv.run()
    print(res)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
