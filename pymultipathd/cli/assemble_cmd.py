"""`pymultipath [-v N] [-d] [-r] [-q] [-p POLICY] [-b FILE] [-B] [DEV|WWID|MAP ...]`: make the multipath maps
of the given devices (or of every device), as upstream's `multipath` 0.9.4 does without an operation flag.

The same library as the daemon decides: the one classifier (classify.assembly_and_verdicts), the policy's
assembly (policy.decide.assemble over policy.plan) and the same device-mapper steps (pymultipathd.mapmaker).
A named device counts as if its WWID were in the wwids file (upstream makes its map whatever
find_multipaths says); a failed-WWID marker does not stop an explicit request.

With pymultipathd running, the daemon stays the one writer of its maps (upstream's multipath writes them
itself, racing the daemon): maps to create are asked of it with "add map WWID", maps whose table differs
with "reload map NAME", and `-r` is "reconfigure" (upstream's delegation) followed by "reload map" of the
maps in scope, since our daemon's reconfigure reloads only maps whose table changes. `-d` never asks the
daemon: it reports what this program's plan is, and touches nothing (no DM ioctl that changes state, no file
written, no uevent).

Layout: options (pure), the plan of each map and its name (pure), what to ask a running daemon (pure), the
report (pure), then the shell that reads the system and carries the plan out.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from pymultipathd import classify, locations, mapmaker, store, topology
from pymultipathd.classify import Verdict, World
from pymultipathd.config import Config
from pymultipathd.control import format as fmt
from pymultipathd.control import grammar
from pymultipathd.dm.errors import DMError
from pymultipathd.dm.ioctl import Control
from pymultipathd.dm.table import MultipathTable, TableError, parse_multipath_params
from pymultipathd.errors import PymultipathError
from pymultipathd.paths import facts
from pymultipathd.paths.grouping import POLICIES
from pymultipathd.policy import actions as act
from pymultipathd.policy import decide
from pymultipathd.policy import events as ev
from pymultipathd.policy.settings import Resolve, map_settings
from pymultipathd.policy.state import DaemonState, MapState
from pymultipathd.record import field, record, replace

PROG = "pymultipath"
DAEMON_TIMEOUT = 60.0      # seconds for one control command (add map waits for the daemon's assembly)
RECONFIGURE_TIMEOUT = 300.0  # seconds for "reconfigure": every path is looked at again
TRANSPORT_TIMEOUT = 10.0   # seconds the sysfs writes of the paths' transport settings may take (+ per path)
PARTITION_TIMEOUT = 30.0   # seconds a new map's partition table read may take (no usable path: it queues)


class UsageError(PymultipathError):
    """A command line that makes no sense; the text says why."""


# --- options ------------------------------------------------------------------------------------------

class Verbosity(enum.IntEnum):
    """-v N, upstream's levels (N > 3 prints what 3 prints)."""

    QUIET = 0     # nothing on stdout; errors still on stderr
    NAMES = 1     # the names of the maps created or reloaded, one a line
    NORMAL = 2    # each map created or reloaded with its topology; warnings
    VERBOSE = 3   # and each path's classification (rule and words), each map's decision and table line


class Role(enum.Enum):
    """What an option of upstream's `multipath` is to map making here."""

    SETTING = "setting"   # taken
    REFUSED = "refused"   # upstream's, with no meaning here: refused with the reason, never ignored
    ACTION = "action"     # another operation mode: run on its own, never combined with map making


@record(frozen=True)
class Spec:
    takes_arg: bool   # as upstream's getopt (the device of -a, -c, -f, ... is an argument of its own)
    role: Role
    text: str  # the meaning (SETTING, ACTION) or why it is refused (REFUSED)


# upstream multipath 0.9.4's getopt string; OPTIONS gives each of its letters a role here
UPSTREAM_GETOPT = ":adDcChl::eFfM:v:p:b:BrR:itTquUwW"

OPTIONS: dict[str, Spec] = {
    "v": Spec(True, Role.SETTING, "how much to print"),
    "d": Spec(False, Role.SETTING, "dry run"),
    "r": Spec(False, Role.SETTING, "force a reload"),
    "q": Spec(False, Role.SETTING, "allow queue_if_no_path without a running daemon"),
    "p": Spec(True, Role.SETTING, "path grouping policy of new maps"),
    "b": Spec(True, Role.SETTING, "bindings file"),
    "B": Spec(False, Role.SETTING, "bindings file read-only"),
    "i": Spec(False, Role.SETTING, "deprecated: find_multipaths greedy"),
    "R": Spec(True, Role.REFUSED, "retrying the removal of maps in use is not supported (pymultipath -f "
                                  "tries a busy map a fixed 3 times, then lists its holders); leave -R out"),
    "e": Spec(False, Role.REFUSED, "foreign multipath libraries are not supported (native NVMe multipath is "
                                   "left to the kernel); leave -e out"),
    "D": Spec(False, Role.REFUSED, "not asking a running daemon would make two writers of its maps; stop "
                                   "pymultipathd first to make maps without it"),
    "M": Spec(True, Role.REFUSED, "upstream accepts and ignores it; leave it out"),
    "a": Spec(False, Role.ACTION, "add a WWID to the wwids file"),
    "c": Spec(False, Role.ACTION, "check a path"),
    "C": Spec(False, Role.ACTION, "check a map's usable paths"),
    "h": Spec(False, Role.ACTION, "help"),
    "l": Spec(False, Role.ACTION, "show the topology"),
    "f": Spec(False, Role.ACTION, "flush a map"),
    "F": Spec(False, Role.ACTION, "flush every map"),
    "t": Spec(False, Role.ACTION, "show the configuration"),
    "T": Spec(False, Role.ACTION, "show the configuration"),
    "u": Spec(False, Role.ACTION, "the udev helper"),
    "U": Spec(False, Role.ACTION, "the udev helper for maps"),
    "w": Spec(False, Role.ACTION, "remove a WWID from the wwids file"),
    "W": Spec(False, Role.ACTION, "reset the wwids file"),
}


