"""The ``landscape`` command (:func:`main`, :mod:`landscape.cli.main`).

One module a group of subcommands: :mod:`~landscape.cli.args` (shared parsing),
:mod:`~landscape.cli.probe`, :mod:`~landscape.cli.sweep`, :mod:`~landscape.cli.report`,
:mod:`~landscape.cli.plot`.
"""

from landscape.cli.main import main

__all__ = ["main"]
