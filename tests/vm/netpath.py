"""Network side of the iSCSI paths: one dummy interface per portal, made and cut with pyroute2 (netlink).

A portal address lives on its own dummy interface. Cutting a path takes that link down *and* removes the
address: a link going down alone keeps the local route of its address (measured: traffic to it still flows
through loopback), while removing the address removes that route, so the path's packets are silently dropped
in both directions, like a pulled cable. The host sees that cut, though (the daemon's link watch fails the
paths at once); drop() cuts a portal further away, where the host sees nothing.
"""

from __future__ import annotations

import json

from pyroute2 import IPRoute

from tests.vm.sysutil import run


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


# A dead fabric beyond the host: packets to a portal vanish while its link and address stay as they are, so
# nothing local changes (no netlink event for a link watch, no RST, no ICMP) and the initiator's connections
# just stop answering. Traffic to an address of this host goes through the loopback device, so the drop is a
# tc filter on lo's egress (tc is in iproute2; the image has no nftables or iptables).
DROP_DEV = "lo"


def _drop_filters(dev: str = DROP_DEV) -> dict[str, int]:
    """address -> tc filter preference of each drop() in place."""
    out = run(["tc", "-j", "filter", "show", "dev", dev, "egress"], check=False)
    found = {}
    for f in json.loads(out or "[]"):
        addr = ((f.get("options") or {}).get("keys") or {}).get("dst_ip")
        if addr and f.get("kind") == "flower":
            found[addr] = f["pref"]
    return found


def drop(address: str, dev: str = DROP_DEV) -> None:
    """Silently drop every packet sent to `address` until undrop()."""
    if "clsact" not in run(["tc", "qdisc", "show", "dev", dev]):
        run(["tc", "qdisc", "add", "dev", dev, "clsact"])
    if address not in _drop_filters(dev):
        run(["tc", "filter", "add", "dev", dev, "egress", "protocol", "ip", "flower", "dst_ip", address,
             "action", "drop"])


def undrop(address: str, dev: str = DROP_DEV) -> None:
    filters = _drop_filters(dev)
    if address in filters:
        pref = str(filters.pop(address))
        run(["tc", "filter", "del", "dev", dev, "egress", "protocol", "ip", "pref", pref])
    if not filters and "clsact" in run(["tc", "qdisc", "show", "dev", dev], check=False):
        run(["tc", "qdisc", "del", "dev", dev, "clsact"])


def dropped(dev: str = DROP_DEV) -> list[str]:
    """Addresses whose packets drop() discards now (a clean guest has none)."""
    return sorted(_drop_filters(dev))
