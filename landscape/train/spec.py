"""A training run described as data (a TOML file or command-line flags), built into objects.

The TOML layout (every table optional; flags of ``landscape train`` override it)::

    run = "sgd"                      # the run's name in the file
    [model]                          # a name of landscape.models.MODELS and its arguments;
    name = "mlp"                     # in_features / in_length / num_classes default to the
    width = 100                      # data's input size and number of classes
    [data]                           # a name of landscape.data.DATASETS and its arguments
    name = "mnist1d"
    standardize = true               # per-feature, training-set statistics (default; not ints)
    label_noise = 0.0                # fraction of training labels replaced at random
    label_noise_seed = 0
    n_train = 1000                   # optional subset sizes
    [optimizer]                      # a name of landscape.train.optim.OPTIMIZERS and its settings
    name = "sgd"
    lr = 0.1
    [train]                          # TrainConfig fields, plus loss, device and dtype
    epochs = 50
    batch_size = 128
    seed = 0
    loss = "cross_entropy"
    device = "cpu"
    dtype = "float32"

What each table may hold is the models' of :mod:`landscape.train.schema`: :func:`merge` (and so
:func:`load`) checks the structure, :func:`build` a complete run (names, options, a budget);
errors are one line that names the key, e.g. ``run spec: train.epoch: unknown key; allowed:
epochs, max_steps, ...``.

Examples:
    >>> spec = load("run.toml")                                        # doctest: +SKIP
    >>> result = execute(merge(spec, {"train": {"epochs": 5}}), "cmp.h5")
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from landscape import data, models
from landscape.engine import losses
from landscape.store.file import Store
from landscape.train import pretrained
from landscape.train.checkpoints import build_model, load_params
from landscape.train.config import TrainConfig
from landscape.train.fit import fit
from landscape.train.schema import DATA_OPTIONS, DTYPES, TRAIN_EXTRA, check

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "SECTIONS",
    "build",
    "execute",
    "load",
    "merge",
    "parse_value",
    "read_toml",
    "rebuild",
    "reuse_rebuilds",
    "stored_params",
]

SECTIONS = ("model", "data", "optimizer", "train")


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The tables of a TOML file.

    Raises:
        FileNotFoundError, ValueError: one clear line for a missing or invalid ``what`` (e.g.
            ``"config file"``, ``"sweep spec"``).
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{what} {os.fspath(path)} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{what} {os.fspath(path)} is not valid TOML: TOML is UTF-8 text, got byte "
            f"{err.object[err.start : err.start + 1]!r} at offset {err.start} that is not UTF-8"
        ) from None
    except IsADirectoryError:
        raise ValueError(f"{what} {os.fspath(path)} is a directory, not a TOML file") from None


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run spec from a TOML file (tables as above; unknown tables are an error)."""
    return merge({}, read_toml(path, "config file"))


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the tables of ``overrides`` merged in (key by key), its structure checked.

    The check is :func:`landscape.train.schema.check`'s: known tables and keys, types and
    bounds.

    Raises:
        ValueError, TypeError: one line naming the key, e.g. ``run spec: train.epoch: unknown
            key; allowed: epochs, ...``.
    """
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    check(out)
    return out


def parse_value(text: str) -> Any:
    """A flag value as TOML would read it (``0.1``, ``true``, ``[1, 2]``, ``"x"``), else as is."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _model_kwargs(name: str, kwargs: dict[str, Any], split: Any) -> dict[str, Any]:
    if name not in models.MODELS:
        raise ValueError(
            f"run spec: unknown model {name!r}; known models: {', '.join(models.MODELS)}"
        )
    accepted = inspect.signature(models.MODELS[name]).parameters
    shape = list(split.x_train.shape[1:])
    guesses = {
        "in_features": math.prod(shape),
        "num_classes": split.num_classes,
        "in_length": shape[-1] if shape else 1,
        # token datasets (modular_addition) name the model's vocabulary and context
        "vocab_size": split.info.get("vocab_size"),
        "context_length": split.info.get("context_length"),
    }
    guesses = {k: v for k, v in guesses.items() if v is not None}
    return {**{k: v for k, v in guesses.items() if k in accepted}, **kwargs}


