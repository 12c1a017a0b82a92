"""multipath.conf: parsing, merging of conf.d, attribute resolution. No pydantic here (see schema.py)."""

from pymultipathd.config.load import load_config, parse_files, parse_text
from pymultipathd.config.model import BlacklistSpec, Config, ConfigError, DeviceMatch, Message

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
