"""Figures from a landscape file: what ``landscape plot`` draws, as library functions.

Every function takes the file (a path, or an open :class:`~landscape.store.Store`) and the
names of what to draw, reads it back from disk (no model code, no torch model) and returns a
:class:`matplotlib.figure.Figure` drawn on the Agg canvas (pyplot is never used, so nothing
pops up and nothing global changes); :func:`save` writes it as PNG, PDF or SVG.

- :func:`surface`: a 2-D loss surface as a contour with the training trajectory projected on
  it, or as a 3-D surface; :func:`curve`: a 1-D surface.
- :func:`grid`: the same surface of several runs side by side on one colour scale.
- :func:`density`: the Hessian spectral density on a log scale.
- :func:`path`: loss and accuracy along linear and Bezier paths, barriers marked.
- :func:`history`: training curves, and lambda_max against the edge of stability ``2/eta``.
- :func:`measure_vs_gap`: a measure of each run against its generalisation gap.
- :func:`all_figures`: every figure the file's contents allow, written into a folder.

Examples:
    >>> from landscape import plot
    >>> fig = plot.surface("runs.h5", "sgd", "pca_2d", metric="test_loss")   # doctest: +SKIP
    >>> plot.save(fig, "sgd_pca.pdf")                                        # doctest: +SKIP
    >>> plot.all_figures("runs.h5", "figures/", formats=("png", "pdf"))      # doctest: +SKIP
"""

from landscape.plot.figures import (
    FORMATS,
    KEY_MEASURES,
    all_figures,
    curve,
    density,
    figures,
    grid,
    history,
    measure_vs_gap,
    path,
    save,
    stability_threshold,
    surface,
)

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
