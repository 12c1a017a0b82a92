"""Read multipath.conf and conf.d/*.conf into one Config.

The main file is read first, then every `*.conf` in the drop-in directory in sorted order; a keyword set again
later wins, list entries (blacklist, devices, multipaths) accumulate. A missing main file or directory means
built-in defaults. All errors of all files are collected and raised together as one ConfigError, so the caller
(the daemon) can keep its previous configuration and show every problem at once.
"""

from __future__ import annotations

import os

from pymultipathd import locations
from pymultipathd.config import keywords
from pymultipathd.config.ere import search
from pymultipathd.config.model import BlacklistSpec, Config, ConfigError, DeviceMatch, Message
from pymultipathd.config.parser import Entry, Section, parse

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Iterable

TOP_SECTIONS = ("defaults", "blacklist", "blacklist_exceptions", "devices", "multipaths", "overrides")

# The vendor string of every NVMe namespace (upstream's, and paths/facts.py's).
NVME_VENDOR = "NVME"


def nvme_only(vendor: str) -> bool:
    """Does a devices entry with this vendor regex apply to NVMe namespaces only? It must match their vendor
    "NVME" and name it ("NVME", "^NVM[eE]$"): patterns such as ".*" or "^N" match NVMe and SCSI vendors
    alike, so their entries count as applying to SCSI devices."""
    return "NVM" in vendor.upper() and search(vendor, NVME_VENDOR)


