"""Network side of the iSCSI paths: one dummy interface per portal, made and cut with pyroute2 (netlink).

A portal address lives on its own dummy interface. Cutting a path takes that link down *and* removes the
address: a link going down alone keeps the local route of its address (measured: traffic to it still flows
through loopback), while removing the address removes that route, so the path's packets are silently dropped
in both directions, like a pulled cable.
"""

from __future__ import annotations

from pyroute2 import IPRoute


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no network interface named {ifname!r}")
    return found[0]


def add_dummy(ifname: str, address: str, prefixlen: int = 32) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=ifname, kind="dummy")
        idx = _index(ipr, ifname)
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")


def remove_link(ifname: str) -> None:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            ipr.link("del", index=found[0])


def set_link(ifname: str, up: bool) -> None:
    with IPRoute() as ipr:
        ipr.link("set", index=_index(ipr, ifname), state="up" if up else "down")


def cut(ifname: str, address: str, prefixlen: int = 32) -> None:
    with IPRoute() as ipr:
        idx = _index(ipr, ifname)
        ipr.link("set", index=idx, state="down")
        ipr.addr("del", index=idx, address=address, prefixlen=prefixlen)


def restore(ifname: str, address: str, prefixlen: int = 32) -> None:
    with IPRoute() as ipr:
        idx = _index(ipr, ifname)
        if not any(a.get_attr("IFA_ADDRESS") == address for a in ipr.get_addr(index=idx)):
            ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")


def link_is_up(ifname: str) -> bool:
    with IPRoute() as ipr:
        (link,) = ipr.get_links(_index(ipr, ifname))
        return link.get("flags", 0) & 1 == 1  # IFF_UP


def links_with_prefix(prefix: str) -> list[str]:
    with IPRoute() as ipr:
        names = [link.get("ifname") for link in ipr.get_links()]
    return [n for n in names if n and n.startswith(prefix)]
