"""`pympathpersist`: SCSI-3 persistent reservations on a multipath map, with mpathpersist's options.

    pympathpersist --in  (-k | -r | -c | -s) [-H] [-l LEN] DEVICE
    pympathpersist --out (-G | -I | -R | -L | -C | -P | -A) [-K RK] [-S SARK] [-T TYPE] [-Z] [-Y] DEVICE

The map's paths come from device mapper and sysfs (the daemon need not run). Keys go through every usable
path, a reservation through one (reservation/mapops.py says which and why). The exit status is
mpathpersist's: 0 success, 1 syntax error or a key that does not match the map's reservation_key,
2-11 the device's answer (11 a reservation conflict), 13 no such multipath map or no usable path, 15 other.
After a registration or a clear, the daemon is told (setprstatus/unsetprstatus, and setprkey/unsetprkey
for `reservation_key file`), so it registers the key on paths that join the map or come back.
"""

from __future__ import annotations

import getopt
import sys

from pymultipathd.errors import PymultipathError
from pymultipathd.reservation import codec
from pymultipathd.reservation.device import PrStatus, Reply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pymultipathd.policy.settings import Resolve
    from pymultipathd.policy.state import MapState
    from pymultipathd.reservation.mapops import Outcome, Path

PROG = "pympathpersist"
SHORT = "v:Cd:hHioYZK:S:PAT:skrGILcRX:l:f:"
LONG = ["verbose=", "clear", "device=", "help", "hex", "in", "out", "param-alltgpt", "param-aptpl",
        "param-rk=", "param-sark=", "preempt", "preempt-abort", "prout-type=", "read-full-status",
        "read-keys", "read-reservation", "register", "register-ignore", "release", "report-capabilities",
        "reserve", "transport-id=", "alloc-length=", "batch-file="]

USAGE = """\
usage: pympathpersist [OPTIONS] [DEVICE]

SCSI-3 persistent reservations on a multipath map (compatible with mpathpersist).
DEVICE is the map: /dev/mapper/NAME, NAME, dm-N, or one of its paths (/dev/sdb), which stands for its map.

  --in, -i                    PERSISTENT RESERVE IN (one of -k, -r, -c, -s)
    --read-keys, -k           the registered keys
    --read-reservation, -r    the reservation held, if any
    --report-capabilities, -c what the device supports
    --read-full-status, -s    every registration: key, holder, target port and initiator
    --alloc-length=LEN, -l    the reply's allocation length (default 8192, at most 65535)
    --hex, -H                 print the reply in hex
  --out, -o                   PERSISTENT RESERVE OUT (one of the following)
    --register, -G            register --param-sark (replacing --param-rk) on every usable path; a
                              --param-sark of 0 unregisters
    --register-ignore, -I     the same, whatever key the paths have now
    --reserve, -R             reserve with --param-rk and --prout-type through one path
    --release, -L             release the reservation --param-rk holds (type --prout-type)
    --clear, -C               remove every registration and the reservation (--param-rk must be registered)
    --preempt, -P             take the reservation and registrations of --param-sark with --param-rk
    --preempt-abort, -A       the same, and abort the preempted host's outstanding commands
    --param-rk=RK, -K RK      the reservation key (hex, 0x optional)
    --param-sark=SARK, -S SARK  the service action reservation key (hex)
    --prout-type=TYPE, -T TYPE  1 Write Exclusive, 3 Exclusive Access, 5/6 the same for registrants only,
                              7/8 the same for all registrants
    --param-aptpl, -Z         keep the registration through a power loss (APTPL)
    --param-alltgpt, -Y       register on all target ports at once (ALL_TG_PT; one path per initiator port)
  --device=DEVICE, -d DEVICE  the map (or give it as the last argument)
  --verbose=N, -v N           0 errors only; 2 also each path's reply when the paths disagree (default);
                              3 each path's reply always
  --transport-id, -X; --batch-file, -f
                              refused: not supported
  --help, -h                  this text

exit status: 0 success, 1 syntax error or key mismatch, 2 not ready, 3 medium error, 4 hardware error,
5 illegal request, 6 unit attention, 8 aborted command, 9 no sense, 10 malformed reply,
11 reservation conflict, 12 cannot open a path, 13 no such multipath map or no usable path,
14 no answer in time, 15 other failure

examples:
  pympathpersist --out --register --param-sark=0x123abc /dev/mapper/mpatha
  pympathpersist --out --reserve --param-rk=0x123abc --prout-type=5 /dev/mapper/mpatha
  pympathpersist -i -k /dev/mapper/mpatha
  pympathpersist --out --preempt-abort --param-rk=0x123abc --param-sark=0x456def --prout-type=5 mpatha
"""

