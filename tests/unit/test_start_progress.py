"""The daemon's start-up progress reports to systemd: more start time only while the first assembly moves."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

from pymultipathd.daemon import main


def _messages(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_extends_the_start_timeout_only_while_maps_are_being_made(tmp_path, monkeypatch):
    addr = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.setblocking(False)
    monkeypatch.setattr(main, "START_TICK", 0.01)
    core = SimpleNamespace(state=SimpleNamespace(paths={}, maps={}),
                           stats={"creates": 0, "reloads": 0})
    # the protocol itself, without systemd-python
    daemon = SimpleNamespace(core=core, _notify=lambda text: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                             .sendto(text.encode(), addr))

    async def scenario() -> list[list[str]]:
        task = asyncio.ensure_future(main.Daemon._start_progress(daemon))
        rounds = []
        for step in range(4):
            if step < 2:  # two ticks that made maps, then two that made nothing
                core.state.maps[f"m{step}"] = object()
                core.stats["creates"] += 1
            await asyncio.sleep(0.03 if step < 2 else 0.1)
            rounds.append(_messages(sock))
        task.cancel()
        return rounds

    rounds = asyncio.run(scenario())
    assert any("EXTEND_TIMEOUT_USEC=" in m for m in rounds[0])
    assert "STATUS=assembling: 1 maps, 0 paths" in "".join(rounds[0])
    assert not any("EXTEND_TIMEOUT_USEC=" in m for m in rounds[3]), rounds
    assert any("STATUS=assembling: 2 maps" in m for m in rounds[3])
    sock.close()
