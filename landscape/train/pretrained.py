"""Hugging Face checkpoints (``save_pretrained`` folders) brought in as runs of a landscape file.

A folder as ``model.save_pretrained(path)`` writes it (``config.json`` and
``model.safetensors``, or shards listed in ``model.safetensors.index.json``) is read without
running code: the model is built from the config (its ``architectures`` field names the
``transformers`` class, e.g. ``GPT2LMHeadModel``, ``ResNetForImageClassification``), the weights
are read from safetensors (never from pickles), and the run is stored with the config, so that
:func:`landscape.train.spec.rebuild` (and so ``landscape probe``, ``surface``, ``path``)
rebuilds the model without the folder. Weights that ``save_pretrained`` leaves out because
they are tied to others (a language model's output layer) are taken from the ones they are
tied to.

Such a model returns a ``ModelOutput``; :func:`cross_entropy` is the loss its stored runs are
probed with: cross-entropy of its logits, over every position of a sequence model (targets
``-100`` ignored, as :func:`landscape.data.from_hf` makes them with ``y="next_token"``).

Examples:
    >>> model, weights, spec = load_pretrained("gpt2-run/")              # doctest: +SKIP
    >>> import_pretrained("runs.h5", "gpt2", "gpt2-run/", init="gpt2-init/")
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from landscape.data.hf import IGNORE_INDEX
from landscape.engine.metrics import logits_of
from landscape.train.checkpoints import import_run, load_state_dict

__all__ = [
    "build_pretrained",
    "cross_entropy",
    "import_pretrained",
    "import_transformers",
    "load_pretrained",
]


def import_transformers() -> Any:
    """The ``transformers`` package; a torchvision that does not import beside this torch is hidden.

    transformers uses torchvision only where it is there (image processors); one built for
    another torch raises at import, which would fail every model class, so it is marked absent.
    """
    if "transformers" not in sys.modules and "torchvision" not in sys.modules:
        try:
            importlib.import_module("torchvision")
        except ImportError:
            pass
        except RuntimeError:  # built for another torch: transformers works without it
            sys.modules["torchvision"] = None  # type: ignore[assignment]
    try:
        # transformers takes seconds to import: only when a pretrained model is read
        return importlib.import_module("transformers")
    except ImportError:
        raise ImportError(
            "reading a Hugging Face checkpoint needs the transformers package "
            "(pip install transformers)"
        ) from None


def _architecture(transformers: Any, name: Any, where: str) -> Any:
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if cls is None or not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(
            f"{where}: unknown architecture {name!r}: not a model class of transformers "
            f"{transformers.__version__} (expected e.g. GPT2LMHeadModel, "
            "ResNetForImageClassification)"
        )
    return cls


def build_pretrained(spec: Mapping[str, Any]) -> nn.Module:
    """The model a stored run's ``attrs["model"]`` describes (weights as initialised).

    Args:
        spec: ``{"architecture": <transformers class name>, "hf_config": <config as a dict>}``
            (and its ``name``, the same class name), as :func:`import_pretrained` stores it.

    Returns:
        The model, in eval mode.
    """
    transformers = import_transformers()
    cls = _architecture(transformers, spec.get("architecture"), "stored run")
    config = cls.config_class.from_dict(dict(spec["hf_config"]))
    return cls(config).eval()


def _weights(directory: Path) -> dict[str, Tensor]:
    index = directory / "model.safetensors.index.json"
    if (directory / "model.safetensors").is_file():
        return load_state_dict(directory / "model.safetensors")
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{index} is not a safetensors index ({err})") from None
        out: dict[str, Tensor] = {}
        for shard in shards:
            out.update(load_state_dict(directory / shard))
        return out
    found = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
    raise ValueError(
        f"{directory} has no model.safetensors (nor a safetensors index): expected the weights "
        f"as save_pretrained writes them (pickled .bin weights are not read); found {found}"
    )


def _complete(model: nn.Module, weights: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """``weights`` with the entries ``save_pretrained`` leaves out because they are tied."""
    own = model.state_dict()
    out = dict(weights)
    unexpected = sorted(k for k in weights if k not in own)
    missing = [k for k in own if k not in weights]
    for key in list(missing):
        ptr = own[key].data_ptr()
        twin = next((k for k in weights if k in own and own[k].data_ptr() == ptr), None)
        if twin is not None:
            out[key] = weights[twin]
            missing.remove(key)
    if missing or unexpected:
        raise ValueError(
            f"{where}: the weights do not fit the model the config describes: missing "
            f"{missing[:5] or 'none'}{' ...' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5] or 'none'}{' ...' if len(unexpected) > 5 else ''}"
        )
    return out


def load_pretrained(
    directory: str | os.PathLike, architecture: str | None = None
) -> tuple[nn.Module, dict[str, Tensor], dict[str, Any]]:
    """A ``save_pretrained`` folder read without running code: model, weights, stored spec.

    Args:
        directory: the folder (``config.json`` and safetensors weights).
        architecture: the ``transformers`` class (default: the config's ``architectures[0]``).

    Returns:
        ``(model, weights, spec)``: the model built from the config (weights as initialised),
        its ``state_dict`` from the folder (tied entries filled in), and the
        ``attrs["model"]`` that rebuilds it (:func:`build_pretrained`).

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
        ValueError: no ``config.json``, no safetensors weights, an unknown architecture, or
            weights that do not fit the model.
    """
    where = Path(os.path.expanduser(os.fspath(directory)))
    if not where.is_dir():
        raise FileNotFoundError(f"{where} is not a directory (a save_pretrained folder)")
    config_path = where / "config.json"
    if not config_path.is_file():
        raise ValueError(
            f"{where} has no config.json: expected a folder as save_pretrained writes it"
        )
    try:
        config_dict = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not JSON: {err}") from None
    if not isinstance(config_dict, dict):
        raise ValueError(f"{config_path} holds a {type(config_dict).__name__}, not an object")
    if architecture is None:
        names = config_dict.get("architectures")
        if not (isinstance(names, list) and names):
            raise ValueError(
                f"{config_path} names no architectures: give the transformers class "
                "(e.g. --architecture GPT2LMHeadModel)"
            )
        architecture = names[0]
    transformers = import_transformers()
    cls = _architecture(transformers, architecture, str(config_path))
    weights = _weights(where)
    try:
        config = cls.config_class.from_pretrained(os.fspath(where), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{config_path} is not a {cls.config_class.__name__}: {err}") from None
    model = cls(config).eval()
    weights = _complete(model, weights, os.fspath(where))
    spec = {
        "name": architecture,  # what `landscape info` shows
        "architecture": architecture,
        "hf_config": json.loads(config.to_json_string(use_diff=False)),
    }
    return model, weights, spec


def import_pretrained(
    store: str | os.PathLike,
    run: str,
    directory: str | os.PathLike,
    *,
    init: str | os.PathLike | None = None,
    checkpoints: Mapping[int, str | os.PathLike] | None = None,
    architecture: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    """Store a ``save_pretrained`` folder as a complete run of ``store``.

    Args:
        store: the landscape file (created if missing).
        run: the run's name.
        directory: the final model's folder.
        init: the initial model's folder (default: the weights as the config initialises them).
        checkpoints: step -> folder, stored as the trajectory.
        architecture: the ``transformers`` class (default: the config's).
        attrs: extra JSON-ready attributes (e.g. the data it was trained on, as
            ``{"spec": {"data": {...}}}``).
        replace: replace an existing complete run of that name.

    Returns:
        The stored ``attrs["model"]``.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_pretrained`, for any folder given.
    """
    model, final, spec = load_pretrained(directory, architecture)
    start = None if init is None else load_pretrained(init, spec["architecture"])[1]
    steps = {k: load_pretrained(v, spec["architecture"])[1] for k, v in (checkpoints or {}).items()}
    info = {
        "model": spec,
        "loss": "cross_entropy",
        "pretrained_from": os.fspath(directory),
        **dict(attrs or {}),
    }
    import_run(
        store, run, model, final=final, init=start, checkpoints=steps, attrs=info, replace=replace
    )
    return spec


def cross_entropy(outputs: Any, targets: Tensor) -> Tensor:
    """Cross-entropy of a model's logits (a tensor or a ``ModelOutput``'s), the mean per target.

    Logits ``(N, ..., V)`` against targets ``(N, ...)``: every position counts (a sequence
    model's tokens), targets ``-100`` are ignored.

    Raises:
        TypeError: the outputs hold no logits.
    """
    logits = logits_of(outputs)
    if logits is None:
        raise TypeError(f"cross_entropy: the outputs hold no logits, got {type(outputs).__name__}")
    if logits.ndim > 2:
        logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return F.cross_entropy(logits, targets.long(), ignore_index=IGNORE_INDEX)
