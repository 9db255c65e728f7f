"""What every plot module shares.

Opening a file (or taking an open store), making a figure without pyplot, reading a run's
settings and naming metrics in words.

Figures are plain :class:`matplotlib.figure.Figure` objects drawn on the Agg canvas: nothing
touches pyplot's global state or the interactive backend, so plotting works on a headless
machine and in a notebook alike, and a figure is freed when it is no longer referenced.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from landscape.store.file import Store

__all__: list[str] = []

# run colours: the same run gets the same colour in every figure of a file
_COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

_WORDS = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "train_accuracy": "training accuracy",
    "test_accuracy": "test accuracy",
    "train_acc": "training accuracy",
    "test_acc": "test accuracy",
    "grad_norm": "gradient norm",
    "lr": "learning rate",
}
# history columns are named train_acc / test_acc, surface grids train_accuracy / ...
_ALIASES = {
    "train_accuracy": "train_acc",
    "test_accuracy": "test_acc",
    "train_acc": "train_accuracy",
    "test_acc": "test_accuracy",
}


@contextlib.contextmanager
def opened(file: Any) -> Iterator[Store]:
    """A read-only :class:`Store` for a path, or the given open store (left open)."""
    if isinstance(file, Store):
        yield file
        return
    if not isinstance(file, (str, os.PathLike)):
        raise TypeError(
            f"plot: file must be a path or an open landscape.store.Store, got {type(file).__name__}"
        )
    with Store(file) as s:
        yield s


def figure(width: float = 6.4, height: float = 4.8, **kw: Any) -> Figure:
    """A new figure on the Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per name, in order."""
    return {n: _COLOURS[i % len(_COLOURS)] for i, n in enumerate(names)}


def run_colours(s: Store) -> dict[str, str]:
    """A colour per run of the file (by creation order, so stable across figures)."""
    return colours(s.runs())


def check_runs(s: Store, runs: Any, fn: str) -> list[str]:
    """The runs asked for (all runs when None), each checked to exist."""
    if runs is None:
        return s.runs()
    if isinstance(runs, str):
        runs = [runs]
    runs = list(runs)
    if not runs or not all(isinstance(r, str) for r in runs):
        raise ValueError(
            f"{fn}: runs must be a run name or a non-empty list of run names, got {runs!r}"
        )
    for r in runs:
        s.info(r)  # raises with the list of runs
    return runs


def words(metric: str) -> str:
    """A metric's name in words (``train_loss`` -> ``training loss``)."""
    return _WORDS.get(metric, metric.replace("_", " "))


def is_accuracy(metric: str) -> bool:
    return metric.endswith(("accuracy", "_acc"))


def loss_name(attrs: dict[str, Any]) -> str:
    """The run's loss in words, for axis labels (``cross-entropy``, ``MSE``...)."""
    loss = attrs.get("loss")
    names = {"cross_entropy": "cross-entropy", "mse": "MSE", "logistic": "logistic"}
    if isinstance(loss, str) and loss in names:
        return names[loss]
    return str(loss).replace("_", "-") if loss else ""


def metric_label(metric: str, attrs: dict[str, Any] | None = None, *, log: bool = False) -> str:
    """An axis label with the unit: accuracy as a fraction, loss with its kind."""
    text = words(metric)
    if is_accuracy(metric):
        return f"{text} (fraction correct)"
    if metric.endswith("loss"):
        kind = loss_name(attrs or {})
        unit = f"{kind}, nats" if kind == "cross-entropy" else kind
        text = f"{text} ({unit})" if unit else text
    return f"{text}, log scale" if log else text


def resolve(metric: str, available: Sequence[str], what: str) -> str:
    """``metric`` or its alias (``test_accuracy`` / ``test_acc``) among ``available``."""
    if metric in available:
        return metric
    alias = _ALIASES.get(metric)
    if alias is not None and alias in available:
        return alias
    raise ValueError(
        f"plot: {what} has no metric {metric!r}; it has: {', '.join(available) or 'none'}"
    )


def optimizer_text(attrs: dict[str, Any]) -> str:
    """``sgd lr=0.05 momentum=0.9``: the run's optimizer in a few words."""
    opt = attrs.get("optimizer")
    if not isinstance(opt, dict):
        return str(opt) if opt else ""
    parts = [str(opt.get("name", "?"))]
    if "lr" in opt:
        parts.append(f"lr={opt['lr']:g}")
    if opt.get("momentum"):
        parts.append(f"momentum={opt['momentum']:g}")
    if opt.get("rho") is not None and opt.get("name") == "sam":
        parts.append(f"rho={opt['rho']:g}")
    return " ".join(parts)


def final_metrics(attrs: dict[str, Any]) -> dict[str, float]:
    fm = attrs.get("final_metrics")
    return dict(fm) if isinstance(fm, dict) else {}


def split_where(where: str) -> tuple[str | None, str]:
    """``runs/<run>/paths/<name>`` -> ``(run, name)``; ``compare/<name>`` -> ``(None, name)``."""
    if not isinstance(where, str):
        raise ValueError(
            f"path: where must be 'runs/RUN/paths/NAME' or 'compare/NAME', got {where!r}"
        )
    parts = where.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "runs" and parts[2] == "paths":
        return parts[1], parts[3]
    if len(parts) == 2 and parts[0] == "compare":
        return None, parts[1]
    raise ValueError(f"path: where must be 'runs/RUN/paths/NAME' or 'compare/NAME', got {where!r}")


def safe(name: str) -> str:
    """A file-name-safe version of a run or record name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"


def finite(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]
