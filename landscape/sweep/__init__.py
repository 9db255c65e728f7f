"""Sweeps: one TOML spec trains a model several ways and measures every run the same way.

Everything goes into one landscape file.

- :mod:`~landscape.sweep.spec`: the spec format, read, checked and expanded into named runs
  (:func:`load`, :class:`Sweep`); its tables: :mod:`~landscape.sweep.run_tables` (the runs,
  expanded into named runs by :mod:`~landscape.sweep.runs`),
  :mod:`~landscape.sweep.measure` (what is measured);
- :mod:`~landscape.sweep.run`: what a file lacks, planned and run (:func:`run_sweep`);
- :mod:`~landscape.sweep.dist`, :mod:`~landscape.sweep.executors`: the same work shared out
  among local processes or a Ray cluster, the sweep's process the only writer;
- :mod:`~landscape.sweep.threads`: the torch threads each task uses (``[resources] threads``),
  the same on every executor, so that the numbers depend on the spec alone;
- :mod:`~landscape.sweep.bad_init`: the bad-minimum initialisation (random-label pretraining).
"""

from landscape.sweep.jobs import Job, plan
from landscape.sweep.run import EXECUTORS, run_sweep
from landscape.sweep.spec import ABBREVIATIONS, INITS, PlannedRun, Sweep, expand, load, loads

__all__ = [
    "ABBREVIATIONS",
    "EXECUTORS",
    "INITS",
    "Job",
    "PlannedRun",
    "Sweep",
    "expand",
    "load",
    "loads",
    "plan",
    "run_sweep",
]
