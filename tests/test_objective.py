"""The Objective against dense float64 references.

Loss, gradient, Hessian-vector products by every strategy, GGN-vector products, per-example
gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, TensorDataset

from landscape import Objective
from landscape.engine.hvp import STRATEGIES

from .zoo import MODELS, make

CE = nn.CrossEntropyLoss()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


class Reference:
    """Dense float64 quantities computed independently of the engine.

    The full batch through functional_call, the Hessian with torch.autograd.functional (no vmap).
    """

    def __init__(self, model: nn.Module, x, y, loss_fn=CE):
        self.model, self.x, self.y, self.loss_fn = model, x, y, loss_fn
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in self.named])

    def params(self, theta):
        out, i = {}, 0
        for n, p in self.named:
            out[n] = theta[i : i + p.numel()].view_as(p)
            i += p.numel()
        return out

    def outputs(self, theta):
        was = self.model.training
        self.model.eval()
        try:
            with sdpa_kernel(SDPBackend.MATH):
                return functional_call(self.model, self.params(theta), (self.x,))
        finally:
            self.model.train(was)

    def loss(self, theta):
        return self.loss_fn(self.outputs(theta), self.y)

    def grad(self):
        theta = self.theta.clone().requires_grad_()
        return torch.autograd.grad(self.loss(theta), theta)[0]

    def hessian(self):
        with sdpa_kernel(SDPBackend.MATH):
            return torch.autograd.functional.hessian(self.loss, self.theta)

    def ggn(self):
        with sdpa_kernel(SDPBackend.MATH):
            out = self.outputs(self.theta).detach()
            jac = torch.autograd.functional.jacobian(self.outputs, self.theta)
            jac = jac.reshape(out.numel(), -1)
            h_out = torch.autograd.functional.hessian(
                lambda o: self.loss_fn(o.view_as(out), self.y), out.reshape(-1)
            )
        return jac.T @ h_out @ jac


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    model, x, y = make(request.param)
    ref = Reference(model, x, y)
    return request.param, model, x, y, ref, ref.hessian()


def test_loss_grad_match_reference(case):
    name, model, x, y, ref, _ = case
    obj = Objective(model, CE, (x, y))
    assert torch.equal(obj.theta, ref.theta)
    assert rel(obj.loss(), ref.loss(ref.theta).detach()) < 1e-12
    assert rel(obj.grad(), ref.grad()) < 1e-10
    loss, g = obj.loss_and_grad(obj.theta)
    assert rel(g, ref.grad()) < 1e-10 and rel(loss, ref.loss(ref.theta).detach()) < 1e-12


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_hvp_every_strategy_matches_dense_hessian(case, strategy):
    name, model, x, y, ref, hessian = case
    assert rel(hessian, hessian.T) < 1e-12, "the reference Hessian must be symmetric"
    # two batches of unequal size, so weighting matters
    obj = Objective(model, CE, (x, y), batch_size=13, hvp=strategy)
    gen = torch.Generator().manual_seed(1)
    block = torch.randn(3, obj.layout.numel, generator=gen, dtype=torch.float64)
    for v in block:
        assert rel(obj.hvp(obj.theta, v), hessian @ v) < 1e-10, (name, strategy)
    batched = obj.hvp(obj.theta, block)
    loop = torch.stack([obj.hvp(obj.theta, v) for v in block])
    assert rel(batched, loop) < 1e-12
    assert rel(batched, block @ hessian) < 1e-10
    assert obj.hvp_strategy == strategy


def test_auto_strategy_is_exact(case):
    name, model, x, y, ref, hessian = case
    obj = Objective(model, CE, (x, y))
    v = torch.randn(obj.layout.numel, dtype=torch.float64)
    assert rel(obj.hvp(obj.theta, v), hessian @ v) < 1e-10
    assert obj.hvp_strategy in STRATEGIES


def test_auto_strategy_without_room_for_graphs_recomputes(case):
    name, model, x, y, ref, hessian = case
    obj = Objective(model, CE, (x, y), memory_budget=1)  # nothing fits: recompute
    v = torch.randn(obj.layout.numel, dtype=torch.float64)
    assert rel(obj.hvp(obj.theta, v), hessian @ v) < 1e-10
    assert obj.hvp_strategy in ("forward-over-reverse", "reverse-over-reverse")


def test_ggn_matches_dense_reference(case):
    name, model, x, y, ref, _ = case
    ggn = ref.ggn()
    obj = Objective(model, CE, (x, y), batch_size=7)
    block = torch.randn(2, obj.layout.numel, dtype=torch.float64)
    for v in block:
        assert rel(obj.ggn_vp(obj.theta, v), ggn @ v) < 1e-10
    assert rel(obj.ggn_vp(obj.theta, block), block @ ggn) < 1e-10
    assert float(torch.linalg.eigvalsh((ggn + ggn.T) / 2).min()) > -1e-10  # PSD for CE


def test_per_example_grads_are_the_gradients_of_each_example(case):
    name, model, x, y, ref, _ = case
    obj = Objective(model, CE, (x, y), batch_size=8)
    per = torch.cat(list(obj.per_example_grads()))
    assert per.shape == (len(y), obj.layout.numel)
    assert rel(per.mean(0), ref.grad()) < 1e-10
    one = Reference(model, x[3:4], y[3:4])
    assert rel(per[3], one.grad()) < 1e-10


def test_uneven_loader_gives_full_batch_values():
    model, x, y = make("cnn_bn", n=30)
    full = Objective(model, CE, (x, y))
    loader = DataLoader(TensorDataset(x, y), batch_size=7)  # 7, 7, 7, 7, 2
    for cache in (True, False):
        obj = Objective(model, CE, loader, cache=cache)
        assert obj.batches.cached is cache and obj.n_examples == 30
        assert rel(obj.loss(), full.loss()) < 1e-13
        assert rel(obj.grad(), full.grad()) < 1e-12
        v = torch.randn(obj.layout.numel, dtype=torch.float64)
        assert rel(obj.hvp(obj.theta, v), full.hvp(full.theta, v)) < 1e-12
        assert rel(obj.ggn_vp(obj.theta, v), full.ggn_vp(full.theta, v)) < 1e-12
    dataset = Objective(model, CE, TensorDataset(x, y), batch_size=4)
    assert rel(dataset.grad(), full.grad()) < 1e-12


def test_float32_model_gets_float32_everywhere():
    model, x, y = make("mlp", dtype=torch.float32)
    obj = Objective(model, CE, (x.double(), y))  # float64 data follow the model's dtype
    v = torch.randn(obj.layout.numel)
    assert obj.loss().dtype == obj.grad().dtype == obj.hvp(None, v).dtype == torch.float32


def test_parameter_filter_and_names():
    from landscape.engine.params import no_bias_norm

    model, x, y = make("cnn_bn")
    obj = Objective(model, CE, (x, y), params=no_bias_norm)
    assert obj.layout.names == ("body.0.weight", "body.3.weight", "head.weight")
    ref_full = Reference(model, x, y).hessian()
    # the sub-Hessian of the selected coordinates
    names = [n for n, p in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    idx = torch.cat(
        [
            torch.arange(sum(sizes[:i]), sum(sizes[: i + 1]))
            for i, n in enumerate(names)
            if n in obj.layout.names
        ]
    )
    v = torch.randn(obj.layout.numel, dtype=torch.float64)
    assert rel(obj.hvp(None, v), ref_full[idx][:, idx] @ v) < 1e-10
    by_name = Objective(model, CE, (x, y), params=["head.weight"])
    assert by_name.layout.numel == model.head.weight.numel()


def test_accuracy_and_metrics():
    model, x, y = make("mlp")
    obj = Objective(model, CE, (x, y), batch_size=6)
    with torch.no_grad():
        expected = float((model.eval()(x).argmax(1) == y).double().mean())
    m = obj.evaluate()
    assert m.accuracy == pytest.approx(expected) and m.n_examples == len(y)
    assert m.loss == pytest.approx(float(obj.loss()), rel=1e-12)
    # one logit per example, labels in {0, 1} and in {-1, +1}
    lin = nn.Linear(8, 1).double()
    yb = (x[:, 0] > 0).double()
    bce = Objective(lin, nn.BCEWithLogitsLoss(), (x, yb.unsqueeze(1)))
    with torch.no_grad():
        expected = float(((lin(x)[:, 0] > 0).double() == yb).double().mean())
    assert bce.accuracy() == pytest.approx(expected)


def test_cost_is_counted():
    model, x, y = make("mlp")
    obj = Objective(model, CE, (x, y), batch_size=10, check=False, hvp="reverse-over-reverse")
    before = obj.cost
    obj.grad()
    obj.hvp(None, torch.randn(2, obj.layout.numel, dtype=torch.float64))
    spent = obj.cost - before
    assert spent.grad_evals == 1 and spent.hvp == 2 and spent.passes == 2
    assert spent.seconds > 0


def test_works_inside_callers_no_grad():
    model, x, y = make("attention")
    obj = Objective(model, CE, (x, y))
    v = torch.randn(obj.layout.numel, dtype=torch.float64)
    expected_g, expected_hv = obj.grad(), obj.hvp(None, v)
    for strategy in STRATEGIES:
        inner = Objective(model, CE, (x, y), hvp=strategy, check=False)
        with torch.no_grad():
            assert rel(inner.grad(), expected_g) < 1e-12
            assert rel(inner.hvp(None, v), expected_hv) < 1e-12
            assert rel(inner.ggn_vp(None, v), obj.ggn_vp(None, v)) < 1e-12
