"""Landscapes of stored runs: surfaces around runs, paths between them.

A surface around a run, a path between two runs, written into the same file (what ``landscape
surface`` and ``landscape path`` do), and the path from a run's initialisation to its solution
(:func:`init_to_final`, returned, not written).

The model of a run is rebuilt from its recorded spec and parameters
(:func:`landscape.train.spec.rebuild`), with its data and loss; results go to
``runs/<run>/surfaces/<name>``, ``runs/<run>/paths/<name>`` (both ends in one run) or
``/compare/<name>`` (two runs).

Examples:
    >>> surface_of_run("runs.h5", "sgd", directions="random", x=np.linspace(-1, 1, 21),
    ...                y=np.linspace(-1, 1, 21))
    >>> path_between("runs.h5", "sgd", "adam", kind="linear", n=25)
    >>> init_to_final("runs.h5", "sgd", n=11).barrier
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_choice
from landscape.engine.params import ParamLayout, select
from landscape.store.file import Store
from landscape.surfaces import directions as dirs
from landscape.surfaces import trajectories
from landscape.surfaces.directions import Directions
from landscape.surfaces.grid import surface
from landscape.train.checkpoints import load_params
from landscape.train.spec import rebuild
from probes.paths import interpolation
from probes.paths.results import Path

__all__ = ["DIRECTIONS", "PATH_KINDS", "init_to_final", "path_between", "surface_of_run"]

DIRECTIONS = ("random", "pca", "hessian")
"""How :func:`surface_of_run` picks its directions."""
PATH_KINDS = ("linear", "bezier", "aligned")
"""The paths of :func:`path_between`: the straight line, a trained quadratic Bezier curve, and
the straight line to the second model after weight matching (``"aligned"``)."""


def _subset(pair: Any, n: int | None) -> Any:
    """The first ``n`` examples; under torch.distributed this rank's contiguous block of them."""
    x, y = pair
    x, y = (x[:n], y[:n]) if n and n < len(y) else (x, y)
    block = _dist.shard(len(y))
    return x[block.start : block.stop], y[block.start : block.stop]


def surface_of_run(
    file: str | os.PathLike,
    run: str,
    *,
    x: Any,
    y: Any = None,
    which: str | int = "final",
    directions: str = "random",
    seed: int = 0,
    normalization: str = "filter",
    ignore: str | None = "biasbn",
    bn: str = "keep",
    test: bool = True,
    n: int | None = None,
    data: Mapping[str, Any] | None = None,
    device: str | None = None,
    name: str | None = None,
    replace: bool = False,
    progress: bool = False,
    points: tuple[int, int] | None = None,
) -> Any:
    """A 1-D (``y`` None) or 2-D surface around a stored run, written into its file.

    Directions: ``"random"`` (seeded Gaussian, normalised,
    :func:`landscape.surfaces.directions.random`), ``"pca"`` (principal directions of the run's
    recorded trajectory around its final point; the surface is then centred there) or ``"hessian"``
    (top Hessian eigenvectors at the point). When the run has a trajectory, its projection onto the
    plane is stored beside the grids (``trajectory_steps``, ``trajectory_coords``). The training
    data (first ``n`` examples) give the surface; the test data too with ``test``. Resumes a surface
    of the same name and settings that the file holds. ``points=(start, stop)``: only that block of
    the grid's points (:func:`landscape.surfaces.grid.surface`).

    Returns:
        :class:`landscape.surfaces.grid.Surface`.
    """
    _check_choice("surface", "directions", directions, DIRECTIONS)
    model, split, loss_fn = rebuild(file, run, which=which, data=data, device=device)
    train = _subset(split.train, n)
    k = 1 if y is None else 2
    name = name or f"{directions}_{k}d"
    with Store(file) as s:
        steps, traj = s.trajectory(run) if s.info(run).n_snapshots else (None, None)
        held = (
            None
            if replace
            else _held_directions(
                s,
                run,
                name,
                model,
                {
                    "kind": directions,
                    "k": k,
                    **(
                        {"seed": seed, "normalization": normalization, "ignore": ignore}
                        if directions == "random"
                        else {}
                    ),
                },
            )
        )
    if held is not None:  # resuming: the directions the surface was begun with
        d = held
    elif directions == "random":
        d = dirs.random(model, k=k, seed=seed, normalization=normalization, ignore=ignore)
    elif directions == "hessian":
        d = dirs.hessian(model, loss_fn, train, k=k)
    else:
        if traj is None:
            raise ValueError(
                f"surface: run {run!r} has no trajectory snapshots for PCA "
                "directions; train with --snapshot-every, or use random directions"
            )
        with Store(file) as s:
            final = s.params(run, "final")
        d = trajectories.pca(traj, final, k=k)
    extras = None
    if traj is not None and steps is not None:  # both or neither
        center = d.center
        if center is None:
            chosen = select(model, None)
            center = ParamLayout.of(chosen).flatten(chosen)
        coords = trajectories.project(traj, center.detach().cpu().double().numpy(), d)
        extras = {
            "trajectory_steps": np.asarray(steps),
            "trajectory_coords": np.asarray(coords).reshape(len(steps), -1),
        }
    return surface(
        model,
        loss_fn,
        train,
        d,
        x=x,
        y=y,
        test=_subset(split.test, n) if test else None,
        bn=bn,
        store=file,
        run=run,
        name=name,
        replace=replace,
        progress=progress,
        extras=extras,
        points=points,
    )


