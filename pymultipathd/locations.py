"""Where pymultipathd finds its files and socket.

Every location has upstream's default and an environment override, so tests, the VM and a host that keeps
its files elsewhere can point the tools somewhere else without a code change. Command-line options (where a
tool offers one) beat the environment. Read at call time, never cached at import, so a test can change them.
"""

from __future__ import annotations

import os

# env var -> upstream default
_DEFAULTS = {
    "PYMULTIPATH_CONF": "/etc/multipath.conf",
    "PYMULTIPATH_CONFDIR": "/etc/multipath/conf.d",
    "PYMULTIPATH_WWIDS": "/etc/multipath/wwids",
    "PYMULTIPATH_BINDINGS": "/etc/multipath/bindings",
    "PYMULTIPATH_RUNDIR": "/run/multipath",
    "MULTIPATH_SOCKET_NAME": "@/org/kernel/linux/storage/multipathd",
    "PYMULTIPATH_SOCKET_PATH": "/run/multipathd.socket",
    "PYMULTIPATH_SYSFS": "/sys",
    "PYMULTIPATH_UDEV_DB": "/run/udev/data",
    "PYMULTIPATH_PROC": "/proc",
    # a pathname in a directory only root may enter: an abstract name can be bound by any local user first
    "PYMULTIPATH_HELPER_SOCKET": "/run/pymultipathd/udev-helper",
}
ENV_VARS = tuple(_DEFAULTS)


def _get(var: str) -> str:
    return os.environ.get(var) or _DEFAULTS[var]


def config_file() -> str:
    return _get("PYMULTIPATH_CONF")


def config_dir() -> str:
    return _get("PYMULTIPATH_CONFDIR")


def wwids_file() -> str:
    return _get("PYMULTIPATH_WWIDS")


def bindings_file() -> str:
    return _get("PYMULTIPATH_BINDINGS")


def run_dir() -> str:
    return _get("PYMULTIPATH_RUNDIR")


def failed_wwids_dir() -> str:
    return os.path.join(run_dir(), "failed_wwids")


def find_multipaths_dir() -> str:
    """Timer files of paths in the "maybe" state, named <major>:<minor>, mtime = deadline."""
    return os.path.join(run_dir(), "find_multipaths")


def unix_address(name: str) -> str:
    """The address to bind or connect for a socket name: "@name" is abstract (leading NUL), else a path."""
    return "\0" + name[1:] if name.startswith("@") else name


def socket_name() -> str:
    """Abstract ("@" prefix) or pathname socket of the control protocol."""
    return _get("MULTIPATH_SOCKET_NAME")


def helper_socket() -> str:
    """Private socket on which the daemon answers `pymultipath -u|-c` (pymultipathd.udevlink). Its
    directory is the daemon's and root's alone (0700), so no other user can bind the name or connect."""
    return _get("PYMULTIPATH_HELPER_SOCKET")


def socket_path() -> str:
    return _get("PYMULTIPATH_SOCKET_PATH")


def sysfs() -> str:
    return _get("PYMULTIPATH_SYSFS")


def udev_db() -> str:
    return _get("PYMULTIPATH_UDEV_DB")


def proc() -> str:
    return _get("PYMULTIPATH_PROC")