IN_ACTIONS = {"-k": codec.PrIn.READ_KEYS, "--read-keys": codec.PrIn.READ_KEYS,
              "-r": codec.PrIn.READ_RESERVATION, "--read-reservation": codec.PrIn.READ_RESERVATION,
              "-c": codec.PrIn.REPORT_CAPABILITIES, "--report-capabilities": codec.PrIn.REPORT_CAPABILITIES,
              "-s": codec.PrIn.READ_FULL_STATUS, "--read-full-status": codec.PrIn.READ_FULL_STATUS}
OUT_ACTIONS = {"-G": codec.PrOut.REGISTER, "--register": codec.PrOut.REGISTER,
               "-I": codec.PrOut.REGISTER_AND_IGNORE, "--register-ignore": codec.PrOut.REGISTER_AND_IGNORE,
               "-R": codec.PrOut.RESERVE, "--reserve": codec.PrOut.RESERVE,
               "-L": codec.PrOut.RELEASE, "--release": codec.PrOut.RELEASE,
               "-C": codec.PrOut.CLEAR, "--clear": codec.PrOut.CLEAR,
               "-P": codec.PrOut.PREEMPT, "--preempt": codec.PrOut.PREEMPT,
               "-A": codec.PrOut.PREEMPT_AND_ABORT, "--preempt-abort": codec.PrOut.PREEMPT_AND_ABORT}
NEEDS_TYPE = {codec.PrOut.RESERVE, codec.PrOut.RELEASE, codec.PrOut.PREEMPT, codec.PrOut.PREEMPT_AND_ABORT}
REGISTERS = {codec.PrOut.REGISTER, codec.PrOut.REGISTER_AND_IGNORE}


class Usage(PymultipathError):
    """A command line that cannot be run; the message says why."""


class Request:
    def __init__(self) -> None:
        self.direction: str | None = None
        self.in_action: codec.PrIn | None = None
        self.out_action: codec.PrOut | None = None
        self.rk = 0
        self.sark = 0
        self.prtype = codec.PrType.NONE
        self.aptpl = False
        self.all_tg_pt = False
        self.hex = False
        self.alloc_len = codec.DEFAULT_ALLOC_LEN
        self.verbose = 2
        self.device: str | None = None


def _hex_arg(opt: str, value: str) -> int:
    from pymultipathd.reservation import keys

    try:
        return keys.parse_param_key(value)
    except keys.BadKey as err:
        raise Usage(f"bad argument to '{opt}': {err}") from None


