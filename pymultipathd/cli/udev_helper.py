"""`pymultipath -u DEV` and `pymultipath -c DEV`: the udev helper.

udev runs `-u` for every add/change event of every sd*, dasd* and nvme* disk (udev/62-pymultipath.rules), so
this module imports only the stdlib, the config core, the classifier and the facts layer: no pydantic, no
pyudev, no argparse.

-u prints what upstream's `multipath -u` prints, for IMPORT{program}:
    FIND_MULTIPATHS_WAIT_UNTIL="<seconds left>"   (whole seconds, only when a smart-mode wait is or was
                                                   running; "0" = over)
    DM_MULTIPATH_DEVICE_PATH="1"|"0"|"2"           (yes | no | maybe)
and exits 0 (udev ignores the output of a program that fails). -c exits 0 for a multipath path (or a maybe,
as upstream: it is not free for the system yet), 1 if not, and changes nothing on disk.
--explain writes every rule considered, and the one that decided, on stderr.
"""

from __future__ import annotations

import errno
import os
import sys

from pymultipathd import locations
from pymultipathd.classify import PathFacts, Step, Verdict, World, explain
from pymultipathd.paths import facts
from pymultipathd.record import replace
from pymultipathd.udevlink import parse_args

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultipathd.config.model import Config

USAGE = "usage: pymultipath -u|-c DEV [--explain]\n"
_CODE = {"yes": "1", "no": "0", "maybe": "2"}
# verdicts reached after the siblings rule passed: only these can change once the other disks are known
_SIBLING_DEPENDENT = frozenset({"single_path", "waiting", "timeout"})


def needs_siblings(verdict: Verdict) -> bool:
    """`-u` first classifies with the device alone (reading every disk's udev entry costs time on big
    systems); rules before `siblings` never look at other paths, so only these verdicts can change."""
    return verdict.rule in _SIBLING_DEPENDENT


