"""The ``landscape`` command (:func:`main`, :mod:`landscape.cli.main`).

One module a group of subcommands: :mod:`~landscape.cli.args` (shared parsing),
:mod:`~landscape.cli.demo`, :mod:`~landscape.cli.runs` (train, info, import),
:mod:`~landscape.cli.probe`, :mod:`~landscape.cli.landscapes` (surface, path),
:mod:`~landscape.cli.sweep`, :mod:`~landscape.cli.report`, :mod:`~landscape.cli.plot`;
:mod:`~landscape.cli.main` builds the parser and runs a command.
"""

from landscape.cli.main import main

__all__ = ["main"]
