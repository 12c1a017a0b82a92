"""What the policy asks the daemon to do. The daemon's executor carries each out in order and reports
failures in its log; the policy never learns whether a message reached the kernel except by the next event."""

from __future__ import annotations

import enum

from pymultipathd.dm.table import MultipathTable
from pymultipathd.record import record


class Level(enum.IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


@record(frozen=True)
class FailPath:
    map: str
    dev: str


@record(frozen=True)
class ReinstatePath:
    map: str
    dev: str


@record(frozen=True)
class SwitchGroup:
    map: str
    group: int    # 1-based


@record(frozen=True)
class SetQueueing:
    """queue_if_no_path (on) or fail_if_no_path (off) by message, without a reload."""

    map: str
    on: bool


@record(frozen=True)
class CreateMap:
    wwid: str
    devs: tuple[str, ...]
    table: MultipathTable
    # ghost_delay: its paths are all ghosts; announce it to udev as not ready for this many seconds
    not_ready_for: float = 0.0


@record(frozen=True)
class ReloadMap:
    map: str
    table: MultipathTable


@record(frozen=True)
class RemoveMap:
    """Flush the map; `deferred`: if it is open, remove it when its last user closes it."""

    map: str
    deferred: bool


@record(frozen=True)
class Revisit:
    """Read the map's status again, then feed MapRevisited (with `came_up`) to the policy."""

    map: str
    came_up: str | None = None


@record(frozen=True)
class Refresh:
    """Read the map's table and status again (the policy has nothing more to decide)."""

    map: str


@record(frozen=True)
class Regroup:
    """Plan the map of `wwid` again (path priorities changed under group_by_prio)."""

    wwid: str


@record(frozen=True)
class RegisterKey:
    """Register the map's reservation key through the path, if the key is still registered on the LUN."""

    map: str
    dev: str


@record(frozen=True)
class Retrigger:
    """Ask the kernel for a change uevent of the disk, so udev runs its rules (and the helper) again."""

    dev: str


@record(frozen=True)
class AnnounceReady:
    """Load the map's table again without the not-ready udev flags: udev and systemd take it up now."""

    map: str


@record(frozen=True)
class SampleIo:
    """Send direct reads through the path for `seconds` and count the errors, then feed IoSampled."""

    map: str
    dev: str
    seconds: float


@record(frozen=True)
class Log:
    level: Level
    text: str
    map: str | None = None
    dev: str | None = None


Action = (FailPath | ReinstatePath | SwitchGroup | SetQueueing | CreateMap | ReloadMap | RemoveMap | Revisit
          | Refresh | Regroup | RegisterKey | SampleIo | AnnounceReady | Retrigger | Log)
