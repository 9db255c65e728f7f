"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: threads only cost (and thrash when the machine is shared).

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


WAIT = 1800  # seconds: a cap against a hung child process, never a measure of its progress


@pytest.fixture(scope="session")
def killpoints(tmp_path_factory):
    """One ``tests/killpoints.py --serve`` for the session: each command forked from it.

    Its commands run with one thread (``OMP_NUM_THREADS=1``) and no crash point of the
    environment; each in a process of its own, without a fresh interpreter's imports.
    """
    from .killpoints import Server  # noqa: PLC0415 - only for the tests that kill

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("LANDSCAPE_CRASH_AT", None)
    server = Server(env, WAIT, tmp_path_factory.mktemp("killpoints") / "server.stderr")
    yield server
    server.close()
