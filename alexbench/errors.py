"""A small exception hierarchy. The CLI turns any AlexbenchError into one line on stderr."""


def shown(value: str) -> str:
    """A value as an error message may quote it: control characters (a newline would break the
    one-line error) escaped."""
    return value if value.isprintable() else value.encode("unicode_escape").decode("ascii")


class AlexbenchError(Exception):
    """Base class: an expected failure with a message fit for one line."""

    exit_code = 2


class InputError(AlexbenchError):
    """A bad option value or a bad file given by the user."""


class CheckpointError(InputError):
    """A weights or checkpoint file that cannot be used."""


class ExportError(AlexbenchError):
    """An exporter failed or produced an invalid artifact."""


class UnsupportedError(AlexbenchError):
    """A runtime was asked for a device/precision pair it does not support."""


class DeviceUnavailableError(AlexbenchError):
    """The requested device (e.g. CUDA) is not present on this machine."""


class DataError(InputError):
    """A dataset directory or image that cannot be used."""


class NoSpaceError(InputError, OSError):
    """A file could not be written for want of space (a full disk, a quota, a size limit): one
    line naming the file, as an input error; still an OSError, so a caller that saves what it
    can on any write failure (bench's results) goes on catching it."""

    def __init__(self, path: object, cause: OSError) -> None:
        OSError.__init__(self, cause.errno, cause.strerror, str(path))
        self.message = f"cannot write {path}: {cause.strerror}"

    def __str__(self) -> str:
        return self.message


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the command saves what it finished, then exits 130 or 143.

    A BaseException, like KeyboardInterrupt, so that the per-cell `except Exception` that turns a
    crashing runtime into an ERROR cell does not swallow it."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name
        self.exit_code = exit_code
