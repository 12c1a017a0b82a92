"""The parsed configuration: plain record classes (pymultipathd.record).

No pydantic here: the `-u` udev helper imports this on every disk event.
"""

from __future__ import annotations

from pymultipathd.config import hwtable, keywords
from pymultipathd.errors import PymultipathError
from pymultipathd.record import field, record

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Sequence


@record(frozen=True)
class Message:
    """A warning or error tied to its origin."""

    file: str
    line: int
    keyword: str | None
    text: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.keyword}: {self.text}" if self.keyword else f"{where}: {self.text}"


class ConfigError(PymultipathError):
    """One or more errors in the configuration files; `messages` names each file:line."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(str(m) for m in self.messages))


@record(frozen=True)
class DeviceMatch:
    """One `device { vendor ... product ... }` entry of a blacklist or exception list."""

    vendor: str | None  # POSIX ERE, unanchored
    product: str | None


@record(frozen=True)
class BlacklistSpec:
    """One of blacklist / blacklist_exceptions, entries in file order."""

    devnode: tuple[str, ...] = ()
    wwid: tuple[str, ...] = ()
    property: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    device: tuple[DeviceMatch, ...] = ()

    def merged(self, other: BlacklistSpec) -> BlacklistSpec:
        """This list followed by `other`'s entries."""
        return BlacklistSpec(
            self.devnode + other.devnode,
            self.wwid + other.wwid,
            self.property + other.property,
            self.protocol + other.protocol,
            self.device + other.device,
        )

    def empty(self) -> bool:
        return not (self.devnode or self.wwid or self.property or self.protocol or self.device)


def device_entry_matches(entry: dict[str, object], vendor: str, product: str, revision: str) -> bool:
    """A devices-section entry applies to a device if its vendor, product (and revision) regexes match."""
    for key, text in (("vendor", vendor), ("product", product), ("revision", revision)):
        pattern = entry.get(key)
        if pattern is not None and not hwtable.matches(str(pattern), text):
            return False
    return True


def _identity(entry: dict[str, object]) -> tuple[object, object, object]:
    return entry.get("vendor"), entry.get("product"), entry.get("revision")


