"""The daemon's decisions: step(state, event) -> actions.

Upstream's meanings throughout. A path's checker verdict fails or reinstates it in its map; a healthy path is
checked less and less often (up to max_polling_interval), any other one every polling_interval. After a path
changed state the map's status is read again (Revisit) and then: queueing comes back once a path is usable
(no_path_retry had stopped it), and the failback policy may switch to the best group. While a queueing map
has no usable path, no_path_retry N counts checker intervals and then fails the queued I/O. A map that lost
its last path is removed if nothing holds it (flush_on_last_del stops its queueing first).

`state` records are updated in place (checker state, intervals, counters, deadlines); everything that
touches the kernel, a file or the log comes back as an action for the daemon to carry out.
"""

from __future__ import annotations

from collections.abc import Callable

from pymultipathd.policy import actions as act
from pymultipathd.policy import events as ev
from pymultipathd.policy import marginal, plan
from pymultipathd.policy.settings import (
    FailbackMode,
    LastDel,
    MapSettings,
    Resolve,
    RetryMode,
    SanPathErr,
    map_settings,
)
from pymultipathd.policy.state import DaemonState, MapState, PathCheck, PathState

SettingsOf = Callable[[MapState], MapSettings]
PENDING_RECHECK = 1.0  # seconds until a check that had no answer yet is looked at again


def step(state: DaemonState, event: ev.Event, settings_of: SettingsOf) -> list[act.Action]:
    """The actions for one event (see the module docstring). Unknown maps or paths give no actions: the
    event raced with their removal."""
    if isinstance(event, ev.PathChecked):
        return path_checked(state, event, settings_of)
    if isinstance(event, ev.MapRevisited):
        m = state.maps.get(event.map)
        if m is None:
            return []
        came_up = state.paths.get(event.came_up or "")
        return map_revisited(state, m, settings_of(m), came_up, event.now)
    if isinstance(event, ev.Tick):
        out: list[act.Action] = []
        for m in list(state.maps.values()):
            out += tick(state, m, settings_of, event.now)
        return out
    if isinstance(event, ev.MapChanged):
        m = state.maps.get(event.map)
        return [] if m is None else map_changed(state, m, settings_of(m), event.now)
    if isinstance(event, ev.IoSampled):
        p = state.paths.get(event.dev)
        m = state.maps.get(p.map or "") if p is not None else None
        return marginal.sampled(state, event, settings_of(m) if m is not None else MapSettings())
    if isinstance(event, ev.LinkTrouble):
        return link_trouble(state, event, settings_of)
    raise TypeError(f"not an event the policy steps on: {event!r}")  # PathsSettled: see assemble()


def dm_active(m: MapState, p: PathState) -> bool | None:
    """Whether the kernel has `p` active in `m` (None: not in its status)."""
    if m.status is None:
        return None
    for g in m.status.groups:
        for s in g.paths:
            if s.dev == p.dev_t:
                return s.active
    return None


# --- path checks --------------------------------------------------------------------------------------

