"""The one exception type for user mistakes.

Anything raised as :class:`UserError` is a problem with the user's input (a missing file, an unknown
name, a bad number). The CLI prints its message on one line and exits with code 2, never a traceback.
"""


class UserError(Exception):
    """A mistake in the user's input; the message names the file/object and what is wrong."""


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite; the message names the step and the term."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a job; ``checkpoint`` is the file saved on the way out (None: nothing
    was written) and ``step`` the training step it holds."""

    def __init__(self, signal_name: str = "Ctrl-C", checkpoint=None, step: int | None = None) -> None:
        super().__init__(signal_name)
        self.signal_name, self.checkpoint, self.step = signal_name, checkpoint, step


class JobFailed(RuntimeError):
    """A job could not give a result it can stand behind (e.g. an export that does not match its model);
    the message says why in one line. The CLI exits with code 1."""


class EnvironmentFault(UserError):
    """The machine, not the input, stopped a job: a full disk, a read-only file system, a permission.
    One line naming the path, as any UserError; the CLI exits with code 1 (2 is for the user's input)."""