def factorize(builtin: Sequence[dict[str, object]], user: Sequence[dict[str, object]],
              ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The hardware table upstream builds (factorize_hwtable, multipath-tools 0.9.4): (built-in part, user
    part). An entry with the very same vendor, product and revision strings as a later user entry is
    removed, its settings merged into that later entry where the later one sets nothing. So the last user
    entry of such a group holds the settings of all of them, later ones winning, at its own place: at the
    end, where it also beats the built-in entries after the removed one. Upstream does this after the main
    file and after each conf.d file; done once over all the files' entries in order, it gives the same."""
    last = {_identity(e): i for i, e in enumerate(user)}
    if not last:
        return list(builtin), []
    groups: dict[tuple[object, object, object], dict[str, object]] = {}
    for e in [*builtin, *user]:
        key = _identity(e)
        if key in last:
            groups.setdefault(key, {}).update(e)
    return ([e for e in builtin if _identity(e) not in last],
            [groups[_identity(e)] for i, e in enumerate(user) if last[_identity(e)] == i])


# distinct (vendor, product, revision) strings whose matching entries a Config keeps: the strings come from
# the devices (a target can present a new pair per LUN), so the memo starts over rather than grow without end
MATCH_MEMO_MAX = 4096


class _Hardware:
    """A Config's merged devices entries (Config.hardware_table) and the entries matching each device."""

    __slots__ = ("key", "builtin", "user", "matches")

    def __init__(self, key: tuple[object, ...], builtin: list[dict[str, object]],
                 user: list[dict[str, object]]) -> None:
        self.key = key  # the user's entries it was built from
        self.builtin, self.user = builtin, user
        self.matches: dict[tuple[str, str, str], tuple[dict[str, object], ...]] = {}


@record
class Config:
    defaults: dict[str, object] = field(default_factory=dict)  # keyword -> typed value, only those set
    blacklist: BlacklistSpec = field(default_factory=BlacklistSpec)  # user entries (built-ins: blacklist.py)
    blacklist_exceptions: BlacklistSpec = field(default_factory=BlacklistSpec)
    devices: list[dict[str, object]] = field(default_factory=list)  # user `device` entries, file order
    multipaths: list[dict[str, object]] = field(
        default_factory=list
    )  # `multipath` entries (wwid, alias, ...)
    overrides: dict[str, object] = field(default_factory=dict)
    # overrides { protocol { type "scsi:iscsi" ... } }: per transport, above every other section; file order
    protocols: list[dict[str, object]] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # files read, in order
    # the command line's find_multipaths (the deprecated `pymultipath -i`), canonical; beats the files
    find_multipaths_override: str | None = None

    # -------------------------------------------------------------------------------- classification knobs

    def find_multipaths(self) -> str:
        """Canonical mode: "strict" | "off" | "on" | "greedy" | "smart".

        Precedence: the command line (`pymultipath -i`: find_multipaths_override, given to load_config) >
        `force_wwids yes` (= strict) > find_multipaths > built-in strict.
        """
        if self.find_multipaths_override is not None:
            return self.find_multipaths_override
        if self.defaults.get("force_wwids") is True:
            return "strict"
        return str(self.default_value("find_multipaths"))

    def find_multipaths_timeout(self) -> int:
        """The raw value, built-in -10 (0 means the built-in default; see find_multipaths_wait)."""
        value = self.default_value("find_multipaths_timeout")
        return value if isinstance(value, int) else int(str(value))

    def find_multipaths_wait(self, *, vendor: str | None = None, product: str | None = None,
                             revision: str | None = None) -> int:
        """Seconds a lone path waits in smart mode: N > 0 -> N; -N -> N for known hardware, else 1."""
        raw = self.find_multipaths_timeout()
        if raw == 0:
            raw = int(keywords.attribute("find_multipaths_timeout").default)  # type: ignore[call-overload]
        if raw > 0:
            return raw
        return -raw if self.is_known_hardware(vendor=vendor, product=product, revision=revision) else 1

    def is_known_hardware(self, *, vendor: str | None, product: str | None,
                          revision: str | None = None) -> bool:
        """True if a devices entry (the user's or the built-in hardware table's) matches the device."""
        if vendor is None or product is None:
            return False
        return bool(self.matching_devices(vendor, product, revision or ""))

    def uid_attribute_for(
        self, devnode: str, *, vendor: str | None = None, product: str | None = None,
        revision: str | None = None,
    ) -> str | None:
        """The udev property holding this path's WWID: uid_attrs by device-name prefix, else uid_attribute.

        None or "" means no property is used (upstream then reads the WWID from sysfs).
        """
        attrs = self.defaults.get("uid_attrs")
        if attrs:
            for item in str(attrs).split():
                prefix, _, prop = item.partition(":")
                if devnode.startswith(prefix):
                    return prop
        value = self.resolve("uid_attribute", vendor=vendor, product=product, revision=revision)
        return None if value is None else str(value)

    # ---------------------------------------------------------------------------------------- resolution

    def _hardware(self) -> _Hardware:
        # built on first use, again when the user's entries changed since (a record's fields are public)
        key = tuple(tuple(e.items()) for e in self.devices)
        cached = self.__dict__.get("_hardware_cache")
        if not isinstance(cached, _Hardware) or cached.key != key:
            cached = _Hardware(key, *factorize(hwtable.entries(), self.devices))
            self.__dict__["_hardware_cache"] = cached  # not a field: equality and repr ignore it
        return cached

    def hardware_table(self) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """The devices entries as upstream holds them: (built-in part, user part), see factorize. The
        built-in table is parsed on the first call (of any Config)."""
        hw = self._hardware()
        return hw.builtin, hw.user

    def all_devices(self) -> list[dict[str, object]]:
        """Every devices entry, the built-in table's then the user's, merged as upstream merges them; a
        later entry takes precedence over an earlier one."""
        builtin, user = self.hardware_table()
        return [*builtin, *user]

    def matching_devices(self, vendor: str, product: str, revision: str) -> tuple[dict[str, object], ...]:
        """Every entry of all_devices whose vendor, product and revision regexes match, LAST first: for each
        attribute the first of these that sets it decides (upstream's find_hwe and propsel). Kept per
        device strings, since a path asks for many attributes."""
        hw = self._hardware()
        found = hw.matches.get((vendor, product, revision))
        if found is None:
            found = tuple(e for e in reversed([*hw.builtin, *hw.user])
                          if device_entry_matches(e, vendor, product, revision))
            if len(hw.matches) >= MATCH_MEMO_MAX:
                hw.matches.clear()
            hw.matches[(vendor, product, revision)] = found
        return found

    def default_value(self, keyword: str) -> object:
        """The defaults-section value: set in the files, else the built-in default."""
        kw = keywords.attribute(keyword)
        if kw.name in self.defaults:
            return self.defaults[kw.name]
        return kw.builtin(self.default_value)

    def resolve(
        self,
        keyword: str,
        *,
        wwid: str | None = None,
        vendor: str | None = None,
        product: str | None = None,
        revision: str | None = None,
        protocol: str | None = None,
    ) -> object:
        """Value of an attribute for one map/path with upstream's precedence.

        For a path of `protocol` ("scsi:iscsi"), the overrides section's protocol subsection of that type (a
        later one wins) comes first, for the keywords it may hold (PROTOCOL_KEYWORDS). Then: multipaths entry
        (exact wwid; later entries win) > overrides > matching devices entries (ALL that
        match, merged: the last one that sets the attribute decides; the user's come after the built-in
        table, see matching_devices) > defaults > built-in default. A devices entry is only considered when
        vendor and product are known; an entry with a revision regex needs the revision. Raises KeyError for
        an unknown keyword.
        """
        name = keywords.attribute(keyword).name
        if protocol is not None and name in keywords.PROTOCOL_KEYWORDS:
            for entry in reversed(self.protocols):
                if entry.get("type") == protocol and name in entry:
                    return entry[name]
        if wwid is not None:
            for entry in reversed(self.multipaths):
                if entry.get("wwid") == wwid and name in entry and keywords.lookup("multipath", name):
                    return entry[name]
        if name in self.overrides:
            return self.overrides[name]
        if vendor is not None and product is not None and keywords.lookup("device", name):
            for entry in self.matching_devices(vendor, product, revision or ""):
                if name in entry:
                    return entry[name]
        return self.default_value(name)