def _load_data(table: Mapping[str, Any]) -> Any:
    """The :class:`~landscape.data.Split` of a ``[data]`` table."""
    d = dict(table)
    if "name" not in d:
        raise ValueError(
            "run spec: [data] needs a name (e.g. name = 'mnist1d'); known: "
            f"{', '.join(data.DATASETS)}"
        )
    options = {k: d.pop(k) for k in DATA_OPTIONS if k in d}
    split = data.load(options["name"], **d)
    if options.get("n_train") or options.get("n_test"):
        split = data.subset(
            split,
            options.get("n_train"),
            options.get("n_test"),
            seed=options.get("label_noise_seed", 0),
        )
    if options.get("standardize", True) and split.x_train.is_floating_point():
        split = data.standardize(split)
    if options.get("label_noise"):
        split = data.corrupt(split, options["label_noise"], seed=options.get("label_noise_seed", 0))
    return split


def build(spec: Mapping[str, Any]) -> tuple[Any, Any, str, Any, dict[str, Any], Any]:
    """Objects for a run spec: ``(model, split, loss, config, attrs, device)``.

    Raises:
        ValueError, TypeError: the spec is not that of a complete run
            (:func:`landscape.train.schema.check` with ``complete=True``), or names a device or
            dtype that this torch cannot give.
    """
    spec = merge({}, spec)
    check(spec, complete=True)
    split = _load_data(spec.get("data", {}))
    m = dict(spec.get("model", {}))
    if "name" not in m:
        raise ValueError(
            f"run spec: [model] needs a name (e.g. name = 'mlp'); known: {', '.join(models.MODELS)}"
        )
    name = m.pop("name")
    t = dict(spec.get("train", {}))
    extra = {k: t.pop(k) for k in TRAIN_EXTRA if k in t}
    config = TrainConfig(spec.get("optimizer", {"name": "sgd"}), **t)
    model = models.build(name, _model_kwargs(name, m, split), seed=config.seed)
    dtype_name = extra.get("dtype", "float32")
    if dtype_name not in DTYPES:
        raise ValueError(
            f"run spec: [train] dtype must be one of {', '.join(DTYPES)}, got {dtype_name!r}"
        )
    dtype = getattr(torch, dtype_name)
    try:
        device = torch.device(extra.get("device", "cpu"))
    except RuntimeError as err:
        raise ValueError(f"run spec: bad device {extra.get('device')!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"run spec: device {str(device)!r} asked for, but this torch has no "
            "usable CUDA (torch.cuda.is_available() is False)"
        )
    model = model.to(device=device, dtype=dtype)
    attrs = {
        "model": getattr(model, "spec", {"name": name}),
        "model_seed": config.seed,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "spec": spec,
    }
    return model, split, extra.get("loss", "cross_entropy"), config, attrs, device


def execute(
    spec: Mapping[str, Any],
    file: str | os.PathLike,
    *,
    run: str | None = None,
    replace: bool = False,
    progress: bool = False,
) -> Any:
    """Build the run described by ``spec`` and train it into ``file``.

    Returns:
        The :class:`~landscape.train.TrainResult`.
    """
    name = run if run is not None else spec.get("run")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"run spec: the run name (--run) must be a non-empty string, got {name!r}")
    model, split, loss, config, attrs, _ = build(spec)
    return fit(
        model,
        loss,
        split,
        config,
        store=os.fspath(file),
        run=name or config.optimizer.name,
        replace_run=replace,
        attrs=attrs,
        progress=progress,
    )


_REUSED: dict[str, Any] | None = None  # rebuilds kept while reuse_rebuilds() is active


