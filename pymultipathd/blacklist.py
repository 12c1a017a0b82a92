"""Blacklist matching: is a device excluded from multipath, and by which entry? Pure, no I/O.

Criteria are evaluated in upstream's order: property, devnode, device (vendor/product), protocol, wwid. The
first criterion that excludes the device decides; within one criterion an exception match beats a blacklist
match. Regexes are POSIX ERE, unanchored and case sensitive; a leading "!" inverts one.

Built-in entries (always present, below the user's): devnode blacklist `!^(sd[a-z]|dasd[a-z]|nvme[0-9])`,
property exception `(SCSI_IDENT_|ID_WWN)`, and a device blacklist entry for each distinct vendor and
`product_blacklist` of the hardware table. As upstream, those come from the table as merged with the user's
devices entries (Config.hardware_table), after the user's blacklist device entries: a user entry that replaces
a built-in one replaces its product_blacklist too. A product_blacklist that is not the built-in table's own
(a user's devices entry set it) is reported as a user blacklist entry.

The property criterion follows upstream exactly: udev property *names* are examined in sorted order and the
first name that matches an exception (whitelisted) or a blacklist entry (excluded) decides. If none matches
and the device has its uid_attribute property (e.g. ID_SERIAL), it is excluded as "property_missing"; a
device without that property is not (udev probably could not read it yet, and without a WWID it is not used
anyway).
"""

from __future__ import annotations

from pymultipathd.config import hwtable
from pymultipathd.config.ere import matches_inv
from pymultipathd.config.model import BlacklistSpec, Config, DeviceMatch
from pymultipathd.record import record

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import TypeVar

    _Rules = TypeVar("_Rules", "_DeviceRules", "_PropertyRules")

BUILTIN_BLACKLIST = BlacklistSpec(devnode=("!^(sd[a-z]|dasd[a-z]|nvme[0-9])",))
BUILTIN_EXCEPTIONS = BlacklistSpec(property=("(SCSI_IDENT_|ID_WWN)",))

CRITERIA = ("property", "devnode", "device", "protocol", "wwid")


@record(frozen=True)
class BlacklistVerdict:
    excluded: bool
    criterion: (
        str | None
    )  # "property" | "property_missing" | "devnode" | "device" | "protocol" | "wwid" | None
    source: str | None  # "blacklist" | "exception" | "default" (a built-in entry) | None
    pattern: str | None  # the entry that decided (vendor:product for a device entry)


NOT_EXCLUDED = BlacklistVerdict(False, None, None, None)


def _literal(regex: str) -> str:
    # A devices-entry vendor is a plain regex; in a blacklist entry a leading "!" would invert it.
    return "\\" + regex if regex.startswith("!") else regex


def _product_blacklist(entries: Sequence[dict[str, object]] | None = None) -> tuple[DeviceMatch, ...]:
    """Blacklist device entries of a devices table's product_blacklist settings (default: the built-in
    table's), each vendor and product once."""
    return tuple(DeviceMatch(_literal(v), _literal(p)) for v, p in hwtable.product_blacklist(entries))


def builtin_blacklist() -> BlacklistSpec:
    """The built-in blacklist entries: the devnode rule, the built-in hardware table's product_blacklist."""
    return BlacklistSpec(devnode=BUILTIN_BLACKLIST.devnode, device=_product_blacklist())


def device_rules(config: Config) -> list[tuple[DeviceMatch, str]]:
    """The blacklist device entries in the order they are tried, each with its source ("blacklist" or
    "default"): the user's blacklist section, then the product_blacklist of every devices entry as upstream
    merged them (setup_default_blist), each entry once. One equal to a built-in entry counts as built-in, so a
    configuration printed by `pymultipath -t` and read back reports the same sources."""
    return list(_device_rules(config).rules)