@record(frozen=True)
class Options:
    verbosity: int = Verbosity.NORMAL
    dry_run: bool = False
    force_reload: bool = False
    allow_queueing: bool = False
    policy: str | None = None
    bindings_file: str | None = None
    bindings_read_only: bool = False
    greedy: bool = False          # -i
    devices: tuple[str, ...] = ()

    @property
    def daemon_conflicts(self) -> list[str]:
        """Options a running daemon cannot honour: it groups and names its maps by its own configuration."""
        out = []
        if self.policy is not None:
            out.append(f"-p {self.policy}")
        if self.bindings_file is not None:
            out.append(f"-b {self.bindings_file}")
        if self.bindings_read_only:
            out.append("-B")
        return out


def _flag(letter: str, value: str | None) -> str:
    return f"-{letter}" + (f" {value}" if value is not None else "")


def parse_options(argv: Sequence[str]) -> Options:
    """Upstream's command line (getopt: options may be clustered, "-v3" or "-v 3", and mixed with the
    device arguments; "--" ends the options). UsageError for what makes no sense."""
    given: list[tuple[str, str | None]] = []
    devices: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            devices += argv[i:]
            break
        if arg.startswith("--"):
            raise UsageError(f"unknown option {arg}")
        if not arg.startswith("-") or arg == "-":
            devices.append(arg)
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            j += 1
            spec = OPTIONS.get(letter)
            if spec is None:
                raise UsageError(f"unknown option -{letter}")
            value: str | None = None
            if letter == "l" and arg[j:j + 1] == "l":  # -ll: upstream's optional argument of -l
                letter, j = "ll", j + 1
            elif spec.takes_arg:
                if j < len(arg):
                    value, j = arg[j:], len(arg)
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise UsageError(f"-{letter} needs an argument")
            given.append((letter, value))
    settings = [(k, v) for k, v in given if OPTIONS[k[0]].role is Role.SETTING]
    for k, _ in given:
        spec = OPTIONS[k[0]]
        if spec.role is Role.REFUSED:
            raise UsageError(f"-{k}: {spec.text}")
        if spec.role is Role.ACTION:
            with_what = ", ".join([_flag(s, sv) for s, sv in settings if s != "v"] + list(devices))
            raise UsageError(f"-{k} ({spec.text}) is an action of its own and cannot be combined with map "
                             f"making ({with_what or 'options before it'}); run it on its own")
    opts = Options(devices=tuple(devices))
    for k, v in settings:
        if k == "v":
            if v is None or not v.isdigit():
                raise UsageError(f"-v needs a number (0 quiet, 1 map names, 2 default, 3 verbose), not {v!r}")
            opts = replace(opts, verbosity=int(v))
        elif k == "d":
            opts = replace(opts, dry_run=True)
        elif k == "r":
            opts = replace(opts, force_reload=True)
        elif k == "q":
            opts = replace(opts, allow_queueing=True)
        elif k == "p":
            if v not in POLICIES:
                raise UsageError(f"-p: {v!r} is not a path grouping policy (one of {', '.join(POLICIES)})")
            opts = replace(opts, policy=v)
        elif k == "b":
            if not v or "\0" in v:
                raise UsageError("-b needs the path of a bindings file")
            opts = replace(opts, bindings_file=v)
        elif k == "B":
            opts = replace(opts, bindings_read_only=True)
        elif k == "i":
            opts = replace(opts, greedy=True)
    for dev in devices:
        if not dev or any(c in dev for c in "\0\n\r"):
            raise UsageError(f"{dev!r} is not a device, WWID or map name")
    return opts


# --- which WWIDs the arguments designate ---------------------------------------------------------------

@record(frozen=True)
class Target:
    """One command-line argument and the WWID it designates (None: none, `why` says why)."""

    arg: str
    wwid: str | None
    why: str


def designate(arg: str, ident: str, state: DaemonState, world: World, bindings: Mapping[str, str],
              aliases: Mapping[str, str]) -> Target:
    """What `arg` names, as upstream's multipath takes it: a map (name, WWID, uuid, dm-N, major:minor), a
    path (kernel name, major:minor), an alias of the bindings file or of a multipaths entry, else a WWID.
    `ident` is `arg` with a /dev path resolved to its kernel name; `bindings` alias -> WWID; `aliases` the
    multipaths entries' alias -> WWID."""
    m = state.find_map(ident)
    if m is not None:
        return Target(arg, m.wwid, f"map {m.name}")
    for p in world.paths:
        if ident in (p.dev, p.dev_t):
            if p.devtype != "disk":
                return Target(arg, None, f"{p.dev} is a {p.devtype or 'device without DEVTYPE'}, not a whole "
                                         "disk; partitions follow their disk")
            if not p.wwid:
                return Target(arg, None, f"{p.dev} has no WWID (udev gave no uid_attribute property)")
            return Target(arg, p.wwid, f"path {p.dev}")
    for how, table in (("bindings file alias", bindings), ("multipaths alias", aliases)):
        if ident in table:
            return Target(arg, table[ident], f"{how} {ident}")
    if arg.startswith("/"):
        return Target(arg, None, "neither a multipath map nor a disk udev has set up")
    try:
        store.check_wwid(ident, for_bindings=True)
    except ValueError as err:
        return Target(arg, None, str(err))
    return Target(arg, ident, "WWID")