def path_checked(state: DaemonState, e: ev.PathChecked, settings_of: SettingsOf) -> list[act.Action]:
    p = state.paths.get(e.dev)
    if p is None:
        return []
    m = state.maps.get(p.map or "")
    s = settings_of(m) if m is not None else MapSettings()
    if e.state is PathCheck.PENDING:
        # no answer yet, or the check waits for a thread: it says nothing about the path
        p.next_check = e.now + PENDING_RECHECK
        return []
    if e.state.usable and e.sent is not None and e.sent <= p.link_lost:
        # handed out before the path's network went away: its "up" predates the loss and must not
        # reinstate what link_trouble failed; a check sent now says how the path is
        p.next_check = e.now
        return []
    if e.state is PathCheck.WILD:
        # the configured checker cannot judge this device (an rdac checker on a disk without the RDAC
        # page): as upstream, the path is neither failed nor reinstated, and it is said once
        said: list[act.Action] = [] if p.chk_state is PathCheck.WILD else [
            act.Log(act.Level.WARNING, f"{p.dev}: unusable path checker: {e.message}", p.map, p.dev)]
        p.chk_state, p.chk_msg = e.state, e.message
        p.next_check = e.now + s.polling_interval
        return said
    was_usable, first = p.usable, p.chk_state is PathCheck.UNDEF
    state_now, message = e.state, e.message
    held: list[act.Action] = []
    if state_now.usable and m is not None:
        held, why = shaky(state, m, p, s, e.now)
        if why and not s.marginal_pathgroups:
            state_now, message = PathCheck.DELAYED, f"{e.message}; {why}"
    p.chk_state, p.chk_msg = state_now, message
    now_usable = p.usable
    out: list[act.Action] = held
    changed = now_usable != was_usable and not first
    if m is not None:
        active = dm_active(m, p)
        # a member whose WWID is no longer the map's (recheck_wwid found another LUN behind it) waits to
        # leave the map's table, failed: reinstated, it would serve another LUN's data under this name
        foreign = p.wwid is not None and p.wwid != m.wwid
        if now_usable and active is False and not foreign:
            out += [act.ReinstatePath(m.name, p.dev),
                    act.Log(act.Level.INFO, f"{p.dev}: path up, reinstated in {m.name}", m.name, p.dev)]
            changed = True
        elif foreign and active:
            out += [act.FailPath(m.name, p.dev),
                    act.Log(act.Level.WARNING, f"{p.dev}: WWID {p.wwid} is not {m.name}'s; failed in it",
                            m.name, p.dev)]
            changed = True
        elif not now_usable and active:
            out += [act.FailPath(m.name, p.dev),
                    act.Log(act.Level.WARNING, f"{p.dev}: path down ({e.message}), failed in {m.name}",
                            m.name, p.dev)]
            if s.marginal_path is not None:
                out += marginal.path_failed(m, p, s.marginal_path, e.now)
            changed = True
        if not now_usable and was_usable and not first:
            count_fault(state, m, p)
        elif not now_usable and not was_usable and not first and state_now is not PathCheck.DELAYED:
            # still down: the checker's word again at every check (log_checker_err always), or only in the
            # debug log after the first time (once), as upstream
            level = act.Level.INFO if s.log_checker_err_always else act.Level.DEBUG
            out.append(act.Log(level, f"{p.dev}: still down: {e.message}", m.name, p.dev))
        if m.not_ready_until is not None and state_now is PathCheck.UP:
            out += ready_now(m, f"{p.dev} is an active path")
        if now_usable and not was_usable and m.prflag:
            # a returning path may have lost its registration (a target that forgot its I_T nexus); a first
            # check too: a path that was failed in the kernel's table when the map's keys were synchronised
            out.append(act.RegisterKey(m.name, p.dev))
    if e.prio is not None and e.prio != p.prio:
        # the array moved its ALUA states (or the path came back with another): failback decides anew
        out.append(act.Log(act.Level.INFO, f"{p.dev}: priority {p.prio} -> {e.prio}", p.map, p.dev))
        p.prio = e.prio
        changed = True
        if s.regroup_on_prio and p.wwid:
            out.append(act.Regroup(p.wwid))  # the next plan groups by the new priority, reloads if needed
    # healthy paths back off towards max_polling_interval; anything else is watched closely
    p.interval = min(p.interval * 2, s.max_polling_interval) if (now_usable and was_usable) \
        else s.polling_interval
    p.next_check = e.now + p.interval
    if m is not None:
        if changed:
            out.append(act.Revisit(m.name, p.dev if now_usable else None))
        else:  # failback immediate also undoes a switch an administrator made while nothing changed
            out += failback(state, m, s, e.now, steady=True)
    return out


