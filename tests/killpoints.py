"""A ``landscape`` command stopped at points of its own progress, never of the clock.

A script for tests/test_sweep_kill.py and tests/test_train_kill.py:
``python tests/killpoints.py [OPTIONS] -- ARGS...`` runs ``landscape ARGS`` (e.g. ``sweep SPEC
--out FILE``) in this process. The points are the windows of a commit to the landscape
file (:mod:`landscape.store.journal`): ``appended`` (the new tail is on disk, nothing else),
``journal-written``, ``half-applied``, ``applied`` (the file's old pages are in the journal,
none / half / all of the new ones are in the file) and ``committed`` (the journal is gone).
Between two commits a killed writer leaves the file as at one of these windows, so together
they are every state a kill can leave. Options:

``--log FILE``
    append the name of every window reached to FILE, one a line, before anything else
    happens there (so the test knows where the process died).
``--kill POINT:N``
    SIGKILL this process the N-th time it reaches the window POINT, as a crash there would.
``--pause POINT:N``
    the N-th time it reaches POINT (the file locked, mid-commit), print ``killpoints: inside
    POINT N`` and wait for a line on stdin.
``--pause-between``
    after each write session (the file closed, its lock released: a reader may open it),
    print ``killpoints: between K`` (K: sessions so far) and wait for a line on stdin.

What the command writes when is a function of its work alone: the package's writes that are
paced by the clock (the training recorder's and the surface's ``flush_seconds``) read a clock
that advances an hour at every reading, so each of them fires at every check. The sequence of
commits, and so where the N-th window falls, is the same on a fast machine and a loaded one;
the partial trajectories and partial surfaces those flushes commit are states a kill can
land on.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time

from landscape.cli.main import main as landscape
from landscape.store import journal

POINTS = ("appended", "journal-written", "half-applied", "applied", "committed")
PREFIX = "killpoints: "


def _at(value: str) -> tuple[str, int]:
    point, _, n = value.partition(":")
    if point not in POINTS or not n.isdigit() or int(n) < 1:
        raise SystemExit(
            f"killpoints: expected POINT:N with POINT one of {', '.join(POINTS)} "
            f"and N >= 1, got {value!r}"
        )
    return point, int(n)


def _wait(what: str) -> None:
    """Say where we are on stdout and wait for the go-ahead (a line) on stdin."""
    sys.stdout.write(f"{PREFIX}{what}\n")
    sys.stdout.flush()
    if not sys.stdin.readline():  # the test is gone: stop here rather than go on alone
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        raise SystemExit(
            "usage: killpoints.py [--log FILE] [--kill POINT:N] "
            "[--pause POINT:N] [--pause-between] -- LANDSCAPE-ARGS..."
        )
    split = argv.index("--")
    opts, args = argv[:split], argv[split + 1 :]
    log, kill, pause, between = None, None, None, False
    while opts:
        flag = opts.pop(0)
        if flag == "--pause-between":
            between = True
        elif flag in ("--log", "--kill", "--pause") and opts:
            value = opts.pop(0)
            if flag == "--log":
                log = os.open(value, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            elif flag == "--kill":
                kill = _at(value)
            else:
                pause = _at(value)
        else:
            raise SystemExit(f"killpoints: unknown option {flag!r}")

    ticks = itertools.count(1)
    time.perf_counter = lambda: 3600.0 * next(ticks)  # every clock-paced flush fires
    seen = dict.fromkeys(POINTS, 0)

    def reached(name: str) -> None:
        seen[name] += 1
        if log is not None:
            os.write(log, f"{name}\n".encode())  # in the kernel before a kill: survives it
        if (name, seen[name]) == kill:
            os.kill(os.getpid(), signal.SIGKILL)
        if (name, seen[name]) == pause:
            _wait(f"inside {name} {seen[name]}")

    journal._crash_point = reached
    if between:
        close, sessions = journal.JournaledFile.close, itertools.count(1)

        def close_then_wait(self: journal.JournaledFile) -> None:
            was_open = not self.closed
            close(self)
            if was_open:
                _wait(f"between {next(sessions)}")

        journal.JournaledFile.close = close_then_wait
    return landscape(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