def config_aliases(config: Config) -> dict[str, str]:
    """alias -> WWID of the multipaths entries."""
    out: dict[str, str] = {}
    for entry in config.multipaths:
        wwid, alias = entry.get("wwid"), entry.get("alias")
        if wwid and alias:
            out.setdefault(str(alias), str(wwid))
    return out


# --- classification -----------------------------------------------------------------------------------

@record(frozen=True)
class Scope:
    """The WWIDs map making looks at, the world they are classified in and the classifier's answer."""

    wwids: tuple[str, ...]
    named: frozenset[str]                 # WWIDs named on the command line
    recorded: frozenset[str]              # WWIDs the wwids file really holds
    world: World
    claimed: Mapping[str, tuple[str, ...]]  # WWID -> the claimed paths that can be paths (in state.paths)
    verdicts: Mapping[str, Verdict]


def scope(state: DaemonState, world: World, config: Config, named: Iterable[str] | None) -> Scope:
    """Classify the paths of the named WWIDs (None: of every WWID a disk or map has). A named WWID counts as
    recorded in the wwids file and not failed: naming a device asks for its map, as upstream's multipath
    makes one for a named device whatever find_multipaths says."""
    recorded = world.wwids
    if named is None:
        chosen = {p.wwid for p in state.paths.values() if p.wwid} | {m.wwid for m in state.maps.values()}
        asked: frozenset[str] = frozenset()
    else:
        asked = frozenset(named)
        chosen = set(asked)
        world = replace(world, wwids=world.wwids | asked, failed_wwids=world.failed_wwids - asked)
    world = classify.restrict(world, chosen)
    claimed, verdicts = classify.assembly_and_verdicts(world, config)
    mine = {w: tuple(d for d in claimed.get(w, ()) if d in state.paths) for w in chosen}
    return Scope(tuple(sorted(chosen)), asked, recorded, world, mine, verdicts)


# --- the plan of one map --------------------------------------------------------------------------------

class Action(enum.Enum):
    CREATE = "create"
    RELOAD = "reload"
    QUEUEING = "queueing"     # only queue_if_no_path differs: switched by a message, no reload
    UNCHANGED = "unchanged"
    KEEP = "keep"             # a map none of whose paths is left: map making never removes a map
    NONE = "none"             # no map, and no path claimed for one
    ERROR = "error"           # no table can be built (paths disagree on size, ...)


@record(frozen=True)
class MapPlan:
    wwid: str
    action: Action
    why: str
    name: str = ""                     # the live map's; for CREATE the name it gets (see names())
    devs: tuple[str, ...] = ()         # the paths of the table to load, in table order
    table: MultipathTable | None = None
    queueing: bool | None = None       # QUEUEING: on or off
    vendor: str = ""
    product: str = ""
    revision: str = ""
    notes: tuple[str, ...] = ()        # extra words for -v3


def overridden(resolve: Resolve, overrides: Mapping[str, object]) -> Resolve:
    """The configuration with the command line's settings on top (-p; no queueing without a daemon)."""
    if not overrides:
        return resolve
    return lambda kw: overrides[kw] if kw in overrides else resolve(kw)


class Part(enum.Enum):
    """A part of a multipath table a reload may change."""

    SIZE = "size"
    PATHS = "paths"
    GROUPS = "path groups"
    SELECTOR = "path selector"
    FEATURES = "features"
    HWHANDLER = "hardware handler"


# the parts only the configuration decides (the paths and their grouping also follow path states and
# priorities, which a running daemon knows better than a one-off reading)
CONFIGURED_PARTS = frozenset({Part.SELECTOR, Part.FEATURES, Part.HWHANDLER})


def table_differences(live: MultipathTable, wanted: MultipathTable) -> list[tuple[Part, str]]:
    """What a reload changes, part by part in words (the parts policy.plan.needs_reload compares)."""
    out = []
    if live.size != wanted.size:
        out.append((Part.SIZE, f"size {live.size} -> {wanted.size} sectors"))
    old, new = set(live.devices()), set(wanted.devices())
    if old != new:
        moved = [f"+{d}" for d in sorted(new - old)] + [f"-{d}" for d in sorted(old - new)]
        out.append((Part.PATHS, "paths " + " ".join(moved)))
    elif [frozenset(p.dev for p in g.paths) for g in live.groups] != \
            [frozenset(p.dev for p in g.paths) for g in wanted.groups]:
        out.append((Part.GROUPS, f"path groups {len(live.groups)} -> {len(wanted.groups)} (or their order "
                                 "or members)"))
    selectors = [{(g.selector, g.selector_args) for g in t.groups} for t in (live, wanted)]
    if selectors[0] != selectors[1]:
        out.append((Part.SELECTOR, "path selector " + " -> ".join(
            ",".join(sorted(" ".join((s, *a)) for s, a in sel)) for sel in selectors)))
    lf, wf = live.features, wanted.features
    if (lf.queue_mode, lf.pg_init_retries, lf.other) != (wf.queue_mode, wf.pg_init_retries, wf.other):
        out.append((Part.FEATURES, f"features '{' '.join(lf.words())}' -> '{' '.join(wf.words())}'"))
    if (live.hwhandler, live.hwhandler_args) != (wanted.hwhandler, wanted.hwhandler_args):
        out.append((Part.HWHANDLER, f"hardware handler {live.hwhandler or 'none'} -> "
                                    f"{wanted.hwhandler or 'none'}"))
    return out


def _devs_of(state: DaemonState, table: MultipathTable) -> tuple[str, ...]:
    out = []
    for dev_t in table.devices():
        p = state.path_by_dev_t(dev_t)
        out.append(p.dev if p is not None else dev_t)
    return tuple(out)


