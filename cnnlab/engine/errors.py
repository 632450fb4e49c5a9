"""The one exception type a user of cnnlab sees.

Every problem caused by input (a bad file, a wrong shape, an impossible setting) is raised as
``CnnlabError`` with a one-line message naming the problem and the fix. The command line prints
that line and exits non-zero; it never shows a traceback for these.
"""


class CnnlabError(ValueError):
    """A problem with what the user gave cnnlab; ``str(err)`` is a complete one-line message."""
