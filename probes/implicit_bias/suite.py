r"""Implicit-bias and generalisation measures in one place, and :func:`measures`.

:func:`measures` computes every applicable one at a point, named consistently, so that a sweep
can rank them against the generalisation gap (Jiang et al. 2020).

The measures themselves live in small modules, re-exported here:

- :mod:`probes.implicit_bias.norms`: per-layer Frobenius and spectral norms, their log-products
  and sums, distance from initialisation, parameter norm, path-norm, Fisher-Rao norm;
- :mod:`probes.implicit_bias.margins`: output margins, their minimum and 10th percentile,
  normalised by the spectral complexity;
- :mod:`probes.implicit_bias.weight_spectra`: effective and stable rank, power-law tail
  exponent alpha;
- :mod:`probes.implicit_bias.gradient_noise`: trace of the per-example gradient covariance,
  simple noise scale;
- :mod:`probes.implicit_bias.ground_truth`: max-margin directions, factorisation and
  diagonal-network comparators for the implicit-bias experiments;
- :mod:`probes.sharpness`: worst- and average-case (adaptive) sharpness, PAC-Bayes flatness.

**Names** (the keys of :attr:`Measures.values`; a measure that does not apply is None, and
:attr:`Measures.skipped` says why):

================================  ==========================================================
``loss``, ``accuracy``            at the point, over ``data``
``param_norm``                    ``||w||_2``
``log_prod_frobenius``            ``sum_l log ||W_l||_F`` (``log_prod_spectral``: ``||W_l||_2``)
``sum_frobenius_sq``              ``sum_l ||W_l||_F^2`` (``sum_spectral_sq``: ``||W_l||_2^2``)
``dist_init``                     ``||w - w_0||_2`` (with ``init``)
``dist_init_frobenius_sum``       ``sum_l ||W_l - W_l^0||_F``; ``..._spectral_sum``: ``||.||_2``
``path_norm``                     :func:`probes.implicit_bias.norms.path_norm` (ReLU-type networks)
``fisher_rao``                    :func:`probes.implicit_bias.norms.fisher_rao`
``margin_min``, ``margin_q10``    output margins (classification)
``margin_normalised_q10``         10th percentile divided by the spectral complexity
``inverse_margin_q10_sq``         ``1 / margin_q10^2`` (Jiang et al.'s orientation: larger is
                                  predicted to generalise worse)
``effective_rank_mean``           mean over layers; also ``stable_rank_mean``
``alpha_mean``                    mean power-law exponent over the layers that have a fit
``noise_trace``, ``noise_scale``  ``tr(Sigma)`` and ``B_simple = tr(Sigma) / ||g||^2``
``sharpness_worst``               worst-case l2 sharpness at ``rho``
``sharpness_worst_adaptive``      adaptive (``c = |w|``) at ``adaptive_rho``
``sharpness_average``             average-case at ``rho``; ``..._adaptive`` at ``adaptive_rho``
``..._adaptive_logitnorm``        ``sharpness_worst_...`` and ``sharpness_average_...``, only
                                  with ``logit_normalize=True``: adaptive at ``adaptive_rho``,
                                  the loss taken on centred, unit-norm logits
                                  (Andriushchenko et al. 2023)
``pac_bayes_flatness``            ``1 / sigma^2`` (plain noise); ``..._magnitude`` (aware)
================================  ==========================================================

The sharpness family costs tens of passes over the data: leave it out with
``include=`` when only the cheap measures are wanted. Its logit-normalised variants are off by
default (they cost as much again); where the outputs are not classification logits ``(N, K)``
they are None, with the reason in :attr:`Measures.skipped`.

**Sequence models**: with a loss that counts tokens (:mod:`landscape.engine.terms`, or
``terms=``), ``loss`` is the mean over tokens, ``accuracy`` the token accuracy and the margins
are per token; the per-example measures (Fisher-Rao norm, gradient noise) take each sequence as
an example. Where the outputs have no logits, the accuracy, the margins and the PAC-Bayes
flatness are None, with the reason in :attr:`Measures.skipped`.

Examples:
    >>> m = measures(model, nn.CrossEntropyLoss(), (X, y), init=model_at_init)
    >>> m.values["log_prod_spectral"], m.values["sharpness_worst_adaptive"], m.skipped
    >>> arrays, attrs = m.to_record()           # Store.write_record(run, "probes", "measures", ...)

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to
    find them", ICLR 2020. Dziugaite et al., "In search of robust measures of generalization",
    NeurIPS 2020. Andriushchenko, Croce, Mueller, Hein, Flammarion, "A modern look at the
    relationship between sharpness and generalization", ICML 2023.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_int, _check_positive
from landscape.engine.cost import Cost
from landscape.engine.metrics import no_accuracy
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from landscape.engine.terms import Terms, counted
from probes.implicit_bias.gradient_noise import (
    Stream,
    gradient_noise,
    noise_of,
    stream,
)
from probes.implicit_bias.ground_truth import (
    alignment,
    diagonal,
    factorization,
    max_margin,
    min_norm_interpolator,
)
from probes.implicit_bias.margins import margins
from probes.implicit_bias.norms import fisher_rao, fisher_rao_of, norms, path_norm
from probes.implicit_bias.results import (
    FisherRao,
    GradientNoise,
    Margins,
    Measures,
    Norms,
    WeightSpectra,
)
from probes.implicit_bias.weight_spectra import (
    effective_rank,
    fit_power_law,
    weight_spectra,
)
from probes.sharpness.average import average_case
from probes.sharpness.flatness import pac_bayes
from probes.sharpness.perturb import LogitShapeError, _check_flag
from probes.sharpness.worst import worst_case

__all__ = [
    "FAMILIES",
    "LOGITNORM",
    "FisherRao",
    "GradientNoise",
    "Margins",
    "Measures",
    "Norms",
    "WeightSpectra",
    "alignment",
    "diagonal",
    "effective_rank",
    "factorization",
    "fisher_rao",
    "fit_power_law",
    "gradient_noise",
    "margins",
    "max_margin",
    "measures",
    "min_norm_interpolator",
    "norms",
    "path_norm",
    "weight_spectra",
]

FAMILIES = ("norms", "margins", "spectra", "noise", "sharpness", "pac_bayes")
"""Families of :func:`measures`, each included by default."""

_LAYER_ARRAYS = (
    "frobenius",
    "spectral",
    "dist_frobenius",
    "dist_spectral",
    "effective_rank",
    "stable_rank",
    "alpha",
)


def _include(include: Iterable[str] | None) -> tuple[str, ...]:
    if include is None:
        return FAMILIES
    if isinstance(include, str) or not all(isinstance(f, str) for f in include):
        raise TypeError(
            f"measures: include must be a list of family names from {FAMILIES}, got {include!r}"
        )
    unknown = sorted(set(include) - set(FAMILIES))
    if unknown:
        raise ValueError(
            f"measures: unknown famil{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(map(repr, unknown))} in include; choose from {FAMILIES}"
        )
    return tuple(f for f in FAMILIES if f in include)


def _finite_or_none(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


LOGITNORM = ("sharpness_worst_adaptive_logitnorm", "sharpness_average_adaptive_logitnorm")
"""The names of the logit-normalised sharpness measures (``measures(logit_normalize=True)``)."""


def _logitnorm_sharpness(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    rho: float,
    steps: int,
    n_samples: int,
    seed: int,
    common: dict[str, Any],
    values: dict[str, float | None],
    skipped: dict[str, str],
) -> Cost:
    """Adaptive worst- and average-case sharpness of the logit-normalised loss into ``values``.

    None and a reason in ``skipped`` where the outputs are not logits ``(N, K)``.

    Args:
        model: the model.
        loss_fn: the loss.
        data: the data.
        rho: the adaptive radius.
        steps: ascent steps of the worst case.
        n_samples: draws of the average case.
        seed: of every random draw.
        common: the keywords every probe of :func:`measures` gets.
        values: the measures, filled in.
        skipped: the reasons for the measures left out, filled in.

    Returns:
        The cost of the two probes.
    """
    try:
        w = worst_case(
            model,
            loss_fn,
            data,
            rho=rho,
            adaptive=True,
            steps=steps,
            logit_normalize=True,
            seed=seed,
            **common,
        )
        a = average_case(
            model,
            loss_fn,
            data,
            rho=rho,
            adaptive=True,
            n_samples=n_samples,
            logit_normalize=True,
            seed=seed,
            **common,
        )
    except LogitShapeError as exc:
        for name in LOGITNORM:
            values[name] = None
            skipped[name] = str(exc)
        return Cost()
    values.update(zip(LOGITNORM, (w.value, a.value), strict=True))
    return w.cost + a.cost


def _why_no_accuracy(obj: Objective) -> str:
    """Why ``obj``'s data have no accuracy (one line), from its first batch."""
    first = obj.batches.first()
    with torch.no_grad(), obj.context():
        outputs = obj.outputs(obj.theta, first.inputs)
    return no_accuracy(outputs, first.targets, obj.tokens) or "the targets are not classes"


