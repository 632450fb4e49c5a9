"""The exception types a user of cnnlab sees.

Every problem caused by input (a bad file, a wrong shape, an impossible setting) is raised as a
``CnnlabError`` with a one-line message naming the problem and the fix. The command line prints
that line and exits non-zero; it never shows a traceback for these. Code that must react to one
kind of problem catches its subclass, never a piece of the message.
"""


class CnnlabError(ValueError):
    """A problem with what the user gave cnnlab; ``str(err)`` is a complete one-line message."""


class NonFiniteError(CnnlabError):
    """An array that must be finite holds NaN or inf (an input, or a network's output)."""


class TrainingDivergedError(CnnlabError):
    """Training stopped learning: the loss exploded, or accuracy stayed at chance; the message
    names the step and a lower learning rate."""


class NonFiniteLossError(TrainingDivergedError):
    """Training diverged: the loss became NaN or infinite at the step the message names."""


class PickleRefusedError(CnnlabError):
    """A file holds pickled Python objects, which cnnlab never loads (they can run code)."""
