"""Tests for landscape.models: shapes, counts, specs and seeds, switches, errors, second order."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.models import (
    MLP,
    MODELS,
    CNN1d,
    DeepMatrixFactorization,
    DiagonalLinearNetwork,
    Linear,
    ReferenceModel,
    ResNet,
    SymmetricFactorization,
    TinyTransformer,
    build,
)


def _tokens(*shape: int) -> torch.Tensor:
    return torch.randint(0, 7, shape)


# id: (name, kwargs, input shape or token maker, output shape, parameter for the Hessian test)
CASES = {
    "mlp": (
        "mlp",
        dict(in_features=12, num_classes=3, width=8, depth=2, activation="tanh"),
        (4, 3, 4),
        (4, 3),
        "layers.0.weight",
    ),
    "linear": ("linear", dict(in_features=12, num_classes=1), (4, 12), (4, 1), "linear.weight"),
    "cnn1d": ("cnn1d", dict(channels=8), (4, 40), (4, 10), "features.0.weight"),
    "cnn1d_bn": (
        "cnn1d",
        dict(channels=[3, 4, 5], batchnorm=True),
        (4, 1, 40),
        (4, 10),
        "features.0.weight",
    ),
    "resnet1d": ("resnet", dict(width=4, num_blocks=2), (4, 40), (4, 10), "stem.0.weight"),
    "resnet2d": (
        "resnet",
        dict(dims=2, width=4, num_blocks=1, num_classes=3, batchnorm=False),
        (4, 64),
        (4, 3),
        "stem.0.weight",
    ),
    "dmf": (
        "deep_matrix_factorization",
        dict(n=4, depth=3, init="gaussian"),
        (4, 4),
        (4, 4),
        "factors.0",
    ),
    "dmf_sensing": (
        "deep_matrix_factorization",
        dict(n=4, depth=2, rank=2, init="orthogonal"),
        (4, 4, 4),
        (4,),
        "factors.1",
    ),
    "symmetric": ("symmetric_factorization", dict(n=4, rank=3), (4, 4, 4), (4,), "U"),
    "diagonal": ("diagonal_linear_network", dict(dim=5, depth=3), (4, 5), (4,), "u"),
    "transformer": (
        "tiny_transformer",
        dict(vocab_size=7, context_length=3, d_model=8, n_heads=2, n_layers=2),
        _tokens,
        (4, 7),
        "layers.0.qkv.weight",
    ),
}
PARAMS = [pytest.param(*case, id=key) for key, case in CASES.items()]


def _input(shape, dtype=torch.float32) -> torch.Tensor:
    return shape(4, 3) if callable(shape) else torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize("name, kwargs, shape, out_shape, param", PARAMS)
def test_shapes_float64_and_spec(name, kwargs, shape, out_shape, param):
    torch.manual_seed(0)
    model = build(name, seed=0, **kwargs)
    assert isinstance(model, ReferenceModel) and isinstance(model, MODELS[name])
    out = model(_input(shape))
    assert out.shape == out_shape and out.dtype == torch.float32 and out.isfinite().all()
    model64 = copy.deepcopy(model).double()
    out64 = model64(_input(shape, torch.float64))
    assert out64.shape == out_shape and out64.dtype == torch.float64
    # the spec survives JSON and rebuilds the architecture; with the same seed, the parameters
    spec = json.loads(json.dumps(model.spec))
    assert spec == model.spec and spec["name"] == name and copy.deepcopy(model).spec == spec
    again = build(**spec, seed=0)
    assert repr(again) == repr(model) and again.spec == spec
    params, params_again = dict(model.named_parameters()), dict(again.named_parameters())
    assert params.keys() == params_again.keys()
    assert all(torch.equal(params[k], params_again[k]) for k in params)


def test_direct_construction_records_defaults_and_positional_args():
    model = MLP(40, 10, depth=1)
    assert model.spec == {
        "name": "mlp",
        "kwargs": {
            "in_features": 40,
            "num_classes": 10,
            "width": 100,
            "depth": 1,
            "activation": "relu",
            "bias": True,
        },
    }
    assert repr(build(**model.spec)) == repr(model)


def test_seed_is_reproducible_and_leaves_the_global_rng_alone():
    kw = dict(in_features=5, num_classes=3, width=4)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = build("mlp", seed=7, **kw), build("mlp", seed=7, **kw)
    assert torch.equal(torch.get_rng_state(), state)
    c = build("mlp", seed=8, **kw)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    build("mlp", **kw)  # without a seed, construction draws from the global RNG as usual
    assert not torch.equal(torch.get_rng_state(), state)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    assert _count(MLP(40, 10)) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert _count(MLP(40, 10, depth=0, bias=False)) == 400
    assert _count(CNN1d()) == 5210  # Greydanus and Kobak's ConvBase on MNIST-1D
    assert _count(Linear(5, 1)) == 6 and _count(Linear(5, 3, bias=False)) == 15
    assert _count(ResNet(width=4, num_blocks=1, batchnorm=False)) == 16 + 2 * 52 + 170
    assert _count(ResNet(width=4, num_blocks=1)) == 20 + 2 * 56 + 170
    assert _count(DeepMatrixFactorization(4, depth=3, rank=2)) == 8 + 4 + 8
    assert _count(SymmetricFactorization(5, rank=2)) == 10
    assert _count(DiagonalLinearNetwork(7)) == 14
    d, v, t, m = 8, 7, 3, 32
    layer = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d)
    assert _count(TinyTransformer(v, t, d_model=d, n_heads=2, n_layers=2)) == (
        v * d + t * d + 2 * layer + 2 * d + d * v + v
    )


def test_input_layouts_agree():
    torch.manual_seed(0)
    x = torch.randn(3, 40)
    cnn, res = CNN1d(), ResNet().eval()
    assert torch.equal(cnn(x), cnn(x.unsqueeze(1))) and torch.equal(res(x), res(x.unsqueeze(1)))
    mlp, img = MLP(64, 3, width=5), torch.randn(3, 1, 8, 8)
    assert torch.equal(mlp(img), mlp(img.flatten(1)))
    res2 = ResNet(dims=2).eval()
    assert torch.allclose(res2(img), res2(img.flatten(1))) and torch.allclose(
        res2(img), res2(img[:, 0])
    )
    tf = TinyTransformer(7, context_length=4, d_model=8, n_heads=2)
    assert tf(_tokens(3, 2)).shape == (3, 7)  # shorter than the context


def test_resnet_switches():
    kw = dict(width=4, num_blocks=2)
    with_skip, no_skip = build("resnet", seed=0, **kw), build("resnet", seed=0, skip=False, **kw)
    assert all(
        torch.equal(a, b)
        for a, b in zip(with_skip.state_dict().values(), no_skip.state_dict().values(), strict=True)
    )
    x = torch.randn(3, 40)
    assert not torch.allclose(with_skip.eval()(x), no_skip.eval()(x))
    assert [b.skip for b in with_skip.blocks] == [True, True]
    assert [b.skip for b in no_skip.blocks] == [False, False]

    def norms(m):
        return [k for k in m.modules() if isinstance(k, nn.modules.batchnorm._BatchNorm)]

    assert len(norms(with_skip)) == 1 + 2 * 2
    plain = build("resnet", batchnorm=False, dims=2, **kw)
    assert norms(plain) == [] and all(
        c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d)
    )
    assert norms(CNN1d()) == [] and len(norms(CNN1d(batchnorm=True))) == 3


def test_diagonal_linear_network():
    model = DiagonalLinearNetwork(6, init_scale=0.3)
    assert torch.equal(model.beta(), torch.zeros(6))
    assert torch.equal(model.u.detach(), torch.full((6,), 0.3)) and torch.equal(model.u, model.v)
    with torch.no_grad():
        model.u.copy_(torch.randn(6))
        model.v.copy_(torch.randn(6))
    torch.testing.assert_close(model.beta(), model.u**2 - model.v**2)
    x = torch.randn(5, 6)
    torch.testing.assert_close(model(x), x @ (model.u**2 - model.v**2))


def test_matrix_factorizations():
    alpha = 0.5
    ident = DeepMatrixFactorization(3, depth=3, init_scale=alpha)
    torch.testing.assert_close(ident.matrix(), alpha**3 * torch.eye(3))
    model = DeepMatrixFactorization(4, depth=3, rank=2, init="gaussian", init_scale=1.0)
    w1, w2, w3 = model.factors
    assert (w1.shape, w2.shape, w3.shape) == ((2, 4), (2, 2), (4, 2))
    w = model.matrix()
    torch.testing.assert_close(w, w3 @ w2 @ w1)
    x, a = torch.randn(5, 4), torch.randn(5, 4, 4)
    torch.testing.assert_close(model(x), x @ w.T)
    torch.testing.assert_close(model(a), (a * w).sum((1, 2)))
    q = DeepMatrixFactorization(4, depth=1, init="orthogonal", init_scale=2.0).factors[0]
    torch.testing.assert_close(q.T @ q, 4.0 * torch.eye(4))
    sym = SymmetricFactorization(4, init_scale=0.1)
    torch.testing.assert_close(sym.matrix(), 0.01 * torch.eye(4))
    sym = SymmetricFactorization(4, rank=2, init="gaussian")
    x_mat = sym.matrix()
    torch.testing.assert_close(x_mat, sym.U @ sym.U.T)
    torch.testing.assert_close(sym(a), (a * x_mat).sum((1, 2)))
    assert torch.linalg.eigvalsh(x_mat).min() > -1e-6


def test_registry_accepts_user_models(monkeypatch):
    class Tiny(nn.Module):
        def __init__(self, k: int = 2):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(k))

    monkeypatch.setitem(MODELS, "tiny", Tiny)
    model = build("tiny", k=3)
    assert model.spec == {"name": "tiny", "kwargs": {"k": 3}} and model.w.shape == (3,)


BAD = [
    (lambda: MLP(4, 2, depth=-1), ValueError, "MLP: depth must be a non-negative int, got -1"),
    (lambda: MLP(4, 2, width=2.5), TypeError, "MLP: width must be a positive int, got 2.5"),
    (lambda: MLP(4, 2, activation="swish"), ValueError, "activation must be one of 'relu'"),
    (lambda: MLP(4, 2, bias="yes"), TypeError, "MLP: bias must be a bool, got 'yes'"),
    (lambda: Linear(0, 2), ValueError, "Linear: in_features must be a positive int, got 0"),
    (lambda: CNN1d(in_length=2), ValueError, "in_length must be long enough"),
    (lambda: CNN1d(kernel_size=[5, 3]), ValueError, "a sequence of 3 ints, got \\[5, 3\\]"),
    (lambda: ResNet(dims=3), ValueError, "ResNet: dims must be 1 or 2, got 3"),
    (lambda: DeepMatrixFactorization(3, init_scale=0), ValueError, "positive finite float"),
    (lambda: DeepMatrixFactorization(3, init="zeros"), ValueError, "init must be one of"),
    (lambda: DeepMatrixFactorization(3, depth=1, rank=2), ValueError, "None when depth is 1"),
    (lambda: DiagonalLinearNetwork(3, init_scale=float("nan")), ValueError, "got nan"),
    (lambda: TinyTransformer(5, 3, d_model=10, n_heads=4), ValueError, "multiple of n_heads"),
    (lambda: build("nope"), ValueError, "unknown model 'nope'; known models: mlp, linear"),
    (
        lambda: build("mlp", in_features=3, num_classes=2, widht=3),
        TypeError,
        "unexpected keyword argument 'widht'; MLP takes in_features, num_classes, width",
    ),
    (lambda: build("mlp", in_features=3), TypeError, "missing keyword argument 'num_classes'"),
    (lambda: build("mlp", {"in_features": 3}, in_features=3), TypeError, "given both"),
    (lambda: build("cnn1d", seed=-1), ValueError, "build: seed must be a non-negative int"),
    (lambda: MLP(4, 2)(torch.randn(3, 5)), ValueError, r"MLP: inputs must have shape \(N, 4\)"),
    (lambda: CNN1d()(torch.randn(3, 2, 40)), ValueError, r"shape \(N, 1, 40\) or \(N, 40\)"),
    (lambda: ResNet(dims=2)(torch.randn(3, 63)), ValueError, "ResNet: inputs must have shape"),
    (lambda: SymmetricFactorization(3)(torch.randn(2, 4)), ValueError, r"\(N, 3, 3\)"),
    (lambda: TinyTransformer(5, 3)(torch.zeros(2, 4, dtype=torch.long)), ValueError, "1 <= T <= 3"),
    (lambda: TinyTransformer(5, 3)(torch.zeros(2, 3)), ValueError, "integer token ids"),
]


@pytest.mark.parametrize("make, exc, match", BAD)
def test_bad_arguments_raise_clear_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("name, kwargs, shape, out_shape, param", PARAMS)
def test_second_order_autodiff(name, kwargs, shape, out_shape, param):
    """Hessian of a scalar loss w.r.t. 6 entries of one parameter: finite, symmetric, nonzero."""
    torch.manual_seed(0)
    model = build(name, seed=0, **kwargs).double().eval()
    x = _input(shape, torch.float64)
    target = torch.randn(out_shape, dtype=torch.float64)
    full = dict(model.named_parameters())[param].detach()
    k = min(6, full.numel())
    idx = torch.arange(k) * (full.numel() // k)  # entries spread over the tensor

    def loss(sub: torch.Tensor) -> torch.Tensor:
        p = full.flatten().index_put((idx,), sub).view_as(full)
        return (functional_call(model, {param: p}, (x,)) - target).pow(2).mean()

    h = torch.autograd.functional.hessian(loss, full.flatten()[idx])
    assert h.shape == (k, k) and h.isfinite().all() and h.abs().max() > 0
    torch.testing.assert_close(h, h.T, rtol=1e-10, atol=1e-12)
    # forward-over-reverse agrees with the dense Hessian (attention included)
    v = torch.randn(k, dtype=torch.float64)
    _, hv = torch.func.jvp(torch.func.grad(loss), (full.flatten()[idx],), (v,))
    torch.testing.assert_close(hv, h @ v)
