"""Fast failure detection for network paths: watch links and addresses over rtnetlink (pyroute2).

A checker notices a dead iSCSI path only after its interval plus the initiator's own timeouts. The kernel
tells us at once when the interface carrying the path goes down or loses the address, so those paths are
failed immediately; the checker then confirms and later reinstates them.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("pymultipathd")

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

OnTrouble = Callable[[set[str], str], Awaitable[None]]  # (portal addresses, reason)


class LinkWatch:
    def __init__(self, portals: Callable[[], set[str]], on_trouble: OnTrouble) -> None:
        self._portals = portals            # current iSCSI portal addresses of paths in maps
        self._on_trouble = on_trouble
        self._addr_if: dict[str, int] = {}  # local address -> ifindex
        self._names: dict[int, str] = {}
        self._portal_if: dict[str, int | None] = {}  # remembered while links are up: routes vanish when down

    async def run(self) -> None:
        # pyroute2 takes over a second to import under emulation: in a thread, not on the loop that is
        # assembling maps at start-up meanwhile.
        pyroute2 = await asyncio.to_thread(importlib.import_module, "pyroute2")
        AsyncIPRoute = pyroute2.AsyncIPRoute  # noqa: N806 - the class, under its own name

        async with AsyncIPRoute() as ipr:
            await ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            async with AsyncIPRoute() as query:
                for msg in [m async for m in await query.addr("dump")]:
                    self._learn_addr(msg, add=True)
                for msg in [m async for m in await query.link("dump")]:
                    self._names[msg["index"]] = msg.get("ifname") or str(msg["index"])
                await self._remember_portals(query)
                async for msg in ipr.get():
                    await self._handle(msg, query)

    def _learn_addr(self, msg: object, add: bool) -> str | None:
        addr = msg.get("address") or msg.get("local")  # type: ignore[attr-defined]
        if not addr:
            return None
        if add:
            self._addr_if[addr] = msg["index"]  # type: ignore[index]
        else:
            self._addr_if.pop(addr, None)
        return addr

    async def _interface_of(self, portal: str, query: object) -> int | None:
        if portal in self._addr_if:  # target on this host (test beds): the address's own interface
            return self._addr_if[portal]
        try:
            ipaddress.ip_address(portal)
            routes = [r async for r in await query.route("get", dst=portal)]  # type: ignore[attr-defined]
        except Exception:  # unroutable or not an address: nothing to map
            return None
        return routes[0].get("oif") if routes else None

    async def _remember_portals(self, query: object) -> None:
        for portal in self._portals():
            self._portal_if[portal] = await self._interface_of(portal, query)

    async def _handle(self, msg: object, query: object) -> None:
        event = msg.get("event")  # type: ignore[attr-defined]
        if event == "RTM_NEWADDR":
            self._learn_addr(msg, add=True)
        elif event == "RTM_DELADDR":
            addr = self._learn_addr(msg, add=False)
            hit = {p for p in self._portals() if p == addr}
            if hit:
                await self._on_trouble(hit, f"address {addr} removed")
        elif event == "RTM_NEWLINK":
            index, flags = msg["index"], msg["flags"]  # type: ignore[index]
            self._names[index] = msg.get("ifname") or self._names.get(index, str(index))  # type: ignore
            if flags & IFF_UP and flags & IFF_LOWER_UP:
                await self._remember_portals(query)
                return
            hit = set()
            for portal in self._portals():
                known = self._portal_if.get(portal)
                where = known if known is not None else await self._interface_of(portal, query)
                if where == index:
                    hit.add(portal)
            if hit:
                await self._on_trouble(hit, f"link {self._names[index]} down")
