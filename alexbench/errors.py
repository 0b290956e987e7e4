"""A small exception hierarchy. The CLI turns any AlexbenchError into one line on stderr."""


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