def _held_directions(s: Any, run: str, name: str, model: Any, asked: Mapping[str, Any]) -> Any:
    """The directions of the surface ``name`` the file holds, if they were made as ``asked``.

    ``asked`` gives the kind, k and, for random directions, seed, normalization and ignore. None
    otherwise.

    A surface that is resumed (after an interruption, or by another worker's block of it) is
    evaluated along the directions it was begun with, read back rather than made again: the
    same numbers even where making them is not reproducible to the last bit (Hessian
    directions on a GPU, another CPU), and no second Lanczos run.
    """
    if not s.has_record(run, "surfaces", name):
        return None
    rec = s.record(run, "surfaces", name)
    info = rec.attrs.get("directions_info") or {}
    if any(info.get(key) != value for key, value in asked.items()):
        return None  # made otherwise: surface() says so
    arrays = {"vectors": rec.arrays["directions"]}
    if info["kind"] == "pca":  # a PCA is centred at the run's final point
        arrays["center"] = s.params(run, "final")
    layout = ParamLayout.of(select(model, None))
    return Directions.from_record(
        (arrays, {**info, "probe": "directions"}), device=layout.device, dtype=layout.dtype
    )


def path_between(
    file: str | os.PathLike,
    run_a: str,
    run_b: str,
    *,
    which_a: str | int = "final",
    which_b: str | int = "final",
    kind: str = "linear",
    n: int = 25,
    recalibrate: bool | None = None,
    steps: int = 1000,
    lr: float = 1e-3,
    seed: int = 0,
    test: bool = True,
    n_examples: int | None = None,
    data: Mapping[str, Any] | None = None,
    device: str | None = None,
    name: str | None = None,
    replace: bool = False,
) -> tuple[Any, str]:
    """The path from one stored model to another, written into the file.

    ``kind`` is one of :data:`PATH_KINDS`; the path is on the first run's data and loss, written
    under the run when both ends belong to it (e.g. init to final), else under ``/compare``. Returns
    ``(result, where)``.

    ``kind="aligned"`` (Ainsworth et al. 2022): the hidden units of the second model are first
    permuted to match the first by weight matching (:func:`probes.paths.interpolation.align`, its
    ``seed`` the coordinate-descent order; the function of the second model is unchanged),
    then the straight line from the first to the permuted second is evaluated as for
    ``"linear"``. The record is a linear :class:`~probes.paths.results.Path` (``kind`` ``"linear"``)
    whose ``info["aligned"]`` holds the alignment (layers, permutations, objective before and
    after, sweeps, converged); its default name is ``aligned_<a>_<which>_<b>_<which>``.

    A path of that name held with other settings (its ``settings`` attr: ends, kind, points,
    data and the kind's options) is refused unless ``replace``; one held with the same settings
    is read back and returned, nothing computed (:meth:`landscape.store.file.Store.same_settings`).
    """
    _check_choice("path", "kind", kind, PATH_KINDS)
    ends = {"from": {"run": run_a, "which": which_a}, "to": {"run": run_b, "which": which_b}}
    same = run_a == run_b
    name = name or (
        f"{kind}_{which_a}_{which_b}" if same else f"{kind}_{run_a}_{which_a}_{run_b}_{which_b}"
    )
    owner, where = (run_a, f"runs/{run_a}/paths/{name}") if same else (None, f"compare/{name}")
    options: dict[str, Any] = {
        "ends": ends,
        "kind": kind,
        "n": n,
        "recalibrate": recalibrate,
        "test": test,
        "n_examples": n_examples,
        "data": dict(data) if data is not None else None,
    }
    if kind == "bezier":
        options.update(steps=steps, lr=lr, seed=seed)
    elif kind == "aligned":
        options["seed"] = seed
    with Store(file) as s:
        if s.same_settings(owner, "paths", name, options, replace=replace):
            return Path.from_record(s.record(owner, "paths", name)), where
    model_a, split, loss_fn = rebuild(file, run_a, which=which_a, data=data, device=device)
    model_b, _, _ = rebuild(file, run_b, which=which_b, data=data, device=device)
    train = _subset(split.train, n_examples)
    held_out = _subset(split.test, n_examples) if test else None
    aligned = None
    if kind == "aligned":
        aligned = interpolation.align(model_a, model_b, seed=seed)
        model_b = aligned.model
    if kind in ("linear", "aligned"):
        result = interpolation.linear(
            model_a, model_b, loss_fn, train, n=n, test=held_out, recalibrate=bool(recalibrate)
        )
    else:
        result = interpolation.bezier(
            model_a,
            model_b,
            loss_fn,
            train,
            n=n,
            test=held_out,
            steps=steps,
            lr=lr,
            seed=seed,
            recalibrate=recalibrate,
        )
    if aligned is not None:
        _, how = aligned.to_record()
        how["perms"] = {k: np.asarray(v).tolist() for k, v in aligned.perms.items()}
        how["layers"] = list(aligned.perms)
        result = dataclasses.replace(result, info={**result.info, "aligned": how})
    arrays, attrs = result.to_record()
    if _dist.rank(_dist.resolve(None)) != 0:  # rank 0 alone writes
        return result, where
    with Store(file, "a", timeout=60) as s:
        s.same_settings(owner, "paths", name, options, replace=replace)
        s.write_record(
            owner, "paths", name, arrays=arrays, attrs={**attrs, "ends": ends, "settings": options}
        )
    return result, where