@contextlib.contextmanager
def reuse_rebuilds() -> Iterator[None]:
    """Within the block, :func:`rebuild` of the same arguments returns what it built first.

    The same run, checkpoint, data and device give the objects built the first time (the probes
    never write into a model), instead of reading the file and generating the data again: for a
    sweep's job, whose probes, surfaces and paths each rebuild the run. Only for a block in
    which the run's stored parameters do not change.
    """
    global _REUSED
    outer, _REUSED = _REUSED, {} if _REUSED is None else _REUSED
    try:
        yield
    finally:
        _REUSED = outer


def rebuild(
    file: str | os.PathLike,
    run: str,
    *,
    which: str | int = "final",
    data: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> tuple[Any, Any, Any]:
    """The model of a stored run at ``which``, its data and its loss: ``(model, split, loss_fn)``.

    ``which``: ``"init"``, ``"final"`` or a trajectory step.

    The model is rebuilt from the run's recorded spec (a run trained with ``landscape train``
    or :func:`execute`, a model of ``landscape.models`` recorded as ``attrs["model"]``, an
    imported run's factory, or an imported Hugging Face model's config, probed with
    :func:`landscape.train.pretrained.cross_entropy`), then its stored parameters and buffers
    are loaded. The data come from the run's recorded spec, or from ``data`` (a ``[data]``
    table: name and options), which wins.

    Raises:
        ValueError: the run does not record how to rebuild its model or data (the message says
            what to give).
    """
    key = json.dumps([os.path.abspath(file), run, which, data, device], sort_keys=True, default=str)
    if _REUSED is not None and key in _REUSED:
        return _REUSED[key]
    built = _rebuild(file, run, which=which, data=data, device=device)
    if _REUSED is not None:
        _REUSED[key] = built
    return built


def stored_params(file: str | os.PathLike, run: str, model: Any, which: str | int = "init") -> Any:
    """A stored run's flat parameter vector at ``which`` (default its initialisation).

    A tensor on ``model``'s device and dtype (e.g. the ``init=`` of the implicit-bias measures).
    """
    with Store(file) as s:
        flat = s.params(run, which)
    first = next(model.parameters())
    return torch.as_tensor(np.asarray(flat), dtype=first.dtype, device=first.device)


def _rebuild(
    file: str | os.PathLike, run: str, *, which: str | int, data: Any, device: str | None
) -> tuple[Any, Any, Any]:
    with Store(file) as s:
        attrs = s.info(run).attrs
    spec = attrs.get("spec") or {}
    model_spec = attrs.get("model") or {}
    loss_fn = losses.get(attrs.get("loss", "cross_entropy"))
    if isinstance(model_spec, dict) and "factory" in model_spec:
        model = build_model(model_spec["factory"], model_spec.get("kwargs"))
    elif isinstance(model_spec, dict) and "hf_config" in model_spec:
        model = pretrained.build_pretrained(model_spec)
        if attrs.get("loss", "cross_entropy") == "cross_entropy":
            loss_fn = pretrained.cross_entropy  # logits of a ModelOutput, every position
    elif isinstance(model_spec, dict) and model_spec.get("name") in models.MODELS:
        model = models.build(model_spec["name"], model_spec.get("kwargs"))
    else:
        raise ValueError(
            f"run {run!r} does not record a model that can be rebuilt (expected "
            "attrs['model'] with a landscape.models name, an import factory or a Hugging "
            "Face config); "
            "load the model yourself and call the probe from Python"
        )
    data_table = dict(data) if data else dict(spec.get("data") or {})
    if not data_table.get("name"):
        raise ValueError(f"run {run!r} does not record its data; give them (e.g. --data mnist1d)")
    split = _load_data(data_table)
    dtype = getattr(torch, str(attrs.get("dtype", "float32")), torch.float32)
    model = model.to(device=torch.device(device or attrs.get("device", "cpu")), dtype=dtype)
    load_params(model, file, run, which)
    return model, split, loss_fn
