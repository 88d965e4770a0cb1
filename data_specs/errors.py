"""The one exception type a user is meant to see."""


class FamevilError(Exception):
    """A problem the user can fix. The message is one line naming the file, field or flag and the fix.

    The CLI prints it without a traceback (unless --debug) and exits non-zero; any other exception
    is a bug in famevil and keeps its traceback.
    """


class FamevilWarning(UserWarning):
    """Something the user should know but that does not stop the work (a base paired with an activation
    it was not trained with, say). The CLI prints it as one yellow line."""