def _forced(state: DaemonState, m: MapState) -> DaemonState:
    """`state` with the live table of `m` unknown, so any table the policy plans differs from it: -r."""
    maps = dict(state.maps)
    maps[m.name] = replace(m, table=None)
    return DaemonState(paths=state.paths, maps=maps)


def plan_map(state: DaemonState, wwid: str, claimed: tuple[str, ...], resolve: Resolve, *,
             force: bool = False) -> MapPlan:
    """What map making does for `wwid`, from the policy's assembly (policy.decide.assemble, what the daemon
    does for a batch of uevents), with `force` (-r) reloading a map whose table would not change."""
    m = state.map_of_wwid(wwid)
    vendor, product, revision = mapmaker.map_identity(state, claimed, m)
    base = MapPlan(wwid, Action.UNCHANGED, "", name=m.name if m else "", vendor=vendor or "",
                   product=product or "", revision=revision or "")
    todo = decide.assemble(state, ev.PathsSettled(wwid, claimed), resolve)
    for a in todo:
        if isinstance(a, act.Log) and a.level >= act.Level.ERROR:
            return replace(base, action=Action.ERROR, why=a.text)
        if isinstance(a, act.CreateMap):
            return replace(base, action=Action.CREATE, why="no map exists for this WWID", devs=a.devs,
                           table=a.table)
        if isinstance(a, act.ReloadMap):
            why = "; ".join(t for _, t in table_differences(m.table, a.table)) if m and m.table \
                else "no live table"
            return replace(base, action=Action.RELOAD, why=f"its table differs: {why}",
                           devs=_devs_of(state, a.table), table=a.table)
        if isinstance(a, act.RemoveMap):
            return replace(base, action=Action.KEEP, why="none of its paths is left; map making does not "
                           "remove maps (pymultipath -f does, and the daemon when the last path goes)")
    if m is None:
        return replace(base, action=Action.NONE, why="no path is claimed for a map")
    setq = next((a for a in todo if isinstance(a, act.SetQueueing)), None)
    if force:
        forced = decide.assemble(_forced(state, m), ev.PathsSettled(wwid, claimed), resolve)
        reload = next((a for a in forced if isinstance(a, act.ReloadMap)), None)
        if reload is not None:
            return replace(base, action=Action.RELOAD, why="forced (-r); the table itself is unchanged"
                           + (" but for queue_if_no_path" if setq else ""),
                           devs=_devs_of(state, reload.table), table=reload.table)
    if setq is not None:
        return replace(base, action=Action.QUEUEING, queueing=setq.on, table=m.table,
                       devs=tuple(m.paths), why=f"only queue_if_no_path differs: turned "
                       f"{'on' if setq.on else 'off'} by a message")
    return replace(base, why="its table is as planned", table=m.table, devs=tuple(m.paths))


def plan_all(state: DaemonState, sc: Scope, config: Config, opts: Options, *,
             daemon_running: bool) -> list[MapPlan]:
    """The plan of every WWID in scope. -p applies to maps made now (upstream: "existing maps are not
    modified"); without a running daemon (and without -q) no map queues I/O, as upstream's multipath
    leaves it: nothing would reinstate a path, and queued I/O would wait forever."""
    no_queueing = not daemon_running and not opts.allow_queueing
    plans = []
    for wwid in sc.wwids:
        claimed = sc.claimed.get(wwid, ())
        m = state.map_of_wwid(wwid)
        vendor, product, revision = mapmaker.map_identity(state, claimed, m)
        overrides: dict[str, object] = {}
        if opts.policy is not None and m is None:
            overrides["path_grouping_policy"] = opts.policy
        if no_queueing:
            overrides["no_path_retry"] = "fail"
        configured = topology.resolver(config, wwid, vendor, product, revision)
        p = plan_map(state, wwid, claimed, overridden(configured, overrides), force=opts.force_reload)
        notes = []
        if no_queueing and map_settings(configured).queue_if_no_path \
                and p.action in (Action.CREATE, Action.RELOAD, Action.QUEUEING):
            notes.append("pymultipathd is not running: queue_if_no_path off (-q keeps what the "
                         "configuration says)")
        if "path_grouping_policy" in overrides and p.action is Action.CREATE:
            notes.append(f"path_grouping_policy {opts.policy} (-p)")
        plans.append(replace(p, notes=tuple(notes)))
    return plans


# --- names of the maps to create --------------------------------------------------------------------------

class NameSource(enum.Enum):
    CONFIGURED = "the alias of its multipaths entry"
    BOUND = "its alias in the bindings file"
    NEW_BINDING = "a new alias for the bindings file"
    WWID = "its WWID"


@record(frozen=True)
class Naming:
    name: str
    source: NameSource
    prefix: str = ""   # NEW_BINDING: the alias prefix it is bound under


def names(new: Sequence[tuple[str, Resolve]], bindings: Mapping[str, str], taken: Iterable[str], *,
          read_only: bool = False) -> dict[str, Naming]:
    """The name each new map gets, as the daemon names them: a multipaths alias; with user_friendly_names
    its alias in the bindings file, else the lowest free <alias_prefix><letters> (free of the bindings file
    and of the names of existing maps), given in WWID order; without user_friendly_names (or with -B and no
    binding yet) its WWID. `bindings`: alias -> WWID. Pure: nothing is bound here (see bind())."""
    bound = store.aliases_by_wwid(bindings)
    claimed = set(bindings) | set(taken)
    out: dict[str, Naming] = {}
    for wwid, r in sorted(new, key=lambda item: item[0]):
        alias = r("alias")
        if alias:
            out[wwid] = Naming(str(alias), NameSource.CONFIGURED)
        elif not r("user_friendly_names"):
            out[wwid] = Naming(wwid, NameSource.WWID)
        elif wwid in bound:
            out[wwid] = Naming(bound[wwid], NameSource.BOUND)
        elif read_only:
            out[wwid] = Naming(wwid, NameSource.WWID)
        else:
            prefix = str(r("alias_prefix") or "mpath")
            candidate, _ = store.lowest_free_alias(prefix, claimed)
            claimed.add(candidate)
            out[wwid] = Naming(candidate, NameSource.NEW_BINDING, prefix)
    return out


