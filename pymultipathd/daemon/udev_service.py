"""The daemon's side of pymultipathd.udevlink: answers `pymultipath -u|-c` so udev's helper need not load the
configuration and the classifier on every disk event.

The answer comes from the helper's own decision function (cli.udev_helper.decide), with the helper's
environment (udev's event properties): the device's own facts are read afresh for the request; the maps and
the other paths are the daemon's (it made the maps, and follows uevents and DM events), where the helper
alone would scan sysfs for them, seconds per event under TCG with hundreds of disks. The configuration is
the daemon's while the files on disk are what it loaded; after an edit not yet applied by `reconfigure`
the request gets the files' new content, as the helper alone would.
Declined (the helper then decides itself): non-root peers, a different environment for locations or
find_multipaths, malformed requests. Work runs in worker threads, a few at a time, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pymultipathd import locations, peer, udevlink
from pymultipathd.cli import udev_helper
from pymultipathd.config.load import sources_signature
from pymultipathd.config.model import Config
from pymultipathd.listen import bind_unix
from pymultipathd.paths.facts import Known

log = logging.getLogger(__name__)

READ_TIMEOUT = 2.0  # seconds for a client to send its request
WORKERS = 2  # requests decided at once, so the event loop keeps its share of the GIL; more wait


class UdevService:
    def __init__(self, running: Callable[[], tuple[tuple, Config | None]],
                 known: Callable[[], Known | None] | None = None) -> None:
        """running() -> (sources_signature() taken when the daemon loaded its config, that config);
        known() -> the daemon's maps and paths, called on the loop (None: read them from sysfs)."""
        self._running = running
        self._known = known
        self._loaded: tuple[tuple, Config | None, Exception | None] | None = None  # files newer than running
        self._server: asyncio.AbstractServer | None = None
        self._workers = asyncio.Semaphore(WORKERS)
        self.answered = 0
        self.declined = 0

    async def start(self) -> bool:
        """Listen; on failure log why and go on without (the helper decides itself, only slower)."""
        name = locations.helper_socket()
        try:
            sock = bind_unix(name, private=True)
        except OSError as err:  # SocketInUse names a squatter of an abstract name
            log.error("udev helper socket %s: %s; `pymultipath -u` decides without the daemon", name, err)
            return False
        self._server = await asyncio.start_unix_server(self._client, sock=sock)
        log.info("udev helper: answering on %s", name)
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await self._reply(reader, writer))
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
            log.debug("udev helper client: %s", err)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _reply(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        if peer.credentials(writer.get_extra_info("socket"))[1] != 0:
            return self._decline("not root")
        data = await asyncio.wait_for(_read_all(reader, udevlink.LIMIT), READ_TIMEOUT)
        if data is None:
            return self._decline("request too long")
        try:
            flag, dev, explain, env = udevlink.decode_request(data)
        except ValueError as err:
            return self._decline(str(err))
        var = udevlink.foreign_context(env)
        if var is not None:
            return self._decline(f"{var} differs from the daemon's")
        async with self._workers:
            known = self._known() if self._known is not None else None  # on the loop: a consistent view
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, self._decide, flag, dev, explain, env, known)
        self.answered += 1
        return reply

    def _decline(self, reason: str) -> bytes:
        self.declined += 1
        log.debug("udev helper request declined: %s", reason)
        return udevlink.encode_decline(reason)

    def _decide(self, flag: str, dev: str, explain: bool, env: dict[str, str], known: Known | None) -> bytes:
        config, error = self._config()
        rc, out, err = udev_helper.decide(flag, dev, explain, config, error, env=env, daemon_running=True,
                                          known=known)
        return udevlink.encode_reply(rc, out, err)

    def _config(self) -> tuple[Config | None, Exception | None]:
        now = sources_signature()
        signature, config = self._running()
        if now == signature:
            return config, None
        loaded = self._loaded
        if loaded is None or loaded[0] != now:
            loaded = self._loaded = (now, *udev_helper.load_config())
        return loaded[1], loaded[2]


async def _read_all(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """Everything up to EOF; None past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
