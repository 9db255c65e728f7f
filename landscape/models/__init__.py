"""Small reference models for experiments, sized for a CPU; probes never depend on them.

Plain ``nn.Module`` s built by name and keyword arguments, so that a sweep spec stored as JSON can
name them: ``build("mlp", in_features=40, num_classes=10, seed=0)``. Each model records how it was
built in ``model.spec`` (``{"name": ..., "kwargs": {...}}``, JSON-ready); ``build(**model.spec)``
rebuilds the same architecture. Add your own with ``MODELS["name"] = cls`` (any ``nn.Module``).
Every model is twice differentiable all the way through (attention is written out, not a fused
kernel): Hessians, HVPs, double backward and forward-mode AD all work.

References: He et al. 2016 (deep residual learning); Gunasekar et al. 2017 (implicit
regularization in matrix factorization); Arora et al. 2019 (deep matrix factorization);
Woodworth et al. 2020 (kernel and rich regimes); Greydanus and Kobak 2024 (MNIST-1D).

The registry, :func:`build` and the base class are in :mod:`~landscape.models.base`; the
models in :mod:`~landscape.models.networks` (MLP, linear, 1-D CNN, ResNet),
:mod:`~landscape.models.factorizations` (matrix factorisations, diagonal linear networks) and
:mod:`~landscape.models.transformer`; this package registers them and re-exports all.
"""

from landscape.models.base import ACTIVATIONS, MODELS, ReferenceModel, build
from landscape.models.factorizations import (
    DeepMatrixFactorization,
    DiagonalLinearNetwork,
    SymmetricFactorization,
)
from landscape.models.networks import MLP, CNN1d, Linear, ResNet
from landscape.models.transformer import TinyTransformer

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "build",
    "ReferenceModel",
    "MLP",
    "Linear",
    "CNN1d",
    "ResNet",
    "DeepMatrixFactorization",
    "SymmetricFactorization",
    "DiagonalLinearNetwork",
    "TinyTransformer",
]

# the reference models by name, in the order in which build's messages list them
MODELS.update(
    {
        "mlp": MLP,
        "linear": Linear,
        "cnn1d": CNN1d,
        "resnet": ResNet,
        "deep_matrix_factorization": DeepMatrixFactorization,
        "symmetric_factorization": SymmetricFactorization,
        "diagonal_linear_network": DiagonalLinearNetwork,
        "tiny_transformer": TinyTransformer,
    }
)
