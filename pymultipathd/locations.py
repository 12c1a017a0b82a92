"""Where pymultipathd finds its files and sockets.

Every location has upstream's default and an environment override, so tests, the VM and a host that keeps
its files elsewhere can point the tools somewhere else without a code change. Command-line options (where a
tool offers one) beat the environment.

Each program reads them once, at its entry: it builds a `Locations` record from its environment and options
(`Locations.from_env(os.environ, config_file=...)`) and installs it (`install`). The functions below
(`config_file()`, `sysfs()`, ...) answer from the installed record and never read the environment. Where no
entry installed one (a library user, a test), the first call installs `Locations.from_env(os.environ)` and
keeps it; `install(None)` forgets it, so the next call reads the environment again (tests/unit/conftest.py
does that whenever a test changes the environment).
"""

from __future__ import annotations

import os

from pymultipathd.record import record

TYPE_CHECKING = False  # typing costs milliseconds to import on every disk event; checkers read this as True
if TYPE_CHECKING:
    from collections.abc import Mapping


@record(frozen=True)
class Locations:
    """Every location a program uses, upstream's defaults unless its environment or options said otherwise."""

    config_file: str = "/etc/multipath.conf"
    config_dir: str = "/etc/multipath/conf.d"
    wwids_file: str = "/etc/multipath/wwids"
    bindings_file: str = "/etc/multipath/bindings"
    run_dir: str = "/run/multipath"
    socket_name: str = "@/org/kernel/linux/storage/multipathd"  # abstract ("@" prefix) or a pathname
    socket_path: str = "/run/multipathd.socket"
    sysfs: str = "/sys"
    udev_db: str = "/run/udev/data"
    proc: str = "/proc"
    # a pathname in a directory only root may enter: an abstract name can be bound by any local user first
    helper_socket: str = "/run/pymultipathd/udev-helper"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: str | None) -> Locations:
        """The locations an environment gives (a variable unset or empty: upstream's default), then the
        command line's `overrides` by field name (None: the option was not given). TypeError for a name
        that is not a field."""
        values = {name: env[var] for name, var in _ENV.items() if env.get(var)}
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def env(self) -> dict[str, str]:
        """These locations as environment variables: one for each location that is not upstream's default
        (what `pymultipath -u` tells the daemon, pymultipathd.udevlink)."""
        return {var: value for name, var in _ENV.items()
                if (value := getattr(self, name)) != getattr(_UPSTREAM, name)}

    @property
    def failed_wwids_dir(self) -> str:
        return os.path.join(self.run_dir, "failed_wwids")

    @property
    def find_multipaths_dir(self) -> str:
        """Timer files of paths in the "maybe" state, named <major>:<minor>, mtime = deadline."""
        return os.path.join(self.run_dir, "find_multipaths")


# field of Locations -> the environment variable that overrides it
_ENV = {
    "config_file": "PYMULTIPATH_CONF",
    "config_dir": "PYMULTIPATH_CONFDIR",
    "wwids_file": "PYMULTIPATH_WWIDS",
    "bindings_file": "PYMULTIPATH_BINDINGS",
    "run_dir": "PYMULTIPATH_RUNDIR",
    "socket_name": "MULTIPATH_SOCKET_NAME",
    "socket_path": "PYMULTIPATH_SOCKET_PATH",
    "sysfs": "PYMULTIPATH_SYSFS",
    "udev_db": "PYMULTIPATH_UDEV_DB",
    "proc": "PYMULTIPATH_PROC",
    "helper_socket": "PYMULTIPATH_HELPER_SOCKET",
}
ENV_VARS = tuple(_ENV.values())
_UPSTREAM = Locations()

_installed: Locations | None = None


def install(locations: Locations | None) -> Locations | None:
    """Make `locations` the ones every function below answers from (a program's entry, once); None forgets
    them, so the next call reads os.environ again. Returns the ones installed before, if any."""
    global _installed
    previous, _installed = _installed, locations
    return previous


def current() -> Locations:
    """The installed locations; on first use with none installed, those of os.environ (installed then)."""
    global _installed
    if _installed is None:
        _installed = Locations.from_env(os.environ)
    return _installed


def config_file() -> str:
    return current().config_file


def config_dir() -> str:
    return current().config_dir


def wwids_file() -> str:
    return current().wwids_file


def bindings_file() -> str:
    return current().bindings_file


def run_dir() -> str:
    return current().run_dir


# the fingerprint our initramfs's boot script leaves for the root's daemon (initramfs/pymultipathd-boot
# copies it there under this name)
INITRAMFS_FINGERPRINT = "initramfs-fingerprint.json"


def initramfs_fingerprint() -> str:
    """What the initramfs classified with, left for the root's daemon to compare (initrd/fingerprint.py)."""
    return os.path.join(run_dir(), INITRAMFS_FINGERPRINT)


def failed_wwids_dir() -> str:
    return current().failed_wwids_dir


def find_multipaths_dir() -> str:
    """Timer files of paths in the "maybe" state, named <major>:<minor>, mtime = deadline."""
    return current().find_multipaths_dir


def unix_address(name: str) -> str:
    """The address to bind or connect for a socket name: "@name" is abstract (leading NUL), else a path."""
    return "\0" + name[1:] if name.startswith("@") else name


def socket_name() -> str:
    """Abstract ("@" prefix) or pathname socket of the control protocol."""
    return current().socket_name


def helper_socket() -> str:
    """Private socket on which the daemon answers `pymultipath -u|-c` (pymultipathd.udevlink). Its
    directory is the daemon's and root's alone (0700), so no other user can bind the name or connect."""
    return current().helper_socket


def socket_path() -> str:
    return current().socket_path


def sysfs() -> str:
    return current().sysfs


def udev_db() -> str:
    return current().udev_db


def proc() -> str:
    return current().proc
