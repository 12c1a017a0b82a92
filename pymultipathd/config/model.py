"""The parsed configuration: plain record classes (pymultipathd.record).

No pydantic here: the `-u` udev helper imports this on every disk event.
"""

from __future__ import annotations

from pymultipathd.config import hwtable, keywords
from pymultipathd.config.ere import search
from pymultipathd.errors import PymultipathError
from pymultipathd.record import field, record


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
        if pattern is not None and not search(str(pattern), text):
            return False
    return True


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

    def find_multipaths_wait(self, *, vendor: str | None = None, product: str | None = None) -> int:
        """Seconds a lone path waits in smart mode: N > 0 -> N; -N -> N for known hardware, else 1."""
        raw = self.find_multipaths_timeout()
        if raw == 0:
            raw = int(keywords.attribute("find_multipaths_timeout").default)  # type: ignore[call-overload]
        if raw > 0:
            return raw
        return -raw if self.is_known_hardware(vendor=vendor, product=product) else 1

    def is_known_hardware(self, *, vendor: str | None, product: str | None) -> bool:
        """True if a devices entry (the user's or the built-in hardware table's) matches the device."""
        if vendor is None or product is None:
            return False
        return any(device_entry_matches(e, vendor, product, "") for e in self.all_devices())

    def uid_attribute_for(
        self, devnode: str, *, vendor: str | None = None, product: str | None = None
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
        value = self.resolve("uid_attribute", vendor=vendor, product=product)
        return None if value is None else str(value)

    # ---------------------------------------------------------------------------------------- resolution

    def all_devices(self) -> list[dict[str, object]]:
        """Built-in hardware table followed by the user's entries (later entries take precedence)."""
        return [*hwtable.HWTABLE, *self.devices]

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
    ) -> object:
        """Value of an attribute for one map/path with upstream's precedence.

        multipaths entry (exact wwid; later entries win) > overrides > matching devices entries (the user's,
        later first, then the built-in hardware table) > defaults > built-in default. A devices entry is only
        considered when vendor and product are known; an entry with a revision regex needs the revision.
        Raises KeyError for an unknown keyword.
        """
        name = keywords.attribute(keyword).name
        if wwid is not None:
            for entry in reversed(self.multipaths):
                if entry.get("wwid") == wwid and name in entry and keywords.lookup("multipath", name):
                    return entry[name]
        if name in self.overrides:
            return self.overrides[name]
        if vendor is not None and product is not None and keywords.lookup("device", name):
            for entry in reversed(self.all_devices()):
                if name in entry and device_entry_matches(entry, vendor, product, revision or ""):
                    return entry[name]
        return self.default_value(name)