def parse_args(argv: list[str]) -> Request | None:
    """The request, or None when --help asks for the usage text."""
    try:
        opts, rest = getopt.gnu_getopt(argv, SHORT, LONG)
    except getopt.GetoptError as err:
        raise Usage(str(err)) from None
    req = Request()
    for opt, val in opts:
        if opt in ("-h", "--help"):
            return None
        if opt in ("-i", "--in", "-o", "--out"):
            word = "in" if opt in ("-i", "--in") else "out"
            if req.direction not in (None, word):
                raise Usage("choose one of --in and --out")
            req.direction = word
        elif opt in IN_ACTIONS or opt in OUT_ACTIONS:
            if req.in_action is not None or req.out_action is not None:
                raise Usage("choose one service action")
            if opt in IN_ACTIONS:
                req.in_action = IN_ACTIONS[opt]
            else:
                req.out_action = OUT_ACTIONS[opt]
        elif opt in ("-K", "--param-rk"):
            req.rk = _hex_arg(opt, val)
        elif opt in ("-S", "--param-sark"):
            req.sark = _hex_arg(opt, val)
        elif opt in ("-T", "--prout-type"):
            try:
                req.prtype = codec.PrType(int(val, 16))
            except ValueError:
                raise Usage(f"bad argument to '{opt}': {val!r} is not a reservation type "
                            "(1, 3, 5, 6, 7 or 8)") from None
        elif opt in ("-Z", "--param-aptpl"):
            req.aptpl = True
        elif opt in ("-Y", "--param-alltgpt"):
            req.all_tg_pt = True
        elif opt in ("-H", "--hex"):
            req.hex = True
        elif opt in ("-l", "--alloc-length"):
            try:
                req.alloc_len = int(val, 0)
            except ValueError:
                raise Usage(f"bad argument to '{opt}': {val!r}") from None
            if not 0 < req.alloc_len <= codec.MAX_ALLOC_LEN:
                raise Usage(f"'{opt}' must be within 1..{codec.MAX_ALLOC_LEN}")
        elif opt in ("-v", "--verbose"):
            if not val.isdigit():
                raise Usage(f"bad argument to '{opt}': {val!r}")
            req.verbose = int(val)
        elif opt in ("-d", "--device"):
            req.device = val
        elif opt in ("-X", "--transport-id"):
            raise Usage("--transport-id is not supported: registering other initiators' TransportIDs "
                        "(SPEC_I_PT) is not implemented; register from each host instead")
        elif opt in ("-f", "--batch-file"):
            raise Usage("--batch-file is not supported: run one command per line from the shell instead")
    if rest:
        if req.device is not None or len(rest) > 1:
            raise Usage("give one device")
        req.device = rest[0]
    if req.device is None:
        raise Usage("no device given")
    inferred = "in" if req.in_action is not None else "out" if req.out_action is not None else None
    if inferred is None:
        raise Usage("no service action given")
    if req.direction not in (None, inferred):
        raise Usage(f"that service action belongs to --{inferred}")
    req.direction = inferred
    if req.out_action in NEEDS_TYPE and req.prtype is codec.PrType.NONE:
        raise Usage("--prout-type is needed for reserve, release and preempt")
    return req


# ---- printing PR IN replies as mpathpersist does (fence agents read them)

def format_keys(k: codec.Keys) -> str:
    n = len(k.keys)
    head = (f"  PR generation=0x{k.generation:x}, " + ("\t0 registered reservation key.\n" if n == 0 else
            "\t1 registered reservation key follows:\n" if n == 1 else
            f"\t{n} registered reservation keys follow:\n"))
    return head + "".join(f"    0x{key:x}\n" for key in k.keys)


def _type_name(value: int) -> str:
    try:
        return codec.TYPE_NAMES[codec.PrType(value)]
    except (ValueError, KeyError):
        return f"obsolete [{value:x}]" if value < 10 else f"obsolete [0x{value:x}]"


def format_reservation(r: codec.Reservation) -> str:
    if r.key is None:
        return f"  PR generation=0x{r.generation:x}, there is NO reservation held \n"
    scope = "LU_SCOPE" if r.scope == 0 else str(r.scope)
    return (f"  PR generation=0x{r.generation:x}, Reservation follows:\n   Key = 0x{r.key:x}\n"
            f"  scope = {scope}, type = {_type_name(r.prtype)}\n")