def measures(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    init: nn.Module | Tensor | Mapping[str, Tensor] | None = None,
    include: Iterable[str] | None = None,
    rho: float = 0.05,
    adaptive_rho: float = 0.5,
    steps: int = 20,
    n_samples: int = 20,
    pac_bayes_samples: int = 10,
    logit_normalize: bool = False,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    seed: int = 0,
    check: bool = True,
    terms: Terms | None = None,
) -> Measures:
    """Every applicable measure of the module table at the model's parameters, over ``data``.

    Args:
        model: the model (never modified).
        loss_fn: a loss returning the batch mean, e.g. ``nn.CrossEntropyLoss()``.
        data: the data (tensors, a Dataset or a DataLoader).
        init: the initialisation (a model, a flat vector or a state dict) for the distances
            and the margins' spectral complexity; without it those are None.
        include: families from :data:`FAMILIES` (default all).
        rho: radius of the plain worst- and average-case sharpness (l2).
        adaptive_rho: radius of the adaptive ones (``||delta / |w| ||_2 <= adaptive_rho``).
        steps: ascent steps of the worst case.
        n_samples: draws of the average case.
        pac_bayes_samples: Monte Carlo draws per bisection step of the PAC-Bayes flatness.
        logit_normalize: also the adaptive worst- and average-case sharpness of the loss on
            centred, unit-norm logits (``sharpness_worst_adaptive_logitnorm``,
            ``sharpness_average_adaptive_logitnorm``), with the sharpness family; recorded in
            the options only when True.
        params: the parameters measured and perturbed (default all trainable).
        mode: ``"eval"`` (default) or ``"train"``, as for :class:`landscape.Objective`.
        batch_size: as for :class:`landscape.Objective`.
        seed: of every random draw.
        check: the determinism check, once (the measures then skip their own).
        terms: a batch's number of loss terms (:mod:`landscape.engine.terms`, e.g.
            ``causal_lm()``); default ``loss_fn.terms`` where the loss carries one, else its
            number of examples.

    Returns:
        :class:`Measures`.
    """
    started = time.perf_counter()
    families = _include(include)
    rho = _check_positive("measures", "rho", rho)
    adaptive_rho = _check_positive("measures", "adaptive_rho", adaptive_rho)
    steps = _check_int("measures", "steps", steps, 1)
    n_samples = _check_int("measures", "n_samples", n_samples, 2)
    pac_bayes_samples = _check_int("measures", "pac_bayes_samples", pac_bayes_samples, 1)
    logit_normalize = _check_flag("measures", "logit_normalize", logit_normalize)
    seed = _check_int("measures", "seed", seed)
    if terms is not None:  # carried by the loss into every probe below
        loss_fn = counted(loss_fn, terms)
    obj = Objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    point = obj.evaluate()
    why_no_accuracy = None if point.accuracy is not None else _why_no_accuracy(obj)
    common: dict[str, Any] = {
        "params": params,
        "mode": mode,
        "batch_size": batch_size,
        "check": False,
    }
    values: dict[str, float | None] = {"loss": point.loss, "accuracy": point.accuracy}
    skipped: dict[str, str] = {}
    if why_no_accuracy is not None:
        skipped["accuracy"] = why_no_accuracy
    per_layer: dict[str, np.ndarray] = {}
    layers: tuple[str, ...] = ()
    spent = Cost()  # of the probes with objectives of their own; obj's is added at the end

    def skip(names: Iterable[str], why: str) -> None:
        for name in names:
            values[name] = None
            skipped[name] = why

    streamed: list[Stream] = []

    def per_example() -> Stream:
        """The per-example gradients, streamed once for the Fisher-Rao norm and the noise."""
        if not streamed:
            streamed.append(stream(obj, 256, "measures"))
        return streamed[0]

    if "norms" in families:
        n = norms(model, init=init, params=params)
        layers = n.layers
        values.update(
            param_norm=n.param_norm,
            log_prod_frobenius=n.log_prod_frobenius,
            log_prod_spectral=n.log_prod_spectral,
            sum_frobenius_sq=n.sum_frobenius_sq,
            sum_spectral_sq=n.sum_spectral_sq,
        )
        per_layer.update(frobenius=n.frobenius, spectral=n.spectral)
        if n.dist_frobenius is None or n.dist_spectral is None:
            skip(
                ("dist_init", "dist_init_frobenius_sum", "dist_init_spectral_sum"), "no init given"
            )
        else:
            values.update(
                dist_init=n.dist_param_norm,
                dist_init_frobenius_sum=float(np.sum(n.dist_frobenius)),
                dist_init_spectral_sum=float(np.sum(n.dist_spectral)),
            )
            per_layer.update(dist_frobenius=n.dist_frobenius, dist_spectral=n.dist_spectral)
        first = obj.batches.first().inputs
        try:
            if not isinstance(first, Tensor):
                raise ValueError("the inputs are not one tensor, so there is no all-ones input")
            values["path_norm"] = path_norm(model, tuple(first.shape[1:]))
        except ValueError as exc:
            skip(("path_norm",), str(exc))
        values["fisher_rao"] = fisher_rao_of(obj, per_example().inner, started).value

    margin_names = ("margin_min", "margin_q10", "margin_normalised_q10", "inverse_margin_q10_sq")
    if "margins" in families:
        if why_no_accuracy is not None:
            skip(margin_names, why_no_accuracy)
        else:
            mg = margins(model, data, init=init, terms=obj.terms, **common)
            q = mg.quantile
            values.update(
                margin_min=mg.minimum,
                margin_q10=q,
                margin_normalised_q10=_finite_or_none(mg.normalised_quantile),
                inverse_margin_q10_sq=1.0 / q**2 if q > 0 else None,
            )
            if q <= 0:
                skipped["inverse_margin_q10_sq"] = "the 10th-percentile margin is not positive"
            if not math.isfinite(mg.input_norm):
                skipped["margin_normalised_q10"] = (
                    "the inputs hold no floating-point tensor (token ids have no norm)"
                )
            spent += mg.cost

    if "spectra" in families:
        ws = weight_spectra(model, params=params)
        layers = layers or ws.layers
        alphas = [a for a in ws.alpha if a is not None]
        values.update(
            effective_rank_mean=_finite_or_none(np.nanmean(ws.effective_rank))
            if len(ws.layers)
            else None,
            stable_rank_mean=_finite_or_none(np.nanmean(ws.stable_rank))
            if len(ws.layers)
            else None,
            alpha_mean=float(np.mean(alphas)) if alphas else None,
        )
        if not alphas:
            skipped["alpha_mean"] = "no layer has enough eigenvalues for a power-law fit"
        per_layer.update(
            effective_rank=ws.effective_rank,
            stable_rank=ws.stable_rank,
            alpha=np.array([np.nan if a is None else a for a in ws.alpha]),
        )

    if "noise" in families:
        gn = noise_of(obj, per_example(), started)
        values.update(noise_trace=gn.trace, noise_scale=_finite_or_none(gn.b_simple))

    if "sharpness" in families:
        for suffix, r, adaptive in (("", rho, False), ("_adaptive", adaptive_rho, True)):
            w = worst_case(
                model, loss_fn, data, rho=r, adaptive=adaptive, steps=steps, seed=seed, **common
            )
            a = average_case(
                model,
                loss_fn,
                data,
                rho=r,
                adaptive=adaptive,
                n_samples=n_samples,
                seed=seed,
                **common,
            )
            values[f"sharpness_worst{suffix}"] = w.value
            values[f"sharpness_average{suffix}"] = a.value
            spent += w.cost + a.cost
        if logit_normalize:
            spent += _logitnorm_sharpness(
                model,
                loss_fn,
                data,
                rho=adaptive_rho,
                steps=steps,
                n_samples=n_samples,
                seed=seed,
                common=common,
                values=values,
                skipped=skipped,
            )

    if "pac_bayes" in families:
        names = ("pac_bayes_flatness", "pac_bayes_flatness_magnitude")
        if why_no_accuracy is not None:
            skip(names, f"{why_no_accuracy} (PAC-Bayes flatness uses the accuracy)")
        else:
            for name, aware in zip(names, (False, True), strict=True):
                pb = pac_bayes(
                    model,
                    loss_fn,
                    data,
                    magnitude_aware=aware,
                    n_samples=pac_bayes_samples,
                    seed=seed,
                    **common,
                )
                values[name] = _finite_or_none(pb.flatness)
                spent += pb.cost

    options = {
        "include": list(families),
        "rho": rho,
        "adaptive_rho": adaptive_rho,
        "steps": steps,
        "n_samples": n_samples,
        "pac_bayes_samples": pac_bayes_samples,
        **({"logit_normalize": True} if logit_normalize else {}),
        "mode": mode,
        "seed": seed,
        "init": init is not None,
        "n_params": obj.layout.numel,
        "n_examples": obj.n_examples,
        **({} if obj.terms is None else {"n_terms": obj.n_terms}),
    }
    return Measures(
        values=values,
        skipped=skipped,
        layers=tuple(layers),
        per_layer=per_layer,
        options=options,
        cost=(spent + obj.cost).with_seconds(time.perf_counter() - started),
    )
