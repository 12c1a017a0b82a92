"""The one path classifier: facts about a path and its surroundings in, a verdict out.

Both `pymultipath -u` (run by udev for every disk event) and the daemon call `classify()` on the same facts,
so they cannot disagree about a path: this is the fix for the gap upstream has between `multipath -u` and
multipathd (see docs/classification.md). Pure: no files, no clock, no environment. The facts layer
(pymultipathd/paths/facts.py) or a JSON snapshot (`pymultipath classify --facts`) supplies the facts.

Every verdict names the rule that decided it; the identifiers in RULES are a stable contract shared by
`--explain`, logs, the JSON output and the tests.
"""

from __future__ import annotations

from pymultipathd import blacklist
from pymultipathd.record import field, record, replace

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultipathd.config.model import Config

# Every rule identifier, in the order the classifier considers them.
RULES = (
    "member_of_map",
    "daemon_not_running",
    "not_a_disk",
    "blacklisted:property",
    "blacklisted:property_missing",
    "blacklisted:devnode",
    "blacklisted:device",
    "blacklisted:protocol",
    "blacklisted:wwid",
    "hidden",
    "no_wwid",
    "failed_wwid",
    "in_use",
    "greedy",
    "wwids_file",
    "released",
    "map_exists",
    "strict",
    "siblings",
    "single_path",
    "timeout",
    "waiting",
)

MODES = ("strict", "off", "on", "greedy", "smart")

# Spellings of find_multipaths. The config core already canonicalizes (and applies `force_wwids yes` and
# the PYMULTIPATH_FIND_MULTIPATHS override of the deprecated `-i`); this guards the pure core.
MODE_SYNONYMS = {
    "strict": "strict",
    "off": "off",
    "no": "off",
    "0": "off",
    "on": "on",
    "yes": "on",
    "1": "on",
    "greedy": "greedy",
    "smart": "smart",
}

# Modes in which a path already in use by something else is never claimed. Upstream checks this only for
# greedy and smart; "off" claims every path like greedy does, so it gets the same protection here.
_IN_USE_MODES = frozenset({"greedy", "smart", "off"})

DEFAULT_TIMEOUT = -10
UNKNOWN_HARDWARE_WAIT = 1.0


def normalize_mode(value: str) -> str:
    """Canonical find_multipaths mode for any accepted spelling; ValueError names the bad value."""
    mode = MODE_SYNONYMS.get(str(value).strip().lower())
    if mode is None:
        choices = ", ".join(sorted(MODE_SYNONYMS))
        raise ValueError(f"find_multipaths: invalid value {value!r} (one of {choices})")
    return mode


@record(frozen=True)
class PathFacts:
    """What is known about one block device. `holders` and `in_use` cover the disk and its partitions."""

    dev: str
    devtype: str | None = "disk"
    dev_t: str = ""
    wwid: str | None = None
    vendor: str | None = None
    product: str | None = None
    revision: str | None = None
    protocol: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    holders: tuple[str, ...] = ()
    in_use: bool = False
    hidden: bool = False
    released: bool = False  # udev already told systemd "not multipath" (DM_MULTIPATH_DEVICE_PATH=0)


@record(frozen=True)
class MapFacts:
    name: str
    uuid: str
    paths: tuple[str, ...] = ()


@record(frozen=True)
class World:
    """Everything around the path. `paths` holds the initialized disks (the classified one included)."""

    paths: tuple[PathFacts, ...] = ()
    maps: tuple[MapFacts, ...] = ()
    wwids: frozenset[str] = frozenset()
    failed_wwids: frozenset[str] = frozenset()
    daemon_running: bool = True
    now: float = 0.0
    timers: Mapping[str, float] = field(default_factory=dict)  # dev_t -> deadline (epoch seconds)
    # store files that could not be read (each a message naming the file): decided as if they were empty,
    # as upstream does, and said on stderr by `-u` so the answer never rests on a silent gap
    unread: tuple[str, ...] = ()


@record(frozen=True)
class Verdict:
    decision: str  # "yes" | "no" | "maybe"
    rule: str  # one of RULES
    wait_until: float | None = None  # deadline of a "maybe" (epoch seconds)


