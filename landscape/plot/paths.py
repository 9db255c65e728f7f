"""Loss and accuracy along stored paths, with their barriers marked.

The paths are linear interpolations and trained Bezier curves.

A path is ``runs/<run>/paths/<name>`` (both ends in one run, e.g. init to final) or
``compare/<name>`` (between two runs), as written by :func:`landscape.surfaces.stored.path_between`.
The barrier (:class:`probes.paths.results.Path`) is the largest excess of the loss over the chord
between the ends: the chord is drawn dotted and the barrier as a vertical segment from the
chord up to the loss.

Examples:
    >>> fig = path("runs.h5", "compare/linear_sgd_final_adam_final")   # doctest: +SKIP
    >>> fig = path("runs.h5", ["compare/linear_sgd_final_adam_final",
    ...                        "compare/bezier_sgd_final_adam_final"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from landscape.plot.base import colours, figure, metric_label, opened, split_where
from probes.paths.results import Path

__all__ = ["path", "paths_in"]


def paths_in(s: Any) -> list[str]:
    """Every stored path of the file, as ``runs/<run>/paths/<name>`` and ``compare/<name>``.

    The latter are the results under /compare that are interpolation paths.
    """
    out = [f"runs/{r}/paths/{n}" for r in s.runs() for n in s.info(r).paths]
    for name in s.compares():
        probe = s.record(None, "paths", name).attrs.get("probe", "")
        if str(probe).startswith("interpolation."):
            out.append(f"compare/{name}")
    return out


def _end(end: Any) -> str:
    if isinstance(end, dict) and "run" in end:
        return f"{end['run']}:{end.get('which', 'final')}"
    return "?"


class _Loaded:
    def __init__(self, s: Any, where: str) -> None:
        run, name = split_where(where)
        record = s.record(run, "paths", name)
        self.where, self.name = where.strip("/"), name
        self.result = Path.from_record(record)
        ends = record.attrs.get("ends")
        self.ends = (
            (_end(ends.get("from")), _end(ends.get("to"))) if isinstance(ends, dict) else None
        )
        owner = run or (ends.get("from", {}).get("run") if isinstance(ends, dict) else None)
        self.attrs = s.info(owner).attrs if owner in s else {}

    def label(self) -> str:
        kind = "Bezier curve" if self.result.kind == "bezier" else self.result.kind
        if self.ends:
            return f"{self.ends[0]} -> {self.ends[1]} ({kind})"
        return f"{self.name} ({kind})"


def path(file: Any, where: str | Sequence[str], *, test: bool = True) -> Figure:
    """Loss and accuracy along one path or several overlaid, each barrier marked.

    Loss on top, accuracy at the bottom (when stored); the chord between the ends is dotted.

    Args:
        file: the landscape file (a path or an open :class:`~landscape.store.Store`).
        where: ``"runs/<run>/paths/<name>"`` or ``"compare/<name>"``, or a list of them.
        test: draw the test loss and accuracy too (dashed), when stored.

    Raises:
        ValueError: a malformed ``where``, an unknown run or path, or a record that is not a
            path.
    """
    wheres = [where] if isinstance(where, str) else list(where)
    if not wheres:
        raise ValueError("path: where must name at least one path, got an empty list")
    with opened(file) as s:
        loaded = [_Loaded(s, w) for w in wheres]
    colour = colours([item.where for item in loaded])
    has_acc = any(item.result.accuracy is not None for item in loaded)
    fig = figure(7.0, 6.4 if has_acc else 4.4)
    axes = fig.subplots(2 if has_acc else 1, 1, sharex=True, squeeze=False)[:, 0]
    top = axes[0]
    for item in loaded:
        r, c = item.result, colour[item.where]
        a = r.alphas
        top.plot(a, r.loss, color=c, marker=".", label=f"{item.label()}: barrier {r.barrier:.3g}")
        if test and r.test_loss is not None:
            top.plot(
                a,
                r.test_loss,
                "--",
                color=c,
                alpha=0.8,
                label=f"test loss, barrier {r.test_barrier:.3g}",
            )
        top.plot([a[0], a[-1]], [r.loss[0], r.loss[-1]], ":", color=c, linewidth=1)
        if r.barrier > 0:
            at = r.barrier_alpha
            chord = (1 - at) * r.loss[0] + at * r.loss[-1]
            top.annotate(
                "",
                xy=(at, chord + r.barrier),
                xytext=(at, chord),
                arrowprops={"arrowstyle": "<->", "color": c, "linewidth": 1.2},
            )
            top.annotate(
                f"{r.barrier:.3g}",
                xy=(at, chord + r.barrier / 2),
                xytext=(4, 0),
                textcoords="offset points",
                color=c,
                fontsize=8,
                va="center",
            )
        if has_acc and r.accuracy is not None:
            axes[1].plot(
                a,
                r.accuracy,
                color=c,
                marker=".",
                label=f"{item.label()}: accuracy barrier {r.accuracy_barrier:.3g}",
            )
            if test and r.test_accuracy is not None:
                axes[1].plot(a, r.test_accuracy, "--", color=c, alpha=0.8, label="test accuracy")
    top.set_ylabel(metric_label("loss", loaded[0].attrs))
    top.legend(fontsize=7, loc="best")
    if has_acc:
        axes[1].set_ylabel("accuracy (fraction correct)")
        axes[1].legend(fontsize=7, loc="best")
    one = loaded[0]
    if len(loaded) == 1 and one.ends:
        where = "t along the curve" if one.result.kind == "bezier" else "alpha"
        axes[-1].set_xlabel(f"{where} (0 = {one.ends[0]}, 1 = {one.ends[1]})")
    else:
        axes[-1].set_xlabel("position along the path (0 = first end, 1 = second end)")
    title = (
        f"{one.label()}" if len(loaded) == 1 else f"{len(loaded)} paths"
    ) + "\nsolid: training data, dashed: test data, dotted: chord between the ends"
    top.set_title(title)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig
