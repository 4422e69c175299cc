"""Errors every layer may raise for the command line to print in one line."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad option): printed without a traceback."""
