"""``python -m landscape``: the ``landscape`` command (:mod:`landscape.cli`)."""

from landscape.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