def format_capabilities(data: bytes) -> str:
    c = codec.parse_capabilities(data)
    lines = ["Report capabilities response:",
             f"  Compatible Reservation Handling(CRH): {int(c.crh)}",
             f"  Specify Initiator Ports Capable(SIP_C): {int(c.sip_c)}",
             f"  All Target Ports Capable(ATP_C): {int(c.atp_c)}",
             f"  Persist Through Power Loss Capable(PTPL_C): {int(c.ptpl_c)}",
             f"  Type Mask Valid(TMV): {int(c.tmv)}",
             f"  Allow Commands: {int(bool(c.allow_commands))}",
             f"  Persist Through Power Loss Active(PTPL_A): {int(c.ptpl_a)}"]
    if c.tmv:
        # mpathpersist 0.9.4's layout; it prints 0 for every type (it tests the mask's bits in the wrong
        # byte order), where this prints what the device reports, as sg_persist does
        lines.append("    Support indicated in Type mask:")
        for t in (7, 6, 5, 3, 1, 8):
            lines.append(f"      {_type_name(t)}: {int(codec.PrType(t) in c.types)}")
    return "\n".join(lines) + "\n"


def _transport_id(tid: bytes) -> str:
    if not tid:
        return ""
    proto, fmt = tid[0] & 0x0F, tid[0] >> 6
    if proto == 5:
        name = codec.iscsi_name(tid)
        if fmt == 0:
            return f"   iSCSI name: {name}\n"
        if fmt == 1:
            return f"   iSCSI world wide unique port id: {name}\n"
        return f"   iSCSI   [Unexpected format code: {fmt}]\n"
    if proto == 0:
        return f"   FCP-2  Port_Name=0x{tid[8:16].hex()}\n"
    if proto == 6:
        return f"   SAS  SAS address: 0x{tid[4:12].hex()}\n"
    return f"   {codec.transport_id_text(tid)}\n"


def format_full_status(s: codec.FullStatus) -> str:
    out = [f"  PR generation=0x{s.generation:x} \n"]
    for r in s.registrants:
        out.append(f"   Key = 0x{r.key:x}\n")
        if r.all_tg_pt:
            out.append("      All target ports bit set\n")
        else:
            out.append("      All target ports bit clear\n")
            out.append(f"      Relative port address: 0x{r.rel_tgt_port:x}\n")
        if r.holder:
            scope = "      scope: LU_SCOPE, " if r.scope == 0 else f"      scope: {r.scope} "
            out.append("      << Reservation holder >>\n")
            out.append(f"{scope} type: {_type_name(r.prtype)}\n")
        else:
            out.append("      not reservation holder\n")
        out.append(_transport_id(r.transport_id))
    return "".join(out)


def hex_dump(data: bytes) -> str:
    return "".join(f" {i:02x}     " + " ".join(f"{b:02x}" for b in data[i:i + 16]) + "\n"
                   for i in range(0, len(data), 16))


def format_in(action: codec.PrIn, data: bytes) -> str:
    if action is codec.PrIn.READ_KEYS:
        return format_keys(codec.parse_keys(data))
    if action is codec.PrIn.READ_RESERVATION:
        return format_reservation(codec.parse_reservation(data))
    if action is codec.PrIn.REPORT_CAPABILITIES:
        return format_capabilities(data)
    return format_full_status(codec.parse_full_status(data))


# ---- the map and its paths

class NoMap(PymultipathError):
    """The device is no multipath map (nor a path of one); the message says what it is."""


def map_paths(device: str) -> tuple[MapState, list[Path], Resolve]:
    """(map state, [mapops.Path], resolver) of the map `device` names, read from device mapper and sysfs."""
    from pymultipathd import mapmaker, topology
    from pymultipathd.cli.topology_cmd import map_of_path
    from pymultipathd.config import load_config
    from pymultipathd.dm.ioctl import Control
    from pymultipathd.paths import sysinfo
    from pymultipathd.policy.decide import dm_active
    from pymultipathd.reservation.mapops import Path

    config = load_config()
    ident = mapmaker.identify(device)
    name = map_of_path(ident) or ident
    state, problems = topology.read_all(Control(), config)
    m = state.find_map(name)
    if m is None:
        why = "; ".join(f"{n}: {e}" for n, e in problems)
        raise NoMap(f"{device} is not a multipath map nor a path of one" + (f" ({why})" if why else ""))
    paths = []
    for p in state.paths_of(m):
        r = topology.resolver(config, p.wwid, p.facts.vendor, p.facts.product, p.facts.revision)
        host = p.hcil.split(":", 1)[0]
        paths.append(Path(dev=p.dev, devnode=f"/dev/{p.dev}",
                          usable=dm_active(m, p) is True and sysinfo.dev_state(p.dev) == "running",
                          host=int(host) if host.isdigit() else None,
                          timeout=topology.check_timeout(r, p)))
    resolve = topology.resolver(config, m.wwid, m.vendor or None, m.product or None, m.revision or None)
    return m, paths, resolve