# --- what to ask a running daemon --------------------------------------------------------------------------

@record(frozen=True)
class Ask:
    """One control command, and the map it is about."""

    command: str
    action: Action
    wwid: str = ""
    name: str = ""


def command(*words: str) -> str:
    """A control command from words, each quoted as the daemon's grammar reads it back (a WWID or name is
    data, never more words). UsageError if it would not fit the protocol."""
    text = grammar.join_words(list(words))
    if len(text.encode()) + 1 > 512:
        raise UsageError(f"{' '.join(words[:2])}: the argument is too long for a control command")
    return text


def asks(plans: Sequence[MapPlan]) -> list[Ask]:
    """Without -r: the maps to create are asked for by WWID ("add map", which also records the WWID in the
    wwids file), the maps whose table differs are reloaded by the daemon from its own view ("reload map").
    A queueing difference is the daemon's own state (disablequeueing, no_path_retry running out): left."""
    out = []
    for p in plans:
        if p.action is Action.CREATE:
            out.append(Ask(command("add", "map", p.wwid), Action.CREATE, p.wwid))
        elif p.action is Action.RELOAD:
            out.append(Ask(command("reload", "map", p.name), Action.RELOAD, p.wwid, p.name))
    return out


def forced_asks(named: Iterable[str], daemon_maps: Mapping[str, str]) -> list[Ask]:
    """-r after the daemon reconfigured: reload the daemon's maps of the named WWIDs (every map of it when
    none is named); a named WWID without a map is asked for. `daemon_maps`: name -> WWID."""
    named = sorted(set(named))
    by_wwid = {w: n for n, w in sorted(daemon_maps.items())}
    if not named:
        return [Ask(command("reload", "map", n), Action.RELOAD, w, n) for n, w in sorted(daemon_maps.items())]
    out = []
    for w in named:
        if w in by_wwid:
            out.append(Ask(command("reload", "map", by_wwid[w]), Action.RELOAD, w, by_wwid[w]))
        else:
            out.append(Ask(command("add", "map", w), Action.CREATE, w))
    return out


def parse_daemon_maps(reply: str) -> dict[str, str]:
    """`show maps raw format "%n %w"` -> name -> WWID."""
    out = {}
    for line in reply.splitlines():
        words = line.split()
        if len(words) == 2:
            out[words[0]] = words[1]
    return out


# The classifier's rule for a WWID the wwids file holds, taken from its list: the keyword-effects guard reads
# the bare word as the deprecated keyword of the same name.
WWIDS_RULE = next(r for r in classify.RULES if r.startswith("wwids"))


# --- the report ---------------------------------------------------------------------------------------

def topology_text(plan: MapPlan, state: DaemonState, m: MapState | None = None) -> str:
    """The map as `multipath -ll` shows it: from the kernel's view `m` after it was made or reloaded, or
    (a dry run) from the plan, with "undef" for what only the kernel knows."""
    if m is None:
        live = state.map_of_wwid(plan.wwid)
        m = MapState(name=plan.name, wwid=plan.wwid, dm_dev=live.dm_dev if live else "undef",
                     table=plan.table)
    m = replace(m, vendor=m.vendor or plan.vendor, product=m.product or plan.product)
    # copies tied to this map, so the path lines show its kernel states (the plan's paths may be free now)
    paths = {d: replace(state.paths[d], map=m.name) for d in plan.devs if d in state.paths}
    view = DaemonState(paths=paths, maps={m.name: m})
    view.set_paths(m, [d for d in plan.devs if d in paths])
    return fmt.topology(view, m)


def path_lines(wwid: str, sc: Scope, state: DaemonState, config: Config) -> list[str]:
    """-v3: each path of `wwid` and what the classifier said of it: decision, rule, and the rule's words."""
    out = []
    for f in sorted((p for p in sc.world.paths if p.wwid == wwid), key=lambda p: p.dev):
        verdict, steps = classify.explain(f, sc.world, config, for_udev=False)
        words = steps[-1].words if steps else ""
        if verdict.rule == WWIDS_RULE and wwid not in sc.recorded:
            words += (" (named on the command line, so counted as if it were; it is recorded once its map is "
                      "made)")
        p = state.paths.get(f.dev)
        where = f" {p.hcil} prio {p.prio}" if p is not None else ""
        out.append(f"  {f.dev} {f.dev_t}{where}: {verdict.decision} by rule {verdict.rule}: {words}")
    return out


def plan_lines(plan: MapPlan, name: Naming | None) -> list[str]:
    """-v3: the decision for one map, why, and the table line it loads."""
    label = plan.name or plan.wwid
    out = [f"  {label}: {plan.action.value}: {plan.why}"]
    if name is not None:
        out.append(f"  name {name.name}: {name.source.value}")
    out += [f"  {note}" for note in plan.notes]
    if plan.table is not None and plan.action is not Action.KEEP:
        out.append(f"  table: {plan.table.line()}")
    return out


def header(plan: MapPlan) -> str:
    """Upstream's first words for a map it creates or reloads at -v2 and up."""
    return f"{plan.action.value}: "


