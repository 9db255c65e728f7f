"""Every figure of a file at once (:func:`all_figures`, :func:`figures`), and saving them.

:func:`save` writes one figure; the public drawing functions are gathered here for
:mod:`landscape.plot`.
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.figure import Figure

from landscape.plot.base import opened, safe
from landscape.plot.gaps import KEY_MEASURES, gap, measure_vs_gap, run_measures
from landscape.plot.paths import path, paths_in
from landscape.plot.spectra import density
from landscape.plot.surfaces import curve, grid, surface
from landscape.plot.training import history, stability_threshold

__all__ = [
    "FORMATS",
    "KEY_MEASURES",
    "all_figures",
    "curve",
    "density",
    "figures",
    "grid",
    "history",
    "measure_vs_gap",
    "path",
    "save",
    "stability_threshold",
    "surface",
]

FORMATS = ("png", "pdf", "svg")
"""The file formats :func:`save` writes (from the file's suffix)."""

log = logging.getLogger(__name__)


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> pathlib.Path:
    """Write ``fig`` to ``path`` in the format of its suffix (``.png``, ``.pdf``, ``.svg``).

    Args:
        fig: the figure.
        path: the file; its folder is created if needed.
        dpi: resolution of a PNG.

    Returns:
        The path written.

    Raises:
        ValueError: another suffix.
    """
    target = pathlib.Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(
            f"save: the file name must end in .png, .pdf or .svg, got {os.fspath(path)!r}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format=fmt, dpi=dpi)
    return target


def figures(file: Any) -> list[tuple[str, Callable[[], Figure]]]:
    """The figures that the contents of ``file`` (an open store) allow.

    They come as ``(name, draw)`` pairs in a stable order; ``name`` is the figure's file name
    without suffix:

    - ``surface_<run>_<name>`` (a 2-D surface, training loss, trajectory over it) or
      ``curve_<run>_<name>`` (a 1-D surface), for every stored surface;
    - ``density_<run>_<probe>`` for every stored spectral density;
    - ``path_<run>_<name>`` and ``path_compare_<name>`` for every stored path;
    - ``history`` when a run has a history;
    - ``measure_<measure>`` for each of :data:`KEY_MEASURES` stored for >= 2 runs with final
      metrics;
    - ``grid_<name>`` for every surface name that >= 2 runs hold (same dimension).

    Args:
        file: an open :class:`~landscape.store.Store`.

    Returns:
        The ``(name, draw)`` pairs; ``draw()`` makes the figure.
    """
    s = file
    out: list[tuple[str, Callable[[], Figure]]] = []
    infos = {r: s.info(r) for r in s.runs()}
    shapes: dict[str, dict[str, int]] = {}  # surface name -> run -> dims
    for r, info in infos.items():
        for name in info.surfaces:
            dims = 1 if "y" not in s.record(r, "surfaces", name).arrays else 2
            shapes.setdefault(name, {})[r] = dims
            out.append(
                (
                    f"{'surface' if dims == 2 else 'curve'}_{safe(r)}_{safe(name)}",
                    functools.partial(surface if dims == 2 else curve, s, r, name),
                )
            )
    for r, info in infos.items():
        for probe in info.probes:
            if s.record(r, "probes", probe).attrs.get("probe") == "hessian.density":
                out.append(
                    (f"density_{safe(r)}_{safe(probe)}", functools.partial(density, s, r, probe))
                )
    for where in paths_in(s):
        parts = where.split("/")
        name = (
            f"path_compare_{safe(parts[1])}"
            if parts[0] == "compare"
            else f"path_{safe(parts[1])}_{safe(parts[3])}"
        )
        out.append((name, functools.partial(path, s, where)))
    if any(info.n_history for info in infos.values()):
        out.append(("history", functools.partial(history, s)))
    found = {r: run_measures(s, r) for r in infos}
    with_gap = [r for r in infos if found[r] and gap(infos[r].attrs) is not None]
    if len(with_gap) >= 2:
        for m in KEY_MEASURES:
            if sum(m in found[r] for r in with_gap) >= 2:
                out.append((f"measure_{safe(m)}", functools.partial(measure_vs_gap, s, m)))
    for name, runs in shapes.items():
        if len(runs) >= 2 and len(set(runs.values())) == 1:
            out.append((f"grid_{safe(name)}", functools.partial(grid, s, name, list(runs))))
    seen: dict[str, int] = {}
    unique: list[tuple[str, Callable[[], Figure]]] = []
    for name, draw in out:  # names made safe may collide: keep them apart
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}_{seen[name]}", draw))
    return unique


def all_figures(
    file: str | os.PathLike, out_dir: str | os.PathLike, *, formats: Sequence[str] = ("png",)
) -> list[pathlib.Path]:
    """Every figure that the file's contents allow, written into ``out_dir``.

    See :func:`figures` for the list and the file names. A figure whose data cannot be drawn
    (e.g. a surface with no point computed yet) is left out with a warning on the
    ``landscape.plot`` logger; the others are still written.

    Args:
        file: the landscape file, or an open store.
        out_dir: the folder (created if needed).
        formats: some of :data:`FORMATS`.

    Returns:
        The files written, in the order of :func:`figures`, each figure's formats together.

    Raises:
        ValueError: an unknown format.
    """
    if isinstance(formats, str):
        formats = (formats,)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(
            f"all_figures: formats must be some of png, pdf, svg, got {list(formats)!r}"
        )
    out = pathlib.Path(out_dir)
    written: list[pathlib.Path] = []
    with opened(file) as s:
        for name, draw in figures(s):
            try:
                fig = draw()
            except ValueError as err:
                log.warning("all_figures: %s left out: %s", name, err)
                continue
            for fmt in formats:
                written.append(save(fig, out / f"{name}.{fmt}"))
    return written
