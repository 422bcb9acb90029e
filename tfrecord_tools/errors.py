"""Exceptions that carry a message meant for a person, not a traceback.

The command line prints ``str(error)`` of any :class:`TFRecordToolsError` and
exits non-zero; library callers can catch the base class or a specific one.
"""


class TFRecordToolsError(Exception):
    """Base class: something about the input or output folders is wrong."""


class SourceFolderError(TFRecordToolsError):
    """SRC is missing, is not a folder, or holds no ``<class>/`` folders."""


class OutputFolderError(TFRecordToolsError):
    """OUT holds data we did not write, or a different finished dataset."""


class BadImageError(TFRecordToolsError):
    """A file failed the content check and ``on_error="stop"`` was asked for."""


class SourceChangedError(TFRecordToolsError):
    """A source file changed (or vanished) between the decode check and the writing."""


class ImageWriteError(TFRecordToolsError):
    """A source image passed the check but could not be stored while writing its shard."""


class WorkerDiedError(TFRecordToolsError):
    """A worker process ended abruptly (killed by the out-of-memory killer, say)."""


class SidecarError(TFRecordToolsError):
    """``dataset.json`` is missing or unreadable."""


class VerifyError(TFRecordToolsError):
    """``verify`` found at least one problem; ``.report`` lists all of them."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


#: Set by the command line, so that messages name its flags instead of keyword arguments.
_speaking_to_command_line = False


class OptionError(ValueError):
    """An argument out of range (a ValueError, as Python expects); the command line exits 2 with it."""


def option_name(flag, keyword):
    """``--overwrite`` on the command line, ``overwrite=True`` in Python: how to ask for an option."""
    return flag if _speaking_to_command_line else keyword