def dry_run_report(plans: Sequence[MapPlan], sc: Scope, state: DaemonState, config: Config,
                   namings: Mapping[str, Naming], verbosity: int, *, daemon_running: bool) -> str:
    """What `-d` prints: at -v1 the names of the maps it would create or reload, at -v2 each with its
    topology, at -v3 first each WWID's paths with the classifier's rule and the decision with its table."""
    out: list[str] = []
    if verbosity >= Verbosity.VERBOSE and daemon_running:
        out.append("pymultipathd is running: without -d, maps to create would be asked of it (add map) and "
                   "maps to reload reloaded by it (reload map)")
    for plan in plans:
        naming = namings.get(plan.wwid)
        if naming is not None:
            plan = replace(plan, name=naming.name)
        if verbosity >= Verbosity.VERBOSE:
            out.append(f"{plan.wwid}:")
            out += path_lines(plan.wwid, sc, state, config)
            out += plan_lines(plan, naming)
        if plan.action not in (Action.CREATE, Action.RELOAD):
            continue
        if verbosity == Verbosity.NAMES:
            out.append(plan.name)
        elif verbosity >= Verbosity.NORMAL:
            out.append(header(plan) + topology_text(plan, state).rstrip("\n"))
    return "".join(line + "\n" for line in out)


def unmade(plans: Sequence[MapPlan], sc: Scope) -> list[str]:
    """Why each named WWID gets no map: its paths' verdicts, or the plan's reason."""
    out = []
    for p in plans:
        if p.wwid not in sc.named or p.action not in (Action.NONE, Action.ERROR):
            continue
        said = [f"{f.dev}: {sc.verdicts[f.dev].decision} ({sc.verdicts[f.dev].rule})"
                for f in sc.world.paths if f.wwid == p.wwid and f.dev in sc.verdicts]
        out.append(f"{p.wwid}: no map: {p.why}" + (f" [{'; '.join(said)}]" if said else ""))
    return out


# --- the shell: reading the system ---------------------------------------------------------------------

@record
class Snapshot:
    """The system as map making reads it."""

    state: DaemonState
    world: World
    bindings: dict[str, str] = field(default_factory=dict)  # alias -> WWID
    problems: list[str] = field(default_factory=list)


def gather(ctl: Control, config: Config) -> Snapshot:
    """Blocking: the multipath maps from device mapper, every disk from sysfs and udev, the stored files.
    Nothing is written and no path gets I/O (priorities are read later, for the claimed paths only)."""
    found, failed = topology.multipath_maps(ctl)
    problems = [f"{name}: {err}" for name, err in failed]
    world = facts.world_all(config)
    problems += list(world.unread)
    state = DaemonState()
    for m, _ in found:
        state.maps[m.name] = m
    for f in world.paths:
        if mapmaker.is_path_candidate(f.dev):
            r = topology.resolver(config, f.wwid, f.vendor, f.product, f.revision)
            p = topology.path_state(f, r, None, read_prio=False)
            p.blacklisted = classify.blacklisted(f, config)
            state.paths[f.dev] = p
    for m in state.maps.values():
        state.relink(m)
    try:
        bindings = store.read_bindings()
    except store.StoreError as err:
        bindings = {}
        problems.append(str(err))
    return Snapshot(state, world, bindings, problems)


def read_priorities(state: DaemonState, sc: Scope, config: Config) -> list[str]:
    """The priorities of the claimed paths, before they are grouped. A prioritizer sends commands to the
    array, each bounded by the path's checker_timeout (else its SCSI timeout), but a command to a blocked
    session waits without its timer running: every path is read at once on a thread of its own, and the
    command waits for them PRIO_TIMEOUTS timeouts at most. A path not read is grouped with priority 0 and
    named in the returned problems."""
    due = {d: state.paths[d] for devs in sc.claimed.values() for d in devs if state.paths[d].prio_due}
    return mapmaker.read_priorities(due, config)


# --- the shell: carrying the plan out -------------------------------------------------------------------

class Shell:
    """Prints as upstream's multipath does (stdout per -v; errors always on stderr) and keeps the exit
    status: 1 once anything failed."""

    def __init__(self, verbosity: int, out: Callable[[str], object] | None = None,
                 err: Callable[[str], object] | None = None) -> None:
        self.verbosity = verbosity
        # the streams of the moment they are written to (a caller may have replaced sys.stdout since)
        self._out = out or (lambda text: sys.stdout.write(text))
        self._err = err or (lambda text: sys.stderr.write(text))
        self.failed = False

    def show(self, text: str, level: int = Verbosity.NORMAL) -> None:
        if self.verbosity >= level and text:
            self._out(text if text.endswith("\n") else text + "\n")

    def warn(self, text: str) -> None:
        if self.verbosity >= Verbosity.NORMAL:
            self._err(f"{PROG}: {text}\n")

    def error(self, text: str) -> None:
        self.failed = True
        self._err(f"{PROG}: {text}\n")

    def made(self, plan: MapPlan, topology_of: Callable[[], str]) -> None:
        """A map created or reloaded: its name at -v1, with its topology at -v2 and up."""
        if self.verbosity == Verbosity.NAMES:
            self.show(plan.name, Verbosity.NAMES)
        elif self.verbosity >= Verbosity.NORMAL:
            self.show(header(plan) + topology_of())


def bind(namings: dict[str, Naming], sh: Shell, taken: Iterable[str]) -> dict[str, Naming]:
    """Write the new aliases to the bindings file (one locked write per prefix, as the daemon batches);
    another writer may have bound some meanwhile, which wins. A file that cannot be written leaves those
    maps named after their WWID, as the daemon does."""
    out = dict(namings)
    by_prefix: dict[str, list[str]] = {}
    for wwid, n in namings.items():
        if n.source is NameSource.NEW_BINDING:
            by_prefix.setdefault(n.prefix, []).append(wwid)
    for prefix, wwids in by_prefix.items():
        try:
            bound = store.aliases_for(wwids, prefix, reserved=set(taken))
        except (store.StoreError, ValueError) as err:
            sh.warn(f"cannot bind aliases in the bindings file: {err}; those maps are named after their WWID")
            bound = {}
        for w in wwids:
            out[w] = Naming(bound[w], NameSource.NEW_BINDING, prefix) if w in bound \
                else Naming(w, NameSource.WWID)
    return out


