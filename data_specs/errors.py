"""The one exception type a user is meant to see, and how its messages suggest a name."""

import difflib
from collections.abc import Iterable


class FamevilError(Exception):
    """A problem the user can fix. The message is one line naming the file, field or flag and the fix.

    The CLI prints it without a traceback (unless --debug) and exits non-zero; any other exception
    is a bug in famevil and keeps its traceback.
    """

    def _render_traceback_(self) -> list[str]:
        """IPython and Jupyter show an exception with this method by the lines it returns: a user's
        error as its one line, as the CLI shows it, and not a traceback through famevil's internals."""
        return [f"{type(self).__name__}: {self}"]


class FamevilWarning(UserWarning):
    """Something the user should know but that does not stop the work (a base paired with an activation
    it was not trained with, say). The CLI prints it as one yellow line."""


def did_you_mean(given: str, names: Iterable[str]) -> str:
    """' (did you mean NAME?)' for the names closest to a mistyped `given`, or '' when none is close: a
    list of every name makes the reader find the typo, this finds it for them."""
    close = difflib.get_close_matches(given.strip().lower(), list(names), n=2)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
