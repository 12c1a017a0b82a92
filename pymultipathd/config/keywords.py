"""The one table of multipath.conf keywords: value type, built-in default, where each may appear, deprecation,
and where pymultipathd acts on each (or why it does not: such a keyword warns when a file sets it).

Everything else (the loader, `pymultipath -t`, docs/configuration.md) is driven by this
table, so a keyword is added in one place. Value types convert the text of a config file into a typed Python
value (bool, int or str) and back; `fmt(parse(x))` re-parses to the same value, which `-t` relies on.

Section tags: "defaults", "device" (devices { device { } }), "multipath" (multipaths { multipath { } }),
"overrides", "blacklist" (blacklist and blacklist_exceptions entries) and "blacklist_device"
(their device { } subsection).
"""

from __future__ import annotations

import re

from pymultipathd.config.ere import RegexError, compile_ere, split_inverted
from pymultipathd.record import field, record

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Callable

# ---------------------------------------------------------------------------------------------- value types


class ValueType:
    """Converts config text to a typed value (ValueError with a readable reason) and back to text."""

    describe = "a string"

    def parse(self, raw: str) -> object:
        return raw

    def fmt(self, value: object) -> str:
        return str(value)

    def caution(self, value: object) -> str | None:
        """A load warning for a valid value that will not do what it says (upstream accepts it too)."""
        return None


class Str(ValueType):
    pass


class Word(ValueType):
    """A string without whitespace (udev property names, aliases, WWIDs)."""

    describe = "a single word"

    def parse(self, raw: str) -> object:
        if not raw or any(c.isspace() for c in raw):
            raise ValueError("expected a single word without spaces")
        return raw


class MapName(ValueType):
    """A device-mapper map name: not empty, no "/" (it becomes /dev/mapper/<name>), at most 127 bytes."""

    describe = 'a map name without "/"'

    def parse(self, raw: str) -> object:
        if not raw or "/" in raw or raw in (".", "..") or len(raw.encode("utf-8", "surrogateescape")) > 127:
            raise ValueError(f"expected {self.describe} (1 to 127 bytes)")
        return raw


class Path(ValueType):
    describe = "an absolute path"

    def parse(self, raw: str) -> object:
        if not raw.startswith("/"):
            raise ValueError("expected an absolute path")
        return raw


class Regex(ValueType):
    """A POSIX ERE; in blacklist sections a leading "!" inverts it."""

    describe = "a POSIX extended regular expression"

    def __init__(self, invertible: bool = False) -> None:
        self.invertible = invertible

    def parse(self, raw: str) -> object:
        pattern = split_inverted(raw)[1] if self.invertible else raw
        try:
            compile_ere(pattern)
        except RegexError as exc:
            raise ValueError(f"invalid regular expression {raw!r}: {exc}") from exc
        return raw


_YES = ("yes", "1")
_NO = ("no", "0")


class YesNo(ValueType):
    describe = "yes or no"

    def parse(self, raw: str) -> object:
        low = raw.lower()
        if low in _YES:
            return True
        if low in _NO:
            return False
        raise ValueError("expected yes or no")

    def fmt(self, value: object) -> str:
        return "yes" if value else "no"


