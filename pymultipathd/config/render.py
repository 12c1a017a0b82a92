"""The effective configuration as multipath.conf text (`pymultipath -t` / `-T`); the output parses back to the
same effective configuration.

-t: every defaults keyword with its effective value (unset ones are left out), the built-in blacklist entries
and exceptions with the user's, the hardware table as upstream prints it (the built-in entries, then the
user's, an entry the user re-declared merged into the user's: Config.hardware_table), overrides and
multipaths. With no configuration files its blacklist device entries and devices section are upstream's
`multipath -t` ones (tests/unit/test_hwtable.py compares them). -T: only what the files change: defaults
that differ from the built-in value and the user's own entries.

A keyword that has no effect in pymultipathd (keywords.Keyword.unsupported) carries a trailing comment
"# no effect in pymultipathd: <why>". Its built-in value in the defaults section is printed commented out, so
the output read back warns about exactly what the administrator's files set (the loader warns for every
unsupported keyword a file sets); devices entries are printed whole, the hardware table's too, so that they
read back as the same entries.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from pymultipathd.blacklist import BUILTIN_BLACKLIST, BUILTIN_EXCEPTIONS, device_rules
from pymultipathd.config import keywords
from pymultipathd.config.model import BlacklistSpec, Config, DeviceMatch
from pymultipathd.config.parser import quote

_FIRST = {"device": ("vendor", "product", "revision"), "multipath": ("wwid", "alias")}


def format_value(value: object, vtype: keywords.ValueType) -> str:
    text = vtype.fmt(value)
    if isinstance(value, int) and not isinstance(value, bool) and text.lstrip("-").isdigit():
        return text
    return quote(text)


def _attr_lines(
    section: str, attrs: dict[str, object], indent: str, builtin: Collection[str] = ()
) -> list[str]:
    """`keyword value` lines; `builtin`: keywords whose value no file set (commented out if they have no
    effect here)."""
    first = [k for k in _FIRST.get(section, ()) if k in attrs]
    order = first + [
        kw.name for kw in keywords.attributes(section) if kw.name in attrs and kw.name not in first
    ]
    lines = []
    for name in order:
        kw = keywords.lookup(section, name)
        assert kw is not None
        line = f"{name} {format_value(attrs[name], kw.type)}"
        note = kw.no_effect()
        if note is None:
            lines.append(f"{indent}{line}")
        elif name in builtin:
            lines.append(f"{indent}# {line}  # {note}")
        else:
            lines.append(f"{indent}{line}  # {note}")
    return lines


def _dedupe(items: Iterable[object]) -> list:
    """Drop repeated entries (a rule given twice matches as once)."""
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _blacklist(name: str, spec: BlacklistSpec) -> list[str]:
    lines = [f"{name} {{"]
    for crit in ("devnode", "wwid", "property", "protocol"):
        for pattern in _dedupe(getattr(spec, crit)):
            lines.append(f"\t{crit} {quote(pattern)}")
    for dev in _dedupe(spec.device):
        assert isinstance(dev, DeviceMatch)
        lines.append("\tdevice {")
        if dev.vendor is not None:
            lines.append(f"\t\tvendor {quote(dev.vendor)}")
        if dev.product is not None:
            lines.append(f"\t\tproduct {quote(dev.product)}")
        lines.append("\t}")
    lines.append("}")
    return lines


def _entries(outer: str, inner: str, entries: list[dict[str, object]]) -> list[str]:
    lines = [f"{outer} {{"]
    for attrs in entries:
        lines += [f"\t{inner} {{", *_attr_lines(inner, attrs, "\t\t"), "\t}"]
    lines.append("}")
    return lines


def render(config: Config, *, changed_only: bool = False) -> str:
    """multipath.conf text of the effective configuration (changed_only: `-T`, only non-default values)."""
    defaults: dict[str, object] = {}
    for kw in keywords.attributes("defaults"):
        value = config.default_value(kw.name)
        if value is None or (kw.deprecated and kw.name not in config.defaults):
            continue  # unset, or a deprecated file location nobody set (it would warn when read back)
        if changed_only and (kw.name not in config.defaults or value == kw.builtin(config.default_value)):
            continue
        defaults[kw.name] = value
    builtin = [name for name in defaults if name not in config.defaults]
    lines = ["defaults {", *_attr_lines("defaults", defaults, "\t", builtin), "}"]
    if changed_only:
        lines += _blacklist("blacklist", config.blacklist)
        lines += _blacklist("blacklist_exceptions", config.blacklist_exceptions)
        devices = list(config.devices)
    else:
        # upstream's order: the user's entries, then the built-in devnode rule and the product_blacklist of
        # every devices entry
        spec = config.blacklist.merged(BUILTIN_BLACKLIST)
        spec = BlacklistSpec(spec.devnode, spec.wwid, spec.property, spec.protocol,
                             tuple(e for e, _ in device_rules(config)))
        lines += _blacklist("blacklist", spec)
        lines += _blacklist("blacklist_exceptions", config.blacklist_exceptions.merged(BUILTIN_EXCEPTIONS))
        devices = config.all_devices()
    lines += _entries("devices", "device", devices)
    lines += ["overrides {", *_attr_lines("overrides", config.overrides, "\t")]
    for entry in config.protocols:
        attrs = {k: v for k, v in entry.items() if k != "type"}
        lines += ["\tprotocol {", f"\t\ttype {quote(str(entry['type']))}",
                  *_attr_lines("overrides", attrs, "\t\t"), "\t}"]
    lines += ["}"]
    lines += _entries("multipaths", "multipath", config.multipaths)
    return "\n".join(lines) + "\n"


_CRITERIA_TITLES = (("devnode", "device node rules"), ("wwid", "wwid rules"),
                    ("property", "udev property rules"), ("protocol", "protocol rules"),
                    ("device", "vendor/product rules"))


def render_blacklists(config: Config) -> str:
    """`show blacklist`: every rule of each criterion with where it came from, blacklist then exceptions."""

    def rows(user: BlacklistSpec, builtin: BlacklistSpec, crit: str) -> list[str]:
        out = []
        for origin, spec in (("config file rule", user), ("default rule", builtin)):
            for entry in getattr(spec, crit):
                out.append(f"        ({origin}) {entry}")
        return out or ["        <empty>"]

    def device_rows(rules: list[tuple[DeviceMatch, str]]) -> list[str]:
        origin = {"blacklist": "config file rule", "default": "default rule"}
        return [f"        ({origin[source]}) vendor={e.vendor or '*'} product={e.product or '*'}"
                for e, source in rules] or ["        <empty>"]

    exceptions = [(e, "blacklist") for e in config.blacklist_exceptions.device]
    lines = []
    for crit, title in _CRITERIA_TITLES:
        lines.append(f"{title}:")
        lines.append("- blacklist:")
        if crit == "device":  # the user's, then the hardware table's product_blacklist (blacklist.py)
            lines += device_rows(device_rules(config))
            lines.append("- exceptions:")
            lines += device_rows(exceptions)
            continue
        lines += rows(config.blacklist, BUILTIN_BLACKLIST, crit)
        lines.append("- exceptions:")
        lines += rows(config.blacklist_exceptions, BUILTIN_EXCEPTIONS, crit)
    return "\n".join(lines) + "\n"