class _Builder:
    def __init__(self, *, builtin: bool = False) -> None:
        # builtin: reading the built-in hardware table (parse_builtin_table), not an administrator's file
        self.builtin = builtin
        self.config = Config()
        self.errors: list[Message] = []
        self.file = ""
        self.force_wwids_at: tuple[str, int] = ("<config>", 0)
        self.blacklist: dict[str, dict[str, list[object]]] = {
            "blacklist": {k: [] for k in ("devnode", "wwid", "property", "protocol", "device")},
            "blacklist_exceptions": {k: [] for k in ("devnode", "wwid", "property", "protocol", "device")},
        }

    def warn(self, line: int, keyword: str | None, text: str) -> None:
        self.config.warnings.append(Message(self.file, line, keyword, text))

    def error(self, line: int, keyword: str | None, text: str) -> None:
        self.errors.append(Message(self.file, line, keyword, text))

    def value(self, section: str, entry: Entry, where: str) -> tuple[str, object] | None:
        """Typed (canonical name, value) of an entry, or None after a warning or error."""
        kw = keywords.lookup(section, entry.keyword)
        if kw is None:
            if keywords.known(entry.keyword):
                self.warn(entry.line, entry.keyword, f"not allowed in {where}; ignored")
            else:
                self.warn(entry.line, entry.keyword, f"unknown keyword in {where}; ignored")
            return None
        # One warning for a line: deprecated, or without effect here (then why), or both. The built-in table
        # is upstream's data, not anyone's choice, so a setting that has no effect here is kept unremarked.
        said = [text for text in (kw.deprecated, None if self.builtin else kw.no_effect()) if text]
        if said:
            self.warn(entry.line, entry.keyword, "; ".join(said))
        if kw.ignored:
            return None
        if self.builtin and isinstance(kw.type, keywords.Regex):
            # Not compiled here: compiling the table's ~280 patterns through glibc would cost every udev
            # event milliseconds, for patterns most lookups never reach (hwtable.matches); that each one
            # compiles is proven by tests/unit/test_hwtable.py.
            return kw.canonical, entry.value
        try:
            parsed = kw.type.parse(entry.value)
        except ValueError as exc:
            self.error(entry.line, entry.keyword, f"invalid value {entry.value!r}: {exc}")
            return None
        caution = None if self.builtin else kw.type.caution(parsed)
        if caution:
            self.warn(entry.line, entry.keyword, caution)
        return kw.canonical, parsed

    def attrs(self, section: str, node: Section, where: str, into: dict[str, object],
              lines: dict[str, Entry] | None = None) -> None:
        """The typed attributes of `node` into `into`; `lines`: the line that set each."""
        for item in node.items:
            if isinstance(item, Section):
                self.warn(item.line, item.name, f"unknown subsection in {where}; ignored")
                continue
            got = self.value(section, item, where)
            if got is not None:
                into[got[0]] = got[1]
                if lines is not None:
                    lines[got[0]] = item
                if got[0] == "force_wwids":
                    self.force_wwids_at = (self.file, item.line)
                if section == "defaults" and got == ("prio", "ana"):
                    self.prio_ana(item, "the defaults section")

    def prio_ana(self, item: Entry, where: str, nvme: bool = False) -> None:
        """`prio ana` is refused out loud. For a SCSI path it is meaningless (ana reads an NVMe namespace's
        ANA log page; alua or sysfs is what was meant); for an NVMe path pymultipathd does not read that
        log page, so the path gets priority -1 (undefined) rather than a made-up one."""
        if self.builtin:
            return
        if nvme:
            self.warn(item.line, item.keyword,
                      f"ana ({where}): pymultipathd does not read NVMe ANA log pages, so these paths get "
                      f"priority -1 (undefined) and group_by_prio puts them in one group; native NVMe "
                      f"multipath (nvme_core.multipath=Y) follows ANA itself")
        else:
            self.warn(item.line, item.keyword,
                      f"ana is the NVMe prioritizer (an NVMe namespace's ANA state): a SCSI path that takes "
                      f"it from {where} gets no priority; for SCSI use alua or sysfs")

    def list_of(
        self, node: Section, sub: str, section: str, where: str
    ) -> list[tuple[int, dict[str, object], dict[str, Entry]]]:
        """Subsections `sub { }` of a devices/multipaths section as (line, attributes, the line of each)."""
        out = []
        for item in node.items:
            if isinstance(item, Entry) or item.name != sub:
                name = item.keyword if isinstance(item, Entry) else item.name
                self.warn(item.line, name, f"only '{sub}' subsections are allowed in {where}; ignored")
                continue
            attrs: dict[str, object] = {}
            lines: dict[str, Entry] = {}
            self.attrs(section, item, f"{where} {sub}", attrs, lines)
            out.append((item.line, attrs, lines))
        return out

    def blacklist_section(self, node: Section) -> None:
        lists = self.blacklist[node.name]
        for item in node.items:
            if isinstance(item, Section):
                if item.name != "device":
                    self.warn(item.line, item.name, f"unknown subsection in {node.name}; ignored")
                    continue
                attrs: dict[str, object] = {}
                self.attrs("blacklist_device", item, f"{node.name} device", attrs)
                if "vendor" not in attrs and "product" not in attrs:
                    self.warn(item.line, "device", "device entry without vendor or product; ignored")
                    continue
                lists["device"].append(DeviceMatch(attrs.get("vendor"), attrs.get("product")))  # type: ignore[arg-type]
                continue
            got = self.value("blacklist", item, node.name)
            if got is not None:
                lists[got[0]].append(got[1])

    def protocol(self, node: Section) -> None:
        """overrides { protocol { type T; fast_io_fail_tmo ...; dev_loss_tmo ...; eh_deadline ... } }"""
        entry: dict[str, object] = {}
        for item in node.items:
            if isinstance(item, Section):
                self.warn(item.line, item.name, "unknown subsection in overrides protocol; ignored")
            elif item.keyword == "type":
                entry["type"] = item.value
            elif item.keyword in keywords.PROTOCOL_KEYWORDS:
                got = self.value("overrides", item, "overrides protocol")
                if got is not None:
                    entry[got[0]] = got[1]
            else:
                self.warn(item.line, item.keyword, "not allowed in overrides protocol (only type, "
                          f"{', '.join(sorted(keywords.PROTOCOL_KEYWORDS))}); ignored")
        if not entry.get("type"):
            self.warn(node.line, "protocol", "protocol subsection without type; ignored")
            return
        if entry["type"] not in keywords.PROTOCOL_TYPES:
            self.warn(node.line, "protocol", f"invalid type {entry['type']!r} (one of "
                      f"{', '.join(keywords.PROTOCOL_TYPES)}); subsection ignored")
            return
        self.config.protocols.append(entry)

    def add_tree(self, filename: str, items: list[Entry | Section]) -> None:
        self.file = filename
        cfg = self.config
        for node in items:
            if isinstance(node, Entry):
                self.warn(node.line, node.keyword, "keyword outside of any section; ignored")
                continue
            if node.name == "defaults":
                self.attrs("defaults", node, "defaults", cfg.defaults)
            elif node.name == "overrides":
                for item in node.items:
                    if isinstance(item, Section) and item.name == "protocol":
                        self.protocol(item)
                        continue
                    if isinstance(item, Section):
                        self.warn(item.line, item.name, "unknown subsection in overrides; ignored")
                        continue
                    got = self.value("overrides", item, "overrides")
                    if got is not None:
                        cfg.overrides[got[0]] = got[1]
                        if got == ("prio", "ana"):
                            self.prio_ana(item, "the overrides section")
            elif node.name in ("blacklist", "blacklist_exceptions"):
                self.blacklist_section(node)
            elif node.name == "devices":
                for line, attrs, lines in self.list_of(node, "device", "device", "devices"):
                    if "vendor" not in attrs or "product" not in attrs:
                        self.warn(line, "device", "device entry needs both vendor and product; ignored")
                        continue
                    if attrs.get("prio") == "ana":
                        self.prio_ana(lines["prio"], f'the devices entry of vendor "{attrs["vendor"]}"',
                                      nvme=nvme_only(str(attrs["vendor"])))
                    cfg.devices.append(attrs)
            elif node.name == "multipaths":
                for line, attrs, _ in self.list_of(node, "multipath", "multipath", "multipaths"):
                    if "wwid" not in attrs:
                        self.warn(line, "multipath", "multipath entry without wwid; ignored")
                        continue
                    cfg.multipaths.append(attrs)
            else:
                self.warn(node.line, node.name, "unknown section; ignored")

    def finish(self) -> Config:
        cfg = self.config
        for name, lists in self.blacklist.items():
            spec = BlacklistSpec(**{k: tuple(v) for k, v in lists.items()})  # type: ignore[arg-type]
            setattr(cfg, name, spec)
        if (
            cfg.defaults.get("force_wwids") is True
            and cfg.defaults.get("find_multipaths", "strict") != "strict"
        ):
            cfg.warnings.append(
                Message(
                    *self.force_wwids_at,
                    "force_wwids",
                    f"force_wwids yes overrides find_multipaths "
                    f"{cfg.defaults['find_multipaths']}: strict is used",
                )
            )
        if self.errors:
            raise ConfigError(self.errors)
        return cfg


