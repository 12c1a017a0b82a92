"""Fast failure detection for network paths: watch links and addresses over rtnetlink (daemon/rtnl.py).

A checker notices a dead iSCSI path only after its interval plus the initiator's own timeouts. The kernel
tells us at once when the interface carrying the path goes down or loses the address, so those paths are
failed immediately; the checker then confirms and later reinstates them.

The watch must outlive its failures: a dump the kernel does not answer in time (RTNL held by a driver), or
refuses, or any unexpected error restarts it on new sockets after a back-off (RETRY_FIRST doubling up to
RETRY_MAX), and what changed meanwhile is reported from the dumps as after lost events. Only cancelling
run() ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pymultipathd.daemon import rtnl

log = logging.getLogger("pymultipathd")

GROUPS = rtnl.RTMGRP_LINK | rtnl.RTMGRP_IPV4_IFADDR | rtnl.RTMGRP_IPV6_IFADDR
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RETRY_FIRST = 1.0   # seconds before the watch is started again after a failure, doubled each time in a row
RETRY_MAX = 30.0
HEALTHY = 60.0      # seconds a watch must have run for its failure to count as the first again

OnTrouble = Callable[[set[str], str], Awaitable[None]]  # (portal addresses, reason)


def is_running(flags: int) -> bool:
    """Up for traffic: administratively up and with a carrier; anything less is a link down."""
    return bool(flags & IFF_UP and flags & IFF_LOWER_UP)


class LinkWatch:
    def __init__(self, portals: Callable[[], set[str]], on_trouble: OnTrouble) -> None:
        self._portals = portals            # current iSCSI portal addresses of paths in maps
        self._on_trouble = on_trouble
        self._addr_if: dict[str, int] = {}  # local address -> ifindex
        self._names: dict[int, str] = {}
        self._running: dict[int, bool] = {}  # ifindex -> running, as last seen (to compare after a resync)
        self._portal_if: dict[str, int | None] = {}  # remembered while links are up: routes vanish when down
        self._query: rtnl.Query | None = None
        self._synced = False  # a resync has succeeded: the next compares with what it learnt

    async def run(self) -> None:
        """Watch until cancelled; every failure is logged and the watch started again after a back-off."""
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST
        while True:
            started = loop.time()
            try:
                await self._watch()
            except (OSError, TimeoutError) as err:  # NetlinkError is an OSError
                why = str(err) or type(err).__name__
                log.warning("link watch: %s; starting again in %g s", why, delay)
            except Exception:
                log.exception("link watch failed; starting again in %g s", delay)
            finally:
                self._query = None
            if loop.time() - started >= HEALTHY:
                delay = RETRY_FIRST
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _watch(self) -> None:
        # subscribed before the dumps, so that nothing happening meanwhile is missed (it comes after them);
        # new sockets each time: a request that timed out may have left a dump running on the old one
        with rtnl.Events(GROUPS) as events, rtnl.Query() as query:
            self._query = query
            # after a failure, what changed while nothing was watched is reported as after lost events
            await self._resync(report=self._synced)
            while True:
                try:
                    batch = await events.next()
                except rtnl.Overrun as why:
                    log.warning("link watch: events lost (%s); reading links and addresses again", why)
                    await self._resync(report=True)
                    continue
                for event in batch:
                    await self._handle(event)

    async def _resync(self, report: bool) -> None:
        """Learn addresses and links from dumps. After lost events (`report`), what the lost ones would have
        told is reported: portal addresses gone, links that went down."""
        assert self._query is not None
        addrs = await self._query.addresses()
        links = await self._query.links()
        before = set(self._addr_if)
        self._addr_if = {}
        for a in addrs:
            self._learn_addr(a)
        was_running = self._running
        self._running = {link.index: is_running(link.flags) for link in links}
        self._names = {link.index: link.ifname or str(link.index) for link in links}
        if report:
            for addr in sorted(before - set(self._addr_if)):
                await self._address_gone(addr)
            for link in links:
                if not is_running(link.flags) and was_running.get(link.index, True):
                    await self._link_down(link.index)
        self._synced = True
        await self._remember_portals()

    def _learn_addr(self, event: rtnl.AddrEvent) -> str | None:
        addr = event.address
        if not addr:
            return None
        if event.added:
            self._addr_if[addr] = event.index
        else:
            self._addr_if.pop(addr, None)
        return addr

    async def _interface_of(self, portal: str) -> int | None:
        if portal in self._addr_if:  # target on this host (test beds): the address's own interface
            return self._addr_if[portal]
        assert self._query is not None
        try:
            return await self._query.route_oif(portal)  # None: unroutable, or not an address
        except (OSError, TimeoutError) as err:
            log.warning("link watch: cannot ask the route to %s: %s", portal, str(err) or "no answer")
            return None

    async def _remember_portals(self) -> None:
        for portal in self._portals():
            self._portal_if[portal] = await self._interface_of(portal)

    async def _handle(self, event: rtnl.Event) -> None:
        if isinstance(event, rtnl.AddrEvent):
            addr = self._learn_addr(event)
            if not event.added and addr:
                await self._address_gone(addr)
            return
        index = event.index
        self._names[index] = event.ifname or self._names.get(index, str(index))
        self._running[index] = is_running(event.flags)
        if self._running[index]:
            await self._remember_portals()
            return
        await self._link_down(index)

    async def _address_gone(self, addr: str) -> None:
        hit = {p for p in self._portals() if p == addr}
        if hit:
            await self._on_trouble(hit, f"address {addr} removed")

    async def _link_down(self, index: int) -> None:
        hit = set()
        for portal in self._portals():
            known = self._portal_if.get(portal)
            where = known if known is not None else await self._interface_of(portal)
            if where == index:
                hit.add(portal)
        if hit:
            await self._on_trouble(hit, f"link {self._names.get(index, str(index))} down")
