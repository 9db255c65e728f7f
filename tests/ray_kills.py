"""Ray workers that die in the middle of a task, as many as the test asks for.

A worker setup hook for tests/test_sweep_kill.py. With ``LANDSCAPE_TEST_RAY_KILLS`` naming a
folder, :func:`install` (Ray's ``worker_process_setup_hook``) makes each window of a commit
(:mod:`landscape.store.journal`) look in that folder for a token named ``<window>.<anything>``.
The first worker to reach that window takes the token (deletes it: one process only can),
leaves ``killed.<pid>`` in the folder and sends itself SIGKILL, as a lost worker would die. So
exactly as many workers die as the test left tokens, each at a chosen point of its task,
whatever the speed of the machine.
"""

from __future__ import annotations

import os
import signal

from landscape.store import journal

ENV_VAR = "LANDSCAPE_TEST_RAY_KILLS"


def install() -> None:
    folder = os.environ.get(ENV_VAR)
    if not folder:
        return

    def reached(name: str) -> None:
        try:
            tokens = sorted(os.listdir(folder))
        except FileNotFoundError:
            return
        for token in tokens:
            if token.split(".")[0] != name:
                continue
            try:
                os.unlink(os.path.join(folder, token))
            except FileNotFoundError:  # another worker took it first
                continue
            with open(os.path.join(folder, f"killed.{os.getpid()}"), "w") as f:
                f.write(token)
            os.kill(os.getpid(), signal.SIGKILL)

    journal._crash_point = reached
