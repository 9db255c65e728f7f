r"""Sharpness and flatness of a minimum: how much the loss rises when the parameters move.

With ``w`` the selected parameters (all trainable ones by default, biases included), ``L``
the mean loss over the data and ``c`` a scale (``c = |w|`` elementwise when adaptive, else 1):

- :func:`worst_case` (Foret et al. 2021; adaptive: Kwon et al. 2021, Andriushchenko et al.
  2023): ``max_{||delta / c||_p <= rho} L(w + delta) - L(w)``, p = 2 or inf, by projected
  gradient ascent with an APGD-style step schedule, optionally as m-sharpness (the mean of the
  per-batch maxima over batches of m examples). Closed form for one logistic example
  ``(x, y)`` and a bias-free linear model: ``log(1 + exp(-(y w.x - rho ||x||))) - L(w)``.
- :func:`average_case` (Andriushchenko et al. 2023): ``E_z L(w + rho c z) - L(w)``, ``z ~ N(0,
  I)`` (l2) or ``U[-1, 1]^P`` (linf), with its standard error, optionally as m-sharpness (the
  mean of the per-batch averages over batches of m examples).
- :func:`epsilon` (Keskar et al. 2017): ``100 (max_{|y_i| <= eps (|(A^+ w)_i| + 1)}
  L(w + A y) - L(w)) / (1 + L(w))``, ``A = I`` or a random P x p matrix, by L-BFGS-B.
- :func:`pac_bayes` (Jiang et al. 2020): the largest ``sigma`` such that noise of standard
  deviation ``sigma`` (or ``sqrt(sigma^2 w_i^2 + eps^2)``, magnitude-aware) lowers the training
  accuracy by 0.1; flatness ``1 / sigma^2``.

**Sharpness that does not merely track the logits' scale**: cross-entropy sharpness shrinks as
the logits grow, so it also measures how far a run trained. With ``logit_normalize=True``,
:func:`worst_case` and :func:`average_case` take the loss on the centred, unit-norm logits
(:func:`normalize_logits`, Andriushchenko et al. 2023's ``LogitNormalizationWrapper``) at the
clean and the perturbed points; their published comparison uses it with adaptive sharpness
and m-sharpness (m = 128), in l2 and linf.

Adaptive measures are invariant under rescalings that leave the function unchanged (a ReLU
unit's weights and bias in times ``a``, weights out over ``a``), plain ones are not (Dinh et
al. 2017): report both. The definitions, the coordinates the ascent runs in and where the
implementation departs from published code are in :mod:`probes.sharpness.worst`,
:mod:`probes.sharpness.average` and :mod:`probes.sharpness.flatness`. Every probe goes through
:class:`landscape.Objective` (eval mode by default), never writes into the model, computes on
its device and dtype, and returns a frozen result with its ``cost`` and ``to_record()`` /
``from_record()`` for :class:`landscape.store.Store`. The result types are in
:mod:`probes.sharpness.results` (NumPy only); every name is imported on first use.

Examples:
    >>> from probes import sharpness
    >>> s = sharpness.worst_case(model, nn.CrossEntropyLoss(), loader, rho=0.05, adaptive=True)
    >>> s.value, s.worst_accuracy, s.delta_norm, s.cost.grad_evals
    >>> a = sharpness.average_case(model, nn.CrossEntropyLoss(), loader, rho=0.01)
    >>> n = sharpness.worst_case(model, nn.CrossEntropyLoss(), loader, rho=5e-4, norm="linf",
    ...                          adaptive=True, m=128, logit_normalize=True)
    >>> e = sharpness.epsilon(model, nn.CrossEntropyLoss(), loader, eps=1e-3)
    >>> f = sharpness.pac_bayes(model, nn.CrossEntropyLoss(), loader)
    >>> arrays, attrs = s.to_record()   # Store.write_record(run, "probes", "sharpness", ...)

References:
    Keskar et al., "On large-batch training for deep learning: generalization gap and sharp
    minima", ICLR 2017. Dinh, Pascanu, Bengio, Bengio, "Sharp minima can generalize for deep
    nets", ICML 2017. Jiang et al., "Fantastic generalization measures and where to find
    them", ICLR 2020. Foret et al., "Sharpness-aware minimization for efficiently improving
    generalization", ICLR 2021. Kwon et al., "ASAM", ICML 2021. Andriushchenko et al., "A modern
    look at the relationship between sharpness and generalization", ICML 2023.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "NORMS",
    "AverageCase",
    "Epsilon",
    "LogitShapeError",
    "PacBayes",
    "WorstCase",
    "average",
    "average_case",
    "checkpoints",
    "epsilon",
    "flatness",
    "normalize_logits",
    "pac_bayes",
    "perturb",
    "random_subspace",
    "results",
    "worst",
    "worst_case",
]

__getattr__, __dir__ = attach(
    __name__,
    ["average", "flatness", "perturb", "results", "worst"],
    {
        "AverageCase": "results",
        "Epsilon": "results",
        "LogitShapeError": "perturb",
        "PacBayes": "results",
        "WorstCase": "results",
        "average_case": "average",
        "epsilon": "flatness",
        "normalize_logits": "perturb",
        "pac_bayes": "flatness",
        "random_subspace": "flatness",
        "NORMS": "perturb",
        "checkpoints": "worst",
        "worst_case": "worst",
    },
)
