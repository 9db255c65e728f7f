"""Bring models trained elsewhere into a landscape file, so that every probe and plot works.

A run is imported from ``state_dict`` files (``torch.save(model.state_dict(), path)``, read
back with ``torch.load(..., weights_only=True)``, or ``.safetensors`` files: no code in a
checkpoint is ever run) and a model built by the user's own code, named by an import path
``package.module:factory``. Hugging Face ``save_pretrained`` folders are read by
:mod:`landscape.train.pretrained`.

Examples:
    >>> model = build_model("mypkg.nets:resnet20", {"num_classes": 10})     # doctest: +SKIP
    >>> import_run("cmp.h5", "sgd", model, final="sgd.pt", init="init.pt",
    ...            checkpoints={1000: "sgd_1000.pt"})
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

try:  # optional: weights in safetensors files (what transformers' save_pretrained writes)
    import safetensors
    import safetensors.torch
except ImportError:  # pragma: no cover - without safetensors, .safetensors files are refused
    safetensors = None  # type: ignore[assignment]

from landscape.engine.params import ParamLayout, select
from landscape.engine.params import to_numpy as _np
from landscape.store.file import Store

__all__ = ["build_model", "import_run", "load_params", "load_state_dict", "resolve_factory"]

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "weights")


def resolve_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by ``"package.module:factory"``.

    The current directory is searched first, as ``python -m`` does.

    Args:
        path: ``"package.module:factory"``.

    Returns:
        The factory.
    """
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ValueError(f"model factory must look like 'package.module:factory', got {path!r}")
    module_name, attr = path.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"cannot import {module_name!r} for the model factory {path!r}: {err}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no {attr!r} (model factory {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"model factory {path!r} is a {type(obj).__name__}, not callable")
    return obj


def build_model(path: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory at ``path`` with ``kwargs``; it must return an ``nn.Module``."""
    model = resolve_factory(path)(**dict(kwargs or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model factory {path!r} returned a {type(model).__name__}, expected a torch.nn.Module"
        )
    return model


def _load_error(err: BaseException) -> str:
    """What ``torch.load`` found wrong, without its advice to load with weights_only=False."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0]
        return f"{type(err).__name__}: {' '.join(detail.split())}"
    first = text.splitlines()[0] if text else ""
    if "weights_only" in first:  # torch's advice only
        first = ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A ``state_dict`` from a file (``torch.save`` or ``.safetensors``) or a mapping.

    ``torch.save`` files are loaded with ``weights_only=True``; ``.safetensors`` files hold
    tensors only.

    A checkpoint that wraps it under ``state_dict``, ``model_state_dict``, ``model``, ``net``
    or ``weights`` (as many training scripts save them) is unwrapped.

    Args:
        source: a path of a ``torch.save`` file, or a mapping.

    Returns:
        ``{name: tensor}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file ``torch.load`` refuses, or no tensors at the top level nor under
            one of the wrapper keys.
        TypeError: the checkpoint holds something other than a mapping.
    """
    where = "the mapping"
    if isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        if not os.path.exists(where):
            raise FileNotFoundError(f"checkpoint {where} does not exist")
        if where.endswith(".safetensors"):
            return _safetensors(where)
        try:
            source = torch.load(where, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types here
            raise ValueError(
                f"checkpoint {where} is not a torch.save file that loads with "
                f"weights_only=True (a state_dict of tensors; code in checkpoints is never "
                f"run): {_load_error(err)}"
            ) from None
    if not isinstance(source, Mapping):
        raise TypeError(
            f"checkpoint {where} holds a {type(source).__name__}, expected a "
            "state_dict (a mapping of names to tensors)"
        )
    if not any(isinstance(v, torch.Tensor) for v in source.values()):
        for key in _WRAPPERS:
            if isinstance(source.get(key), Mapping):
                return load_state_dict(source[key])
        raise ValueError(
            f"checkpoint {where} has no tensors at its top level and none under "
            f"{', '.join(_WRAPPERS)}; its keys: {', '.join(map(str, source))}"
        )
    return dict(source)


def _safetensors(where: str) -> dict[str, torch.Tensor]:
    if safetensors is None:  # pragma: no cover
        raise ValueError(f"checkpoint {where}: reading .safetensors needs the safetensors package")
    try:
        return dict(safetensors.torch.load_file(where, device="cpu"))
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint {where} is not a safetensors file: {' '.join(str(err).split())}"
        ) from None


def _state(model: nn.Module, source: Any, what: str) -> tuple[Any, dict]:
    """Flat trainable parameters and buffers after loading ``source`` into a copy of model."""
    m = copy.deepcopy(model)
    sd = load_state_dict(source)
    try:
        m.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        text = " ".join(str(err).split())
        raise ValueError(f"the {what} checkpoint does not fit the model: {text[:400]}") from None
    params = select(m)
    theta = ParamLayout.of(params).flatten(params).detach()
    buffers = {n: b.detach() for n, b in m.named_buffers()}
    return theta, buffers


def import_run(
    store: str | os.PathLike,
    run: str,
    model: nn.Module,
    *,
    final: Any,
    init: Any = None,
    checkpoints: Mapping[int, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> None:
    """Write a run built from checkpoints into ``store``, marked complete.

    Args:
        store: the landscape file (created if missing).
        run: the run's name.
        model: the architecture (not modified: checkpoints are loaded into copies).
        final: the final state_dict (path or mapping).
        init: the initial one (default: the model's parameters as given).
        checkpoints: step -> state_dict, stored as the trajectory (steps in increasing order).
        attrs: extra JSON-ready attributes (e.g. the optimizer and data it was trained with).
        replace: replace an existing complete run of that name.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"import_run: model must be a torch.nn.Module, got {type(model).__name__}")
    params = select(model)
    layout = ParamLayout.of(params)
    if init is None:
        theta0, buffers0 = (
            layout.flatten(params).detach(),
            {n: b.detach() for n, b in model.named_buffers()},
        )
    else:
        theta0, buffers0 = _state(model, init, "init")
    theta1, buffers1 = _state(model, final, "final")
    steps = sorted((checkpoints or {}).items())
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k, _ in steps):
        raise ValueError(
            f"import_run: checkpoint steps must be ints >= 0, got {[k for k, _ in steps]}"
        )
    rows = [_np(_state(model, src, f"step {k}")[0]) for k, src in steps]
    info = {
        "source": "imported",
        "init_source": "model as built"
        if init is None
        else (os.fspath(init) if isinstance(init, (str, os.PathLike)) else "state_dict"),
        "final_source": os.fspath(final) if isinstance(final, (str, os.PathLike)) else "state_dict",
        **dict(attrs or {}),
    }
    with Store(store, "a", timeout=60) as s:
        s.create_run(
            run,
            names=layout.names,
            shapes=layout.shapes,
            init=_np(theta0),
            attrs=info,
            replace=replace,
        )
        if buffers0:
            s.set_buffers(run, "init", {k: _np(v) for k, v in buffers0.items()})
        if rows:
            s.append_trajectory(run, [k for k, _ in steps], np.stack(rows))
        if buffers1:
            s.set_buffers(run, "final", {k: _np(v) for k, v in buffers1.items()})
        s.set_final(run, _np(theta1), status="complete")


