"""Optimizer registry and specs: how a run is trained, as JSON-ready specs.

An :class:`OptimizerSpec` names an optimizer of ``OPTIMIZERS`` with every hyperparameter filled
in (its schedule one of ``SCHEDULES``); :func:`make_optimizer` builds the
``torch.optim.Optimizer`` and :func:`landscape.train.schedules.make_scheduler` the ``LambdaLR``
that applies the schedule. The training loop calls ``optimizer.step(closure)`` for every
optimizer, where ``closure()`` zeroes the gradients, computes the minibatch loss, calls
``backward`` and returns the loss: torch's optimizers call it once, :class:`SAM` twice. The loop
steps the scheduler once per optimizer step. ``spec.full_batch`` asks the loop for one batch
holding the whole training set; ``spec.label_noise`` for :func:`noisy_labels` each step.
:class:`SAM` (:mod:`~landscape.train.sam`) and :class:`SignDescent`
(:mod:`~landscape.train.sign_descent`) are re-exported here.

Examples:
    >>> spec = optimizer_spec("sgd", lr=0.05, momentum=0.9, schedule="cosine", warmup=10)
    >>> optimizer = make_optimizer(spec, model.parameters())
    >>> scheduler = schedules.make_scheduler(spec, optimizer, total_steps=1000)
    >>> optimizer_spec(spec.to_dict()) == spec   # the dict is JSON-serialisable
    True

References: Polyak 1964 (heavy ball); Nesterov 1983; Kingma and Ba 2015 (Adam); Loshchilov and
Hutter 2019 (AdamW, SGDR); Goyal et al. 2017 (linear warm-up); Foret et al. 2021 (SAM); Kwon et
al. 2021 (ASAM); Blanc et al. 2020, HaoChen et al. 2021, Damian et al. 2021 (label noise SGD);
Gunasekar et al. 2018, Bernstein et al. 2018 (sign descent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from landscape.train.hyper import _CHECKS, _fail, _int, _real
from landscape.train.sam import SAM
from landscape.train.sign_descent import SignDescent

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerInfo",
    "ScheduleInfo",
    "OptimizerSpec",
    "SAM",
    "SignDescent",
    "optimizer_spec",
    "make_optimizer",
    "noisy_labels",
]


@dataclass(frozen=True)
class OptimizerInfo:
    """A registered optimizer: what it is and its hyperparameters with their defaults.

    Every optimizer also accepts ``schedule`` (default ``"constant"``) and ``warmup`` (0).
    """

    summary: str
    defaults: Mapping[str, Any]
    full_batch: bool = False


@dataclass(frozen=True)
class ScheduleInfo:
    """A learning-rate schedule: what it is, its required parameters and its defaults."""

    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()


_SGD = {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
OPTIMIZERS: dict[str, OptimizerInfo] = {
    "gd": OptimizerInfo("full-batch gradient descent (heavy-ball momentum optional)", _SGD, True),
    "sgd": OptimizerInfo("minibatch SGD, as torch.optim.SGD", {**_SGD, "dampening": 0.0}),
    "momentum": OptimizerInfo(
        "SGD with Polyak (heavy-ball) momentum", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    ),
    "nesterov": OptimizerInfo(
        "SGD with Nesterov momentum", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    ),
    "adam": OptimizerInfo(
        "Adam, L2 penalty coupled (torch.optim.Adam)",
        {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    ),
    "adamw": OptimizerInfo(
        "AdamW, weight decay decoupled (torch.optim.AdamW)",
        {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False},
    ),
    "sam": OptimizerInfo(
        "sharpness-aware minimisation around a base optimizer (ASAM: adaptive)",
        {"base": "sgd", "rho": 0.05, "adaptive": False, "eta": 0.01},
    ),
    "label_noise_sgd": OptimizerInfo(
        "SGD on minibatch labels flipped with probability noise",
        {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "noise": 0.1},
    ),
    "sign_descent": OptimizerInfo(
        "full-batch sign descent, w -= lr * sign(grad) (steepest descent in linf)",
        {"lr": 0.01},
        True,
    ),
}
"""The optimizers by name: a description, the default hyperparameters, full batch or not."""
SCHEDULES: dict[str, ScheduleInfo] = {
    "constant": ScheduleInfo("factor 1"),
    "step": ScheduleInfo("gamma ** (s // step_size)", {"gamma": 0.1}, ("step_size",)),
    "cosine": ScheduleInfo("cosine from 1 to min_factor over the steps", {"min_factor": 0.0}),
    "multistep": ScheduleInfo(
        "gamma ** (number of milestones <= s)", {"gamma": 0.1}, ("milestones",)
    ),
}
"""The learning-rate schedules by name: the factor, its defaults and required options."""


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _split(owner: str, what: str, value: Any) -> tuple[Any, dict[str, Any]]:
    """A name or a mapping with a 'name' key -> (name, other entries)."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and "name" in value:
        rest = dict(value)
        return rest.pop("name"), rest
    _fail(owner, what, f"a {what} name or a mapping with a 'name' key", value, TypeError)


