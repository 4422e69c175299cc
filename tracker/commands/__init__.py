"""Implementations of the ``tracker`` subcommands (one module each)."""