@record(frozen=True)
class Step:
    """One rule considered: `outcome` is "pass" when it did not decide, else the decision it made."""

    rule: str
    outcome: str
    words: str


def mode_of(config: Config) -> str:
    """The find_multipaths mode in force. Config.find_multipaths() is the one place that applies the
    `-i` override (env PYMULTIPATH_FIND_MULTIPATHS) and force_wwids."""
    return normalize_mode(config.find_multipaths())


def _known_hardware(config: Config, vendor: str | None, product: str | None, revision: str | None) -> bool:
    # docs/contracts.md names it known_hardware(vendor, product); the config core ships is_known_hardware
    known = getattr(config, "known_hardware", None)
    if known is not None:
        return bool(known(vendor, product))
    return bool(config.is_known_hardware(vendor=vendor, product=product, revision=revision))


def wait_seconds(config: Config, vendor: str | None, product: str | None,
                 revision: str | None = None) -> float:
    """How long a single smart-mode path waits for a sibling (find_multipaths_timeout semantics).

    N > 0: N seconds. N < 0: |N| seconds for hardware the config knows (built-in or user `device` entry),
    1 second for unknown hardware, so machines without multipath storage do not wait at boot. 0: default -10.
    """
    timeout = int(config.find_multipaths_timeout()) or DEFAULT_TIMEOUT
    if timeout > 0:
        return float(timeout)
    return float(-timeout) if _known_hardware(config, vendor, product, revision) else UNKNOWN_HARDWARE_WAIT


class _Index:
    """Lookups over one World. The daemon classifies every path against the same World object in a batch;
    scanning all paths and maps for each one made a batch quadratic in the number of paths."""

    __slots__ = ("world", "holding", "by_uuid", "by_wwid")

    def __init__(self, world: World) -> None:
        self.world = world
        self.holding: dict[str, MapFacts] = {}
        self.by_uuid: dict[str, MapFacts] = {}
        for m in world.maps:
            self.by_uuid.setdefault(m.uuid, m)
            if m.uuid.startswith("mpath-"):
                for dev in m.paths:
                    self.holding.setdefault(dev, m)
        self.by_wwid: dict[str | None, list[PathFacts]] = {}
        for p in world.paths:
            self.by_wwid.setdefault(p.wwid, []).append(p)


_last_index: _Index | None = None


def _index(world: World) -> _Index:
    # read once: the daemon's loop and its udev helper threads classify at the same time
    global _last_index
    index = _last_index
    if index is None or index.world is not world:
        index = _last_index = _Index(world)
    return index


def _map_holding(path: PathFacts, world: World) -> MapFacts | None:
    return _index(world).holding.get(path.dev)


def _map_for(wwid: str, world: World) -> MapFacts | None:
    return _index(world).by_uuid.get("mpath-" + wwid)


# id(path) -> (path, config, result): the exclusions depend on nothing else, and the daemon asks about the
# same PathFacts objects (kept until a uevent replaces them) again in every batch, as a sibling too.
_excluded_memo: dict[int, tuple[PathFacts, Config, Step | None]] = {}
_EXCLUDED_MEMO_MAX = 8192


def blacklisted(path: PathFacts, config: Config) -> bool:
    """Excluded by the blacklist (or not a whole disk): not a path at all, as upstream's daemon sees it."""
    step = _excluded(path, config)
    return step is not None and step.rule.startswith(("blacklisted", "not_a_disk"))


def _excluded(path: PathFacts, config: Config) -> Step | None:
    """The exclusions that do not depend on the mode or other paths (rules not_a_disk .. no_wwid)."""
    hit = _excluded_memo.get(id(path))
    if hit is not None and hit[0] is path and hit[1] is config:
        return hit[2]
    step = _exclusion(path, config)
    if len(_excluded_memo) >= _EXCLUDED_MEMO_MAX:
        _excluded_memo.clear()
    _excluded_memo[id(path)] = (path, config, step)
    return step


