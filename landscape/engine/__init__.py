"""The engine: the empirical risk of a model over a whole dataset, and what it stands on.

The risk is a function of a flat parameter vector. The modules:

- :mod:`~landscape.engine.objective`: :class:`Objective` (loss, gradient, Hessian-, GGN-vector
  products, per-example gradients over the whole dataset) and its :class:`Cost`, assembled from
  parts (:mod:`~landscape.engine.parts`): :mod:`~landscape.engine.validation` (the checks of its
  inputs), :mod:`~landscape.engine.products` (Hessian- and GGN-vector products, the strategy
  and the cached graphs), :mod:`~landscape.engine.evaluate` (loss and accuracy in one pass),
  :mod:`~landscape.engine.per_example` (per-example gradients);
- :mod:`~landscape.engine.hvp`: Hessian-vector products four ways;
- :mod:`~landscape.engine.params`: flat vectors, layouts and parameter filters;
- :mod:`~landscape.engine.batches`: a dataset as batches on the model's device;
- :mod:`~landscape.engine.context`: the evaluation context (mode, attention kernels);
- :mod:`~landscape.engine.metrics`, :mod:`~landscape.engine.losses`: accuracy and named losses;
- :mod:`~landscape.engine.terms`: a batch's number of loss terms (tokens, not examples);
- :mod:`~landscape.engine.determinism`: is the objective a function of the parameters?
- :mod:`~landscape.engine.batchnorm`: running statistics recomputed at a point;
- :mod:`~landscape.engine.pointwise`: one model evaluated at many points;
- :mod:`~landscape.engine.distributed`: the sums over ``torch.distributed`` ranks;
- :mod:`~landscape.engine.allocator`: the C allocator primed for repeated evaluation;
- :mod:`~landscape.engine.records`, :mod:`~landscape.engine.cost`: the record protocol of every
  result and its :class:`Cost` (NumPy only);
- :mod:`~landscape.engine.checks`: argument checks with one message format.

Submodules are imported on first use: :mod:`~landscape.engine.records` needs no torch.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "Cost",
    "Counted",
    "DeterminismError",
    "Objective",
    "ParamLayout",
    "allocator",
    "batches",
    "batchnorm",
    "checks",
    "context",
    "cost",
    "determinism",
    "distributed",
    "evaluate",
    "hvp",
    "lazy",
    "losses",
    "metrics",
    "no_bias_norm",
    "objective",
    "only",
    "params",
    "parts",
    "per_example",
    "pointwise",
    "products",
    "records",
    "terms",
    "validation",
    "Tokens",
    "causal_lm",
    "causal_lm_loss",
    "counted",
    "token_labels",
    "token_loss",
]

__getattr__, __dir__ = attach(
    __name__,
    [
        "allocator",
        "batches",
        "batchnorm",
        "checks",
        "context",
        "cost",
        "determinism",
        "distributed",
        "evaluate",
        "hvp",
        "lazy",
        "losses",
        "metrics",
        "objective",
        "params",
        "parts",
        "per_example",
        "pointwise",
        "products",
        "records",
        "terms",
        "validation",
    ],
    {
        "Cost": "cost",
        "Objective": "objective",
        "DeterminismError": "determinism",
        "ParamLayout": "params",
        "no_bias_norm": "params",
        "only": "params",
        "Counted": "terms",
        "Tokens": "terms",
        "causal_lm": "terms",
        "causal_lm_loss": "terms",
        "counted": "terms",
        "token_labels": "terms",
        "token_loss": "terms",
    },
)
