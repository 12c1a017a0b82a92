"""The SCSI transport timeouts and I/O size a map's paths should carry (pure): what fast_io_fail_tmo,
dev_loss_tmo, eh_deadline and max_sectors_kb ask of each kind of path, with upstream's adjustments.

- iSCSI: fast_io_fail_tmo N sets the session's recovery_tmo (the time I/O waits for a lost session before it
  fails, so multipath can fail the path over); "off" and 0 cannot be set there; dev_loss_tmo means nothing.
- FC: the remote port's fast_io_fail_tmo and dev_loss_tmo. dev_loss_tmo is raised to cover the time
  no_path_retry queues (N x polling_interval; "queue": the maximum), so the port's devices are not deleted
  while I/O still waits for them; a fast_io_fail_tmo not below dev_loss_tmo is switched off, and without
  fast_io_fail_tmo dev_loss_tmo stops at 600 s, the most the transport accepts then.
- SAS: dev_loss_tmo sets the end device's I_T_nexus_loss_timeout.
- Every SCSI path: eh_deadline on its host; max_sectors_kb on its queue, before the map is made (a map's limit
  comes from its paths when it is created). A live map's paths keep the map's limit: a path below it fails
  the map's large requests, so a new member of a live map gets the map's value, not the configured one.
"""

from __future__ import annotations

import enum

from pymultipathd.policy.settings import NoPathRetry, Resolve, RetryMode
from pymultipathd.record import record

MAX_DEV_LOSS_TMO = 0x7FFFFFFF  # the FC transport's largest dev_loss_tmo ("infinity")
FC_DEV_LOSS_WITHOUT_FAST_IO_FAIL = 600  # the largest the FC transport takes while fast_io_fail_tmo is off
OFF = "off"


class Kind(enum.Enum):
    ISCSI = "iscsi"
    FC = "fc"
    SAS = "sas"
    OTHER = "other"


class Attr(enum.Enum):
    """Where a value goes (the adapter finds the directory of each for a path)."""

    SESSION_RECOVERY_TMO = "iscsi_session/recovery_tmo"
    RPORT_FAST_IO_FAIL_TMO = "fc_remote_ports/fast_io_fail_tmo"
    RPORT_DEV_LOSS_TMO = "fc_remote_ports/dev_loss_tmo"
    SAS_NEXUS_LOSS_TMO = "sas_end_device/I_T_nexus_loss_timeout"
    HOST_EH_DEADLINE = "scsi_host/eh_deadline"
    QUEUE_MAX_SECTORS_KB = "queue/max_sectors_kb"


@record(frozen=True)
class Transport:
    """The keywords as configured: a number of seconds, OFF, or None (unset: the kernel's value stays)."""

    fast_io_fail: int | str | None = None
    dev_loss: int | None = None          # "infinity" is MAX_DEV_LOSS_TMO
    eh_deadline: int | str | None = None
    max_sectors_kb: int | None = None


def transport(resolve: Resolve) -> Transport:
    def seconds(kw: str) -> int | str | None:
        v = resolve(kw)
        if v == OFF:
            return OFF
        return v if isinstance(v, int) and not isinstance(v, bool) else None
    dev_loss = resolve("dev_loss_tmo")
    msk = resolve("max_sectors_kb")
    return Transport(
        fast_io_fail=seconds("fast_io_fail_tmo"),
        dev_loss=MAX_DEV_LOSS_TMO if dev_loss == "infinity" else
        dev_loss if isinstance(dev_loss, int) and not isinstance(dev_loss, bool) else None,
        eh_deadline=seconds("eh_deadline"),
        max_sectors_kb=msk if isinstance(msk, int) and not isinstance(msk, bool) else None,
    )


def writes(t: Transport, kind: Kind, no_path_retry: NoPathRetry, polling_interval: float) -> list[
        tuple[Attr, str]]:
    """The sysfs values for one path of this kind, in the order to write them."""
    out: list[tuple[Attr, str]] = []
    if kind is Kind.ISCSI and isinstance(t.fast_io_fail, int) and t.fast_io_fail > 0:
        out.append((Attr.SESSION_RECOVERY_TMO, str(t.fast_io_fail)))
    elif kind is Kind.FC:
        dev_loss = t.dev_loss or 0
        if no_path_retry.mode is RetryMode.COUNT:
            dev_loss = max(dev_loss, min(int(no_path_retry.count * polling_interval), MAX_DEV_LOSS_TMO))
        elif no_path_retry.mode is RetryMode.QUEUE:
            dev_loss = MAX_DEV_LOSS_TMO
        fast = t.fast_io_fail
        if dev_loss and isinstance(fast, int) and fast >= dev_loss:
            fast = OFF
        if not isinstance(fast, int) and dev_loss > FC_DEV_LOSS_WITHOUT_FAST_IO_FAIL:
            dev_loss = FC_DEV_LOSS_WITHOUT_FAST_IO_FAIL  # the FC transport refuses more
        if fast is not None:
            out.append((Attr.RPORT_FAST_IO_FAIL_TMO, str(fast)))
        if dev_loss:
            out.append((Attr.RPORT_DEV_LOSS_TMO, str(dev_loss)))
    elif kind is Kind.SAS and t.dev_loss:
        out.append((Attr.SAS_NEXUS_LOSS_TMO, str(t.dev_loss)))
    if t.eh_deadline is not None:  # every SCSI path (the adapter skips a device without a SCSI host)
        out.append((Attr.HOST_EH_DEADLINE, str(t.eh_deadline)))
    if t.max_sectors_kb is not None:
        out.append((Attr.QUEUE_MAX_SECTORS_KB, str(t.max_sectors_kb)))
    return out