def _parallel(calls: Mapping[str, tuple[Callable[[], Reply], float]]) -> dict[str, Reply | Exception]:
    from pymultipathd import mapmaker

    return mapmaker.side_by_side(calls, "pr")


def _tell_daemon(command: str) -> str | None:
    """The daemon's reply; None when no daemon runs (nothing to connect to). A daemon that takes the
    command but answers late is a failure, not an absence: the command may still be carried out, so the
    caller must not do the daemon's part itself (its write of the prkeys file could land over ours)."""
    from pymultipathd.control import client

    try:
        sock = client.connect(timeout=10)
    except client.ClientError:
        return None
    with sock:
        try:
            return client.request(sock, command).strip()
        except client.ClientError as err:
            return f"fail: {err}"


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


def run_out(req: Request, m: MapState, paths: list[Path], resolve: Resolve) -> int:
    from pymultipathd.reservation import keys, mapops

    action = req.out_action
    assert action is not None
    prkeys_file = str(resolve("prkeys_file"))
    mk = keys.configured(resolve("reservation_key"), m.wwid, lambda: keys.read_prkeys(prkeys_file))
    conf = mk.key.value if mk.key else 0
    aptpl = req.aptpl
    if mk.source is keys.Source.FILE and req.sark and (
            action is codec.PrOut.REGISTER_AND_IGNORE
            or (action is codec.PrOut.REGISTER and (conf == 0 or req.rk == conf))):
        # the new key becomes the map's before it is registered, so a path that comes back meanwhile
        # gets the right one
        new = keys.Key(req.sark, aptpl)
        reply = _tell_daemon(f"setprkey map {m.name} key {new}")
        if reply is None:
            from pymultipathd.store import StoreError

            try:
                keys.set_prkey(prkeys_file, m.wwid, new)
            except StoreError as err:
                _say(f"{m.name}: cannot record the key in {prkeys_file}: {err}")
                return PrStatus.FILE_ERROR
        elif not reply.startswith("ok"):
            _say(f"{m.name}: the daemon refused setprkey: {reply}")
            return PrStatus.DMMP_ERROR
        conf = req.sark
    if req.rk != conf and req.sark != conf and (
            req.sark != 0 or action is not codec.PrOut.REGISTER_AND_IGNORE):
        where = ("no reservation_key is configured" if mk.source is keys.Source.NONE
                 else f"its reservation_key is 0x{conf:x}" if conf else "the prkeys file has no key for it")
        _say(f"{m.name}: configured reservation key doesn't match: {where}, and neither --param-rk "
             f"(0x{req.rk:x}) nor --param-sark (0x{req.sark:x}) is it; set reservation_key for this map "
             "in multipath.conf (or `reservation_key file`)")
        return PrStatus.SYNTAX_ERROR
    all_tg_pt = req.all_tg_pt or bool(resolve("all_tg_pt"))
    if action in REGISTERS:
        out = mapops.register(paths, action, req.rk, req.sark, aptpl=aptpl or bool(mk.key and mk.key.aptpl),
                              all_tg_pt=all_tg_pt, parallel=_parallel)
    elif action is codec.PrOut.RELEASE:
        out = mapops.release(paths, req.prtype, req.rk, parallel=_parallel)
    else:
        out = mapops.through_one(paths, action, req.prtype, req.rk, req.sark, aptpl=aptpl)
    _report(req, m.name, action.name.lower().replace("_", " "), out, paths)
    if not out.ok:
        return out.status
    if action in REGISTERS or action is codec.PrOut.CLEAR:
        registered = action in REGISTERS and req.sark != 0
        commands = [f"setprstatus map {m.name}"] if registered else [f"unsetprstatus map {m.name}"]
        if not registered and mk.source is keys.Source.FILE:
            commands.append(f"unsetprkey map {m.name}")
        for c in commands:
            reply = _tell_daemon(c)
            if reply is None:
                if any(c.startswith("unsetprkey") for c in commands):
                    _forget_file_key(prkeys_file, m)
                _say(f"{m.name}: pymultipathd is not running: paths that join the map or come back later "
                     "will not be registered until it runs")
                break
            if not reply.startswith("ok"):
                _say(f"{m.name}: the daemon answered {c!r} with {reply!r}")
        if registered and mk.source is keys.Source.NONE:
            _say(f"{m.name}: no reservation_key is configured for this map: the daemon cannot register the "
                 "key on paths that join it or come back")
    return PrStatus.SUCCESS


