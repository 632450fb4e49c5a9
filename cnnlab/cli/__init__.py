"""The ``cnnlab`` command line: one module per command; each parses, calls and presents."""

from cnnlab.cli.main import main

__all__ = ["main"]
