"""Path grouping policies and group ordering (pure).

A map's paths are split into priority groups; the kernel uses one group at a time and switches on failure.
Groups are ordered best first: by the mean priority of their usable paths, then by how many usable paths
they have, so the initial group is the one most likely to perform. With marginal_pathgroups, marginal paths
are grouped apart and their groups come after all others, whatever their priority: the kernel turns to a
group in table order, so they carry I/O only when no other group can.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from pymultipathd.record import record

POLICIES = ("failover", "multibus", "group_by_prio", "group_by_serial", "group_by_node_name")


@record(frozen=True)
class Member:
    dev_t: str            # "maj:min", the kernel's name for the path in a table
    prio: int = 0
    usable: bool = True   # checker says up or ghost
    serial: str = ""
    node_name: str = ""   # target node (FC WWNN, iSCSI target name): paths through the same controller
    dev: str = ""         # for sorting and messages only
    marginal: bool = False  # grouped apart, last (marginal_pathgroups)


def _by_key(members: Sequence[Member], key: Callable[[Member], Hashable]) -> list[list[Member]]:
    groups: dict[Hashable, list[Member]] = {}
    for m in members:
        groups.setdefault(key(m), []).append(m)
    return list(groups.values())


def group_members(members: Sequence[Member], policy: str, *,
                  split_marginal: bool = False) -> list[list[Member]]:
    """Split into groups per `policy`, then order them best first; `split_marginal`: marginal members are
    grouped by themselves, after the others. Raises ValueError on an unknown policy."""
    if split_marginal:
        return (_grouped([m for m in members if not m.marginal], policy)
                + _grouped([m for m in members if m.marginal], policy))
    return _grouped(members, policy)


def _grouped(members: Sequence[Member], policy: str) -> list[list[Member]]:
    if policy == "failover":
        groups = [[m] for m in members]
    elif policy == "multibus":
        groups = [list(members)] if members else []
    elif policy == "group_by_prio":
        groups = _by_key(members, lambda m: m.prio)
    elif policy == "group_by_serial":
        groups = _by_key(members, lambda m: m.serial)
    elif policy == "group_by_node_name":
        groups = _by_key(members, lambda m: m.node_name)
    else:
        raise ValueError(f"unknown path_grouping_policy {policy!r} (one of {', '.join(POLICIES)})")
    return sort_groups(groups)


def group_priority(group: Sequence[Member]) -> int:
    usable = [m.prio for m in group if m.usable]
    return sum(usable) // len(usable) if usable else 0


def sort_groups(groups: list[list[Member]]) -> list[list[Member]]:
    # sorted() is stable: equal groups keep discovery order, so a reload does not shuffle them needlessly
    return sorted(groups, key=lambda g: (-group_priority(g), -sum(m.usable for m in g)))


def best_group(groups: Sequence[Sequence[Member]]) -> int:
    """1-based index of the group failback should return to (0 if there are no groups): the best group with a
    usable path, a group of marginal paths only when no other group has one."""
    if not groups:
        return 0

    def rank(i: int) -> tuple[int, int, int]:
        g = groups[i]
        tier = 0 if not any(m.usable for m in g) else 1 if all(m.marginal for m in g) else 2
        return (tier, group_priority(g), -i)
    best = max(range(len(groups)), key=rank)
    return best + 1