def shaky(state: DaemonState, m: MapState, p: PathState, s: MapSettings,
          now: float) -> tuple[list[act.Action], str]:
    """A check found `p` up: whether it is marginal all the same (why, or ""), by marginal_path_* (which
    upstream lets win) or san_path_err_*. Marginal, it is held out of its map; with marginal_pathgroups it
    is reinstated, but into a path group of marginal paths (Regroup moves it there and back)."""
    if s.marginal_path is not None:
        skip, out = marginal.suspect(state, m, p, s.marginal_path, now)
        why = "held back: failing I/O (marginal_path_*)" if skip else ""
    elif s.san_path_err is not None:
        out = hold_back(state, m, p, s.san_path_err, now)
        why = f"held back after {p.err_failures} failures" if p.held_since is not None else ""
    else:
        return [], ""
    if s.marginal_pathgroups and bool(why) != p.marginal and p.wwid:
        p.marginal = bool(why)
        word = "marginal: moved to a path group of its own" if p.marginal else "no longer marginal"
        out += [act.Log(act.Level.INFO, f"{p.dev}: {word} in {m.name}", m.name, p.dev), act.Regroup(p.wwid)]
    return out, why


def hold_back(state: DaemonState, m: MapState, p: PathState, rule: SanPathErr,
              now: float) -> list[act.Action]:
    """san_path_err_*, as upstream's check_path_reinstate_state, for a check that found `p` up: count a
    failure each time it comes back from down, forget one per forget_rate healthy checks, and past the
    threshold hold it out of its map (p.held_since) for recovery_time seconds, or until it is the map's
    only usable path. Called before p.chk_state takes the verdict (so it is still the previous state)."""
    before = p.chk_state
    if p.held_since is not None:
        reason = ""
        if not any(q.usable for q in state.paths_of(m) if q is not p):
            reason = "no other usable path in the map"
        else:
            if before not in (PathCheck.UP, PathCheck.GHOST, PathCheck.DELAYED):
                p.err_forget_left, p.held_since = rule.forget_rate, now  # it failed again: start over
            if now - p.held_since > rule.recovery_time:
                reason = f"held back {rule.recovery_time:g} s"
        if not reason:
            return []
        p.err_failures, p.err_forget_left, p.held_since = 0, 0, None
        return [act.Log(act.Level.INFO, f"{p.dev}: reinstating it ({reason})", m.name, p.dev)]
    if before in (PathCheck.UP, PathCheck.GHOST) and p.err_failures > 0:
        if p.err_forget_left > 0:
            p.err_forget_left -= 1
        else:
            p.err_failures -= 1
            p.err_forget_left = rule.forget_rate
        return []
    if before not in (PathCheck.DOWN, PathCheck.SHAKY, PathCheck.TIMEOUT):
        return []
    if p.err_failures == 0:
        p.err_forget_left = rule.forget_rate
    p.err_failures += 1
    if p.err_failures <= rule.threshold:
        return []
    p.held_since = now
    text = (f"{p.dev}: failed {p.err_failures} times (san_path_err_threshold {rule.threshold}); held out of "
            f"{m.name} for {rule.recovery_time:g} s")
    return [act.Log(act.Level.WARNING, text, m.name, p.dev)]


def only_ghosts(paths: list[PathState]) -> bool:
    """ghost_delay's condition: no path is up and some are ghosts (standby ports)."""
    return not any(p.chk_state is PathCheck.UP for p in paths) and any(
        p.chk_state is PathCheck.GHOST for p in paths)


def ready_now(m: MapState, why: str) -> list[act.Action]:
    """End ghost_delay's wait of `m`: announce it ready."""
    m.not_ready_until = None
    return [act.AnnounceReady(m.name), act.Log(act.Level.INFO, f"{m.name}: announced ready: {why}", m.name)]


def count_fault(state: DaemonState, m: MapState, p: PathState) -> None:
    """A usable path of `m` became (or is being made) unusable: upstream's path and map failure counters."""
    p.failures += 1
    m.stats.path_faults += 1
    if not any(q.usable for q in state.paths_of(m) if q is not p):
        m.stats.map_failures += 1


# --- a map after one of its paths changed ------------------------------------------------------------