def _schedule(owner: str, value: Any) -> dict[str, Any]:
    name, params = _split(owner, "schedule", value)
    key = _key(name) if isinstance(name, str) else None
    if key not in SCHEDULES:
        raise ValueError(
            f"{owner}: unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}"
        )
    info, where = SCHEDULES[key], f"{owner}: schedule {key!r}"
    accepted = [*info.required, *info.defaults]
    if bad := [k for k in params if k not in accepted]:
        raise TypeError(
            f"{where}: unexpected parameter {bad[0]!r}; accepted: {', '.join(accepted) or 'none'}"
        )
    if missing := [k for k in info.required if k not in params]:
        raise TypeError(f"{where}: missing parameter {missing[0]!r}")
    params = {**info.defaults, **params}
    return {"name": key, **{k: _CHECKS[k](where, k, params[k]) for k in accepted}}


def _validate(
    name: Any, hyper: Mapping[str, Any], parent: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Canonical name and every hyperparameter checked, defaults filled in."""
    fn = "optimizer_spec" if parent is None else f"{parent}: base"
    if not isinstance(name, str):
        raise TypeError(f"{fn}: the optimizer name must be a str, got {name!r}")
    key = _key(name)
    if key not in OPTIMIZERS:
        raise ValueError(
            f"{fn}: unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}"
        )
    if parent is not None and key == "sam":
        raise ValueError(f"{fn} must be an optimizer other than 'sam', got {name!r}")
    owner = f"optimizer {key!r}" if parent is None else f"{parent}: base {key!r}"
    accepted = [*OPTIMIZERS[key].defaults, "schedule", "warmup"]
    if bad := [k for k in hyper if k not in accepted]:
        raise TypeError(
            f"{owner}: unexpected hyperparameter {bad[0]!r}; accepted: {', '.join(accepted)}"
        )
    merged = {**OPTIMIZERS[key].defaults, "schedule": "constant", "warmup": 0, **hyper}
    out: dict[str, Any] = {}
    for k, v in merged.items():
        if k == "base":
            out[k] = _base(owner, v)
        elif k == "schedule":
            out[k] = _schedule(owner, v)
        else:
            out[k] = _CHECKS[k](owner, k, v)
    if out.get("nesterov", key == "nesterov") and (out["momentum"] == 0 or out.get("dampening")):
        raise ValueError(
            f"{owner}: nesterov needs momentum > 0 and dampening 0, got "
            f"momentum={merged['momentum']!r}, dampening={out.get('dampening', 0)!r}"
        )
    return key, out


def _base(owner: str, value: Any) -> dict[str, Any]:
    if isinstance(value, OptimizerSpec):
        name, hyper = value.name, dict(value.hyper)
    else:
        name, hyper = _split(owner, "base", value)
    key, hyper = _validate(name, hyper, parent=owner)
    schedule, warmup = hyper.pop("schedule"), hyper.pop("warmup")
    if schedule != {"name": "constant"} or warmup != 0:
        raise ValueError(
            f"{owner}: base schedule and warmup must be left out (give them to "
            f"'sam'; they apply to the base's lr), got schedule={schedule!r}, "
            f"warmup={warmup!r}"
        )
    return {"name": key, **hyper}


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer of ``OPTIMIZERS`` with every hyperparameter, JSON-ready.

    Build it with :func:`optimizer_spec`. Constructing one validates it: the name is made
    canonical (lower case, '-' -> '_') and ``hyper`` gets every default filled in (``schedule``
    as a dict; for ``sam``, ``base`` as the base's dict, without schedule and warmup, which
    belong to the sam spec).
    """

    name: str
    hyper: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.hyper, Mapping):
            _fail("OptimizerSpec", "hyper", "a mapping", self.hyper, TypeError)
        name, hyper = _validate(self.name, self.hyper)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "hyper", hyper)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        """``{"name": name, **hyper}`` (a copy); ``optimizer_spec(spec.to_dict()) == spec``."""
        return json.loads(json.dumps({"name": self.name, **self.hyper}))

    @property
    def full_batch(self) -> bool:
        """True for ``gd`` and ``sam`` around ``gd``: one batch holds the whole training set."""
        name = self.hyper["base"]["name"] if self.name == "sam" else self.name
        return OPTIMIZERS[name].full_batch

    @property
    def label_noise(self) -> float:
        """Probability of a label flip per example (``noise`` of label_noise_sgd, else 0.0)."""
        return (self.hyper["base"] if self.name == "sam" else self.hyper).get("noise", 0.0)

    @property
    def lr(self) -> float:
        """The peak learning rate (the base's lr for sam)."""
        return self.hyper["base"]["lr"] if self.name == "sam" else self.hyper["lr"]


