"""landscape.train.sign_descent: the update is exactly -lr * sign(grad), full batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.train.optim import OPTIMIZERS, make_optimizer, optimizer_spec
from landscape.train.schedules import make_scheduler
from landscape.train.sign_descent import SignDescent


def _closure(model, opt, x, y):
    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_is_exactly_minus_lr_times_sign_of_the_gradient(dtype):
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(4, 2).to(dtype)
    x, y = torch.randn(8, 4, generator=g, dtype=dtype), torch.randn(8, 2, generator=g, dtype=dtype)
    opt = make_optimizer(optimizer_spec("sign_descent", lr=0.03), model.parameters())
    assert type(opt) is SignDescent
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        loss = opt.step(_closure(model, opt, x, y))
        assert loss is not None
        for p, p0 in zip(model.parameters(), before, strict=True):
            assert torch.equal(p.detach(), p0 - 0.03 * torch.sign(p.grad))


def test_zero_gradient_and_missing_gradient_leave_parameters_alone():
    a, b = nn.Parameter(torch.tensor([1.0, -2.0, 3.0])), nn.Parameter(torch.tensor([5.0]))
    opt = SignDescent([a, b], lr=0.5)
    a.grad = torch.tensor([0.0, -1e-30, 7.0])
    opt.step()
    assert a.tolist() == [1.0, -1.5, 2.5] and b.tolist() == [5.0]


def test_registry_entry_schedule_and_validation():
    info = OPTIMIZERS["sign_descent"]
    assert info.full_batch and dict(info.defaults) == {"lr": 0.01}
    spec = optimizer_spec(
        "Sign-Descent", lr=0.2, schedule={"name": "step", "step_size": 1, "gamma": 0.5}
    )
    assert spec.name == "sign_descent" and spec.full_batch and spec.lr == 0.2
    p = nn.Parameter(torch.zeros(2))
    opt = make_optimizer(spec, [p])
    sched = make_scheduler(spec, opt, total_steps=10)
    for expected in (-0.2, -0.3):  # lr 0.2, then 0.1
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
        assert p.tolist() == pytest.approx([expected] * 2, abs=0, rel=1e-7)
    with pytest.raises(TypeError, match="unexpected hyperparameter 'momentum'"):
        optimizer_spec("sign_descent", momentum=0.9)
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        optimizer_spec("sign_descent", lr=0.0)
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        SignDescent([p], lr=-1.0)
