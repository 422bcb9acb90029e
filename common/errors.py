"""The one exception type that means "the user can fix this"."""


class UserError(Exception):
    """Bad input or a missing resource, with a message that says what to do.

    Scripts that call :func:`common.cli.parse` print this message (no traceback)
    and exit with status 2, so a student sees "file X is not a CIFAR-10 archive:
    expected ..." instead of a stack trace from deep inside TensorFlow.
    """