def map_revisited(state: DaemonState, m: MapState, s: MapSettings, came_up: PathState | None,
                  now: float) -> list[act.Action]:
    out: list[act.Action] = []
    if any(p.usable for p in state.paths_of(m)) and not m.queueing_disabled and s.queue_if_no_path \
            and m.table is not None and not m.queueing:
        # no_path_retry had stopped queueing: resume it, and read the table again (a message raises no DM
        # event), or the daemon would go on thinking the map fails I/O (and leave it queueing at exit)
        out += [act.SetQueueing(m.name, True), act.Refresh(m.name)]
    return out + failback(state, m, s, now, came_up=came_up)


def failback(state: DaemonState, m: MapState, s: MapSettings, now: float, *, came_up: PathState | None = None,
             due: bool = False, steady: bool = False) -> list[act.Action]:
    """Return to the best path group: immediate whenever another group is in use; `failback N` N seconds
    after a path came up (`due`: that time has come); followover only when a path came up as the first
    usable one of its group (so a failover another host asked for is not undone); manual never. `steady`:
    a check that changed nothing, which only immediate acts on."""
    if not (m.table and m.status):
        return []
    mode = s.failback.mode
    if steady and mode is not FailbackMode.IMMEDIATE:
        return []
    paths = state.paths_of(m)
    target, current = plan.failback_target(paths, m.table), plan.current_group(m.status)
    if not target or not current or target == current:
        m.failback_due = None
        return []
    if mode is FailbackMode.DEFERRED and not due:
        if came_up is not None and m.failback_due is None:
            m.failback_due = now + s.failback.seconds
            return [act.Log(act.Level.INFO, f"{m.name}: failback to group {target} in {s.failback.seconds} s",
                            m.name)]
        return []
    if mode is FailbackMode.IMMEDIATE or due or (
            mode is FailbackMode.FOLLOWOVER and came_up is not None
            and plan.first_up_in_group(came_up, paths, m.table)):
        return [act.Log(act.Level.INFO, f"{m.name}: failback from group {current} to group {target} "
                                        f"(failback {s.failback})", m.name),
                act.SwitchGroup(m.name, target), act.Refresh(m.name)]
    return []


# --- the clock ---------------------------------------------------------------------------------------

def tick(state: DaemonState, m: MapState, settings_of: SettingsOf, now: float) -> list[act.Action]:
    """failback N when its time has come; no_path_retry N while a queueing map has no usable path; the end
    of ghost_delay's wait. The map's settings are asked for only when one of these is under way: this
    runs for every map every second, and most ticks of most maps find nothing to do."""
    out: list[act.Action] = []
    if m.not_ready_until is not None and now >= m.not_ready_until:
        out += ready_now(m, f"no active path within ghost_delay ({settings_of(m).ghost_delay:g} s)")
    if m.failback_due is not None and now >= m.failback_due:
        m.failback_due = None
        out += failback(state, m, settings_of(m), now, due=True)
    stalled = m.queueing and not any(p.usable for p in state.paths_of(m))
    if stalled and m.queueing_since is None:
        m.queueing_since = now
    elif not stalled and m.queueing_since is not None:
        m.stats.total_q_time += max(0.0, now - m.queueing_since)
        m.queueing_since = None
    s = settings_of(m) if stalled else None
    if s is None or s.no_path_retry.mode is not RetryMode.COUNT:
        m.retry_ticks = None
        m.retry_next = 0.0
        return out
    npr = s.no_path_retry
    if now < m.retry_next:
        return out
    m.retry_next = now + s.polling_interval
    m.retry_ticks = npr.count if m.retry_ticks is None else m.retry_ticks - 1
    if m.retry_ticks <= 0:
        m.retry_ticks = None
        m.stats.queueing_timeouts += 1
        out += [act.Log(act.Level.WARNING, f"{m.name}: no usable path for {npr.count} checker intervals; "
                                           "failing queued I/O", m.name),
                act.SetQueueing(m.name, False), act.Refresh(m.name)]
    return out


