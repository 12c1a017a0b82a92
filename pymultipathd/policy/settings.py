"""The configuration a map's policy acts on, as typed values made once per map from the resolved keywords.

Parsing the keyword words (failback "followover" or 10, no_path_retry "queue", "fail" or 5, ...) happens
here and nowhere else, so the decisions compare enums, never strings.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from pymultipathd.config.keywords import MIN_SAMPLE_TIME
from pymultipathd.record import record

# keyword -> value, already bound to one map's or path's wwid/vendor/product
Resolve = Callable[[str], object]


class FailbackMode(enum.Enum):
    MANUAL = "manual"          # never by itself
    IMMEDIATE = "immediate"    # whenever a better group is usable
    FOLLOWOVER = "followover"  # only when the first path of a group comes back (a host's own switch stays)
    DEFERRED = "deferred"      # `failback N`: N seconds after a path came back


class RetryMode(enum.Enum):
    FAIL = "fail"      # no usable path: fail I/O at once
    QUEUE = "queue"    # queue it until a path comes back
    COUNT = "count"    # queue for N checker intervals, then fail
    UNSET = "unset"    # the features keyword's queue_if_no_path decides


class LastDel(enum.Enum):
    """flush_on_last_del: stop queueing when the map loses its last path."""

    ALWAYS = "always"
    NEVER = "never"
    UNUSED = "unused"  # only when the map is not open


@record(frozen=True)
class Failback:
    mode: FailbackMode = FailbackMode.MANUAL
    seconds: int = 0

    def __str__(self) -> str:
        return str(self.seconds) if self.mode is FailbackMode.DEFERRED else self.mode.value


@record(frozen=True)
class NoPathRetry:
    mode: RetryMode = RetryMode.UNSET
    count: int = 0


@record(frozen=True)
class SanPathErr:
    """san_path_err_threshold, _forget_rate and _recovery_time, when all three are set (upstream acts only
    then)."""

    threshold: int         # failures (counted as a path comes back) beyond which it is held back
    forget_rate: int       # healthy checks after which one counted failure is forgotten
    recovery_time: float   # seconds a held-back path stays out of its map


@record(frozen=True)
class MarginalPath:
    """marginal_path_*, when the three times are set and the rate threshold is not "no" (upstream acts only
    then): a path the kernel fails twice within double_failed_time is not reinstated until a sample of
    direct reads through it shows at most rate_threshold errors per thousand."""

    double_failed_time: float
    sample_time: float       # seconds of sampling, at least MIN_SAMPLE_TIME
    rate_threshold: int      # errors per 1000 reads above which the path stays out
    recheck_gap_time: float  # seconds a path that failed its sample waits before the next one


@record(frozen=True)
class MapSettings:
    failback: Failback = Failback()
    no_path_retry: NoPathRetry = NoPathRetry()
    queue_feature: bool = False       # features "1 queue_if_no_path" (counts only with no_path_retry unset)
    polling_interval: float = 5.0
    max_polling_interval: float = 20.0
    checker_timeout: float | None = None  # seconds; None: each path's SCSI command timeout (sysfs)
    flush_on_last_del: LastDel = LastDel.UNUSED
    deferred_remove: bool = False
    regroup_on_prio: bool = False     # path_grouping_policy group_by_prio: a priority change regroups
    log_checker_err_always: bool = True  # a path that stays down is said at each check (log_checker_err)
    recheck_wwid: bool = False        # a path coming back is asked its identity before it is reinstated
    san_path_err: SanPathErr | None = None  # hold back paths that fail too often (all three keywords set)
    marginal_path: MarginalPath | None = None  # sample paths the kernel fails twice (marginal_path_*)
    marginal_pathgroups: bool = False  # a marginal path goes to a group of its own instead of being held out
    ghost_delay: float = 0.0          # seconds a new map of ghost paths only waits for an active one (0: off)

    @property
    def queue_if_no_path(self) -> bool:
        """Whether a map with these settings queues I/O while no path is usable."""
        npr = self.no_path_retry
        if npr.mode in (RetryMode.QUEUE, RetryMode.COUNT):
            return True
        if npr.mode is RetryMode.FAIL:
            return False
        return self.queue_feature


def failback(value: object) -> Failback:
    if isinstance(value, int) and not isinstance(value, bool):
        return Failback(FailbackMode.DEFERRED, value) if value > 0 else Failback()
    try:
        mode = FailbackMode(str(value))
    except ValueError:
        return Failback()
    return Failback() if mode is FailbackMode.DEFERRED else Failback(mode)


def no_path_retry(value: object) -> NoPathRetry:
    if isinstance(value, int) and not isinstance(value, bool):
        return NoPathRetry(RetryMode.COUNT, value) if value > 0 else NoPathRetry(RetryMode.FAIL)
    if value in ("queue", "fail"):
        return NoPathRetry(RetryMode(value))
    return NoPathRetry()


def last_del(value: object) -> LastDel:
    word = str(value)
    if word in ("yes", "always"):
        return LastDel.ALWAYS
    if word in ("no", "never"):
        return LastDel.NEVER
    return LastDel.UNUSED


def _number(value: object, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value:
        return float(value)
    return default


class KeptResolve:
    """A Resolve that keeps its answers, and the MapSettings made of them: for a configuration that does
    not change under it (the daemon makes one per configuration and hardware, and every map of that
    hardware shares it, see daemon/core.py Core.resolver)."""

    __slots__ = ("_lookup", "_answers", "_settings")

    def __init__(self, lookup: Resolve) -> None:
        self._lookup = lookup
        self._answers: dict[str, object] = {}
        self._settings: MapSettings | None = None

    def __call__(self, keyword: str) -> object:
        try:
            return self._answers[keyword]
        except KeyError:
            value = self._answers[keyword] = self._lookup(keyword)
            return value

    def settings(self) -> MapSettings:
        if self._settings is None:
            self._settings = _typed(self)
        return self._settings


def map_settings(resolve: Resolve) -> MapSettings:
    """The typed settings of what `resolve` is bound to (made once for a KeptResolve)."""
    if isinstance(resolve, KeptResolve):
        return resolve.settings()
    return _typed(resolve)


def _typed(resolve: Resolve) -> MapSettings:
    return MapSettings(
        failback=failback(resolve("failback")),
        no_path_retry=no_path_retry(resolve("no_path_retry")),
        queue_feature="queue_if_no_path" in str(resolve("features") or "").split(),
        polling_interval=_number(resolve("polling_interval"), 5.0),
        max_polling_interval=_number(resolve("max_polling_interval"), 20.0),
        checker_timeout=_number(resolve("checker_timeout"), 0.0) or None,
        flush_on_last_del=last_del(resolve("flush_on_last_del")),
        deferred_remove=bool(resolve("deferred_remove")),
        regroup_on_prio=str(resolve("path_grouping_policy")) == "group_by_prio",
        log_checker_err_always=str(resolve("log_checker_err")) != "once",
        recheck_wwid=bool(resolve("recheck_wwid")),
        san_path_err=san_path_err(resolve),
        marginal_path=marginal_path(resolve),
        marginal_pathgroups=resolve("marginal_pathgroups") == "on",
        ghost_delay=float(_positive(resolve("ghost_delay"))),
    )


def _positive(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def san_path_err(resolve: Resolve) -> SanPathErr | None:
    threshold, forget, recovery = (_positive(resolve(k)) for k in (
        "san_path_err_threshold", "san_path_err_forget_rate", "san_path_err_recovery_time"))
    return SanPathErr(threshold, forget, float(recovery)) if threshold and forget and recovery else None


def marginal_path(resolve: Resolve) -> MarginalPath | None:
    """All four keywords set (the rate threshold to a number: unset, no and 0 leave detection off, as
    upstream); a sample time below the minimum is raised to it (warned about when the file was read)."""
    double, sample, gap, threshold = (_positive(resolve(k)) for k in (
        "marginal_path_double_failed_time", "marginal_path_err_sample_time",
        "marginal_path_err_recheck_gap_time", "marginal_path_err_rate_threshold"))
    if not (double and sample and gap and threshold):
        return None
    return MarginalPath(float(double), float(max(sample, MIN_SAMPLE_TIME)), threshold, float(gap))