def carry_out(ctl: Control, plans: Sequence[MapPlan], snap: Snapshot, sc: Scope, config: Config,
              namings: dict[str, Naming], sh: Shell) -> None:
    """Make the plan real without a daemon, as the daemon carries out a batch (daemon/core.py): transport
    settings, then each create, reload or queueing message, then the wwids file, then partition maps."""
    state = snap.state
    namings = bind(namings, sh, state.maps)
    todo = [p for p in plans if p.action in (Action.CREATE, Action.RELOAD, Action.QUEUEING, Action.UNCHANGED)]

    def resolver_of(wwid: str) -> Callable[[str | None], Resolve]:
        claimed = sc.claimed.get(wwid, ())
        vendor, product, revision = mapmaker.map_identity(state, claimed, state.map_of_wwid(wwid))
        return lambda protocol: topology.resolver(config, wwid, vendor, product, revision, protocol)

    work = [w for p in todo
            if (w := mapmaker.transport_work(state, p.wwid, sc.claimed.get(p.wwid, ()), resolver_of(p.wwid)))]
    if work:
        deadline = TRANSPORT_TIMEOUT + 0.05 * sum(len(w.devs) for w in work)
        try:
            problems = mapmaker.bounded(functools.partial(mapmaker.apply_transport, work), deadline,
                                        "transport")
            for wwid, problem in problems:
                sh.warn(f"{wwid}: {problem}")
        except TimeoutError:
            sh.warn(f"setting the paths' transport settings did not finish within {deadline:.0f} s")

    created: list[MapPlan] = []
    for plan in todo:
        table = plan.table
        if plan.action is Action.CREATE and table is not None:
            plan = replace(plan, name=namings[plan.wwid].name)
            paths = [state.paths[d] for d in plan.devs if d in state.paths]
            try:
                mapmaker.create(ctl, plan.name, plan.wwid, table)
            except DMError as err:
                sh.error(f"{plan.wwid}: creating map {plan.name} failed: {err}; releasing its paths to the "
                         "system")
                _mark(plan.wwid, True, sh)
                mapmaker.announce([p.dev for p in paths], "add")  # let LVM, mounts, etc. pick them up
                continue
            _mark(plan.wwid, False, sh)
            created.append(plan)
            sh.made(plan, functools.partial(_live_topology, ctl, plan, state))
            mapmaker.announce(mapmaker.unclaimed(paths), "change")  # udev reruns -u, which sees the map
        elif plan.action is Action.RELOAD and table is not None:
            try:
                mapmaker.reload(ctl, plan.name, table)
            except DMError as err:
                sh.error(f"{plan.name}: reloading failed: {err}")
                continue
            sh.made(plan, functools.partial(_live_topology, ctl, plan, state))
        elif plan.action is Action.QUEUEING and plan.queueing is not None:
            try:
                mapmaker.set_queueing(ctl, plan.name, plan.queueing)
            except DMError as err:
                sh.error(f"{plan.name}: {'queue' if plan.queueing else 'fail'}_if_no_path refused: {err}")
    if created:
        try:
            store.add_wwids([p.wwid for p in created])
        except (store.StoreError, ValueError) as err:
            sh.error(f"cannot record the WWIDs of the new maps in the wwids file: {err}")
    for plan in created:
        if topology.resolver(config, plan.wwid, plan.vendor or None, plan.product or None,
                             plan.revision or None)("skip_kpartx"):
            continue
        try:
            mapmaker.partition_maps(ctl, plan.name, PARTITION_TIMEOUT)
        except TimeoutError:
            sh.warn(f"{plan.name}: its partition table did not answer within {PARTITION_TIMEOUT:g} s; no "
                    "partition maps (the daemon makes them when it starts)")
        except (DMError, OSError) as err:
            sh.warn(f"{plan.name}: partition maps: {err}")


def _mark(wwid: str, failed: bool, sh: Shell) -> None:
    """The failed-WWID marker udev's helper reads: set when a map could not be made, cleared when it was."""
    try:
        (store.mark_failed if failed else store.unmark_failed)(wwid)
    except (store.StoreError, ValueError) as err:
        sh.warn(f"{wwid}: the failed-WWID marker: {err}")


def _live_topology(ctl: Control, plan: MapPlan, state: DaemonState) -> str:
    try:
        m = mapmaker.read_back(ctl, MapState(name=plan.name, wwid=plan.wwid))
    except (DMError, PymultipathError):
        m = None
    return topology_text(plan, state, m).rstrip("\n")


def read_table(ctl: Control, name: str) -> MultipathTable | None:
    """The live multipath table of map `name` (None: gone, or not a multipath table)."""
    try:
        lines = [t for t in ctl.table(name) if t.target == "multipath"]
        return parse_multipath_params(lines[0].params, lines[0].length) if lines else None
    except (DMError, TableError):
        return None


