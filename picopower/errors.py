"""The project's own error type, the one `picopower` (cli.py) turns into one line.

Raise `UserError` (or a subclass) for what a user causes and can fix: a bad
flag or file, an unreachable or refusing broker or database, no board. The
command line prints it as `picopower <command>: error: <message>` with exit
status 2. Any other exception is a bug and shows its traceback.
"""


class UserError(Exception):
    """A failure the user can act on, said in one line."""


class Invalid(UserError, ValueError):
    """Bad input: a flag, a setting, a file's contents. Still a ValueError for code that catches those."""


class Unavailable(UserError, OSError):
    """Something outside is missing or refuses: a file, a broker, a database, a board.
    Still an OSError for code that catches those (e.g. to retry)."""
