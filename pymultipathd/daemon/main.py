"""pymultipathd, the daemon: start-up, the event sources on one asyncio loop, reconfigure and shutdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

from pymultipathd import locations
from pymultipathd.config import Config, ConfigError, load_config
from pymultipathd.config.load import sources_signature
from pymultipathd.control.server import ControlServer
from pymultipathd.daemon import handlers, limits, logsetup
from pymultipathd.daemon.core import Core, is_path_candidate
from pymultipathd.daemon.linkwatch import LinkWatch
from pymultipathd.daemon.udev_service import UdevService
from pymultipathd.dm.errors import DMError
from pymultipathd.dm.ioctl import Control
from pymultipathd.listen import SocketInUse, bind_unix, holder
from pymultipathd.paths import sysinfo
from pymultipathd.record import record

log = logging.getLogger("pymultipathd")
# files only an initramfs has: initramfs-tools' shell library, and the marker dracut and systemd use
INITRAMFS_MARKERS = ("/scripts/functions", "/etc/initrd-release")
TICK = 1.0  # checker scheduling granularity (seconds)
UEVENTS_PER_WAKEUP = 4  # uevents handled per readiness callback of the udev monitor (see _on_udev)
UEVENT_BUFFER = 128 * 1024 * 1024  # bytes of netlink receive buffer for the udev monitor
START_TICK = 10.0  # start-up progress report interval (seconds)
START_EXTEND_USEC = 60_000_000  # start-up time asked of systemd per interval that made progress


@record(frozen=True)
class Systemd:
    """What systemd tells the daemon through its environment, read once at the entry (`run`)."""

    notify_socket: str | None = None   # sd_notify's address (READY, STATUS, WATCHDOG, ...)
    watchdog_usec: int = 0             # WatchdogSec, 0 without
    listen_fds: int = 0                # sockets passed by socket activation, when meant for this process
    journal_stream: str = ""           # stderr's dev:inode when it is the journal

    @classmethod
    def from_env(cls, env: Mapping[str, str], pid: int) -> Systemd:
        def number(var: str) -> int:
            try:
                return max(0, int(env.get(var) or 0))
            except ValueError:
                return 0
        mine = env.get("LISTEN_PID") == str(pid)
        return cls(notify_socket=env.get("NOTIFY_SOCKET") or None, watchdog_usec=number("WATCHDOG_USEC"),
                   listen_fds=number("LISTEN_FDS") if mine else 0,
                   journal_stream=env.get("JOURNAL_STREAM", ""))


def notify(address: str | None, text: str) -> None:
    if not address:
        return
    try:
        from systemd import daemon as sd

        sd.notify(text)
    except ImportError:  # without systemd-python: speak the protocol directly
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(text.encode(), locations.unix_address(address))


def _another_daemon(err: SocketInUse) -> bool:
    """Whether a taken control socket name means another daemon runs. Only a holder known to be root says
    so; one that cannot be asked (anyone can bind without listening, or flood a backlog) is another
    daemon only if root also answers on the pathname socket, which only root can create."""
    if err.holder_uid is not None:
        return err.holder_uid == 0
    who = holder(locations.socket_path())
    return who is not None and who[1] == 0


def _systemd_sockets(count: int) -> list[socket.socket]:
    """The sockets socket activation passed (fds 3, 4, ...)."""
    socks = [socket.socket(fileno=3 + i) for i in range(count)]
    for s in socks:
        s.setblocking(False)
    return socks


class Daemon:
    def __init__(self, opts: argparse.Namespace, systemd: Systemd | None = None) -> None:
        self.opts = opts
        self.systemd = systemd or Systemd()
        # -n (upstream's "ignore new devices"): the classifier's strict mode, as `pymultipath -i` is greedy
        self.find_multipaths = "strict" if getattr(opts, "ignore_new", False) else None
        self.core: Core
        self.server: ControlServer | None = None
        self.udev_service: UdevService | None = None
        self.config_signature: tuple = ()  # of the files the running config came from (udev_service)
        self.queue_without_daemon: bool | None = None  # `forcequeueing daemon` sets True
        # how this boot's initramfs classified differently from the root now (`show status` repeats them)
        self.initramfs_warnings: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._progress = 0.0  # loop time of the checker loop's last completed round (the watchdog's proof)
        self._hup_pending = False  # SIGHUP during start-up: reconfigure once discovery is over

    def _notify(self, text: str) -> None:
        notify(self.systemd.notify_socket, text)

    def stop(self) -> None:
        self._stop.set()
        core = getattr(self, "core", None)
        if core is not None:
            core.request_stop()  # a start-up discovery or a batch ends after the map it is making

    async def reconfigure(self) -> str | None:
        """Reload the configuration; on error keep the old one and return the reason."""
        try:
            signature = sources_signature()
            config = load_config(find_multipaths=self.find_multipaths)
        except ConfigError as err:
            log.error("reconfigure failed, keeping the previous configuration:\n%s", err)
            return f"configuration error, previous configuration kept:\n{err}"
        for w in config.warnings:
            log.warning("%s", w)
        limits.apply_max_fds(config.resolve("max_fds"))
        self.core.runner.keep_again()
        self.core.busy = True
        try:
            self.core.config = config
            self.config_signature = signature
            self.core.held_back.clear()  # as upstream's reconfigure, every map the configuration calls for
            self.core.drop_marginal_marks()
            for dev in list(self.core.state.paths):
                self.core.on_uevent("change", dev)
            await self.core.settle()
            await self.core.reassign(list(self.core.state.maps.values()))
            await self.core.pr.load(str(config.resolve("prkeys_file")))
            self.core.sync_reservations()
        finally:
            self.core.busy = False
        await self.compare_initramfs(config)
        log.info("reconfigured from %s", ", ".join(config.files) or "built-in defaults")
        return None

    async def compare_initramfs(self, config: Config) -> None:
        """Compare the fingerprint this boot's initramfs left with the root's classification inputs now:
        each difference is a warning (never a reclassification). Reads files: off the event loop. Not in
        the initramfs itself: the fingerprint there is its own, and the root is not mounted yet."""
        if any(os.path.exists(f) for f in INITRAMFS_MARKERS):
            return
        if not os.path.exists(locations.initramfs_fingerprint()):
            return  # not booted with our initramfs: nothing to compare, and no thread started for it
        self.initramfs_warnings = await asyncio.to_thread(_initramfs_warnings, config)
        for w in self.initramfs_warnings:
            log.warning("%s", w)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            self.config_signature = sources_signature()
            config = load_config(find_multipaths=self.find_multipaths)
        except ConfigError as err:
            log.error("cannot start: configuration error:\n%s", err)
            return 1
        for w in config.warnings:
            log.warning("%s", w)
        limits.apply_max_fds(config.resolve("max_fds"))
        try:
            ctl = Control()
        except DMError as err:
            log.error("cannot start: device mapper unavailable: %s", err)
            return 1
        os.makedirs(locations.run_dir(), exist_ok=True)
        self.core = Core(config, ctl)
        self.core.persist.bindings_read_only = self.opts.bindings_read_only

        socks = _systemd_sockets(self.systemd.listen_fds)
        if socks:
            log.info("control: %d sockets from systemd", len(socks))
        else:
            for name in (locations.socket_name(), locations.socket_path()):
                try:
                    socks.append(bind_unix(name))
                except SocketInUse as err:
                    if _another_daemon(err):  # two owners of the same maps would fight
                        log.error("cannot start: %s", err)
                        return 1
                    # A user squatting a name must not stop map management: serve what is left.
                    log.error("control socket: %s; serving the other control socket only", err)
                except OSError as err:
                    log.error("cannot listen on %s: %s", name, err)
                    return 1
                else:
                    log.info("control: listening on %s", name)
        self.server = ControlServer(lambda cmd: handlers.answer(self, cmd))
        await self.server.start(socks)
        # Before discovery, as udev's helper asks from now on; until discovery is over the daemon's view
        # lacks maps and paths, so the service reads them from sysfs meanwhile.
        self.udev_service = UdevService(lambda: (self.config_signature, self.core.config),
                                        lambda: self.core.known() if self.core.discovered else None)
        await self.udev_service.start()

        # Listen for uevents before scanning, so nothing that happens during the scan is missed.
        import pyudev

        monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        monitor.filter_by("block")
        # Room for a storm of events while discovery or a batch runs (as udevd sizes its own): an overrun
        # netlink socket drops events. Forcing the size needs CAP_NET_ADMIN; without it keep the default.
        with contextlib.suppress(OSError, AttributeError):
            monitor.set_receive_buffer_size(UEVENT_BUFFER)
        monitor.start()
        loop.add_reader(monitor.fileno(), self._on_udev, monitor)

        # Before discovery: a SIGTERM then ends it after the map being made (the default action would kill
        # the daemon between a DM create and its table load), and a SIGHUP waits until it is over.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._hup_during_start)
        self._notify("STATUS=discovering paths and maps")
        progress = asyncio.ensure_future(self._start_progress())
        try:
            await self.core.discover()
            await self.core.settle()
        finally:
            progress.cancel()

        if self._stop.is_set():
            log.info("stopped during start-up discovery; maps made so far stay in place")
            await self._shutdown()
            return 0
        ctl.arm_poll()
        loop.add_reader(ctl.fileno(), self._on_dm_readable)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reconfigure()))
        if self._hup_pending:
            asyncio.ensure_future(self.reconfigure())
        self._progress = loop.time()
        self._tasks = [asyncio.ensure_future(self._checker_loop()), asyncio.ensure_future(self._watchdog()),
                       asyncio.ensure_future(self._guard(self.compare_initramfs(self.core.config),
                                                         "initramfs comparison"))]
        if not self.opts.no_linkwatch:
            watch = LinkWatch(self._portals, self._on_link_trouble)
            self._tasks.append(asyncio.ensure_future(self._guard(watch.run(), "link watch")))

        st = self.core.state
        paths = len(st.listed_paths())
        self._notify(f"READY=1\nSTATUS=up: {len(st.maps)} maps, {paths} paths")
        log.info("ready: %d maps, %d paths", len(st.maps), paths)
        await self._stop.wait()

        await self._shutdown()
        return 0

    async def _shutdown(self) -> None:
        self._notify("STOPPING=1")
        log.info("shutting down; maps stay in place")
        for t in self._tasks:
            t.cancel()
        if self.server is not None:
            await self.server.close()
        if self.udev_service is not None:
            await self.udev_service.close()
        await self._release_queueing()
        await self.core.close()

    def _hup_during_start(self) -> None:
        log.info("SIGHUP during start-up: reconfiguring once discovery is over")
        self._hup_pending = True

    async def _release_queueing(self) -> None:
        """Without a daemon nobody reinstates paths, so I/O queued later would wait forever: stop queueing at
        exit unless queue_without_daemon or `forcequeueing daemon` asks otherwise (as upstream does). The
        next daemon turns queueing back on with a message, without reloading the map."""
        keep = self.queue_without_daemon or bool(self.core.config.resolve("queue_without_daemon"))
        if not keep:
            await self.core.release_queueing()

    async def _guard(self, coro: object, what: str) -> None:
        try:
            await coro  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped; continuing without it", what)

    def _on_udev(self, monitor: object) -> None:
        # A few events per wake-up: the socket stays readable, so the loop comes back after serving the
        # control socket and the helper; draining a storm of hundreds in one go held commands for seconds.
        for _ in range(UEVENTS_PER_WAKEUP):
            try:
                dev = monitor.poll(timeout=0)  # type: ignore[attr-defined]
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    log.error("reading uevents: %s", err)
                    return
                # the kernel dropped events the socket had no room for: which disks came, went or changed
                # is unknown, so every one is looked at again
                n = self.core.resync_disks()
                log.warning("uevents were lost (netlink receive buffer full); re-read all %d disks", n)
                continue
            if dev is None:
                return
            if dev.device_type == "disk" and dev.action:
                name = dev.sys_name
                # only a path's properties are used; copying those of every map's events (two per map
                # created) cost as much as the map's creation under emulation
                props = dict(dev.properties) if is_path_candidate(name) else None
                self.core.on_uevent(dev.action, name, props)

    def _on_dm_readable(self) -> None:
        with contextlib.suppress(DMError):
            self.core.ctl.arm_poll()  # re-arm first: an event during the resync is not lost
        asyncio.ensure_future(self.core.on_dm_event())

    async def _checker_loop(self) -> None:
        """Every round is guarded: an exception (a map removed under a timed failback, a bug) is logged and
        the next round runs; a loop that died would leave every path unchecked while the daemon looked
        alive. Each completed round is the watchdog's proof of progress. The due paths of a round go to the
        core as one batch (Core.start_checks logs a failing path's check with its path and map)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                now = loop.time()
                self.core.start_checks([p for p in self.core.state.paths.values()
                                        if p.map and p.next_check <= now])
                await self.core.policy_tick()
            except Exception:
                log.exception("checker loop: this round failed; the next one runs as usual")
            self._progress = loop.time()
            await asyncio.sleep(TICK)

    async def _start_progress(self) -> None:
        """While the first assembly runs, report it and ask systemd for more start-up time, but only while it
        moves: hundreds of paths at boot can take longer than TimeoutStartSec (90 s by default; minutes under
        emulation), and a unit that failed to start is worse than a slow one. A start that stopped moving
        still times out."""
        st, stats = self.core.state, self.core.stats
        last, still = None, 0.0
        while True:
            await asyncio.sleep(START_TICK)
            now = (len(st.paths), len(st.maps), stats["creates"], stats["reloads"])
            still = 0.0 if now != last else still + START_TICK
            last = now
            status = f"STATUS=assembling: {now[1]} maps, {now[0]} paths"
            self._notify(status if still > 0 else f"EXTEND_TIMEOUT_USEC={START_EXTEND_USEC}\n{status}")

    async def _watchdog(self) -> None:
        usec = self.systemd.watchdog_usec
        if not usec:
            return
        loop = asyncio.get_running_loop()
        while True:
            # Pinged only while the checker loop completes rounds: a stuck event loop sends nothing, and a
            # checker loop stuck on its own (a round waiting on a hung device-mapper call) stops the pings
            # too, so systemd restarts the daemon (maps stay in place) instead of leaving paths unchecked.
            if watchdog_due(loop.time(), self._progress, usec / 1e6):
                self._notify("WATCHDOG=1")
            await asyncio.sleep(usec / 4e6)

    def _portals(self) -> set[str]:
        out = set()
        for p in self.core.state.paths.values():
            if p.map and (p.facts.protocol or "").endswith("iscsi"):
                portal = sysinfo.iscsi_portal(p.dev)
                if portal:
                    out.add(portal)
        return out

    async def _on_link_trouble(self, portals: set[str], why: str) -> None:
        devs = {p.dev for p in self.core.state.paths.values()
                if p.map and sysinfo.iscsi_portal(p.dev) in portals}
        await self.core.fail_fast(devs, why)


def _initramfs_warnings(config: Config) -> list[str]:
    """check_initramfs_fingerprint, imported and run on a worker thread: its module brings hashlib, whose
    OpenSSL costs the daemon megabytes of memory and, under emulation, a fifth of a second of import. Only
    called when there is a fingerprint to compare (Daemon.compare_initramfs)."""
    from pymultipathd.initrd.fingerprint import check_initramfs_fingerprint

    return check_initramfs_fingerprint(config)


def watchdog_due(now: float, progress: float, watchdog_s: float) -> bool:
    """Ping only if the checker loop completed a round within half the watchdog period."""
    return now - progress <= watchdog_s / 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The daemon's options (also the source of its man page, pymultipathd.cli.manpages)."""
    ap = argparse.ArgumentParser(prog="pymultipathd", description="device-mapper multipath daemon")
    ap.add_argument("-d", action="store_true", help="stay in the foreground (the default; kept for upstream)")
    ap.add_argument("-v", type=int, default=2, metavar="N", help="verbosity 0..4")
    ap.add_argument("-s", action="store_true", help="no timestamps on stderr")
    ap.add_argument("-B", dest="bindings_read_only", action="store_true",
                    help="read-only bindings file: existing aliases are used, a new map is named after its "
                         "WWID")
    ap.add_argument("-n", dest="ignore_new", action="store_true",
                    help="deprecated: make maps only for WWIDs in the wwids file (find_multipaths strict)")
    ap.add_argument("-w", dest="event_threads", action="store_true",
                    help="accepted for upstream's units; no effect (device-mapper events are always polled)")
    ap.add_argument("--no-linkwatch", action="store_true", help="do not watch network links (rtnetlink)")
    return ap


def run(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """The daemon's entry: the environment is read here, once."""
    env = dict(os.environ if env is None else env)
    opts = parse_args(argv)
    systemd = Systemd.from_env(env, os.getpid())
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # not inherited by what the daemon starts
        os.environ.pop(var, None)
    locations.install(locations.Locations.from_env(env))
    logsetup.setup(opts.v, timestamps=not opts.s, journal_stream=systemd.journal_stream)
    if opts.ignore_new:
        log.warning("-n is deprecated: use find_multipaths strict in multipath.conf (applied now)")
    if opts.event_threads:
        log.warning("-w has no effect: pymultipathd always polls device-mapper events")
    if os.geteuid() != 0:
        print("pymultipathd: the daemon must run as root", file=sys.stderr)
        return 1
    rc = asyncio.run(Daemon(opts, systemd).run())
    # Leave now: the interpreter would join every worker thread at exit, and one stuck in the kernel (a
    # check or a partition read of a path that hangs) would keep the daemon from stopping at all. The maps
    # stay; everything worth saving was written before the loop ended.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
