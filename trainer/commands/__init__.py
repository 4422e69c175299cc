"""Implementations of the ``trainer`` subcommands (one module each)."""
