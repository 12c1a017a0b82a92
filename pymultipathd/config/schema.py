"""Pydantic models of the configuration, generated from the keyword table, for JSON input/output at the edges
(`classify --json`, snapshots, the control socket's JSON). The rest of pymultipathd.config never imports this
module: pydantic costs ~120 ms to import and the `-u` udev helper must stay fast.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from pymultipathd.config import keywords
from pymultipathd.config.model import BlacklistSpec, Config, ConfigError, DeviceMatch, Message


def _annotation(kw: keywords.Keyword) -> Any:
    py = kw.type.py
    if isinstance(py, tuple):
        ann: Any = py[0]
        for t in py[1:]:
            ann = ann | t
        return ann | None
    return py | None


def _section_model(name: str, section: str) -> type[BaseModel]:
    fields: dict[str, Any] = {kw.name: (_annotation(kw), None) for kw in keywords.attributes(section)}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


DefaultsModel = _section_model("DefaultsModel", "defaults")
DeviceModel = _section_model("DeviceModel", "device")
MultipathModel = _section_model("MultipathModel", "multipath")
OverridesModel = _section_model("OverridesModel", "overrides")


class DeviceMatchModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendor: str | None = None
    product: str | None = None


class BlacklistModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devnode: list[str] = Field(default_factory=list)
    wwid: list[str] = Field(default_factory=list)
    property: list[str] = Field(default_factory=list)
    protocol: list[str] = Field(default_factory=list)
    device: list[DeviceMatchModel] = Field(default_factory=list)


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: DefaultsModel = Field(default_factory=DefaultsModel)  # type: ignore[valid-type]
    blacklist: BlacklistModel = Field(default_factory=BlacklistModel)
    blacklist_exceptions: BlacklistModel = Field(default_factory=BlacklistModel)
    devices: list[DeviceModel] = Field(default_factory=list)  # type: ignore[valid-type]
    multipaths: list[MultipathModel] = Field(default_factory=list)  # type: ignore[valid-type]
    overrides: OverridesModel = Field(default_factory=OverridesModel)  # type: ignore[valid-type]


def _spec_dict(spec: BlacklistSpec) -> dict[str, Any]:
    return {
        "devnode": list(spec.devnode),
        "wwid": list(spec.wwid),
        "property": list(spec.property),
        "protocol": list(spec.protocol),
        "device": [{"vendor": d.vendor, "product": d.product} for d in spec.device],
    }


def to_dict(config: Config) -> dict[str, Any]:
    """JSON-ready dict of what the files set (no built-in values), validated by ConfigModel."""
    data = {
        "defaults": dict(config.defaults),
        "blacklist": _spec_dict(config.blacklist),
        "blacklist_exceptions": _spec_dict(config.blacklist_exceptions),
        "devices": [dict(d) for d in config.devices],
        "multipaths": [dict(m) for m in config.multipaths],
        "overrides": dict(config.overrides),
    }
    return ConfigModel.model_validate(data).model_dump(mode="json", exclude_none=True)


def _check(section: str, attrs: dict[str, Any], where: str, errors: list[Message]) -> dict[str, object]:
    """Typed values re-validated through the keyword table (the same rules as a config file)."""
    out: dict[str, object] = {}
    for name, value in attrs.items():
        if value is None:
            continue
        kw = keywords.lookup(section, name)
        assert kw is not None  # the model forbids unknown fields
        try:
            out[name] = kw.type.parse(kw.type.fmt(value))
        except ValueError as exc:
            errors.append(Message(where, 0, name, f"invalid value {value!r}: {exc}"))
    return out


def _spec(model: BlacklistModel, section: str, where: str, errors: list[Message]) -> BlacklistSpec:
    for crit in ("devnode", "wwid", "property", "protocol"):
        for pattern in getattr(model, crit):
            _check("blacklist", {crit: pattern}, f"{where}.{section}", errors)
    for dev in model.device:
        _check("blacklist_device", dev.model_dump(), f"{where}.{section}.device", errors)
    return BlacklistSpec(
        tuple(model.devnode),
        tuple(model.wwid),
        tuple(model.property),
        tuple(model.protocol),
        tuple(DeviceMatch(d.vendor, d.product) for d in model.device),
    )


def from_dict(data: Any, source: str = "<json>") -> Config:
    """A Config from JSON data shaped like to_dict(); raises ConfigError naming the offending field."""
    try:
        model = ConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [Message(source, 0, ".".join(str(p) for p in e["loc"]) or None, e["msg"]) for e in exc.errors()]
        ) from exc
    errors: list[Message] = []
    cfg = Config(files=[source])
    cfg.defaults = _check("defaults", model.defaults.model_dump(), f"{source}.defaults", errors)
    cfg.overrides = _check("overrides", model.overrides.model_dump(), f"{source}.overrides", errors)
    for i, dev in enumerate(model.devices):
        entry = _check("device", dev.model_dump(), f"{source}.devices[{i}]", errors)
        if "vendor" not in entry or "product" not in entry:
            errors.append(Message(f"{source}.devices[{i}]", 0, "device", "needs vendor and product"))
        cfg.devices.append(entry)
    for i, mp in enumerate(model.multipaths):
        entry = _check("multipath", mp.model_dump(), f"{source}.multipaths[{i}]", errors)
        if "wwid" not in entry:
            errors.append(Message(f"{source}.multipaths[{i}]", 0, "multipath", "needs a wwid"))
        cfg.multipaths.append(entry)
    cfg.blacklist = _spec(model.blacklist, "blacklist", source, errors)
    cfg.blacklist_exceptions = _spec(model.blacklist_exceptions, "blacklist_exceptions", source, errors)
    if errors:
        raise ConfigError(errors)
    return cfg
