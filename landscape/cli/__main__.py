"""``python -m landscape.cli``: the ``landscape`` command."""

from landscape.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