def _open_busy(path: PathFacts) -> bool:
    """True if an exclusive open fails with EBUSY: something (a mount in the initramfs, md, LVM) holds the
    device. Read-only, so closing it does not make udev emit a change event."""
    devnode = path.properties.get("DEVNAME") or f"/dev/{path.dev}"
    try:
        fd = os.open(devnode, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as e:
        return e.errno == errno.EBUSY
    os.close(fd)
    return False


def _start_timer(dev_t: str, deadline: float) -> float:
    """Create the timer file of `dev_t` with mtime = deadline, atomically; if another run created it first,
    its deadline wins. Returns the deadline in force."""
    directory = locations.find_multipaths_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    final = os.path.join(directory, dev_t)
    tmp = os.path.join(directory, f".{dev_t}.{os.getpid()}")  # tempfile costs 4 ms of imports here
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
    try:
        os.utime(tmp, (deadline, deadline))
        try:
            os.link(tmp, final)  # fails if it exists: never moves a running deadline
        except FileExistsError:
            return os.stat(final).st_mtime
        return deadline
    finally:
        os.unlink(tmp)


def _with_path(world: World, path: PathFacts) -> World:
    return replace(world, paths=tuple(path if p.dev == path.dev else p for p in world.paths))


def _said(steps: list[Step], verdict: Verdict, dev: str) -> str:
    lines = [f"{'  -' if s.outcome == 'pass' else '  =>'} {s.rule}: {s.words}\n" for s in steps]
    return "".join(lines) + f"{dev}: {verdict.decision} (rule {verdict.rule})\n"


def load_config(find_multipaths: str | None = None):  # noqa: ANN201 - its module is imported lazily
    """(config, None), or (None, the ConfigError) when the files on disk do not parse. `find_multipaths`:
    the command line's override (`pymultipath -i`)."""
    from pymultipathd.config.load import ConfigError, load_config

    try:
        return load_config(find_multipaths=find_multipaths), None
    except ConfigError as e:
        return None, e


def decide(flag: str, dev: str, want_explain: bool, config: Config | None, error: Exception | None, *,
           env: Mapping[str, str] | None = None, daemon_running: bool | None = None,
           known: facts.Known | None = None) -> tuple[int, str, str]:
    """Everything `pymultipath FLAG DEV` does, as (exit code, stdout, stderr). The daemon runs this for the
    helper too (pymultipathd.udevlink), with env = the helper's environment, daemon_running=True and what
    it knows of maps and paths (facts.world_for)."""
    udev_mode = flag == "-u"
    err = ""
    try:
        target, world = facts.world_for(dev, config, siblings=False, env=env, daemon_running=daemon_running,
                                        known=known)
    except (facts.FactsError, OSError, ValueError) as e:
        return _emit(udev_mode, Verdict("no", "no_wwid"), None, dev, err=f"pymultipath {flag}: {e}\n")
    if config is None:
        # Without a configuration only "already in a map" is certain; everything else stays with the system.
        # With no daemon that is all the rules could say anyway (member_of_map, then daemon_not_running),
        # which is why main() does not load one then. That no-daemon answer (and the timer line) is also
        # given by the compiled front itself (udev/pymultipath-udev.c, answer_alone), from the same files:
        # change it here and there together; tests/unit/test_udev_front.py compares the two byte for byte.
        held = any(m.uuid.startswith("mpath-") and dev in m.paths for m in world.maps)
        rule = "member_of_map" if held else "daemon_not_running" if not world.daemon_running else "strict"
        verdict = Verdict("yes" if held else "no", rule)
        err = f"pymultipath {flag}: {error}\n" if error is not None else ""
        if want_explain and error is None:
            steps = [Step("member_of_map", "yes" if held else "pass",
                          f"{dev} is {'' if held else 'not '}a path of a multipath map")]
            if not held:
                steps.append(Step(rule, "no", "the daemon is not reachable on its socket, so nothing would "
                                              "assemble a map; leave the disk to the system"))
            err += _said(steps, verdict, dev)
        return _emit(udev_mode, verdict, world.timers.get(target.dev_t), dev, world.now,
                     err=err + _unread(flag, world))

    def again() -> tuple[PathFacts, World]:
        return facts.world_for(dev, config, siblings=True, now=world.now, env=env,
                               daemon_running=daemon_running, known=known)

    verdict, steps = explain(target, world, config, for_udev=True)
    try:
        if needs_siblings(verdict):
            target, world = again()
            verdict, steps = explain(target, world, config, for_udev=True)
        if verdict.decision == "maybe" and _open_busy(target):
            # In use though nothing we know of holds it. Re-read everything: multipathd may just have
            # taken it.
            target, world = again()
            target = replace(target, in_use=True)
            world = _with_path(world, target)
            verdict, steps = explain(target, world, config, for_udev=True)
            steps.insert(len(steps) - 1, Step("in_use", "pass", f"exclusive open of {dev} failed: busy"))
    except (facts.FactsError, OSError, ValueError) as e:  # as the first look: the device went since
        return _emit(udev_mode, Verdict("no", "no_wwid"), None, dev, err=f"pymultipath {flag}: {e}\n")
    deadline = world.timers.get(target.dev_t)
    if udev_mode and verdict.decision == "maybe" and deadline is None and verdict.wait_until is not None:
        deadline = _start_timer(target.dev_t, verdict.wait_until)
        if deadline != verdict.wait_until:  # lost a race: classify again with the winner's deadline
            world = replace(world, timers={**world.timers, target.dev_t: deadline})
            verdict, steps = explain(target, world, config, for_udev=True)
    err += _unread(flag, world)
    if want_explain:
        err += _said(steps, verdict, dev)
    return _emit(udev_mode, verdict, deadline, dev, world.now, err=err)


def _unread(flag: str, world: World) -> str:
    return "".join(f"pymultipath {flag}: {p}; decided as if it were empty\n" for p in world.unread)


def main(argv: list[str], *, env: Mapping[str, str] | None = None, find_multipaths: str | None = None) -> int:
    """`env`: the environment udev ran the helper with (the udev event's properties), as pymultipath's entry
    read it; `find_multipaths`: the command line's override (`-i`). Locations: the installed ones."""
    flag, parsed = argv[0], parse_args(argv[1:])
    if flag not in ("-u", "-c") or parsed is None:
        sys.stderr.write(USAGE)
        return 2
    if not facts.daemon_reachable():
        # No daemon: only member_of_map can say yes, and it needs no configuration; loading one (the files
        # and the hardware table) was most of the cost of a call at boot, before the daemon runs
        rc, out, err = decide(flag, *parsed, None, None, env=env, daemon_running=False)
    else:
        config, error = load_config(find_multipaths)
        rc, out, err = decide(flag, *parsed, config, error, env=env, daemon_running=True)
    sys.stderr.write(err)
    sys.stdout.write(out)
    return rc


def _emit(udev_mode: bool, verdict: Verdict, deadline: float | None, dev: str, now: float = 0.0, *,
          err: str = "") -> tuple[int, str, str]:
    if not udev_mode:
        path = verdict.decision in ("yes", "maybe")
        return (0 if path else 1), f"{dev} {'is' if path else 'is not'} a valid multipath device path\n", err
    out = ""
    if deadline is not None:
        # a wait is running or ran: tell the rules how long is left, so they can start or stop its timer
        # whole seconds, rounded up: the rules pass it to systemd-run and let only digits through
        left = max(deadline - now, 0.0) if verdict.rule != "timeout" else 0.0
        out += f'FIND_MULTIPATHS_WAIT_UNTIL="{-int(-left // 1)}"\n'
    out += f'DM_MULTIPATH_DEVICE_PATH="{_CODE[verdict.decision]}"\n'
    return 0, out, err
