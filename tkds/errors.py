"""The one exception type that reaches users: its message names the item and the fix."""


class TkdsError(Exception):
    """A failure to report as one line, with a non-zero exit, and no traceback."""