def delegate(plans: Sequence[MapPlan], sc: Scope, opts: Options, sh: Shell, send: Callable[[str, float], str],
             live_table: Callable[[str], MultipathTable | None]) -> None:
    """With pymultipathd running: ask it (see the module docstring). `send(command, timeout)` -> reply;
    `live_table(name)`: the map's table as the kernel has it now (None: unreadable)."""
    from pymultipathd.control.client import ClientError

    def ask(text: str, timeout: float = DAEMON_TIMEOUT) -> str | None:
        try:
            reply = send(text, timeout)
        except ClientError as err:
            sh.error(f"{text}: {err}")
            return None
        if reply.startswith("fail"):
            sh.error(f"{text}: {reply.removeprefix('fail').strip() or 'refused by the daemon'}")
            return None
        return reply

    if opts.force_reload:
        if ask("reconfigure", RECONFIGURE_TIMEOUT) is None:
            return
        listing = ask(command("show", "maps", "raw", "format", "%n %w"))
        if listing is None:
            return
        todo = forced_asks(sc.named, parse_daemon_maps(listing))
    else:
        todo = asks(plans)
    for a in todo:
        if ask(a.command) is None:
            continue
        shown = ask(command("show", "map", a.name or a.wwid, "topology"))
        name = a.name or (shown.split()[0] if shown else a.wwid)
        text = (shown or "").rstrip("\n")
        sh.made(MapPlan(a.wwid, a.action, "", name=name), lambda: text)  # noqa: B023 (used at once)
        wanted = next((p.table for p in plans if p.wwid == a.wwid and p.action is a.action), None)
        live = live_table(name) if wanted is not None and not opts.force_reload else None
        if live is not None and wanted is not None:
            still = [t for part, t in table_differences(live, wanted) if part in CONFIGURED_PARTS]
            if still:
                sh.warn(f"{name}: the daemon's table still differs from what the configuration files call "
                        f"for ({'; '.join(still)}): it may run with an older configuration; {PROG} -r makes "
                        "it reconfigure")


def main(argv: list[str], *, find_multipaths: str | None = None) -> int:
    """`argv`: the arguments after the program name (and after the global --config options)."""
    from pymultipathd.config import ConfigError, load_config

    try:
        opts = parse_options(argv)
    except UsageError as err:
        sys.stderr.write(f"{PROG}: {err}\nsee {PROG} --help\n")
        return 1
    sh = Shell(opts.verbosity)
    if opts.greedy:
        sh.warn("-i is deprecated; use find_multipaths greedy in multipath.conf")
        find_multipaths = "greedy"
    if os.geteuid() != 0:
        sh.error("need to be root")
        return 1
    if opts.bindings_file is not None:
        locations.install(replace(locations.current(), bindings_file=opts.bindings_file))
    try:
        config = load_config(find_multipaths=find_multipaths)
    except (ConfigError, ValueError) as err:
        sh.error(f"configuration error:\n{err}")
        return 1
    for w in config.warnings:
        sh.warn(str(w))
    running = facts.daemon_reachable()
    if running and not opts.dry_run and opts.daemon_conflicts:
        sh.error(f"pymultipathd is running and makes its maps by its own configuration and bindings: "
                 f"{', '.join(opts.daemon_conflicts)} cannot apply; put the setting in multipath.conf and "
                 f"run {PROG} -r, or stop the daemon first")
        return 1
    try:
        ctl = Control()
        snap = gather(ctl, config)
    except DMError as err:
        sh.error(f"device mapper: {err}")
        return 1
    for problem in snap.problems:
        sh.warn(problem)
    state = snap.state
    named: list[str] | None = None
    if opts.devices:
        named = []
        for arg in opts.devices:
            if arg.startswith("/") and not os.path.exists(arg):
                sh.error(f"{arg}: no such device")
                continue
            t = designate(arg, mapmaker.identify(arg), state, snap.world, snap.bindings,
                          config_aliases(config))
            if t.wwid is None:
                sh.error(f"{arg}: {t.why}")
            else:
                named.append(t.wwid)
        if not named:
            return 1
    sc = scope(state, snap.world, config, named)
    delegating = running and not opts.dry_run
    if not (delegating and opts.force_reload):
        for problem in read_priorities(state, sc, config):
            sh.warn(problem)
    plans = plan_all(state, sc, config, opts, daemon_running=running)
    new = [(p.wwid, topology.resolver(config, p.wwid, p.vendor or None, p.product or None,
                                            p.revision or None))
           for p in plans if p.action is Action.CREATE]
    namings = names(new, snap.bindings, state.maps, read_only=opts.bindings_read_only)
    for line in unmade(plans, sc):
        sh.error(line)
    for p in plans:
        if p.action is Action.ERROR and p.wwid not in sc.named:
            sh.warn(f"{p.wwid}: {p.why}")
    if opts.dry_run:
        sh.show(dry_run_report(plans, sc, state, config, namings, opts.verbosity, daemon_running=running),
                Verbosity.NAMES)
        return 1 if sh.failed else 0
    if opts.verbosity >= Verbosity.VERBOSE:
        for p in plans:
            sh.show("\n".join([f"{p.wwid}:", *path_lines(p.wwid, sc, state, config),
                               *plan_lines(p, namings.get(p.wwid))]), Verbosity.VERBOSE)
    if delegating:
        from pymultipathd.control import client

        # naming a device asks for its map again: its failed mark (which the daemon's classifier honours)
        # goes first; the daemon sets it again if the map still cannot be made
        for wwid in sorted(sc.named & snap.world.failed_wwids):
            _mark(wwid, False, sh)
        delegate(plans, sc, opts, sh, lambda text, timeout: client.send(text, timeout=timeout),
                 lambda name: read_table(ctl, name))
    else:
        carry_out(ctl, plans, snap, sc, config, namings, sh)
        if state.maps or any(p.action is Action.CREATE for p in plans):
            sh.warn("multipath devices exist, but pymultipathd is not running: nothing checks their paths "
                    "or fails them over")
    return 1 if sh.failed else 0
