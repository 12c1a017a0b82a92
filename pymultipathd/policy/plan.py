"""What a map's table should be, from its paths and the resolved configuration (pure).

The daemon compares the plan with the live table and loads a new one only when they differ in something the
kernel would act on, so a restart or a checker round never reloads a healthy map.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymultipathd.dm import table as dmt
from pymultipathd.paths.grouping import Member, best_group, group_members
from pymultipathd.policy.settings import Resolve, map_settings
from pymultipathd.policy.state import PathCheck, PathState


def queue_if_no_path(resolve: Resolve) -> bool:
    """no_path_retry decides queueing: queue or N -> queue (N intervals), fail -> fail at once."""
    return map_settings(resolve).queue_if_no_path


def features(resolve: Resolve, queueing: bool) -> dmt.Features:
    words = str(resolve("features") or "0").split()
    parsed = dmt.parse_features(tuple(words[1:])) if words and words[0] != "0" else dmt.Features()
    return dmt.Features(
        queue_if_no_path=queueing,
        queue_mode=parsed.queue_mode,
        retain_attached_hw_handler=parsed.retain_attached_hw_handler,
        pg_init_retries=parsed.pg_init_retries,
        pg_init_delay_msecs=parsed.pg_init_delay_msecs,
        other=parsed.other,
    )


def hwhandler(resolve: Resolve, paths: Sequence[PathState] = ()) -> tuple[str | None, tuple[str, ...]]:
    """The table's hardware handler: one the kernel attached to a path already, as upstream (with
    retain_attached_hw_handler, the default: the kernel keeps it whatever the table says, and the table
    then says so too); else hardware_handler."""
    if resolve("retain_attached_hw_handler") is not False:
        attached = next((p.dh_state for p in paths if p.dh_state), "")
        if attached:
            return attached, ()
    words = str(resolve("hardware_handler") or "0").split()
    if not words or words[0] == "0" or len(words) < 2:
        return None, ()
    return words[1], tuple(words[2:])


def selector(resolve: Resolve) -> tuple[str, tuple[str, ...]]:
    words = str(resolve("path_selector") or "service-time 0").split()
    return words[0], tuple(words[2:]) if len(words) > 1 and words[1].isdigit() else tuple(words[1:])


def members(paths: Sequence[PathState]) -> list[Member]:
    unjudged = (PathCheck.UNDEF, PathCheck.WILD)  # not checked, or no checker can judge it: not failed
    return [Member(dev_t=p.dev_t, prio=p.prio, usable=p.usable or p.chk_state in unjudged,
                   serial=p.serial, node_name=p.node_name, dev=p.dev, marginal=p.marginal) for p in paths]


def repeat_count(resolve: Resolve, feats: dmt.Features, prio: int) -> int:
    """I/Os (bio-based maps: rr_min_io) or requests (rr_min_io_rq) a path takes before the selector moves
    on; rr_weight priorities multiplies it by the path's priority, as upstream does."""
    base = resolve("rr_min_io" if feats.queue_mode == "bio" else "rr_min_io_rq")
    count = base if isinstance(base, int) and not isinstance(base, bool) and base > 0 else 1
    if resolve("rr_weight") == "priorities" and prio > 0:
        count *= prio
    return count


def build_table(paths: Sequence[PathState], resolve: Resolve, *,
                queueing: bool | None = None) -> dmt.MultipathTable:
    """The table for these paths. Raises ValueError if there are none or their sizes disagree."""
    if not paths:
        raise ValueError("a map needs at least one path")
    sizes = {p.size for p in paths}
    if len(sizes) != 1:
        detail = ", ".join(f"{p.dev}={p.size}" for p in paths)
        raise ValueError(f"paths disagree on size (sectors: {detail})")
    groups = group_members(members(paths), str(resolve("path_grouping_policy")),
                           split_marginal=resolve("marginal_pathgroups") == "on")
    sel, sel_args = selector(resolve)
    feats = features(resolve, queue_if_no_path(resolve) if queueing is None else queueing)
    hwh, hwh_args = hwhandler(resolve, paths)
    return dmt.MultipathTable(
        size=sizes.pop(),
        groups=tuple(
            dmt.PathGroup(paths=tuple(dmt.PathSpec(m.dev_t, (str(repeat_count(resolve, feats, m.prio)),))
                                      for m in g), selector=sel, selector_args=sel_args)
            for g in groups
        ),
        features=feats,
        hwhandler=hwh,
        hwhandler_args=hwh_args,
        initial_group=1,
    )


def _shape(t: dmt.MultipathTable) -> tuple[object, ...]:
    # What a reload would change: size, the set of devices per group in group order, selectors, features
    # and handler. queue_if_no_path is left out: a message switches it on a live map without a reload.
    return (
        t.size,
        # Not the paths' repeat counts: the kernel's selectors clamp them (a count above 1 reads back as 1,
        # historical-service-time prints 0), so comparing them reloaded such maps at every event; upstream
        # does not compare them either. A new count reaches the map with its next reload.
        tuple((g.selector, g.selector_args, frozenset(p.dev for p in g.paths)) for g in t.groups),
        t.features.queue_mode, t.features.pg_init_retries, t.features.other, t.hwhandler,
    )


def needs_reload(live: dmt.MultipathTable | None, wanted: dmt.MultipathTable) -> bool:
    return live is None or _shape(live) != _shape(wanted)


def current_group(status: dmt.MultipathStatus) -> int | None:
    """The group in use or about to be: the kernel reports a switch_group's target before any I/O made it
    active, and the active group otherwise."""
    return status.next_group or status.active_group()


def first_up_in_group(path: PathState, paths: Sequence[PathState], table: dmt.MultipathTable) -> bool:
    """followover: `path` came up and no other path of its group is usable (the group itself came back)."""
    usable = {p.dev_t for p in paths if p.usable and p.dev_t != path.dev_t}
    for g in table.groups:
        devs = {s.dev for s in g.paths}
        if path.dev_t in devs:
            return not devs & usable
    return False


def failback_target(paths: Sequence[PathState], table: dmt.MultipathTable) -> int:
    """The 1-based group failback should switch to, given the current priorities of the table's paths."""
    by_dev_t = {p.dev_t: p for p in paths}
    groups = [members([by_dev_t[s.dev] for s in g.paths if s.dev in by_dev_t]) for g in table.groups]
    return best_group(groups)
