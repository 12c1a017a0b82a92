"""Prioritizers whose answer is a rule in prio_args rather than a state the array reports.

weightedpath  a weight per path, chosen by regexes over the path's H:C:T:L, name, serial or FC port names
path_latency  a rank from the mean logarithm of the latency of io_num direct reads
iet           20 for iSCSI paths to the preferred portal address, 10 for the others
random        1 to 10 at random

Each takes (disk name, prio_args, seconds per command) like every prioritizer (pymultipathd.paths.prio).
prio_args are parsed by pure functions into typed values, with upstream multipath-tools 0.9.4's syntax and
its treatment of malformed arguments (a default priority, or default arguments for path_latency).
"""

from __future__ import annotations

import math
import mmap
import os
import queue
import random
import re
import threading
import time

from pymultipathd import locations
from pymultipathd.config import ere
from pymultipathd.paths import sgio, sysinfo
from pymultipathd.record import record
from pymultipathd.sysread import read_attr

UNDEF = -1  # = prio.PRIO_UNDEF (that module imports this one, so the value is repeated, not imported)
DEV_DIR = "/dev"  # where the kernel's device nodes and udev's links are (no locations entry for it)
_SEPARATORS = re.compile(r"[ \t]+")


def _tokens(args: str) -> list[str]:
    """prio_args split at runs of blanks and tabs, as upstream splits them (other white space is kept)."""
    return [t for t in _SEPARATORS.split(args) if t]


def _wrap_int(value: int) -> int:
    """A C long stored into an int: saturated to 64 bits, then the low 32 bits, signed."""
    value = max(min(value, 2**63 - 1), -(2**63)) & 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


_LEADING_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def c_atoi(text: str) -> int:
    """C atoi(): the leading decimal integer (after blanks, with a sign), 0 if there is none."""
    m = _LEADING_INT.match(text)
    return _wrap_int(int(m.group(1))) if m else 0


# --- weightedpath -------------------------------------------------------------------------------------------

WEIGHTED_KINDS = ("hbtl", "devname", "serial", "wwn")
WEIGHTED_DEFAULT = 0


@record(frozen=True)
class WeightedArgs:
    kind: str                           # one of WEIGHTED_KINDS: what the regexes are matched against
    rules: tuple[tuple[str, int], ...]  # (ERE, weight) in the order given; the first match wins


def parse_weighted_args(args: str) -> WeightedArgs | None:
    """"<hbtl|devname|serial|wwn> <regex1> <prio1> <regex2> <prio2> ...": the weight is read as C's atoi
    reads it (leading digits, 0 if none); a regex left without a weight at the end is dropped. None (the
    default priority, 0) for no arguments or another first word."""
    words = _tokens(args)
    if not words or words[0] not in WEIGHTED_KINDS:
        return None
    pairs = words[1:]
    rules = tuple((pairs[i], c_atoi(pairs[i + 1])) for i in range(0, len(pairs) - 1, 2))
    return WeightedArgs(words[0], rules)


def _fc_name(value: str | None) -> str:
    return "[unknown]" if value is None else value


def weighted_subject(kind: str, dev: str) -> str:
    """What the regexes of `kind` are matched against for the path, spelled as upstream prints it:
    hbtl "H:C:T:L"; devname the kernel name; serial the unit serial number (show paths %z); wwn
    "host WWNN:host WWPN:target WWNN:target WWPN" (%N:%R:%n:%r), "[undef]" for what the transport does not
    have (all but the target node name, an iSCSI target's IQN, on a path that is not FC) and "[unknown]"
    for an FC attribute that cannot be read."""
    if kind == "hbtl":
        return sysinfo.hcil(dev)
    if kind == "devname":
        return dev
    if kind == "serial":
        return sysinfo.unit_serial(dev)
    fc = sysinfo.fc_port_names(dev)
    host_wwnn, host_wwpn, tgt_wwpn = ("[undef]",) * 3 if fc is None else tuple(_fc_name(v) for v in fc)
    tgt_wwnn = sysinfo.target_node_name(dev) or "[undef]"
    return f"{host_wwnn}:{host_wwpn}:{tgt_wwnn}:{tgt_wwpn}"