def init_to_final(
    file: str | os.PathLike,
    run: str,
    data: Mapping[str, Any] | None = None,
    *,
    n: int = 25,
    test: bool = True,
    recalibrate: bool = False,
    mode: str = "eval",
    batch_size: int | None = None,
    device: str | None = None,
    check: bool = True,
) -> Any:
    """The straight line from a stored run's initial to its final parameters.

    Goodfellow et al. 2015, by :func:`probes.paths.interpolation.linear`.

    Model, data and loss are rebuilt from the file (:func:`landscape.train.spec.rebuild`); the
    initial end is a copy of that model with the stored initial parameters and buffers. The
    result is returned, not written (:func:`path_between` with ``which_a="init"`` writes it).

    Args:
        file: the landscape file.
        run: the run.
        data: a ``[data]`` table (e.g. ``{"name": "mnist1d"}``) if the run does not record its
            data; default: the run's.
        n: points on the line.
        test: also evaluate the split's test part.
        recalibrate: recompute BatchNorm statistics at every point (as for
            :func:`probes.paths.interpolation.linear`).
        mode: ``"eval"`` (default) or ``"train"``.
        batch_size: evaluation batch size.
        device: where (default: the run's).
        check: the objective's determinism check.

    Returns:
        :class:`probes.paths.results.Path` of kind ``"init_to_final"``; ``info`` holds file, run
        and data; ``cost.seconds`` includes rebuilding the run.

    Raises:
        TypeError: ``data`` that is not a table.
        ValueError: the run cannot be rebuilt (the message says what to give), or as
            :func:`probes.paths.interpolation.linear`.

    Examples:
        >>> p = init_to_final("cmp.h5", "sgd", n=11)
        >>> p.barrier, p.loss[0], p.loss[-1]
    """
    start = time.perf_counter()
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(
            f"init_to_final: data must be a [data] table such as "
            f"{{'name': 'mnist1d'}}, got {type(data).__name__}; for your own "
            "tensors load the two models and call probes.paths.interpolation.linear"
        )
    final, split, loss_fn = rebuild(file, run, which="final", data=data, device=device)
    init = copy.deepcopy(final)
    load_params(init, file, run, "init")
    path = interpolation.linear(
        init,
        final,
        loss_fn,
        split.train,
        n=n,
        test=split.test if test else None,
        recalibrate=recalibrate,
        mode=mode,
        batch_size=batch_size,
        check=check,
    )
    return dataclasses.replace(
        path,
        kind="init_to_final",
        cost=path.cost.with_seconds(time.perf_counter() - start),
        info={"file": os.fspath(file), "run": run, "data": split.name},
    )