def _forget_file_key(prkeys_file: str, m: MapState) -> None:
    """The daemon's `unsetprkey` done here when it does not run: the key unregistered or cleared must not
    stay the map's key, or the next registration with a new key would be refused as a mismatch."""
    from pymultipathd.reservation import keys
    from pymultipathd.store import StoreError

    try:
        keys.set_prkey(prkeys_file, m.wwid, None)
    except StoreError as err:
        _say(f"{m.name}: cannot remove its key from {prkeys_file}: {err}")


def _report(req: Request, name: str, what: str, out: Outcome, paths: list[Path]) -> None:
    unusable = [p.dev for p in paths if not p.usable]
    if out.per_path and (req.verbose >= 3 or (req.verbose >= 2 and (out.disagree or not out.ok))):
        for dev, reply in out.per_path:
            print(f"  {dev}: {reply}", file=sys.stderr)
    if unusable and req.verbose >= 2 and req.out_action in REGISTERS:
        _say(f"{name}: not sent through {', '.join(unusable)} (not usable now)")
    for note in out.notes:
        if req.verbose >= 1:
            _say(f"{name}: {note}")
    if not out.ok:
        _say(f"{name}: {what} failed: {out.status.text}")
        if out.status is PrStatus.RESERVATION_CONFLICT:
            print("persistent reserve out: scsi status: Reservation Conflict")
        print("PR out: command failed")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        req = parse_args(argv)
    except Usage as err:
        _say(str(err))
        print(f"Try '{PROG} --help' for more information.", file=sys.stderr)
        return PrStatus.SYNTAX_ERROR
    if req is None:
        sys.stdout.write(USAGE)
        return 0
    from pymultipathd.reservation import mapops

    try:
        m, paths, resolve = map_paths(req.device or "")
    except NoMap as err:
        _say(str(err))
        return PrStatus.DMMP_ERROR
    except PymultipathError as err:  # the configuration does not load, device mapper does not answer
        _say(str(err))
        return PrStatus.DMMP_ERROR if not type(err).__name__.startswith("Config") else PrStatus.SYNTAX_ERROR
    if req.direction == "out":
        return run_out(req, m, paths, resolve)
    assert req.in_action is not None
    out = mapops.read(paths, req.in_action, req.alloc_len)
    if not out.ok:
        _say(f"{m.name}: {out.status.text}" + "".join(f"; {d}: {r}" for d, r in out.per_path))
        print("Persistent Reserve IN command failed", file=sys.stderr)
        return out.status
    if req.hex:
        sys.stdout.write(hex_dump(out.data))
        return PrStatus.SUCCESS
    try:
        sys.stdout.write(format_in(req.in_action, out.data))
    except codec.CodecError as err:
        _say(f"{m.name}: the reply through {out.via} is malformed: {err}")
        return PrStatus.MALFORMED
    return PrStatus.SUCCESS


if __name__ == "__main__":
    sys.exit(main())