def uninitialized(state: DaemonState, tries: int, delay: float, now: float,
                  from_udev: Callable[[PathState], bool]) -> list[act.Action]:
    """retrigger_tries / retrigger_delay: a disk udev gave no WWID (its uid_attribute property is missing:
    udev timed out on it, or a rule failed) gets a change uevent, `delay` seconds apart, up to `tries`
    times; then it is said once that it stays without one. Counted afresh once it has a WWID. Left alone:
    blacklisted and hidden disks, and those whose WWID is read from sysfs (`from_udev` false: uid_attribute
    is empty for them), which no uevent can give one, as upstream."""
    out: list[act.Action] = []
    for p in state.paths.values():
        if p.wwid or p.blacklisted or p.facts.hidden or not from_udev(p):
            p.retriggers = 0
            continue
        if p.retriggers > tries or now < p.retrigger_next:
            continue
        if p.retriggers == tries:
            p.retriggers += 1  # said once
            if tries:
                said = (f"{p.dev}: still no WWID from udev after {tries} change uevents (retrigger_tries); "
                        "left out of multipath")
                out.append(act.Log(act.Level.WARNING, said, dev=p.dev))
            continue
        p.retriggers += 1
        p.retrigger_next = now + delay
        said = f"{p.dev}: no WWID from udev; change uevent {p.retriggers} of {tries} (retrigger_tries)"
        out += [act.Retrigger(p.dev), act.Log(act.Level.INFO, said, dev=p.dev)]
    return out


# --- the kernel and the network ------------------------------------------------------------------------

def map_changed(state: DaemonState, m: MapState, s: MapSettings, now: float) -> list[act.Action]:
    """The kernel failed paths on I/O errors: check those the daemon still thinks usable now (and count the
    failure for marginal_path_*)."""
    out: list[act.Action] = []
    for p in state.paths_of(m):
        if dm_active(m, p) is False and p.usable:
            p.next_check = now
            out.append(act.Log(act.Level.INFO, f"{p.dev}: failed by the kernel in {m.name}", m.name, p.dev))
            if s.marginal_path is not None:
                out += marginal.path_failed(m, p, s.marginal_path, now)
    return out


def link_trouble(state: DaemonState, e: ev.LinkTrouble, settings_of: SettingsOf) -> list[act.Action]:
    out: list[act.Action] = []
    touched: list[str] = []
    for dev in sorted(e.devs):
        p = state.paths.get(dev)
        if p is None or p.map is None:
            continue
        m = state.maps.get(p.map)
        if m is not None and dm_active(m, p):
            out += [act.FailPath(m.name, dev),
                    act.Log(act.Level.WARNING, f"{dev}: {e.why}; failed in {m.name}", m.name, dev)]
            if p.usable:
                count_fault(state, m, p)
            rule = settings_of(m).marginal_path
            if rule is not None:
                out += marginal.path_failed(m, p, rule, e.now)
        p.chk_state = PathCheck.DOWN
        p.next_check = e.now
        p.link_lost = e.now
        if p.map not in touched:
            touched.append(p.map)
    return out + [act.Refresh(name) for name in touched if name in state.maps]


# --- assembly -----------------------------------------------------------------------------------------

def queueing_for(m: MapState | None, s: MapSettings) -> bool:
    """What a new or reloaded table of `m` says about queueing: off while an administrator (or
    flush_on_last_del) turned it off, else as configured."""
    if m is not None and m.queueing_disabled:
        return False
    return s.queue_if_no_path