def load_params(model: Any, file: str | os.PathLike, run: str, which: str | int = "final") -> None:
    """Copy a stored parameter vector of ``run`` into ``model`` (in place, exactly).

    Args:
        model: an ``nn.Module`` with the parameters the run was stored with (same names and
            shapes; the values are cast to each parameter's dtype and device).
        file: the landscape file.
        run: the run's name.
        which: ``"init"``, ``"final"`` or a trajectory step (int). For ``"init"`` and
            ``"final"`` the stored buffers (BatchNorm statistics) are restored too; snapshots
            along the trajectory hold parameters only (recompute BatchNorm statistics there).

    Raises:
        ValueError: the model's parameters do not match the stored layout (the message lists
            the differences).
    """
    with Store(file) as s:
        names, shapes = s.layout(run)
        theta = s.params(run, which)
        buffers = s.buffers(run, which) if isinstance(which, str) else {}
    params = select(model)
    have = {n: tuple(p.shape) for n, p in params.items()}
    want = dict(zip(names, shapes, strict=True))
    if have != want:
        missing = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        differ = [
            f"{n} {tuple(have[n])} != {want[n]}" for n in want if n in have and have[n] != want[n]
        ]
        raise ValueError(
            f"load_params: the model's parameters differ from run {run!r}: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}, "
            f"shapes {differ or 'ok'}"
        )
    offset = 0
    with torch.no_grad():
        for name, shape in zip(names, shapes, strict=True):
            n = int(np.prod(shape))
            p = params[name]
            p.copy_(
                torch.from_numpy(np.ascontiguousarray(theta[offset : offset + n]))
                .reshape(shape)
                .to(p.dtype)
            )
            offset += n
        own = dict(model.named_buffers())
        for name, value in buffers.items():
            if name in own and tuple(own[name].shape) == value.shape:
                own[name].copy_(torch.from_numpy(np.array(value)).reshape(own[name].shape))
