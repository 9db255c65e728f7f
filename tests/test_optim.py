"""landscape.train.optim and schedules: torch parity, SAM and GD against closed forms, noise."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from landscape.train.optim import (
    OPTIMIZERS,
    SAM,
    OptimizerSpec,
    make_optimizer,
    noisy_labels,
    optimizer_spec,
)
from landscape.train.schedules import lr_factor, make_scheduler


def _mlp(dtype: torch.dtype) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _batches(dtype: torch.dtype, n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 5, generator=g, dtype=dtype), torch.randint(3, (16,), generator=g))
        for _ in range(n)
    ]


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches, scheduler=None) -> list:
    losses = []
    for x, y in batches:

        def closure(x=x, y=y):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(opt.step(closure).item())
        if scheduler is not None:
            scheduler.step()
    return losses


PARITY = [
    (
        "sgd",
        {"lr": 0.05, "momentum": 0.5, "weight_decay": 1e-3, "dampening": 0.1},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=1e-3, dampening=0.1),
    ),
    (
        "gd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    ),
    (
        "momentum",
        {"weight_decay": 5e-4},
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    ),
    ("nesterov", {"lr": 0.02}, lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True)),
    ("label_noise_sgd", {"momentum": 0.3}, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.3)),
    (
        "adam",
        {"lr": 1e-2, "weight_decay": 1e-2, "betas": (0.8, 0.99)},
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, betas=(0.8, 0.99)),
    ),
    ("adam", {"amsgrad": True}, lambda p: torch.optim.Adam(p, amsgrad=True)),
    (
        "adamw",
        {"lr": 1e-2, "weight_decay": 0.1},
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    ),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "hyper", "reference"), PARITY)
def test_parity_with_torch(name, hyper, reference, dtype):
    ours, theirs = _mlp(dtype), _mlp(dtype)
    opt = make_optimizer(optimizer_spec(name, **hyper), ours.parameters())
    ref = reference(theirs.parameters())
    assert type(opt) is type(ref)
    batches = _batches(dtype)
    assert _train(ours, opt, batches) == _train(theirs, ref, batches)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        if dtype == torch.float32:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# A quadratic L(w) = 0.5 w^T A w - b^T w, w split over two parameters (the SAM norm is global).
def _quadratic(seed: int = 0, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = m @ m.T / n + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    w0 = torch.randn(n, generator=g, dtype=torch.float64)
    return a, b, w0


class Quadratic(nn.Module):
    def __init__(self, a, b, w0):
        super().__init__()
        self.a, self.b = a, b
        self.u = nn.Parameter(w0[:2].clone())
        self.v = nn.Parameter(w0[2:].clone())
        self.seen: list[torch.Tensor] = []

    def w(self):
        return torch.cat([self.u, self.v])

    def closure(self, opt):
        def closure():
            opt.zero_grad()
            w = self.w()
            self.seen.append(w.detach().clone())
            loss = 0.5 * w @ self.a @ w - self.b @ w
            loss.backward()
            return loss

        return closure


def _sam_step(model, spec):
    opt = make_optimizer(spec, model.parameters())
    before_base = []
    base_step = opt.base.step
    opt.base.step = lambda: (before_base.append(model.w().detach().clone()), base_step())[1]
    loss = opt.step(model.closure(opt))
    return opt, loss, before_base


def test_sam_matches_formula():
    a, b, w0 = _quadratic()
    model = Quadratic(a, b, w0)
    _, loss, before_base = _sam_step(
        model, optimizer_spec("sam", base={"name": "sgd", "lr": 0.1}, rho=0.2)
    )
    g0 = a @ w0 - b
    w_adv = w0 + 0.2 * g0 / g0.norm()
    expected = w0 - 0.1 * (a @ w_adv - b)
    torch.testing.assert_close(model.w().detach(), expected, rtol=1e-14, atol=1e-14)
    assert len(model.seen) == 2 and torch.equal(model.seen[0], w0)
    torch.testing.assert_close(model.seen[1], w_adv, rtol=1e-14, atol=1e-14)
    assert torch.equal(before_base[0], w0)  # restored exactly before the base step
    assert loss.item() == pytest.approx((0.5 * w0 @ a @ w0 - b @ w0).item())


def test_asam_matches_formula():
    a, b, w0 = _quadratic(1)
    model = Quadratic(a, b, w0)
    spec = optimizer_spec("sam", base={"name": "sgd", "lr": 0.05}, rho=0.5, adaptive=True, eta=0.1)
    _, _, before_base = _sam_step(model, spec)
    g0 = a @ w0 - b
    t = w0.abs() + 0.1
    w_adv = w0 + 0.5 * t * t * g0 / (t * g0).norm()
    expected = w0 - 0.05 * (a @ w_adv - b)
    torch.testing.assert_close(model.seen[1], w_adv, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(model.w().detach(), expected, rtol=1e-14, atol=1e-14)
    assert torch.equal(before_base[0], w0)


def test_sam_zero_gradient():
    _, _, w0 = _quadratic()
    zero = torch.zeros(len(w0), dtype=torch.float64)
    model = Quadratic(torch.zeros(len(w0), len(w0), dtype=torch.float64), zero, w0)
    _sam_step(model, optimizer_spec("sam"))
    assert len(model.seen) == 2 and torch.equal(model.seen[1], w0)
    assert torch.equal(model.w().detach(), w0)


def test_sam_state_dict_and_full_batch():
    spec = optimizer_spec("sam", base={"name": "momentum", "lr": 0.05}, rho=0.1)
    model = _mlp(torch.float32)
    opt = make_optimizer(spec, model.parameters())
    assert isinstance(opt, SAM) and opt.param_groups is opt.base.param_groups
    batches = _batches(torch.float32, 8)
    _train(model, opt, batches[:4])
    twin = copy.deepcopy(model)
    opt2 = make_optimizer(spec, twin.parameters())
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.param_groups is opt2.base.param_groups and opt2.state is opt2.base.state
    assert _train(model, opt, batches[4:]) == _train(twin, opt2, batches[4:])
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not spec.full_batch and optimizer_spec("sam", base="gd").full_batch
    assert optimizer_spec("gd").full_batch and not optimizer_spec("sgd").full_batch
    with pytest.raises(TypeError, match="SAM.step: closure is required"):
        opt.step()


def test_gd_closed_form_and_heavy_ball():
    a, b, w0 = _quadratic(2)
    w_star = torch.linalg.solve(a, b)
    lr, steps = 0.1, 20
    model = Quadratic(a, b, w0)
    opt = make_optimizer(optimizer_spec("gd", lr=lr), model.parameters())
    for _ in range(steps):
        opt.step(model.closure(opt))
    eye = torch.eye(len(w0), dtype=torch.float64)
    expected = w_star + torch.linalg.matrix_power(eye - lr * a, steps) @ (w0 - w_star)
    torch.testing.assert_close(model.w().detach(), expected, rtol=1e-12, atol=1e-12)

    model = Quadratic(a, b, w0)
    opt = make_optimizer(optimizer_spec("gd", lr=lr, momentum=0.8), model.parameters())
    w, v = w0.clone(), torch.zeros_like(w0)
    for _ in range(steps):
        opt.step(model.closure(opt))
        v = 0.8 * v + (a @ w - b)
        w = w - lr * v
    torch.testing.assert_close(model.w().detach(), w, rtol=1e-12, atol=1e-12)


def test_lr_factor_values():
    f = lr_factor(optimizer_spec("sgd"), None)
    assert [f(t) for t in (0, 1, 1000)] == [1.0, 1.0, 1.0]
    f = lr_factor(
        optimizer_spec("sgd", schedule={"name": "step", "step_size": 3, "gamma": 0.5}), None
    )
    assert [f(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    f = lr_factor(optimizer_spec("sgd", schedule={"name": "multistep", "milestones": [2, 4]}), 10)
    assert [f(t) for t in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    f = lr_factor(optimizer_spec("sgd", schedule={"name": "cosine", "min_factor": 0.1}), 100)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)
    assert f(150) == pytest.approx(0.1) and f(25) == pytest.approx(0.1 + 0.9 * (1 + 2**-0.5) / 2)
    f = lr_factor(optimizer_spec("sgd", schedule="cosine", warmup=4), 24)
    assert [f(t) for t in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert f(14) == pytest.approx(0.5) and f(24) == pytest.approx(0.0, abs=1e-15)
    f = lr_factor(optimizer_spec("sgd", schedule={"name": "step", "step_size": 2}, warmup=2), None)
    assert [f(t) for t in range(6)] == pytest.approx([0.5, 1, 1, 1, 0.1, 0.1])
    with pytest.raises(
        ValueError, match="cosine schedule needs the number of steps: give max_steps or epochs"
    ):
        lr_factor(optimizer_spec("sgd", schedule="cosine"), None)
    with pytest.raises(ValueError, match="more steps than warm-up"):
        lr_factor(optimizer_spec("sgd", schedule="cosine", warmup=10), 10)
    with pytest.raises(ValueError, match="lr_factor: total_steps must be an int >= 1, got 0"):
        lr_factor(optimizer_spec("sgd"), 0)


@pytest.mark.parametrize("name", ["sgd", "sam", "adam"])
def test_scheduler_changes_lr(name):
    spec = optimizer_spec(name, schedule={"name": "step", "step_size": 2, "gamma": 0.5}, warmup=2)
    a, b, w0 = _quadratic()
    model = Quadratic(a, b, w0)
    opt = make_optimizer(spec, model.parameters())
    scheduler = make_scheduler(spec, opt, total_steps=10)
    base = opt.base if name == "sam" else opt
    f, seen = lr_factor(spec, 10), []
    for _ in range(6):
        seen.append(base.param_groups[0]["lr"])
        before = model.w().detach().clone()
        opt.step(model.closure(opt))
        if name == "sgd":  # the update used the scheduled lr
            step = before - model.w().detach()
            torch.testing.assert_close(step, seen[-1] * (a @ before - b))
        scheduler.step()
    assert seen == pytest.approx([spec.lr * f(t) for t in range(6)])
    assert seen[0] == pytest.approx(spec.lr / 2) and seen[4] == pytest.approx(spec.lr / 2)


def test_noisy_labels():
    n, c, p = 200_000, 4, 0.3
    y = torch.randint(c, (n,), generator=torch.Generator().manual_seed(0))
    out = noisy_labels(y, p, c, torch.Generator().manual_seed(1))
    assert out.dtype == y.dtype and out.shape == y.shape and out is not y
    assert (out != y).float().mean().item() == pytest.approx(p * (1 - 1 / c), abs=0.005)
    assert out.min() >= 0 and out.max() < c
    again = noisy_labels(y, p, c, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert not torch.equal(out, noisy_labels(y, p, c, torch.Generator().manual_seed(2)))
    same = noisy_labels(y, 0.0, c, torch.Generator().manual_seed(1))
    assert torch.equal(same, y) and same is not y
    yf = torch.zeros(n, 2, dtype=torch.float64)
    noisy = noisy_labels(yf, 0.5, 0, torch.Generator().manual_seed(0))
    assert noisy.dtype == torch.float64 and yf.abs().sum() == 0
    assert noisy.std().item() == pytest.approx(0.5, rel=0.01)
    assert optimizer_spec("label_noise_sgd", noise=0.2).label_noise == 0.2
    assert optimizer_spec("sgd").label_noise == 0.0
    assert optimizer_spec("sam", base={"name": "label_noise_sgd", "noise": 0.3}).label_noise == 0.3
    with pytest.raises(ValueError, match=r"noisy_labels: p must be a number in \[0, 1\]"):
        noisy_labels(y, 1.5, c, torch.Generator())
    with pytest.raises(TypeError, match="noisy_labels: generator must be a torch.Generator"):
        noisy_labels(y, 0.1, c, 0)
    with pytest.raises(TypeError, match="noisy_labels: targets must be integer class labels"):
        noisy_labels(y > 0, 0.1, c, torch.Generator())


ERRORS = [
    ("foo", {}, ValueError, "optimizer_spec: unknown optimizer 'foo'; known optimizers: gd, sgd"),
    (
        "sgd",
        {"beta": 1},
        TypeError,
        "optimizer 'sgd': unexpected hyperparameter 'beta'; accepted: lr, momentum",
    ),
    ("sgd", {"lr": -1}, ValueError, "optimizer 'sgd': lr must be a number > 0, got -1"),
    ("sgd", {"lr": 0}, ValueError, "lr must be a number > 0, got 0"),
    ("sgd", {"lr": "0.1"}, TypeError, "lr must be a number > 0, got '0.1'"),
    ("sgd", {"lr": float("nan")}, ValueError, "lr must be a number > 0, got nan"),
    ("momentum", {"momentum": 1.0}, ValueError, r"momentum must be a number in \[0, 1\), got 1.0"),
    ("sgd", {"momentum": -0.1}, ValueError, r"momentum must be a number in \[0, 1\)"),
    ("adam", {"betas": [0.9, 1.0]}, ValueError, r"betas\[1\] must be two numbers in \[0, 1\)"),
    ("adam", {"betas": 0.9}, TypeError, r"betas must be two numbers in \[0, 1\), got 0.9"),
    ("adam", {"eps": 0}, ValueError, "optimizer 'adam': eps must be a number > 0, got 0"),
    ("adamw", {"weight_decay": -1e-4}, ValueError, "weight_decay must be a number >= 0"),
    ("sam", {"rho": 0}, ValueError, "optimizer 'sam': rho must be a number > 0, got 0"),
    ("label_noise_sgd", {"noise": -0.1}, ValueError, "noise must be a number >= 0, got -0.1"),
    ("sgd", {"nesterov": True}, ValueError, "nesterov needs momentum > 0 and dampening 0"),
    ("nesterov", {"momentum": 0}, ValueError, "optimizer 'nesterov': nesterov needs momentum > 0"),
    ("sgd", {"nesterov": 1}, TypeError, "optimizer 'sgd': nesterov must be a bool, got 1"),
    ("adam", {"amsgrad": "yes"}, TypeError, "amsgrad must be a bool, got 'yes'"),
    ("sam", {"adaptive": 0}, TypeError, "adaptive must be a bool, got 0"),
    (
        "sgd",
        {"schedule": "foo"},
        ValueError,
        "optimizer 'sgd': unknown schedule 'foo'; known schedules: constant, step, cosine",
    ),
    (
        "sgd",
        {"schedule": {"name": "step", "step_size": 2.5}},
        TypeError,
        "optimizer 'sgd': schedule 'step': step_size must be an int >= 1, got 2.5",
    ),
    ("sgd", {"schedule": {"name": "step"}}, TypeError, "missing parameter 'step_size'"),
    (
        "sgd",
        {"schedule": {"name": "cosine", "min": 0}},
        TypeError,
        "schedule 'cosine': unexpected parameter 'min'; accepted: min_factor",
    ),
    (
        "sgd",
        {"schedule": {"name": "multistep", "milestones": [5, 3]}},
        ValueError,
        "milestones must be a non-empty increasing list of ints >= 1",
    ),
    ("sgd", {"schedule": 3}, TypeError, "schedule must be a schedule name or a mapping"),
    ("sgd", {"warmup": -1}, ValueError, "warmup must be an int >= 0, got -1"),
    ("sgd", {"warmup": 2.0}, TypeError, "warmup must be an int >= 0, got 2.0"),
    ("sam", {"base": "sam"}, ValueError, "optimizer 'sam': base must be an optimizer other than"),
    ("sam", {"base": "bar"}, ValueError, "optimizer 'sam': base: unknown optimizer 'bar'"),
    (
        "sam",
        {"base": {"name": "adam", "lr": -1}},
        ValueError,
        "optimizer 'sam': base 'adam': lr must be a number > 0, got -1",
    ),
    (
        "sam",
        {"base": {"name": "sgd", "schedule": "cosine"}},
        ValueError,
        "base schedule and warmup must be left out",
    ),
    ("sam", {"base": 1}, TypeError, "base must be a base name or a mapping"),
    (3, {}, TypeError, "optimizer_spec: name must be a str, a mapping or an OptimizerSpec"),
    ({"lr": 0.1}, {}, TypeError, "optimizer_spec: a mapping needs a 'name' key"),
]


@pytest.mark.parametrize(("name", "hyper", "exc", "match"), ERRORS)
def test_validation_errors(name, hyper, exc, match):
    with pytest.raises(exc, match=match):
        optimizer_spec(name, **hyper)


def test_make_scheduler_errors():
    with pytest.raises(TypeError, match="make_scheduler: optimizer must be a torch.optim"):
        make_scheduler(optimizer_spec("sgd"), None, 10)
    opt = make_optimizer("sgd", nn.Linear(2, 1).parameters())
    with pytest.raises(ValueError, match="make_scheduler: cosine schedule needs the number"):
        make_scheduler(optimizer_spec("sgd", schedule="cosine"), opt, None)


SPECS = [
    *[(name, {}) for name in OPTIMIZERS],
    ("sgd", {"schedule": {"name": "step", "step_size": 10}, "warmup": 5}),
    ("adamw", {"schedule": "cosine", "betas": (0.9, 0.95)}),
    (
        "sam",
        {
            "base": "adam",
            "adaptive": True,
            "schedule": {"name": "multistep", "milestones": [10, 20]},
        },
    ),
]


@pytest.mark.parametrize(("name", "hyper"), SPECS)
def test_spec_round_trip(name, hyper):
    spec = optimizer_spec(name, **hyper)
    d = spec.to_dict()
    assert optimizer_spec(d) == spec and optimizer_spec(json.loads(json.dumps(d))) == spec
    assert OptimizerSpec(spec.name, spec.hyper) == spec and hash(optimizer_spec(d)) == hash(spec)
    assert optimizer_spec(spec) is spec and set(d) == {
        "name",
        *OPTIMIZERS[name].defaults,
        "schedule",
        "warmup",
    }
    assert isinstance(spec.lr, float) and spec.lr > 0
    make_optimizer(spec, nn.Linear(2, 1).parameters())


def test_spec_details():
    assert optimizer_spec("Label-Noise-SGD").name == "label_noise_sgd"
    spec = optimizer_spec({"name": "SGD", "lr": 0.3}, momentum=0.5)
    assert spec.hyper["lr"] == 0.3 and spec.hyper["momentum"] == 0.5 and spec.lr == 0.3
    assert optimizer_spec(spec, lr=0.01).lr == 0.01 and spec.lr == 0.3
    assert optimizer_spec({"name": "sgd", "lr": 0.3}, lr=0.2).lr == 0.2
    assert optimizer_spec("adam").hyper["betas"] == [0.9, 0.999]
    assert optimizer_spec("adamw").hyper["weight_decay"] == 0.01
    assert optimizer_spec("sgd", schedule="Cosine").hyper["schedule"] == {
        "name": "cosine",
        "min_factor": 0.0,
    }
    sam = optimizer_spec("sam", base=optimizer_spec("nesterov", lr=0.01), rho=0.1)
    assert sam.hyper["base"] == {
        "name": "nesterov",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0,
    }
    assert sam.lr == 0.01 and sam.hyper["schedule"] == {"name": "constant"}
    assert optimizer_spec("sam").hyper["base"]["name"] == "sgd"
    assert math.isclose(optimizer_spec("sgd", lr=1).lr, 1.0)
    d = spec.to_dict()
    d["lr"] = 99.0  # to_dict is a copy
    assert spec.lr == 0.3


def test_sam_wraps_a_built_base_optimizer_and_equals_sam_by_name():
    # SAM takes the base optimizer built on the parameters (no import of the registry): the
    # same run as make_optimizer's "sam" around the same base, bit for bit
    from landscape.train.sam import SAM

    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    runs = []
    for by_name in (False, True):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
        if by_name:
            opt = make_optimizer(
                optimizer_spec("sam", base={"name": "sgd", "lr": 0.1, "momentum": 0.9}, rho=0.05),
                model.parameters(),
            )
        else:
            opt = SAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05)

        def closure(model=model, opt=opt):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(5):
            opt.step(closure)
        runs.append(torch.cat([p.detach().ravel() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(TypeError, match="SAM: base must be a built torch optimizer"):
        SAM(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="SAM: rho must be a number >= 0.0, got -1"):
        SAM(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), rho=-1)