def assemble(state: DaemonState, e: ev.PathsSettled, resolve: Resolve) -> list[act.Action]:
    """Bring the map of one WWID in line with the paths claimed for it: create it, reload it when its table
    would change, switch only queueing by message, or remove it when its last path is gone. `resolve`:
    the configuration bound to the WWID and its paths' vendor/product."""
    s = map_settings(resolve)
    m = state.map_of_wwid(e.wwid)
    # the classifier claims a map's members for it; one whose WWID changed is no longer its to claim
    claimed = [state.paths[d] for d in e.claimed if d in state.paths and state.paths[d].wwid == e.wwid]
    if m is None:
        if not claimed:
            return []
        try:
            table = plan.build_table(claimed, resolve, queueing=queueing_for(None, s))
        except ValueError as err:
            return [act.Log(act.Level.ERROR, f"{e.wwid}: cannot build a map: {err}")]
        wait = s.ghost_delay if only_ghosts(claimed) else 0.0
        made = act.CreateMap(e.wwid, tuple(p.dev for p in claimed), table, not_ready_for=wait)
        if not wait:
            return [made]
        said = (f"{e.wwid}: all {len(claimed)} paths are ghosts (standby): the map is announced not ready "
                f"for up to {wait:g} s (ghost_delay)")
        return [made, act.Log(act.Level.INFO, said)]
    # a member whose WWID changed (the array mapped another LUN behind its H:C:T:L) leaves the map: it
    # would serve another LUN's data under this one's name
    kept = {d for d in m.paths if d in state.paths and state.paths[d].wwid == m.wwid}
    keep = {p.dev for p in claimed} | kept
    members = [state.paths[d] for d in sorted(keep)]
    # the WWIDs such members have now are planned again once they are out of this map's table
    moved = [act.Regroup(w) for w in sorted({state.paths[d].wwid or "" for d in m.paths if d in state.paths}
                                             - {m.wwid, ""})]
    if not members:
        return last_path_gone(m, s) + moved
    try:
        wanted = plan.build_table(members, resolve, queueing=queueing_for(m, s))
    except ValueError as err:
        return [act.Log(act.Level.ERROR, f"{m.name}: cannot plan its table: {err}", m.name)]
    out: list[act.Action] = []
    if plan.needs_reload(m.table, wanted):
        out += [act.ReloadMap(m.name, wanted),
                act.Log(act.Level.INFO, f"{m.name}: reloaded with {len(members)} paths", m.name)]
    elif m.table is not None and m.queueing != wanted.features.queue_if_no_path:
        # only queueing differs (a restart after the old daemon stopped queueing): a message, no reload
        out.append(act.SetQueueing(m.name, wanted.features.queue_if_no_path))
    # members join the map when the kernel's table names them (the Refresh relinks): a refused reload
    # leaves a new path out of the map, as it is
    return out + [act.Refresh(m.name)] + moved


def last_path_gone(m: MapState, s: MapSettings) -> list[act.Action]:
    """flush_on_last_del first stops queueing (always, or `unused` when nothing has the map open), then the
    map is removed if nothing holds it; with deferred_remove one still in use goes when its last user
    closes it."""
    out: list[act.Action] = []
    stop = s.flush_on_last_del is LastDel.ALWAYS or (s.flush_on_last_del is LastDel.UNUSED
                                                      and m.open_count == 0)
    if stop and m.queueing:
        m.queueing_disabled = True
        out += [act.Log(act.Level.WARNING, f"{m.name}: last path gone, queueing disabled (flush_on_last_del "
                                           f"{s.flush_on_last_del.value})", m.name),
                act.SetQueueing(m.name, False)]
    return out + [act.RemoveMap(m.name, deferred=s.deferred_remove)]


def members_joined(m: MapState, before: list[str]) -> list[act.RegisterKey]:
    """The map's member list was read again: paths new to it get the map's reservation key (prflag)."""
    if not m.prflag or not before:
        return []  # a map read for the first time is synchronised as a whole (the daemon's pr_sync)
    old = set(before)
    return [act.RegisterKey(m.name, d) for d in m.paths if d not in old]


def created(state: DaemonState, m: MapState, devs: tuple[str, ...]) -> None:
    """A CreateMap succeeded as `m`: it is known and holds its paths."""
    state.maps[m.name] = m
    for d in devs:
        if d in state.paths:
            state.paths[d].map = m.name
