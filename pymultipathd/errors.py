"""The root of pymultipathd's own errors.

Every error the project raises on purpose (device mapper, configuration, the wwids and bindings files, path
facts, the control protocol and its commands, partition tables, ...) is a PymultipathError, so a caller at
a boundary (a command line's main, the daemon's loops, a control command) can tell "pymultipathd refused
or could not do this, and says why" from a bug (any other exception), with one `except` that names the
project and not a list that goes stale when an error type is added. Errors that are also a standard kind
on purpose stay that kind too (ClientError and SocketInUse are OSErrors, a parse error is a ValueError), so
code that catches the standard kind keeps working.

Imported on every disk event by `pymultipath -u` (the config, facts and store errors live under it): it
imports nothing.
"""


class PymultipathError(Exception):
    """An error pymultipathd raises on purpose; str() says what went wrong, for a person."""