def weighted_value(parsed: WeightedArgs, subject: str) -> int:
    """The weight of the first rule whose ERE matches the subject (unanchored); WEIGHTED_DEFAULT if none
    does. A regex that does not compile is passed over, as upstream passes over what regcomp refuses."""
    for pattern, weight in parsed.rules:
        try:
            regex = ere.compile_ere(pattern)
        except ere.RegexError:
            continue
        if regex.search(subject):
            return weight
    return WEIGHTED_DEFAULT


def prio_weightedpath(dev: str, args: str = "", timeout: float = 30.0) -> int:
    parsed = parse_weighted_args(args)
    if parsed is None:
        return WEIGHTED_DEFAULT
    return weighted_value(parsed, weighted_subject(parsed.kind, dev))


# --- path_latency -------------------------------------------------------------------------------------------

IO_NUM_RANGE = (20, 200)             # reads per measure (upstream's code; its man page says 2-200)
BASE_NUM_RANGE = (1.1, 10.0)         # base of the logarithmic scale (its man page says integers 2-10)
IO_NUM_DEFAULT = 100
BASE_NUM_DEFAULT = 10 ** 0.25        # 4 priority steps per factor of 10 in latency
MAX_LATENCY_US = 100_000_000.0       # 100 s: a mean latency above this gives priority 0
MIN_LATENCY_US = 1.0                 # 1 us: a mean below this gives the top priority
LATENCY_DEFAULT = 0
DEFAULT_BLOCK = 4096
_BLOCK_RANGE = (512, 65536)


@record(frozen=True)
class LatencyArgs:
    io_num: int = IO_NUM_DEFAULT
    base_num: float = BASE_NUM_DEFAULT
    defaulted: bool = True  # the arguments were missing or malformed: upstream's defaults are used


_LEADING_UINT = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


def _c_strtoul(text: str) -> int:
    """C strtoul() base 10 stored into an int: leading digits with an optional sign (a minus negates
    modulo 2**64), saturating at ULONG_MAX; 0 when there are no digits."""
    m = _LEADING_UINT.match(text)
    if not m:
        return 0
    value = min(int(m.group(2)), 2**64 - 1)
    if m.group(1) == "-":
        value = (-value) % 2**64
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


