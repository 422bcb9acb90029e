"""Exceptions that carry a message meant for a person, and the helpers that word what a person reads.

The command line prints ``str(error)`` of any :class:`TFRecordToolsError` and
exits non-zero; library callers can catch the base class or a specific one.
Every name from the file system reaches a person through :func:`printable`.
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


def printable(text, code_points=False):
    """``text`` with each character a terminal would not show as itself written as an escape.

    Class and file names come from the file system: a name may hold bytes that are
    not UTF-8 (kept as surrogates, shown as ``\\xff``, the byte), control
    characters (an escape sequence that sets the terminal's title or clears the
    screen: ``\\x1b``), invisible ones (``\\u200b``) or a line break (``\\n``).
    Letters of any script stay as they are (``Ñandú``, ``猫``), unless
    ``code_points`` is true: then every character beyond ASCII is escaped too, to
    tell apart names that print alike (``ｄｏｇ`` is ``\\uff44\\uff4f\\uff47``).
    """
    if text.isprintable() and (text.isascii() or not code_points):
        return text
    return "".join(
        character if character.isprintable() and (character.isascii() or not code_points)
        else f"\\x{ord(character) - 0xDC00:02x}" if 0xDC80 <= ord(character) <= 0xDCFF  # an undecodable byte
        else ascii(character)[1:-1]
        for character in text
    )


def quoted(name, code_points=False):
    """A name in quotes, through :func:`printable`: spaces at its ends stay visible (``'cat '``)."""
    return f"'{printable(name, code_points)}'"


def printable_lines(text):
    """:func:`printable` for each line of ``text`` (the line breaks stay)."""
    return "\n".join(printable(line) for line in text.split("\n"))
