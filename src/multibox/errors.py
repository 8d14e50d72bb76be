"""The one exception type for user mistakes.

Anything raised as :class:`UserError` is a problem with the user's input (a missing file, an unknown
name, a bad number). The CLI prints its message on one line and exits with code 2, never a traceback.
"""


class UserError(Exception):
    """A mistake in the user's input; the message names the file/object and what is wrong."""


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite; the message names the step and the term."""
