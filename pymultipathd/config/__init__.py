"""multipath.conf: parsing, merging of conf.d, attribute resolution.

No pydantic here: the `-u` udev helper imports this package on every disk event (see model.py)."""

from pymultipathd.config.model import BlacklistSpec, Config, ConfigError, DeviceMatch, Message

TYPE_CHECKING = False  # typing's costs the `-u` helper; checkers read this as True
if TYPE_CHECKING:
    from pymultipathd.config.load import load_config, parse_files, parse_text


def __getattr__(name: str) -> object:
    # The loader reads files and the program's locations: imported when first asked for, so the pure core
    # (the classifier, the daemon's policy) can use the configuration's records without it.
    if name in ("load_config", "parse_files", "parse_text"):
        from pymultipathd.config import load

        return getattr(load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BlacklistSpec",
    "Config",
    "ConfigError",
    "DeviceMatch",
    "Message",
    "load_config",
    "parse_files",
    "parse_text",
]