def _build_device_rules(config: Config) -> tuple[tuple[DeviceMatch, str], ...]:
    builtin = set(_product_blacklist())
    out: list[tuple[DeviceMatch, str]] = []
    for entry in config.blacklist.device + _product_blacklist(config.all_devices()):
        if all(entry != e for e, _ in out):
            out.append((entry, "default" if entry in builtin else "blacklist"))
    return tuple(out)


ANSWERS_MAX = 1024  # (vendor, product) pairs whose device-criterion answer is kept, per configuration


class _DeviceRules:
    """device_rules of one configuration, and the first rule each (vendor, product) met. Both depend on the
    configuration alone, and building the rules (the whole hardware table's product_blacklist, each entry
    once) and trying every one of them was most of a path's blacklist check, done twice per disk at
    discovery and again at each event. Kept on the Config, as its hardware table is, until the user's
    blacklist device entries or its devices table change."""

    __slots__ = ("answers", "builtin", "entries", "rules", "user")

    def __init__(self, config: Config) -> None:
        self.entries = config.blacklist.device
        self.builtin, self.user = config.hardware_table()  # the same lists while the table stands
        self.rules = _build_device_rules(config)
        self.answers: dict[tuple[str, str], tuple[DeviceMatch, str] | None] = {}

    def holds_for(self, config: Config) -> bool:
        builtin, user = config.hardware_table()
        return builtin is self.builtin and user is self.user and config.blacklist.device == self.entries

    def first_match(self, vendor: str, product: str) -> tuple[DeviceMatch, str] | None:
        key = (vendor, product)
        try:
            return self.answers[key]
        except KeyError:
            pass
        hit = next(((e, source) for e, source in self.rules if _device_matches(e, vendor, product)), None)
        if len(self.answers) >= ANSWERS_MAX:
            self.answers.clear()
        self.answers[key] = hit
        return hit


class _PropertyRules:
    """The property criterion of one configuration, and what it says of each udev property name: an
    exception, the first blacklist entry that matches, or nothing. Every disk has the same few dozen names,
    and each was tried against every entry (regexes of our own engine) at every check of every disk: kept on
    the Config, as the device rules are, until the user's property entries change."""

    __slots__ = ("answers", "blacklist", "blacklisted", "excepted", "excepts")

    def __init__(self, config: Config) -> None:
        self.excepted = config.blacklist_exceptions.property
        self.blacklisted = config.blacklist.property
        self.excepts = self.excepted + BUILTIN_EXCEPTIONS.property
        self.blacklist = _sourced(self.blacklisted, BUILTIN_BLACKLIST.property, "blacklist")
        self.answers: dict[str, BlacklistVerdict | None] = {}

    def holds_for(self, config: Config) -> bool:
        return (config.blacklist_exceptions.property == self.excepted
                and config.blacklist.property == self.blacklisted)

    def of(self, name: str) -> BlacklistVerdict | None:
        """NOT_EXCLUDED for a name an exception matches, the verdict of the first blacklist entry that
        matches it, else None."""
        try:
            return self.answers[name]
        except KeyError:
            pass
        verdict: BlacklistVerdict | None
        if any(matches_inv(p, name) for p in self.excepts):
            verdict = NOT_EXCLUDED
        else:
            verdict = next((BlacklistVerdict(True, "property", source, str(pattern))
                            for pattern, source in self.blacklist if matches_inv(str(pattern), name)), None)
        if len(self.answers) >= ANSWERS_MAX:
            self.answers.clear()
        self.answers[name] = verdict
        return verdict


def _kept_rules(config: Config, kind: type[_Rules]) -> _Rules:
    """The rules of `kind` kept on the Config (not a field: equality and repr ignore it), made again when
    the entries they were made from changed."""
    slot = f"_kept_{kind.__name__}"
    cached = config.__dict__.get(slot)
    if not isinstance(cached, kind) or not cached.holds_for(config):
        cached = kind(config)
        config.__dict__[slot] = cached
    return cached