_DEC_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_HEX_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?)0[xX]((?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
                        r"(?:[pP][+-]?[0-9]+)?)")


def _c_strtod(text: str) -> float:
    """C strtod(): the leading decimal or hexadecimal floating-point number, 0.0 if there is none. (inf and
    nan are read as no number: both are outside every range checked here.)"""
    m = _HEX_FLOAT.match(text)
    if m:
        try:
            value = float.fromhex("0x" + m.group(2))
        except (ValueError, OverflowError):
            return math.inf
        return -value if m.group(1) == "-" else value
    m = _DEC_FLOAT.match(text)
    return float(m.group(1)) if m else 0.0


def parse_latency_args(args: str) -> LatencyArgs:
    """"io_num=<n> base_num=<x>" in either order, as the first two words (later words are ignored; a first
    or second word that is neither is skipped, but still counts as one of the two). io_num must be within
    IO_NUM_RANGE and base_num within BASE_NUM_RANGE; the numbers are read as C's strtoul/strtod read them
    (a value with trailing garbage keeps its leading number, none at all reads as 0). Anything else gives
    the defaults for both, as upstream does."""
    io_num: int | None = None
    base_num: float | None = None
    for word in _tokens(args)[:2]:
        if word.startswith("io_num=") and len(word) > 7:
            io_num = _c_strtoul(word[7:])
        elif word.startswith("base_num=") and len(word) > 9:
            base_num = _c_strtod(word[9:])
    if io_num is None or base_num is None:
        return LatencyArgs()
    if not IO_NUM_RANGE[0] <= io_num <= IO_NUM_RANGE[1]:
        return LatencyArgs()
    if not BASE_NUM_RANGE[0] <= base_num <= BASE_NUM_RANGE[1]:  # False for nan too
        return LatencyArgs()
    return LatencyArgs(io_num, base_num, defaulted=False)


def latency_value(latencies_us: list[int], io_num: int, base_num: float) -> int:
    """Priority from io_num read latencies in whole microseconds: the mean of their logarithms to base
    base_num (a 0 us read adds nothing but still counts), subtracted from log(MAX_LATENCY_US); 0 at or above
    MAX_LATENCY_US, log(MAX_LATENCY_US) - log(MIN_LATENCY_US) at or below MIN_LATENCY_US; truncated to an
    integer. With base 10: <=1 us 8, 10 us 7, 100 us 6, 1 ms 5, ..., 100 s and above 0."""
    lg_base = math.log(base_num)
    lg_max = math.log(MAX_LATENCY_US) / lg_base
    lg_min = math.log(MIN_LATENCY_US) / lg_base
    total = sum(math.log(us) / lg_base for us in latencies_us if us > 0)
    mean = total / io_num
    if mean >= lg_max:
        return LATENCY_DEFAULT
    if mean <= lg_min:
        return int(lg_max - lg_min)
    return int(lg_max - mean)


# Disks whose latency reads have not all returned (a read that outlived its wait still holds a thread in
# the kernel): a new measure of such a disk fails at once instead of starting another thread.
_reading: set[str] = set()
_reading_lock = threading.Lock()


def _open_direct(devnode: str) -> int:
    return os.open(devnode, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)


def _block_size(fd: int) -> int:
    """The block device's block size (BLKBSZGET), DEFAULT_BLOCK if it will not say or says something
    outside _BLOCK_RANGE or not a power of two."""
    size = sgio.block_size(fd)
    low, high = _BLOCK_RANGE
    return size if size is not None and low <= size <= high and size & (size - 1) == 0 else DEFAULT_BLOCK


def _read_block(fd: int, buf: mmap.mmap) -> int:
    return os.preadv(fd, [buf], 0)


def _reader(dev: str, fd: int, size: int, count: int, out: queue.SimpleQueue[int | None],
            stop: threading.Event) -> None:
    """Reads the first block `count` times, putting each read's latency in us (None for a failed or short
    read, then stops); stops early when told to. Owns fd and closes it."""
    try:
        buf = mmap.mmap(-1, size)  # page aligned, as O_DIRECT wants
        try:
            for _ in range(count):
                if stop.is_set():
                    break
                start = time.monotonic_ns()
                try:
                    done = _read_block(fd, buf)
                except OSError:
                    done = -1
                elapsed = (time.monotonic_ns() - start) // 1000
                if done != size:
                    out.put(None)
                    break
                out.put(elapsed)
        finally:
            buf.close()
    except OSError:
        out.put(None)
    finally:
        os.close(fd)
        with _reading_lock:
            _reading.discard(dev)


def measure_latencies(dev: str, count: int, timeout: float) -> list[int] | None:
    """Latencies in us of `count` O_DIRECT reads of the disk's first block, one after the other; None if
    the disk cannot be opened for direct I/O, a read fails or is short, a read takes longer than `timeout`
    seconds, or reads from an earlier measure are still outstanding. The reads run on a thread of their
    own, so no read is waited for longer than `timeout`, and the measure takes at most count * timeout."""
    with _reading_lock:
        if dev in _reading:
            return None
        _reading.add(dev)
    try:
        fd = _open_direct(os.path.join(DEV_DIR, dev))
    except OSError:
        with _reading_lock:
            _reading.discard(dev)
        return None
    out: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    stop = threading.Event()
    size = _block_size(fd)
    reader = threading.Thread(target=_reader, args=(dev, fd, size, count, out, stop), name=f"latency-{dev}",
                              daemon=True)
    reader.start()
    wait = timeout if timeout > 0 else None
    latencies: list[int] = []
    try:
        for _ in range(count):
            got = out.get(timeout=wait)
            if got is None:
                break
            latencies.append(got)
    except queue.Empty:
        return None  # a read outlived its wait: the reader stops once it returns, on its own
    finally:
        stop.set()
    reader.join(wait)  # no read left: it only closes the disk (so the next measure finds it free)
    return latencies if len(latencies) == count else None


def prio_path_latency(dev: str, args: str = "", timeout: float = 30.0) -> int:
    """latency_value of the disk's reads with the arguments prio_args gives (upstream's defaults when they
    are malformed); UNDEF when the reads cannot be made or do not all complete in time."""
    parsed = parse_latency_args(args)
    latencies = measure_latencies(dev, parsed.io_num, timeout)
    if latencies is None:
        return UNDEF
    return latency_value(latencies, parsed.io_num, parsed.base_num)


# --- iet ----------------------------------------------------------------------------------------------------

IET_PREFERRED, IET_OTHER, IET_BAD_ARGS = 20, 10, 0
_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_BY_PATH = "disk/by-path/"
_IET_ARGS = re.compile(r"preferredip=[ \t\n\v\f\r]*([^ \t\n\v\f\r]+)")


def parse_iet_args(args: str) -> str | None:
    """"preferredip=<address>" (anything after the first blank following the address is ignored); None
    for another form or an address of 7 characters or fewer, which gives priority 0."""
    m = _IET_ARGS.match(args)
    if m is None or len(m.group(1)) <= 7:
        return None
    return m.group(1)


def iet_matches(link_name: str, preferredip: str) -> bool:
    """Whether a /dev/disk/by-path link name shows the preferred address: its first dotted quad, taken as
    upstream takes it, must begin the preferred address (so "10.0.0.1" also matches "10.0.0.12")."""
    m = _IPV4.search(link_name)
    return m is not None and preferredip.startswith(m.group(0))


def by_path_links(dev: str) -> list[str]:
    """Names of the /dev/disk/by-path links of the disk, from udev's database entry for it; if there is no
    entry, from the links in DEV_DIR/disk/by-path that point at the disk or one of its partitions."""
    dev_t = sysinfo.dev_t(dev)
    entry = read_attr(os.path.join(locations.udev_db(), f"b{dev_t}")) if dev_t else ""
    if entry:
        return [line[2 + len(_BY_PATH):] for line in entry.splitlines()
                if line.startswith("S:" + _BY_PATH)]
    where = os.path.join(DEV_DIR, _BY_PATH)
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return []
    links = []
    for name in names:
        try:
            target = os.path.basename(os.readlink(os.path.join(where, name)))
        except OSError:
            continue
        if target == dev or (target.startswith(dev) and target[len(dev):].isdigit()):
            links.append(name)
    return links


def prio_iet(dev: str, args: str = "", timeout: float = 30.0) -> int:
    """IET_PREFERRED when a by-path link of the disk (ip-<address>:<port>-iscsi-...) shows the preferred
    address, IET_OTHER when none does, IET_BAD_ARGS (0) when prio_args are missing or malformed."""
    preferredip = parse_iet_args(args)
    if preferredip is None:
        return IET_BAD_ARGS
    if any(iet_matches(name, preferredip) for name in by_path_links(dev)):
        return IET_PREFERRED
    return IET_OTHER


# --- random -------------------------------------------------------------------------------------------------

RANDOM_RANGE = (1, 10)


def prio_random(dev: str, args: str = "", timeout: float = 30.0) -> int:
    return random.randint(*RANDOM_RANGE)