def parse_files(sources: Iterable[tuple[str, str]]) -> Config:
    """Build one Config from (filename, text) pairs in precedence order (later wins). Pure."""
    builder = _Builder()
    for filename, text in sources:
        builder.config.files.append(filename)
        try:
            items, warnings = parse(text, filename)
        except ConfigError as exc:
            builder.errors.extend(exc.messages)
            continue
        builder.config.warnings.extend(warnings)
        builder.add_tree(filename, items)
    return builder.finish()


def parse_text(text: str, filename: str = "<string>") -> Config:
    """A Config from one file's text (no conf.d)."""
    return parse_files([(filename, text)])


def parse_builtin_table(text: str, filename: str) -> tuple[dict[str, object], ...]:
    """The entries of the built-in hardware table's file (config/hwtable.conf: one devices section).

    Read like an administrator's devices section, the same keyword table typing the values, with two
    differences: a keyword pymultipathd does not act on is not warned about (the table is upstream's data),
    and anything else that would be a warning in a user's file (unknown or misplaced keyword, deprecated
    name, incomplete entry, another section) is an error, raised as ConfigError naming file:line."""
    items, warnings = parse(text, filename)
    builder = _Builder(builtin=True)
    builder.file = filename
    for node in items:
        if not isinstance(node, Section) or node.name != "devices":
            name = node.keyword if isinstance(node, Entry) else node.name
            builder.error(node.line, name, "the built-in hardware table holds one devices section only")
    builder.add_tree(filename, items)
    config = builder.finish()  # raises the errors
    problems = warnings + config.warnings
    if problems:
        raise ConfigError(problems)
    return tuple(config.devices)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        # Bytes that are not UTF-8 survive as surrogates, so they are reported, not a crash.
        return f.read().decode("utf-8", errors="surrogateescape")


def config_sources(path: str | None = None, confdir: str | None = None) -> list[str]:
    """The files load_config reads, in order: the main file if it exists, then confdir/*.conf sorted."""
    path = path if path is not None else locations.config_file()
    confdir = confdir if confdir is not None else locations.config_dir()
    files = [path] if os.path.lexists(path) else []
    try:
        names = sorted(n for n in os.listdir(confdir) if n.endswith(".conf"))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    except OSError as exc:
        raise ConfigError([Message(confdir, 0, None, f"cannot read directory: {exc.strerror}")]) from exc
    files += [os.path.join(confdir, n) for n in names]
    return files


def sources_signature(path: str | None = None, confdir: str | None = None) -> tuple:
    """What the configuration files are now (each one's name, inode, size and mtime): when it is unchanged,
    load_config would read what it read before. Taken before loading, so an edit during the load shows."""
    try:
        files = config_sources(path, confdir)
    except ConfigError:
        return ("unreadable directory",)
    sig: list[tuple] = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            sig.append((file, None))
            continue
        sig.append((file, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(sig)


def load_config(path: str | None = None, confdir: str | None = None, *,
                find_multipaths: str | None = None) -> Config:
    """Read the main file and confdir/*.conf (defaults: locations.config_file() and locations.config_dir()).

    A missing main file or directory is not an error. Raises ConfigError on unreadable files, syntax errors
    and invalid values, naming file:line and keyword. `find_multipaths`: the command line's mode (the
    deprecated `pymultipath -i`), which beats the files (Config.find_multipaths); ValueError if it is not one.
    """
    override = None
    if find_multipaths is not None:
        try:
            override = str(keywords.attribute("find_multipaths").type.parse(find_multipaths))
        except ValueError as exc:
            raise ValueError(f"find_multipaths {find_multipaths!r}: {exc}") from None
    sources: list[tuple[str, str]] = []
    errors: list[Message] = []
    for file in config_sources(path, confdir):
        try:
            sources.append((file, _read(file)))
        except FileNotFoundError:
            continue  # removed between listing and reading
        except OSError as exc:
            errors.append(Message(file, 0, None, f"cannot read: {exc.strerror or exc}"))
    if errors:
        raise ConfigError(errors)
    config = parse_files(sources)
    config.find_multipaths_override = override
    return config