class Int(ValueType):
    def __init__(self, lo: int | None = None, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        rng = []
        if lo is not None:
            rng.append(f">= {lo}")
        if hi is not None:
            rng.append(f"<= {hi}")
        self.describe = "an integer" + (" " + " and ".join(rng) if rng else "")

    def parse(self, raw: str) -> object:
        if not re.fullmatch(r"[+-]?\d{1,18}", raw.strip()):
            raise ValueError(f"expected {self.describe}")
        value = int(raw)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ValueError(f"expected {self.describe}")
        return value


class Choice(ValueType):
    """One word of a fixed set; `aliases` maps accepted spellings to the canonical word."""

    def __init__(self, *values: str, aliases: dict[str, str] | None = None) -> None:
        self.values = values
        self.aliases = aliases or {}
        self.describe = "one of " + ", ".join(values)

    def parse(self, raw: str) -> object:
        low = raw.strip().lower()
        if low in self.values:
            return low
        if low in self.aliases:
            return self.aliases[low]
        raise ValueError(f"expected {self.describe}")


class WordOrInt(ValueType):
    """A number, or one of a few words (no_path_retry fail|queue|N, failback manual|...|N, ...).

    `zero` names the word that "0" stands for (kept as the word, so "0" and "fail" are the same value).
    `off_as_zero`: the words mean 0 ("no" for the shaky-path counters) and the value is an int.
    """

    def __init__(
        self,
        *words: str,
        lo: int = 1,
        zero: str | None = None,
        aliases: dict[str, str] | None = None,
        off_as_zero: bool = False,
    ) -> None:
        self.words, self.lo, self.zero, self.aliases = words, lo, zero, aliases or {}
        self.off_as_zero = off_as_zero
        self.describe = " or ".join([*words, f"an integer >= {lo}"])

    def parse(self, raw: str) -> object:
        low = raw.strip().lower()
        low = self.aliases.get(low, low)
        if low in self.words:
            return 0 if self.off_as_zero else low
        if re.fullmatch(r"[+-]?\d{1,18}", low):
            value = int(low)
            if value == 0 and self.zero is not None:
                return 0 if self.off_as_zero else self.zero
            if value >= self.lo:
                return value
        raise ValueError(f"expected {self.describe}")

    def fmt(self, value: object) -> str:
        if self.off_as_zero and value == 0:
            return self.words[0]
        return str(value)


class Features(ValueType):
    """Device-mapper feature list "<count> <word>...": the count must equal the number of words."""

    describe = 'a feature list such as "0" or "1 queue_if_no_path"'

    def parse(self, raw: str) -> object:
        words = raw.split()
        if not words or not words[0].isdigit() or int(words[0]) != len(words) - 1:
            raise ValueError(f"expected {self.describe} (the count must match the words)")
        return " ".join(words)


class HwHandler(ValueType):
    describe = 'a hardware handler: "0" or "1 <name>" (alua, emc, rdac, hp_sw, ana)'

    def parse(self, raw: str) -> object:
        words = raw.split()
        if words == ["0"] or (len(words) == 2 and words[0] == "1"):
            return " ".join(words)
        raise ValueError(f"expected {self.describe}")


_SELECTORS = ("round-robin", "queue-length", "service-time", "historical-service-time")


class PathSelector(ValueType):
    describe = 'a path selector: "<name> <args>", name one of ' + ", ".join(_SELECTORS)

    def parse(self, raw: str) -> object:
        words = raw.split()
        if not words or words[0] not in _SELECTORS or not all(w.isdigit() for w in words[1:]):
            raise ValueError(f"expected {self.describe}")
        if len(words) == 1:  # the kernel wants the argument count
            words.append("0")
        return " ".join(words)


class UidAttrs(ValueType):
    describe = 'a list of "<devnode prefix>:<udev property>" separated by spaces'

    def parse(self, raw: str) -> object:
        words = raw.split()
        for w in words:
            prefix, _, attr = w.partition(":")
            if not prefix or not attr:
                raise ValueError(f"expected {self.describe}, got {w!r}")
        return " ".join(words)


class ReservationKey(ValueType):
    describe = 'a key "0x<up to 16 hex digits>" (not 0; optionally ":aptpl") or "file"'

    def parse(self, raw: str) -> object:
        from pymultipathd.reservation import keys

        if raw != keys.FILE_WORD:
            try:
                keys.parse_key(raw)
            except keys.BadKey as err:
                raise ValueError(f"{err}; expected {self.describe}") from None
        return raw


# ------------------------------------------------------------------------------------------------- the table

DEF, DEV, MP, OVR = "defaults", "device", "multipath", "overrides"
BL, BLD = "blacklist", "blacklist_device"
NO_EFFECT = "no effect in pymultipathd"

# A built-in default is a value, None (unset: nothing printed, the caller decides), or a function of a
# resolver (keyword -> value) for defaults derived from other keywords or from the program's locations.
if TYPE_CHECKING:
    Default = object | Callable[[Callable[[str], object]], object]


@record(frozen=True)
class Keyword:
    name: str
    type: ValueType
    default: Default = None
    sections: frozenset[str] = field(default_factory=frozenset)
    doc: str = ""
    deprecated: str | None = None  # warning text when used
    ignored: bool = False  # accepted (with the deprecation warning) but the value has no effect
    synonym_of: str | None = None  # stored under this canonical name
    # Every keyword says one of two things (tests/unit/test_keyword_effects.py holds the table to it):
    # `effect`: where pymultipathd acts on the value: files under pymultipathd/ and their functions, a
    # config accessor that reads it for them ("Config.uid_attribute_for"), then "tests:" and the tests (under
    # tests/) that prove it, if any; or `unsupported`: why it has no effect here. An administrator's use of
    # an unsupported keyword is a load warning ("no effect in pymultipathd: <why>"), and `pymultipath -t`
    # marks it. Synonyms share their target's; `ignored` deprecated keywords already say so in `deprecated`.
    effect: str | None = None
    unsupported: str | None = None

    @property
    def canonical(self) -> str:
        return self.synonym_of or self.name

    def no_effect(self) -> str | None:
        """The warning and `-t` comment text of an unsupported keyword ("no effect in pymultipathd: ..."),
        or None if pymultipathd acts on it."""
        return f"{NO_EFFECT}: {self.unsupported}" if self.unsupported else None

    def builtin(self, get: Callable[[str], object]) -> object:
        """The built-in default, with `get` resolving other keywords for derived defaults."""
        if callable(self.default):
            return self.default(get)
        return self.default


def _k(name: str, vtype: ValueType, default: Default, sections: str, doc: str, **kw: object) -> Keyword:
    tags = {"D": DEF, "V": DEV, "M": MP, "O": OVR, "B": BL, "b": BLD}
    return Keyword(name, vtype, default, frozenset(tags[c] for c in sections), doc, **kw)  # type: ignore[arg-type]


def _dep(name: str, sections: str, why: str = "not supported; the value is ignored") -> Keyword:
    return _k(name, Str(), None, sections, f"(Deprecated) {why}.", deprecated=why, ignored=True)


def _syn(name: str, target: str, sections: str, *, warn: bool = True) -> Keyword:
    of = next(kw for kw in _TABLE if kw.name == target and BL not in kw.sections)
    return _k(
        name,
        of.type,
        None,
        sections,
        f"(Deprecated) old name of {target}." if warn else f"Another name of {target}.",
        deprecated=f"deprecated; use {target}" if warn else None,
        synonym_of=target,
        effect=of.effect,
        unsupported=of.unsupported,
    )


_FIND_MULTIPATHS = Choice(
    "strict", "off", "on", "greedy", "smart", aliases={"no": "off", "0": "off", "yes": "on", "1": "on"}
)
_FLUSH = Choice("unused", "always", "never", aliases={"yes": "always", "no": "never"})
_PGP = Choice("failover", "multibus", "group_by_serial", "group_by_prio", "group_by_node_name")
_CHECKERS = Choice("tur", "directio", "readsector0", "none", "emc_clariion", "hp_sw", "rdac", "cciss_tur")
_PRIOS = Choice(
    "const",
    "sysfs",
    "emc",
    "alua",
    "ontap",
    "rdac",
    "hp_sw",
    "hds",
    "random",
    "weightedpath",
    "path_latency",
    "ana",
    "datacore",
    "iet",
)
_SHAKY = WordOrInt("no", lo=1, zero="no", off_as_zero=True)


def _location(which: str) -> Callable[[Callable[[str], object]], object]:
    """A default that is where pymultipathd.locations says the file is, asked when the default is needed
    (imported then: the keyword table is part of the pure core, which reads no locations by itself)."""

    def default(get: Callable[[str], object]) -> object:
        from pymultipathd import locations

        if which == "prkeys_file":
            from pymultipathd.reservation import keys

            return keys.default_prkeys_file()
        return locations.wwids_file() if which == "wwids_file" else locations.bindings_file()
    return default


# Where the effect of a keyword lives (see Keyword.effect); shared by keywords acted on in the same place.
_SETTINGS = "policy/settings.py map_settings -> policy/decide.py"
_PLAN = "policy/plan.py build_table"
_SHAKY_EFFECT = (f"{_SETTINGS} path_checked -> hold_back; tests: unit/test_policy.py, "
                 "vm/test_keywords_vm.py")
# what an overrides protocol subsection may set (upstream 0.9.4: the transport's timeouts), and its types:
# upstream's protocol names, as `show paths` %P prints them
PROTOCOL_KEYWORDS = frozenset({"fast_io_fail_tmo", "dev_loss_tmo", "eh_deadline"})
PROTOCOL_TYPES = ("scsi:fcp", "scsi:spi", "scsi:ssa", "scsi:sbp", "scsi:srp", "scsi:iscsi", "scsi:sas",
                  "scsi:adt", "scsi:ata", "scsi:usb", "scsi:unspec", "ccw", "cciss", "nvme:pcie", "nvme:rdma",
                  "nvme:fc", "nvme:tcp", "nvme:loop", "nvme:apple-nvme", "nvme:unspec", "undef")
_MARGINAL_EFFECT = (f"{_SETTINGS} map_changed, path_checked -> policy/marginal.py; "
                    "daemon/iosample.py; tests: unit/test_marginal.py, vm/test_marginal_vm.py")
MIN_SAMPLE_TIME = 120  # upstream samples for no less: reads get 60 s to finish, and sending needs time too


class _SampleTime(WordOrInt):
    def caution(self, value: object) -> str | None:
        if isinstance(value, int) and 0 < value < MIN_SAMPLE_TIME:
            return (f"{value} is below {MIN_SAMPLE_TIME} s: samples take {MIN_SAMPLE_TIME} s (as upstream: "
                    "reads get 60 s to finish)")
        return None


class _MarginalGroups(Choice):
    def caution(self, value: object) -> str | None:
        if value == "fpin":
            return ("fpin: no effect in pymultipathd: Fibre Channel FPIN notices are not received; marginal "
                    "paths are held out as with off")
        return None
_TRANSPORT = (
    "policy/transport.py transport -> daemon/core.py Core._set_transport -> paths/transport.py apply_all"
)
_PR = ("cli/persist_cmd.py run_out (pympathpersist), daemon/reservations.py Reservations.map_key; "
       "tests: unit/test_reservation_keys.py, vm/test_persist_vm.py")
_RETRIGGER_EFFECT = ("policy/decide.py uninitialized -> daemon/core.py Core.policy_tick; "
                     "tests: unit/test_retrigger.py, vm/test_keywords_vm.py")

_TABLE: list[Keyword] = [
    # ---- path classification (what `-u` and the daemon decide on)
    _k(
        "find_multipaths",
        _FIND_MULTIPATHS,
        "strict",
        "D",
        "Which paths are multipath members: strict (only WWIDs in the wwids file or with a map), off|no "
        "(like greedy), on|yes (also WWIDs seen on two or more paths), greedy (every path that is not "
        "blacklisted), smart (like on, and a single new path waits find_multipaths_timeout for a second "
        "one).",
        effect="Config.find_multipaths -> classify.py mode_of, for pymultipath -u and the daemon alike; "
        "tests: unit/test_classify.py, unit/test_classify_agreement.py",
    ),
    _k(
        "find_multipaths_timeout",
        Int(),
        -10,
        "D",
        "Seconds a lone new path waits in smart mode. N > 0: N seconds; -N: N seconds for hardware known to "
        "the hardware table or a devices entry, 1 second otherwise; 0: the built-in default (-10).",
        effect="Config.find_multipaths_timeout -> classify.py wait_seconds; "
        "tests: unit/test_classify.py, unit/test_udev_helper.py",
    ),
    _k(
        "force_wwids",
        YesNo(),
        False,
        "D",
        "(pymultipathd) yes: only WWIDs listed in the wwids file (or with an existing map) are multipathed, "
        "i.e. find_multipaths strict whatever find_multipaths says. no: find_multipaths decides.",
        effect="Config.find_multipaths -> classify.py mode_of; tests: unit/test_classify.py",
    ),
    _k(
        "allow_usb_devices",
        YesNo(),
        False,
        "D",
        "Whether USB disks may be multipath paths.",
        effect="classify.py _exclusion; tests: unit/test_classify.py",
    ),
    _k(
        "uid_attribute",
        Str(),
        "ID_SERIAL",
        "DVO",
        "The udev property that holds a path's WWID (ID_WWN for NVMe and ID_UID for DASD via the hardware "
        'table). Also the property whose presence activates the blacklist\'s "property missing" rule.',
        effect="Config.uid_attribute_for -> paths/facts.py _uid_attribute (the WWID), blacklist.py _property "
        "(property missing); cli/wwids_cmd.py; tests: unit/test_facts.py, unit/test_blacklist.py",
    ),
    _k(
        "uid_attrs",
        UidAttrs(),
        None,
        "D",
        'Per device-name prefix WWID properties, e.g. "sd:ID_SERIAL nvme:ID_WWN"; beats uid_attribute.',
        effect="Config.uid_attribute_for -> paths/facts.py _uid_attribute, blacklist.py _property; "
        "tests: unit/test_keyword_effects.py",
    ),
    # ---- map naming
    _k(
        "user_friendly_names",
        YesNo(),
        False,
        "DVOM",
        "yes: name maps <alias_prefix><letters> from the bindings file; no: name them by WWID.",
        effect="daemon/core.py Core._friendly_prefix; "
        "tests: unit/test_keyword_effects.py, vm/test_trust_vm.py",
    ),
    _k(
        "alias_prefix",
        Word(),
        "mpath",
        "DVO",
        "Prefix of user-friendly names.",
        effect="daemon/core.py Core._friendly_prefix; tests: unit/test_keyword_effects.py",
    ),
    _k(
        "partition_delimiter",
        Str(),
        None,
        "D",
        'Text between a map name and a partition number; unset: "p" if the name ends in a digit.',
        unsupported="partition maps are always named like mpatha-part1",
    ),
    # ---- the checker loop
    _k(
        "polling_interval",
        Int(lo=1),
        5,
        "D",
        "Seconds between path checks of a healthy path at first.",
        effect=f"{_SETTINGS}; topology.py path_state; "
        "tests: unit/test_keyword_effects.py, unit/test_policy.py",
    ),
    _k(
        "max_polling_interval",
        Int(lo=1),
        lambda get: 4 * int(get("polling_interval")),  # type: ignore[call-overload]
        "D",
        "Longest interval between checks of a healthy path (default 4 * polling_interval).",
        effect=f"{_SETTINGS}; tests: unit/test_keyword_effects.py, vm/test_daemon_policy.py",
    ),
    _k(
        "path_checker",
        _CHECKERS,
        "tur",
        "DVO",
        "How a path's state is tested: tur, directio, readsector0, none (and hardware specific ones).",
        effect="topology.py path_state -> paths/checkers.py; tests: unit/test_keyword_effects.py",
    ),
    _k(
        "checker_timeout",
        Int(lo=1),
        None,
        "D",
        "Timeout of checker commands in seconds (unset: the device's SCSI timeout, "
        "/sys/block/DEV/device/timeout).",
        effect="policy/settings.py map_settings -> daemon/core.py Core._check_timeout "
        "(each check's deadline); "
        "tests: unit/test_keyword_effects.py",
    ),
    _k(
        "detect_checker",
        YesNo(),
        True,
        "DVO",
        "Use tur on ALUA devices whatever path_checker says.",
        effect="topology.py path_state; tests: unit/test_keyword_effects.py",
    ),
    _k(
        "log_checker_err",
        Choice("always", "once"),
        "always",
        "D",
        "Log a failed path's checker error at every check (always), or only when it fails and then in the "
        "debug log (once).",
        effect=f"{_SETTINGS} path_checked; tests: unit/test_policy.py, vm/test_keywords_vm.py",
    ),
    _k(
        "force_sync",
        YesNo(),
        False,
        "D",
        "Run checkers one at a time.",
        unsupported="checks always run on a bounded pool of checker threads, several at a time",
    ),
    _k(
        "strict_timing",
        YesNo(),
        False,
        "D",
        "Start each checker round exactly one second after the last.",
        unsupported="the checker loop wakes about every second and checks the paths that are due",
    ),
    # ---- map table
    _k(
        "path_grouping_policy",
        _PGP,
        "failover",
        "DVOM",
        "How paths are grouped: failover, multibus, group_by_serial, group_by_prio, group_by_node_name.",
        effect=f"{_PLAN} -> paths/grouping.py; policy/settings.py map_settings (group_by_prio regroups on a "
        "priority change); tests: unit/test_daemon_plan.py, unit/test_grouping.py",
    ),
    _k(
        "path_selector",
        PathSelector(),
        "service-time 0",
        "DVOM",
        'Kernel path selector of each group: "service-time 0", "round-robin 0", "queue-length 0", ...',
        effect="policy/plan.py selector; tests: unit/test_daemon_plan.py",
    ),
    _k(
        "prio",
        _PRIOS,
        "const",
        "DVOM",
        "Prioritizer giving each path a priority.",
        effect="topology.py path_state -> paths/prio.py choose; tests: unit/test_keyword_effects.py",
    ),
    _k(
        "prio_args",
        Str(),
        None,
        "DVOM",
        "Arguments of the prioritizer (weightedpath, path_latency, datacore, iet, "
        "alua's exclusive_pref_bit).",
        effect="topology.py path_state -> paths/prio.py priority; tests: unit/test_keyword_effects.py",
    ),
    _k(
        "detect_prio",
        YesNo(),
        True,
        "DVO",
        "Use the sysfs or alua prioritizer on ALUA devices.",
        effect="topology.py path_state -> paths/prio.py choose; "
        "tests: unit/test_keyword_effects.py, vm/test_daemon_policy.py",
    ),
    _k(
        "features",
        Features(),
        "0",
        "DVOM",
        'Device-mapper features, e.g. "0" or "2 pg_init_retries 50".',
        effect="policy/plan.py features; policy/settings.py map_settings (queue_if_no_path); "
        "tests: unit/test_daemon_plan.py",
    ),
    _k(
        "hardware_handler",
        HwHandler(),
        "0",
        "DV",
        'Kernel hardware handler: "0" or "1 alua" etc.',
        effect="policy/plan.py hwhandler; tests: unit/test_daemon_plan.py",
    ),
    _k(
        "retain_attached_hw_handler",
        YesNo(),
        True,
        "DVO",
        "Keep a hardware handler the kernel already attached: the map's table names it (Linux >= 4.3 keeps "
        "it anyway); no: the table names hardware_handler.",
        effect=f"{_PLAN} -> hwhandler; tests: unit/test_daemon_plan.py, vm/test_wildcards_vm.py",
    ),
    _k(
        "failback",
        WordOrInt("manual", "immediate", "followover", lo=1, zero="manual"),
        "manual",
        "DVOM",
        "Return to the best path group: manual, immediate, followover, or after N seconds.",
        effect=f"{_SETTINGS} failback; "
        "tests: unit/test_keyword_effects.py, unit/test_policy.py, vm/test_daemon_policy.py",
    ),
    _k(
        "rr_weight",
        Choice("uniform", "priorities"),
        "uniform",
        "DVOM",
        "Weigh paths by priority (round-robin).",
        effect="policy/plan.py repeat_count (the repeat count times the path's priority); "
        "tests: unit/test_policy.py",
    ),
    _k(
        "rr_min_io",
        Int(lo=1),
        1000,
        "DVOM",
        "I/Os per path before switching (bio-based maps).",
        effect="policy/plan.py repeat_count (the repeat count of bio-based maps); tests: unit/test_policy.py",
    ),
    _k(
        "rr_min_io_rq",
        Int(lo=1),
        1,
        "DVOM",
        "Requests per path before switching (request-based maps).",
        effect=f"{_PLAN}; tests: unit/test_daemon_plan.py",
    ),
    _k(
        "no_path_retry",
        WordOrInt("fail", "queue", lo=1, zero="fail"),
        "fail",
        "DVOM",
        "With no usable path: fail I/O at once, queue it forever, or queue for N checker intervals.",
        effect=f"{_SETTINGS}, policy/plan.py queue_if_no_path; "
        "tests: unit/test_policy.py, unit/test_daemon_plan.py, vm/test_daemon.py",
    ),
    _k(
        "queue_without_daemon",
        YesNo(),
        False,
        "D",
        "Keep queueing I/O after the daemon stopped.",
        effect="daemon/main.py Daemon._release_queueing",
    ),
    _k(
        "flush_on_last_del",
        _FLUSH,
        "unused",
        "DVOM",
        "Stop queueing when the last path is deleted: always (yes), never (no), or unused (only if the map "
        "is not open).",
        effect=f"{_SETTINGS}; tests: unit/test_keyword_effects.py, unit/test_policy.py",
    ),
    _k(
        "deferred_remove",
        YesNo(),
        False,
        "DVOM",
        "Remove a map deferred (when its last user closes it).",
        effect=f"{_SETTINGS} -> daemon/core.py Core._remove_last; "
        "tests: unit/test_keyword_effects.py, vm/test_daemon_policy.py",
    ),
    _k(
        "skip_kpartx",
        YesNo(),
        False,
        "DVOM",
        "Do not create partition maps.",
        effect="daemon/core.py Core._create",
    ),
    _k(
        "max_sectors_kb",
        Int(lo=1),
        None,
        "DVOM",
        "max_sectors_kb of paths and map (unset: kernel's).",
        effect=f"{_TRANSPORT}; tests: unit/test_transport.py, vm/test_daemon_policy.py",
    ),
    _k(
        "ghost_delay",
        _SHAKY,
        0,
        "DVOM",
        "Seconds a new map whose paths are all ghosts (standby ports) stays announced as not ready (udev: "
        "SYSTEMD_READY=0, no other rules), so nothing mounts or scans it through standby ports, unless an "
        "active path appears first.",
        effect=(f"{_SETTINGS} assemble, path_checked, tick; daemon/core.py Core._create; "
                "tests: unit/test_ghost_delay.py, vm/test_ghost_delay_vm.py"),
    ),
    _k(
        "reservation_key",
        ReservationKey(),
        None,
        "DM",
        "Persistent reservation key of the map: 0x<hex>[:aptpl], or file (the prkeys file's key for the "
        "WWID). pympathpersist refuses keys that do not match it; the daemon registers it through paths "
        "that join the map or come back.",
        effect=_PR,
    ),
    _k(
        "all_tg_pt",
        YesNo(),
        False,
        "DVO",
        "Register reservation keys with the ALL_TG_PT flag, through one path per initiator port.",
        effect="cli/persist_cmd.py run_out -> reservation/mapops.py register; "
               "tests: unit/test_reservation_mapops.py",
    ),
    # ---- transport
    _k(
        "fast_io_fail_tmo",
        WordOrInt("off", lo=0),
        5,
        "DVO",
        "Seconds the SCSI transport waits before failing I/O on a lost remote port (off: never).",
        effect=f"{_TRANSPORT}; tests: unit/test_transport.py, vm/test_daemon_policy.py",
    ),
    _k(
        "dev_loss_tmo",
        WordOrInt("infinity", lo=1),
        None,
        "DVO",
        "Seconds before a lost remote port's devices are removed (unset: the transport's own).",
        effect=f"{_TRANSPORT}; tests: unit/test_transport.py",
    ),
    _k(
        "eh_deadline",
        WordOrInt("off", lo=0),
        None,
        "DVO",
        "SCSI error handler deadline in seconds.",
        effect=f"{_TRANSPORT}; tests: unit/test_transport.py, vm/test_daemon_policy.py",
    ),
    # ---- shaky and marginal paths
    _k(
        "san_path_err_threshold",
        _SHAKY,
        0,
        "DVOM",
        "Failures (counted as a path comes back) after which it is held out of its map for "
        "san_path_err_recovery_time seconds; all three san_path_err keywords must be set.",
        effect=_SHAKY_EFFECT,
    ),
    _k(
        "san_path_err_forget_rate",
        _SHAKY,
        0,
        "DVOM",
        "Healthy checks after which one counted failure is forgotten.",
        effect=_SHAKY_EFFECT,
    ),
    _k(
        "san_path_err_recovery_time",
        _SHAKY,
        0,
        "DVOM",
        "Seconds a path past san_path_err_threshold is held out of its map (less if it is the map's only "
        "usable one).",
        effect=_SHAKY_EFFECT,
    ),
    _k(
        "marginal_path_double_failed_time",
        _SHAKY,
        0,
        "DVOM",
        "Seconds within which a path failed a second time in its map (by the kernel on an I/O error, or by "
        "the daemon after a check) is suspect: it is not reinstated until an I/O error check finds it "
        "healthy. Marginal-path detection needs all four marginal_path_* keywords.",
        effect=_MARGINAL_EFFECT,
    ),
    _k(
        "marginal_path_err_sample_time",
        _SampleTime("no", lo=1, zero="no", off_as_zero=True),
        0,
        "DVOM",
        "Seconds a suspect path is sampled with direct reads (at least 120; I/O is sent during the first "
        "sample time minus 60 s, the rest lets the last reads finish or time out).",
        effect=_MARGINAL_EFFECT,
    ),
    _k(
        "marginal_path_err_rate_threshold",
        WordOrInt("no", lo=1, zero="no"),
        None,
        "DVOM",
        "Errors per thousand sampled reads above which a suspect path stays out of its map; unset, no or "
        "0 leave marginal-path detection off, as upstream.",
        effect=_MARGINAL_EFFECT,
    ),
    _k(
        "marginal_path_err_recheck_gap_time",
        _SHAKY,
        0,
        "DVOM",
        "Seconds a path that failed its I/O error check waits before it is sampled again.",
        effect=_MARGINAL_EFFECT,
    ),
    _k(
        "marginal_pathgroups",
        _MarginalGroups("off", "on", "fpin", aliases={"no": "off", "yes": "on"}),
        "off",
        "D",
        "on: a path that is marginal (san_path_err_* or marginal_path_* found it failing too often, or "
        "setmarginal) stays in its map in a path group of its own, used after every other group, instead "
        "of being held out; off: such a path is held out. fpin (Fibre Channel FPIN notices) acts as off.",
        effect=(f"{_PLAN} -> paths/grouping.py group_members; policy/marginal.py; daemon/handlers.py "
                "set_marginal; tests: unit/test_marginal.py, vm/test_marginal_vm.py"),
    ),
    # ---- daemon and files
    _k(
        "verbosity",
        Int(0, 6),
        2,
        "D",
        "Log verbosity, 0 (errors only) to 6.",
        unsupported="the daemon's log level is its -v option (pymultipathd -v N)",
    ),
    _k(
        "reassign_maps",
        YesNo(),
        False,
        "D",
        "Device-mapper devices built directly on a path of a multipath map (an LVM volume activated on "
        "/dev/sdb before the map existed) are loaded again on the map, at start-up, when a map is made and "
        "on reconfigure.",
        effect=("daemon/core.py Core.reassign -> dm/maps.py reassign_holders; "
                "tests: unit/test_dm_reassign.py, vm/test_keywords_vm.py"),
    ),
    _k(
        "max_fds",
        WordOrInt("max", lo=1),
        "max",
        "D",
        'Open file limit of the daemon; "max" = the system limit (/proc/sys/fs/nr_open).',
        effect="daemon/main.py run, reconfigure -> daemon/limits.py apply_max_fds; "
               "tests: unit/test_daemon_limits.py, vm/test_keywords_vm.py",
    ),
    _k(
        "uxsock_timeout",
        Int(lo=1),
        60000,
        "D",
        "Milliseconds the pymultipathd client waits for the daemon's reply (PYMULTIPATH_CLIENT_TIMEOUT, "
        "in seconds, beats it). Upstream's default is 4000; the daemon here answers reconfigure and "
        "add map when they are done, which can take longer.",
        effect="cli/pymultipathd.py _configured_timeout; "
               "tests: unit/test_locations.py, vm/test_keywords_vm.py",
    ),
    _k(
        "retrigger_tries",
        Int(lo=0),
        3,
        "D",
        "Times a disk whose WWID udev did not give (no uid_attribute property) gets a change uevent, so "
        "udev runs its rules again; 0: never.",
        effect=_RETRIGGER_EFFECT,
    ),
    _k(
        "retrigger_delay",
        Int(lo=0),
        10,
        "D",
        "Seconds between those change uevents.",
        effect=_RETRIGGER_EFFECT,
    ),
    _k(
        "missing_uev_wait_timeout",
        Int(lo=0),
        30,
        "D",
        "Seconds to wait for a new map's change uevent.",
        unsupported="the daemon does not wait for a new map's change uevent",
    ),
    _k(
        "remove_retries",
        Int(lo=0),
        0,
        "D",
        "How many more times pymultipath -f/-F looks at a map in use, a second apart, before it reports "
        "the map's holders.",
        effect="cli/flush_cmd.py _remove_retries -> flush.py flush (retries); "
        "tests: unit/test_flush_retries.py, vm/test_flush.py",
    ),
    _k(
        "recheck_wwid",
        YesNo(),
        False,
        "D",
        "Read a failed path's WWID from the device (VPD page 83h) when its checker finds it up again; if "
        "another logical unit is behind it now, it is not reinstated but leaves its map.",
        effect=f"{_SETTINGS}; daemon/core.py Core._recheck_wwid -> paths/vpd.py; "
               "tests: unit/test_vpd.py, vm/test_recheck_wwid_vm.py",
    ),
    _k(
        "enable_foreign",
        Regex(),
        "NONE",
        "D",
        "Foreign multipath libraries to enable (regex).",
        unsupported="there are no foreign multipath libraries (native NVMe multipath is left to the kernel)",
    ),
    _k(
        "wwids_file",
        Path(),
        _location("wwids_file"),
        "D",
        "(Deprecated upstream) Path of the wwids file.",
        deprecated="deprecated; use PYMULTIPATH_WWIDS",
        unsupported="the wwids file is where PYMULTIPATH_WWIDS says (default /etc/multipath/wwids)",
    ),
    _k(
        "bindings_file",
        Path(),
        _location("bindings_file"),
        "D",
        "(Deprecated upstream) Path of the bindings file.",
        deprecated="deprecated; use PYMULTIPATH_BINDINGS",
        unsupported="the bindings file is where PYMULTIPATH_BINDINGS says (default /etc/multipath/bindings)",
    ),
    _k(
        "prkeys_file",
        Path(),
        _location("prkeys_file"),
        "D",
        "(Deprecated upstream) Path of the persistent reservation keys file.",
        deprecated="deprecated upstream; the prkeys file's place is better left at its default",
        effect="daemon/reservations.py Reservations.load, cli/persist_cmd.py run_out; "
               "tests: unit/test_daemon_reservations.py",
    ),
    # ---- device and multipath identification
    _k(
        "vendor",
        Regex(),
        None,
        "V",
        "(device, mandatory) Regex matched against the vendor.",
        effect="Config.resolve and Config.is_known_hardware match devices entries on it for every path and "
        "map (daemon/core.py Core.resolver, topology.py resolver, classify.py wait_seconds); "
        "tests: unit/test_config_resolve.py, unit/test_classify.py",
    ),
    _k(
        "product",
        Regex(),
        None,
        "V",
        "(device, mandatory) Regex matched against the product.",
        effect="Config.resolve and Config.is_known_hardware match devices entries on it for every path and "
        "map (daemon/core.py Core.resolver, topology.py resolver, classify.py wait_seconds); "
        "tests: unit/test_config_resolve.py, unit/test_classify.py",
    ),
    _k(
        "revision",
        Regex(),
        None,
        "V",
        "(device) Regex matched against the revision (the device's firmware revision, sysfs rev).",
        effect="Config.resolve and Config.is_known_hardware match devices entries on it, with the revision "
        "read into paths/facts.py path_facts (daemon/core.py Core.resolver and MapState.revision, "
        "topology.py resolver, classify.py wait_seconds); tests: unit/test_config_resolve.py",
    ),
    _k(
        "product_blacklist",
        Regex(),
        None,
        "V",
        "(device) Products of this vendor to blacklist (regex).",
        effect="blacklist.py effective_blacklist; tests: unit/test_blacklist.py",
    ),
    _k(
        "vpd_vendor",
        Choice("hp3par"),
        None,
        "V",
        "(device) Vendor-specific VPD page to read.",
        unsupported="vendor-specific VPD pages are not read",
    ),
    _k(
        "wwid",
        Word(),
        None,
        "M",
        "(multipath, mandatory) The WWID, matched exactly.",
        effect="Config.resolve (the entry's settings apply to that WWID's map); daemon/core.py "
        "configured_alias; tests: unit/test_config_resolve.py, unit/test_core_resolver.py, "
        "vm/test_daemon_policy.py",
    ),
    _k(
        "alias",
        MapName(),
        None,
        "M",
        "(multipath) Name of the map.",
        effect="daemon/core.py configured_alias -> Core.alias_for; tests: unit/test_keyword_effects.py",
    ),
    # ---- blacklist and blacklist_exceptions
    _k(
        "devnode",
        Regex(invertible=True),
        None,
        "B",
        "Regex on the kernel device name (sda).",
        effect="blacklist.py check; tests: unit/test_blacklist.py",
    ),
    _k(
        "wwid",
        Regex(invertible=True),
        None,
        "B",
        "Regex on the WWID.",
        effect="blacklist.py check; tests: unit/test_blacklist.py",
    ),
    _k(
        "property",
        Regex(invertible=True),
        None,
        "B",
        "Regex on udev property names.",
        effect="blacklist.py check; tests: unit/test_blacklist.py",
    ),
    _k(
        "protocol",
        Regex(invertible=True),
        None,
        "B",
        'Regex on the transport, e.g. "scsi:iscsi", "nvme:tcp".',
        effect="blacklist.py check; tests: unit/test_blacklist.py",
    ),
    _k(
        "vendor",
        Regex(invertible=True),
        None,
        "b",
        "(blacklist device) Regex on the vendor.",
        effect="blacklist.py check; tests: unit/test_blacklist.py",
    ),
    _k(
        "product",
        Regex(invertible=True),
        None,
        "b",
        "(blacklist device) Regex on the product.",
        effect="blacklist.py check; tests: unit/test_blacklist.py",
    ),
]

_TABLE += [
    # ---- deprecated keywords upstream still accepts (with a warning)
    _syn("checker", "path_checker", "DVO", warn=False),
    _syn("selector", "path_selector", "DVOM"),
    _syn("default_selector", "path_selector", "D"),
    _syn("default_path_grouping_policy", "path_grouping_policy", "D"),
    _syn("default_uid_attribute", "uid_attribute", "D"),
    _syn("default_prio", "prio", "D"),
    _syn("default_features", "features", "D"),
    _syn("default_path_checker", "path_checker", "D"),
    _syn("default_hardware_handler", "hardware_handler", "D"),
    _syn("delay_watch_checks", "san_path_err_forget_rate", "DVOM"),
    _syn("delay_wait_checks", "san_path_err_recovery_time", "DVOM"),
    _dep("udev_dir", "D"),
    _dep("multipath_dir", "D"),
    _dep("getuid_callout", "DVO", "replaced by uid_attribute; the value is ignored"),
    _dep("default_getuid_callout", "D", "replaced by uid_attribute; the value is ignored"),
    _dep("pg_timeout", "DVOM"),
    _dep("config_dir", "D", "not supported; use --config-dir or PYMULTIPATH_CONFDIR; the value is ignored"),
    _dep("disable_changed_wwids", "D"),
    _dep("ignore_new_boot_devs", "D"),
    _dep("hw_str_match", "D"),
    _dep("bindings_file_readonly", "D"),
    _dep("mode", "M"),
    _dep("uid", "M"),
    _dep("gid", "M"),
]

KEYWORDS: tuple[Keyword, ...] = tuple(_TABLE)

_BY_SECTION: dict[tuple[str, str], Keyword] = {}
_BY_NAME: dict[str, Keyword] = {}
for _kw in KEYWORDS:
    for _sec in _kw.sections:
        _BY_SECTION[(_sec, _kw.name)] = _kw
    if BL not in _kw.sections and BLD not in _kw.sections:
        _BY_NAME.setdefault(_kw.name, _kw)


def lookup(section: str, name: str) -> Keyword | None:
    """The keyword `name` as allowed in `section`, or None if it is not allowed there."""
    return _BY_SECTION.get((section, name))


def known(name: str) -> bool:
    """True if `name` is a keyword of any section (to tell "unknown" from "not allowed here")."""
    return any(n == name for (_, n) in _BY_SECTION)


def attribute(name: str) -> Keyword:
    """A map/path attribute keyword by name or synonym, canonical entry; KeyError if unknown."""
    kw = _BY_NAME[name]
    return _BY_NAME[kw.synonym_of] if kw.synonym_of else kw


def attributes(section: str) -> tuple[Keyword, ...]:
    """Canonical, non-deprecated keywords of a section, in table order (what `-t` prints)."""
    return tuple(kw for kw in KEYWORDS if section in kw.sections and not kw.synonym_of and not kw.ignored)