def _device_rules(config: Config) -> _DeviceRules:
    return _kept_rules(config, _DeviceRules)


def effective_blacklist(config: Config) -> BlacklistSpec:
    """User entries followed by the built-in ones; the device entries as device_rules lists them."""
    spec = config.blacklist.merged(BlacklistSpec(devnode=BUILTIN_BLACKLIST.devnode))
    return BlacklistSpec(spec.devnode, spec.wwid, spec.property, spec.protocol,
                         tuple(e for e, _ in device_rules(config)))


def effective_exceptions(config: Config) -> BlacklistSpec:
    return config.blacklist_exceptions.merged(BUILTIN_EXCEPTIONS)


def _device_matches(entry: DeviceMatch, vendor: str, product: str) -> bool:
    return (entry.vendor is None or matches_inv(entry.vendor, vendor)) and (
        entry.product is None or matches_inv(entry.product, product)
    )


def _device_text(entry: DeviceMatch) -> str:
    return f"{entry.vendor or ''}:{entry.product or ''}"


def _sourced(user: tuple[object, ...], builtin: tuple[object, ...],
             user_source: str) -> list[tuple[object, str]]:
    """User entries first, then built-in ones; an entry equal to a built-in one counts as built-in, so a
    configuration printed by `pymultipath -t` and read back reports the same sources."""
    return [(e, "default" if e in builtin else user_source) for e in user] + [
        (e, "default") for e in builtin if e not in user
    ]


def _property(
    config: Config, devnode: str, vendor: str | None, product: str | None, revision: str | None,
    properties: Mapping[str, str],
) -> BlacklistVerdict | None:
    rules = _kept_rules(config, _PropertyRules)
    for name in sorted(properties):
        verdict = rules.of(name)
        if verdict is not None:
            return verdict
    uid = config.uid_attribute_for(devnode, vendor=vendor, product=product, revision=revision)
    if uid and uid in properties:
        user = [p for p in config.blacklist_exceptions.property if p not in BUILTIN_EXCEPTIONS.property]
        source = "exception" if user else "default"
        return BlacklistVerdict(True, "property_missing", source, None)
    return None


def check(
    config: Config,
    *,
    devnode: str,
    wwid: str | None = None,
    vendor: str | None = None,
    product: str | None = None,
    protocol: str | None = None,
    properties: Mapping[str, str] | None = None,
    revision: str | None = None,
) -> BlacklistVerdict:
    """Is the device excluded, and by what? A criterion whose input is None is not evaluated.

    The device criterion needs both vendor and product. `devnode` is the kernel name (sda, not /dev/sda).
    """
    if properties is not None:
        verdict = _property(config, devnode, vendor, product, revision, properties)
        if verdict is not None and verdict.excluded:
            return verdict
    bl, ex = config.blacklist, config.blacklist_exceptions
    builtin = BUILTIN_BLACKLIST
    simple = (
        ("devnode", devnode, bl.devnode, builtin.devnode, ex.devnode),
        ("protocol", protocol, bl.protocol, builtin.protocol, ex.protocol),
        ("wwid", wwid, bl.wwid, builtin.wwid, ex.wwid),
    )
    for criterion in CRITERIA[1:]:
        if criterion == "device":
            if vendor is None or product is None:
                continue
            if any(_device_matches(e, vendor, product) for e in ex.device):
                continue
            hit = _device_rules(config).first_match(vendor, product)
            if hit is not None:
                return BlacklistVerdict(True, "device", hit[1], _device_text(hit[0]))
            continue
        _, value, user, default, excepts = next(s for s in simple if s[0] == criterion)
        if value is None:
            continue
        if any(matches_inv(p, value) for p in excepts):
            continue
        for pattern, source in _sourced(user, default, "blacklist"):
            if matches_inv(str(pattern), value):
                return BlacklistVerdict(True, criterion, source, str(pattern))
    return NOT_EXCLUDED