def _exclusion(path: PathFacts, config: Config) -> Step | None:
    if path.devtype != "disk":
        return Step("not_a_disk", "no", f"{path.dev} is a {path.devtype or 'device without DEVTYPE'}, "
                    "not a whole disk; partitions follow their disk")
    v = blacklist.check(config, devnode=path.dev, wwid=path.wwid, vendor=path.vendor, product=path.product,
                        protocol=path.protocol, properties=path.properties, revision=path.revision)
    if v.excluded:
        origin = {"default": "the built-in blacklist", "exception": "the blacklist exceptions"}.get(
            v.source or "", "the blacklist")
        why = (f"{v.criterion} {v.pattern!r}" if v.pattern is not None
               else "it has the uid_attribute property but none matching the property exceptions")
        return Step(f"blacklisted:{v.criterion}", "no", f"{path.dev} is excluded by {origin} ({why})")
    if path.protocol == "scsi:usb" and not config.resolve("allow_usb_devices"):
        return Step("blacklisted:protocol", "no",
                    f"{path.dev} is a USB device and allow_usb_devices is off")
    if path.hidden:
        return Step("hidden", "no", f"{path.dev} is hidden by the kernel (a path of native NVMe multipath)")
    if not path.wwid:
        return Step("no_wwid", "no", f"{path.dev} has no WWID (udev gave no uid_attribute property)")
    return None


def _counts_as_sibling(other: PathFacts, mode: str, config: Config) -> bool:
    # Another path only proves a second route to the LUN if it could itself be claimed: a sibling the
    # system already uses (or was released to it) must not pull the LUN into multipath under its feet.
    if _excluded(other, config) is not None:
        return False
    if mode in _IN_USE_MODES and other.in_use:
        return False
    return not (mode == "smart" and other.released)


def _run(path: PathFacts, world: World, config: Config, for_udev: bool, steps: list[Step] | None) -> Verdict:
    """The rules in order; `steps` (None: not wanted) collects every rule considered, in words."""

    def decide(rule: str, decision: str, words: str, wait_until: float | None = None) -> Verdict:
        if steps is not None:
            steps.append(Step(rule, decision, words))
        return Verdict(decision, rule, wait_until)

    def passed(rule: str, words: str) -> None:
        if steps is not None:
            steps.append(Step(rule, "pass", words))

    held = _map_holding(path, world)
    if held is not None:
        return decide("member_of_map", "yes", f"{path.dev} is already a path of multipath map {held.name} "
                      f"({held.uuid}); that holds in every mode")
    passed("member_of_map", f"{path.dev} is not a path of any multipath map")

    if for_udev:
        if not world.daemon_running:
            return decide("daemon_not_running", "no", "the daemon is not reachable on its socket, "
                          "so nothing would assemble a map; leave the disk to the system")
        passed("daemon_not_running", "the daemon is reachable")

    excluded = _excluded(path, config)
    if excluded is not None:
        if steps is not None:
            steps.append(excluded)
        return Verdict("no", excluded.rule)
    passed("not_a_disk", f"{path.dev} is a whole disk")
    passed("blacklisted", f"{path.dev} is not blacklisted")
    passed("hidden", f"{path.dev} is not hidden")
    passed("no_wwid", f"{path.dev} has WWID {path.wwid}")
    wwid = path.wwid or ""

    if wwid in world.failed_wwids:
        return decide("failed_wwid", "no", f"WWID {wwid} is marked failed (a map for it could not be "
                      "created); it is left to the system until the marker is removed")
    passed("failed_wwid", f"WWID {wwid} is not marked failed")
    mode = mode_of(config)
    if mode in _IN_USE_MODES:
        if path.in_use:
            return decide("in_use", "no", f"{path.dev} or one of its partitions is in use (mounted, swap "
                          "or held by another device); it is never grabbed")
        passed("in_use", f"{path.dev} is not in use")

    if mode in ("greedy", "off"):
        return decide("greedy", "yes", f"find_multipaths {mode}: every usable path is claimed")
    if wwid in world.wwids:
        return decide("wwids_file", "yes", f"WWID {wwid} is in the wwids file")
    passed("wwids_file", f"WWID {wwid} is not in the wwids file")

    if mode == "smart":
        if path.released:
            return decide("released", "no", f"{path.dev} was released to the system earlier "
                          "(DM_MULTIPATH_DEVICE_PATH=0); claiming it now could unmount its filesystems")
        passed("released", f"{path.dev} has not been released to the system")

    existing = _map_for(wwid, world)
    if existing is not None:
        return decide("map_exists", "yes", f"multipath map {existing.name} for WWID {wwid} exists")
    passed("map_exists", f"no multipath map for WWID {wwid} exists")

    if mode == "strict":
        return decide("strict", "no", "find_multipaths strict: only WWIDs in the wwids file or with an "
                      "existing map are claimed")

    others = sorted(p.dev for p in _index(world).by_wwid.get(wwid, ())
                    if p.dev != path.dev and _counts_as_sibling(p, mode, config))
    if others:
        return decide("siblings", "yes", f"WWID {wwid} has more than one path: {path.dev} and "
                      + ", ".join(others))
    passed("siblings", f"{path.dev} is the only usable path of WWID {wwid}")

    if mode == "on":
        return decide("single_path", "no", "find_multipaths on: a single path is not claimed")

    deadline = world.timers.get(path.dev_t)
    if deadline is not None and world.now >= deadline:
        return decide("timeout", "no", f"find_multipaths smart: no second path arrived before the wait "
                      f"ended (deadline {deadline:.0f}); {path.dev} is released to the system")
    if deadline is None:
        deadline = world.now + wait_seconds(config, path.vendor, path.product, path.revision)
    return decide("waiting", "maybe", f"find_multipaths smart: {path.dev} waits for a second path "
                  f"{max(deadline - world.now, 0.0):.1f} s more (until {deadline:.0f})", deadline)