def optimizer_spec(name: str | Mapping[str, Any] | OptimizerSpec, **hyper: Any) -> OptimizerSpec:
    """An :class:`OptimizerSpec`, validated up front, every default filled in.

    Args:
        name: a key of ``OPTIMIZERS`` (case-insensitive, '-' and '_' alike), a mapping with a
            ``"name"`` key and hyperparameters (as read from TOML or JSON, or ``spec.to_dict()``),
            or an ``OptimizerSpec`` (returned as is without ``hyper``).
        **hyper: hyperparameters; they override those of a mapping or spec. ``schedule``: a name
            or mapping of ``SCHEDULES`` (``{"name": "step", "step_size": 100, "gamma": 0.1}``);
            ``warmup``: steps of linear warm-up. For ``sam``, ``base`` is a name, mapping or spec.

    Returns:
        The spec.

    Raises:
        ValueError: an unknown optimizer or schedule (the message lists the known ones) or a bad
            value. TypeError: an unexpected hyperparameter (the message lists those accepted) or
            a value of the wrong type.

    Examples:
        >>> optimizer_spec("SAM", base={"name": "adam", "lr": 3e-4}, rho=0.1).lr
        0.0003
        >>> optimizer_spec({"name": "sgd", "lr": 0.1}, momentum=0.9).hyper["momentum"]
        0.9
    """
    if isinstance(name, OptimizerSpec):
        return OptimizerSpec(name.name, {**name.hyper, **hyper}) if hyper else name
    if isinstance(name, Mapping) and not isinstance(name, str):
        if "name" not in name:
            raise TypeError(f"optimizer_spec: a mapping needs a 'name' key, got {dict(name)!r}")
        base = {k: v for k, v in name.items() if k != "name"}
        return OptimizerSpec(name["name"], {**base, **hyper})
    if not isinstance(name, str):
        _fail("optimizer_spec", "name", "a str, a mapping or an OptimizerSpec", name, TypeError)
    return OptimizerSpec(name, hyper)


