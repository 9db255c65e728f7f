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

``--serve``
    a server of such commands for the tests (:class:`Server`): it imports what the commands
    import once, then reads one request a line on stdin (JSON: the arguments above, and a file
    for the command's stderr) and forks a child that runs it as above, in a process of its own
    (its own pid, file handles and locks: a SIGKILL ends it as it ends a fresh process), while
    the server waits (it prints ``killpoints: child PID``); then it prints ``killpoints: exit CODE``
    (``-9``: killed). What the child
    writes on stdout and reads on stdin (the pauses above) passes through. Starting a fresh
    Python for each command costs seconds of imports (torch, scipy) that a fork does not.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

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


# ----------------------------------------------------------------------------- the server
def _request() -> dict | None:
    """The next request on stdin (read a byte at a time: nothing read ahead of a child's)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            return None
        line += byte
    return json.loads(line)


def _child(request: dict) -> int:
    if request.get("stderr"):
        fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        return main(request["args"])
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve() -> int:
    """Run requests (see ``--serve``) until stdin ends."""
    # what the commands import on their way (the sweep, the optimizers' torch._dynamo, the
    # data's scipy.stats), imported once here rather than in every child
    import scipy.stats  # noqa: F401, PLC0415
    import torch._dynamo  # noqa: F401, PLC0415

    import landscape.report  # noqa: F401, PLC0415
    import landscape.sweep.run  # noqa: F401, PLC0415

    while (request := _request()) is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(request))
        sys.stdout.write(f"{PREFIX}child {pid}\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(f"{PREFIX}exit {os.waitstatus_to_exitcode(status)}\n")
        sys.stdout.flush()
    return 0


class Server:
    """A ``killpoints.py --serve`` process and its lines, for the tests.

    Args:
        env: the server's environment (so every command's).
        wait: seconds a line may take to come; only a stuck process takes that long.
        stderr: the file for the server's stderr (and a command's, unless it names its own).
    """

    def __init__(self, env: dict[str, str], wait: float, stderr: Path) -> None:
        self.wait = wait
        with open(stderr, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.child: int | None = None  # the command running now
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        """Write ``line`` to the server's (the running command's) stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def start(self, *args: str, stderr: Path | None = None) -> None:
        """Start ``killpoints.py ARGS`` (options, ``--``, the landscape arguments)."""
        self.send(json.dumps({"args": list(args), "stderr": str(stderr) if stderr else None}))

    def next(self) -> list[str] | int:
        """The next stop of the command (``["between", K]``, ...) or its exit code."""
        while True:
            line = self.lines.get(timeout=self.wait)  # queue.Empty: stuck
            if line is None:
                raise RuntimeError("the killpoints server ended")
            if line.startswith(PREFIX):
                words = line[len(PREFIX) :].split()
                if words[0] == "child":
                    self.child = int(words[1])
                elif words[0] == "exit":
                    self.child = None
                    return int(words[1])
                else:
                    return words

    def run(self, *args: str, stderr: Path | None = None) -> int:
        """Run a command that does not pause to its end; its exit code (-9: killed)."""
        self.start(*args, stderr=stderr)
        got = self.next()
        if not isinstance(got, int):
            raise RuntimeError(f"the command paused ({got}) and nobody answers")
        return got

    def stop(self) -> None:
        """Kill the command that runs now, if one does (a test that failed while it waited)."""
        if self.child is not None:
            os.kill(self.child, signal.SIGKILL)
            while not isinstance(self.next(), int):
                pass

    def close(self) -> None:
        """End the server (its stdin closed: it ends after the command it runs)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=self.wait)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:]))
