"""A surface-computing process for tests/test_surface.py (run as a script).

``python tests/surface_worker.py FILE KILL_AFTER`` computes the surface of :func:`problem`
into run ``r`` of FILE, writing after every chunk; with ``KILL_AFTER > 0`` the process sends
itself SIGKILL in the middle of the forward call number KILL_AFTER, as a crash would.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import torch
from torch import nn

from landscape.store.file import Store
from landscape.surfaces.grid import surface


class Killing(nn.Module):
    """An MLP that kills its own process at a given forward call."""

    def __init__(self, kill_after: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()
        self.kill_after, self.calls = kill_after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x)


def problem(kill_after: int = 0) -> dict:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    model = Killing(kill_after)
    p = sum(q.numel() for q in model.parameters())
    d = torch.randn(2, p, generator=gen, dtype=torch.float64)
    return {
        "model": model,
        "loss_fn": nn.CrossEntropyLoss(),
        "data": (x, y),
        "directions": d,
        "x": np.linspace(-1, 1, 9),
        "y": np.linspace(-0.5, 0.5, 7),
        "chunk": 4,
        "batch_size": 16,
        "check": False,
    }


if __name__ == "__main__":
    path, kill_after = sys.argv[1], int(sys.argv[2])
    if not os.path.exists(path):
        with Store(path, "w") as s:
            s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
    surface(**problem(kill_after), store=path, run="r", name="plane", flush_seconds=1e-9)