def make_optimizer(
    spec: OptimizerSpec | str | Mapping[str, Any], params: Iterable[Any]
) -> torch.optim.Optimizer:
    """The torch optimizer of a spec (a str or mapping goes through :func:`optimizer_spec`).

    ``gd``, ``sgd``, ``momentum``, ``nesterov`` and ``label_noise_sgd``: ``torch.optim.SGD``;
    ``adam``: ``torch.optim.Adam``; ``adamw``: ``torch.optim.AdamW``; ``sam``: :class:`SAM`;
    ``sign_descent``: :class:`SignDescent`. The schedule is not applied here: see
    :func:`landscape.train.schedules.make_scheduler`.

    Args:
        spec: the optimizer.
        params: parameters or param groups of the model.

    Returns:
        The optimizer, at the peak learning rate ``spec.lr``.

    Examples:
        >>> opt = make_optimizer(optimizer_spec("adamw", lr=1e-3), model.parameters())
    """
    spec = spec if isinstance(spec, OptimizerSpec) else optimizer_spec(spec)
    h = spec.hyper
    if spec.name == "sam":
        base = make_optimizer(optimizer_spec(h["base"]), params)
        return SAM(base, rho=h["rho"], adaptive=h["adaptive"], eta=h["eta"])
    if spec.name == "sign_descent":
        return SignDescent(params, lr=h["lr"])
    if spec.name in ("adam", "adamw"):
        cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
        return cls(
            params,
            lr=h["lr"],
            betas=tuple(h["betas"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            amsgrad=h["amsgrad"],
        )
    return torch.optim.SGD(
        params,
        lr=h["lr"],
        momentum=h["momentum"],
        dampening=h.get("dampening", 0.0),
        weight_decay=h["weight_decay"],
        nesterov=h.get("nesterov", spec.name == "nesterov"),
    )


def noisy_labels(targets: Tensor, p: float, num_classes: int, generator: torch.Generator) -> Tensor:
    """Targets with label noise, for label-noise SGD; a new tensor on ``targets.device``.

    Integer targets (classes): each label is replaced, with probability p, by a class drawn
    uniformly from ``range(num_classes)`` (it may be the same class: a fraction p (1 - 1/C)
    changes). Float targets (regression): Gaussian noise of standard deviation p is added and
    ``num_classes`` is ignored. The random numbers come from ``generator`` (on the CPU) and are
    moved to the targets' device: the same generator state gives the same labels on any device.

    Args:
        targets: (N, ...) integer class labels or float regression targets.
        p: flip probability in [0, 1] (classes), noise std >= 0 (regression).
        num_classes: the number of classes C.
        generator: a CPU ``torch.Generator``.

    Returns:
        The noisy targets, same shape, dtype and device.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> y_noisy = noisy_labels(y, spec.label_noise, 10, g)

    References: Blanc et al. 2020; HaoChen et al. 2021; Damian et al. 2021.
    """
    fn = "noisy_labels"
    if not isinstance(targets, Tensor):
        _fail(fn, "targets", "a Tensor", targets, TypeError)
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        _fail(fn, "generator", "a torch.Generator on the CPU", generator, TypeError)
    if targets.is_floating_point():
        p = _real("a number >= 0", lambda v: v >= 0)(fn, "p", p)
        dtype = targets.dtype if targets.dtype in (torch.float32, torch.float64) else torch.float32
        noise = torch.randn(targets.shape, generator=generator, dtype=dtype)
        return targets + (p * noise).to(targets.device, targets.dtype)
    if targets.dtype == torch.bool or targets.is_complex():
        _fail(fn, "targets", "integer class labels or float targets", targets.dtype, TypeError)
    p = _real("a number in [0, 1] for class labels", lambda v: 0 <= v <= 1)(fn, "p", p)
    num_classes = _int(fn, "num_classes", num_classes, 1)
    flip = torch.rand(targets.shape, generator=generator) < p
    drawn = torch.randint(num_classes, targets.shape, generator=generator, dtype=targets.dtype)
    return torch.where(flip.to(targets.device), drawn.to(targets.device), targets)
