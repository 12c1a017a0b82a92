"""What happens to the daemon, as the policy sees it. Each event carries the time it happened (the event
loop's clock, in seconds), so the policy never reads a clock."""

from __future__ import annotations

from pymultipathd.policy.state import PathCheck
from pymultipathd.record import record


@record(frozen=True)
class PathChecked:
    """A check of `dev` finished (or is still running: PENDING)."""

    dev: str
    state: PathCheck
    now: float
    message: str = ""
    prio: int | None = None   # the priority read after the check, if the prioritizer was asked
    sent: float | None = None  # when the check was handed out (None: not known)


@record(frozen=True)
class MapRevisited:
    """A map's status was read again after one of its paths changed state (`came_up`: the path that
    became usable, if that was the change)."""

    map: str
    now: float
    came_up: str | None = None


@record(frozen=True)
class Tick:
    """A checker interval's clock tick: deferred failback and no_path_retry counting."""

    now: float


@record(frozen=True)
class MapChanged:
    """The kernel reported an event on `map` and its status was read again (a path failed on I/O error)."""

    map: str
    now: float


@record(frozen=True)
class LinkTrouble:
    """The network under these paths went away (a link or an address): fail them before a check would."""

    devs: frozenset[str]
    why: str
    now: float


@record(frozen=True)
class IoSampled:
    """The I/O error check of `dev` (marginal_path_*) is over: `reads` direct reads sent, `errors` of them
    failed or timed out; `trouble`: why it could not sample at all ("" if it did)."""

    dev: str
    reads: int
    errors: int
    now: float
    trouble: str = ""
    busy: bool = False  # not sampled: as many samples as the daemon runs at once were under way


@record(frozen=True)
class PathsSettled:
    """The paths the classifier claims for `wwid` are known (a uevent batch, discovery or `add map`):
    create, reload or remove its map. `claimed`: the claimed devices, in name order."""

    wwid: str
    claimed: tuple[str, ...]


Event = PathChecked | MapRevisited | Tick | MapChanged | LinkTrouble | IoSampled | PathsSettled
