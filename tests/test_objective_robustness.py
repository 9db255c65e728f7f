"""Found in review.

Stale caches, in-place changes, memory estimates, missing forward-mode AD, low precision, NaN in
later batches, raw torch errors, accuracy on regression.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import Objective
from landscape.engine.hvp import saved_bytes

from .test_objective import Reference, rel
from .zoo import make

CE = nn.CrossEntropyLoss()


def test_cache_is_dropped_when_fixed_parameters_buffers_or_data_change():
    model, x, y = make("cnn_bn", n=24)
    obj = Objective(model, CE, (x, y), params=["head.weight"], hvp="cached-reverse")
    v = torch.randn(obj.layout.numel, dtype=torch.float64)
    theta = obj.theta
    obj.hvp(theta, v)
    with torch.no_grad():
        model.body[0].weight.mul_(1.5)  # a parameter outside theta
    fresh = Objective(model, CE, (x, y), params=["head.weight"], hvp="reverse-over-reverse")
    assert rel(obj.loss_and_grad(theta)[1], fresh.grad(theta)) < 1e-12
    assert rel(obj.hvp(theta, v), fresh.hvp(theta, v)) < 1e-12
    with torch.no_grad():
        model.body[1].running_mean.add_(0.3)  # a buffer
    assert rel(obj.hvp(theta, v), fresh.hvp(theta, v)) < 1e-12
    x.mul_(2.0)  # the caller's data, which the objective keeps without a copy
    assert rel(obj.hvp(theta, v), fresh.hvp(theta, v)) < 1e-12
    obj.clear_cache()
    assert rel(obj.hvp(theta, v), fresh.hvp(theta, v)) < 1e-12


def test_theta_changed_in_place_after_a_product():
    model, x, y = make("mlp")
    obj = Objective(model, CE, (x, y), hvp="cached-reverse")
    theta, v = obj.theta, torch.randn(obj.layout.numel, dtype=torch.float64)
    first = obj.hvp(theta, v)
    theta[0] += 1e-3  # perturb and restore, as finite differences and SAM do
    obj.loss(theta)
    theta[0] -= 1e-3
    theta.copy_(obj.theta)
    assert rel(obj.hvp(theta, v), first) < 1e-12


def test_graph_memory_estimate_ignores_the_data():
    torch.manual_seed(0)
    x, y = torch.randn(20000, 64, dtype=torch.float64), torch.randint(0, 3, (20000,))
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    obj = Objective(model, CE, (x, y), batch_size=500, check=False)
    batch = obj.batches.first()
    existing = [batch.inputs, batch.targets, *model.parameters()]
    with obj._context():
        est = saved_bytes(obj._f(batch), obj.theta, existing)
    activations = 500 * (16 + 16 + 3) * 8
    assert activations / 4 < est < 20 * activations  # not the 10 MB of data behind the slice
    roomy = Objective(model, CE, (x, y), batch_size=500, check=False, memory_budget=50 * 2**20)
    roomy.hvp(None, torch.randn(roomy.layout.numel, dtype=torch.float64))
    assert roomy.hvp_strategy == "cached-reverse"


class RBF(nn.Module):
    """torch.cdist has no forward-mode AD: only reverse strategies work."""

    def __init__(self):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(5, 4))
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.exp(-(torch.cdist(x, self.centres) ** 2)))


def test_auto_drops_strategies_the_model_does_not_support():
    torch.manual_seed(0)
    model = RBF().double()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    obj = Objective(model, CE, (x, y), memory_budget=1)
    v = torch.randn(obj.layout.numel, dtype=torch.float64)
    hessian = Reference(model, x, y).hessian()
    assert rel(obj.hvp(None, v), hessian @ v) < 1e-10
    assert obj.hvp_strategy == "reverse-over-reverse"


def test_auto_selection_leaves_global_rng_alone():
    model, x, y = make("mlp")
    obj = Objective(model, CE, (x, y), memory_budget=1)
    state = torch.get_rng_state()
    obj.hvp(None, torch.zeros(obj.layout.numel, dtype=torch.float64))
    assert torch.equal(state, torch.get_rng_state())


def test_low_precision_sums_do_not_overflow():
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(torch.bfloat16)
    x, y = torch.randn(70000, 4), torch.randint(0, 3, (70000,))
    obj = Objective(model, CE, (x, y), batch_size=5000)
    ref = Objective(nn.Linear(4, 3).double().requires_grad_(True), CE, (x.double(), y))
    with torch.no_grad():
        for p, q in zip(ref.model.parameters(), model.parameters(), strict=True):
            p.copy_(q.double())
    assert obj.loss().dtype == torch.bfloat16
    assert abs(float(obj.loss()) - float(ref.loss())) < 2e-2
    assert rel(obj.grad().double(), ref.grad()) < 5e-2


def test_nan_in_a_later_batch_is_caught_at_construction():
    model, x, y = make("mlp", n=30)
    x[25, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        Objective(model, CE, (x, y), batch_size=10)


def test_model_and_loss_failures_name_the_shapes():
    model, x, y = make("mlp")
    with pytest.raises(ValueError, match=r"model failed on the first batch of inputs \(20, 5\)"):
        Objective(model, CE, (x[:, :5], y))
    with pytest.raises(ValueError, match=r"loss_fn failed on outputs \(20, 3\)"):
        Objective(model, CE, (x, y + 5))

    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 3)

        def forward(self, x):
            return {"logits": self.lin(x)}

    # outputs of any structure are accepted; loss_fn receives them as returned
    obj = Objective(Dict().double(), lambda o, t: CE(o["logits"], t), (x, y))
    assert obj.has_accuracy and torch.isfinite(obj.loss())


def test_accuracy_is_none_for_regression_and_masks_ignored_positions():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    obj = Objective(model, nn.MSELoss(), (x, torch.randn(10, 1, dtype=torch.float64)))
    assert obj.evaluate().accuracy is None
    with pytest.raises(ValueError, match="regression"):
        obj.accuracy()

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 4)

        def forward(self, x):
            return self.lin(x)  # (n, T, 4)

    seq = Seq().double()
    xs = torch.randn(6, 5, 2, dtype=torch.float64)
    ys = torch.randint(0, 4, (6, 5))
    ys[:, 3:] = -100
    obj = Objective(seq, lambda o, t: CE(o.reshape(-1, 4), t.reshape(-1)), (xs, ys))
    with torch.no_grad():
        pred = seq(xs).argmax(-1)
    expected = float((pred[:, :3] == ys[:, :3]).double().mean())
    assert obj.accuracy() == pytest.approx(expected)


def test_per_example_grads_in_chunks():
    model, x, y = make("mlp", n=23)
    obj = Objective(model, CE, (x, y), batch_size=10)
    blocks = list(obj.per_example_grads(chunk_size=4))
    assert [len(b) for b in blocks] == [4, 4, 2, 4, 4, 2, 3]
    assert rel(torch.cat(blocks).mean(0), obj.grad()) < 1e-12
    with pytest.raises(ValueError, match="chunk_size"):
        next(obj.per_example_grads(chunk_size=0))