def explain(path: PathFacts, world: World, config: Config, *, for_udev: bool) -> tuple[Verdict, list[Step]]:
    """The verdict and every rule considered on the way, in order (the last step decided)."""
    steps: list[Step] = []
    verdict = _run(path, world, config, for_udev, steps)
    return verdict, steps


def classify(path: PathFacts, world: World, config: Config, *, for_udev: bool) -> Verdict:
    """Decide whether `path` is a multipath path: yes, no, or (smart mode) maybe until a deadline.

    `for_udev` is True for `pymultipath -u`/`-c`, which first checks that the daemon is reachable; the
    daemon itself passes False. Nothing else differs between the two callers.
    """
    return _run(path, world, config, for_udev, None)


def assembly(world: World, config: Config) -> dict[str, tuple[str, ...]]:
    """WWID -> the paths the daemon would put in its map (every path the classifier claims), sorted."""
    return assembly_and_verdicts(world, config)[0]


def restrict(world: World, wwids: set[str]) -> World:
    """The world cut down to the paths that carry one of `wwids` or sit in a map of one. Every rule looks
    only at the path itself, the paths of its WWID and the maps, so those paths' verdicts and assembly are
    the same as in the whole world (tested as a property)."""
    held = {dev for m in world.maps if m.uuid.removeprefix("mpath-") in wwids for dev in m.paths}
    return replace(world, paths=tuple(p for p in world.paths if p.wwid in wwids or p.dev in held))


def assembly_and_verdicts(world: World,
                          config: Config) -> tuple[dict[str, tuple[str, ...]], dict[str, Verdict]]:
    """assembly() and the verdict of every path (by dev), from one classification of each."""
    claimed: dict[str, list[str]] = {}
    verdicts: dict[str, Verdict] = {}
    for p in world.paths:
        v = verdicts[p.dev] = classify(p, world, config, for_udev=False)
        if v.decision == "yes":
            held = _map_holding(p, world)  # a member stays in its map even if its WWID cannot be read now
            wwid = held.uuid.removeprefix("mpath-") if held else p.wwid
            claimed.setdefault(wwid or "", []).append(p.dev)
    return {w: tuple(sorted(devs)) for w, devs in claimed.items()}, verdicts


def assembled_wwids(world: World, config: Config) -> frozenset[str]:
    """The WWIDs the daemon would assemble into maps for this world."""
    return frozenset(assembly(world, config))
