"""The ``landscape`` command.

- ``landscape train FILE``: train a model into a landscape file (flags or a TOML config).
- ``landscape info FILE``: the runs in a file, their settings, status and final metrics.
- ``landscape import FILE``: bring your own checkpoints (state_dict files) in as a run.
- ``landscape probe FILE --run R hessian|trace|density|sharpness|measures``: a probe on a
  stored run (Hessian spectra, sharpness, every implicit-bias measure), stored with it.
- ``landscape surface FILE --run R``: a 1-D or 2-D loss surface around a stored run (random,
  PCA or Hessian directions), written into the file as it goes and resumed if interrupted.
- ``landscape path FILE --from A --to B``: the loss along the straight line (or a trained
  Bezier curve) between two stored models, and its barrier.
- ``landscape sweep SPEC --out FILE``: train and measure the runs of a sweep spec
  (:mod:`landscape.sweep`), resuming what FILE already holds.
- ``landscape report FILE``: tables, the Kendall tau of every measure with the generalisation
  gap, and the figures, as Markdown and HTML (:mod:`landscape.report`).
- ``landscape plot FILE [WHAT]``: figures from a file (:mod:`landscape.plot`).
- ``landscape demo``: the engine on MNIST-1D: trains a small model for a few seconds and
  prints its loss, accuracy and gradient norm over the whole training and test sets, and the
  cost of a Hessian-vector product relative to a gradient.

Errors are printed on one line (``landscape: error: ...``) with exit status 2, never as a
traceback; a failed write (a full disk) names the file and the error, and the landscape file
is left as of its last commit (:mod:`landscape.store.journal`); a damaged file is named, never
shown as the HDF5 library's error text. Output into a pipe closed early (``landscape info f.h5 |
head``) ends quietly with status 141, as a Unix tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from landscape.cli.demo import add_demo
from landscape.cli.landscapes import add_landscapes
from landscape.cli.plot import add_plot
from landscape.cli.probe import add_probe
from landscape.cli.report import add_report
from landscape.cli.runs import add_info_import, add_train
from landscape.cli.sweep import add_sweep

__all__ = ["main"]

log = logging.getLogger("landscape")

_SEED_MAX = 2**63 - 1
"""The largest seed (:data:`landscape.train.config.SEED_MAX`: stored as int64, taken by torch)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Measure and compare the minima that optimizers choose.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_demo(sub)
    add_train(sub)
    add_info_import(sub)
    add_probe(sub)
    add_report(sub)
    add_landscapes(sub)
    add_plot(sub)
    add_sweep(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landscape`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    for name in ("seconds", "lr", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    try:
        seed = getattr(args, "seed", None)
        if seed is not None and not 0 <= seed <= _SEED_MAX:
            raise ValueError(
                f"--seed must be an integer from 0 to 2**63 - 1 ({_SEED_MAX}), got {seed}"
            )
        status = args.run_command(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:  # the reader went away (``landscape info f.h5 | head``)
        _quiet_stdout()
        return 141  # as a Unix tool killed by SIGPIPE
    except (
        ValueError,
        TypeError,
        RuntimeError,
        OSError,
        KeyError,
        ArithmeticError,
        ImportError,  # an optional package a command needs (transformers, datasets)
    ) as exc:
        print(f"landscape: error: {_one_line(exc)}", file=sys.stderr)
        if args.verbose:
            log.exception("details")
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """The first line of the error's text; an operating system's error names its file first.

    ``[Errno 28] No space left on device: 'out/f.png'`` reads ``out/f.png: No space left on
    device (errno 28)``.
    """
    if (
        isinstance(exc, OSError)
        and exc.filename is not None
        and exc.strerror
        and str(exc).startswith("[Errno")
    ):
        return f"{os.fsdecode(exc.filename)}: {exc.strerror} (errno {exc.errno})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more is written to a closed pipe at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no file descriptor behind it (captured)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
