"""Sharpness that does not merely track the logits' scale (probes.sharpness).

Logit-normalised worst- and average-case sharpness, m-sharpness of both, l2 and linf noise,
their records, their spec keys and the logit-normalised measures of
probes.implicit_bias.suite.

Definitions: Andriushchenko et al. 2023 (tml-epfl/sharpness-vs-generalization:
``LogitNormalizationWrapper`` in models.py, ``eval_average_sharpness`` and ``random_init_lw``
in sharpness.py).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import tomllib
import torch
from scipy.special import logsumexp
from torch import nn

from landscape.store.file import Store
from landscape.sweep import loads
from probes.implicit_bias.suite import LOGITNORM, measures
from probes.sharpness import (
    AverageCase,
    LogitShapeError,
    WorstCase,
    average_case,
    normalize_logits,
    worst_case,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CE = nn.CrossEntropyLoss()


# --------------------------------------------------------------------------- helpers
def linear(n: int = 12, d: int = 3, k: int = 4, seed: int = 0):
    """A float64 linear classifier (weights and bias) and n examples of k classes."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(0.5 * torch.randn(k, generator=gen, dtype=torch.float64))
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=gen)
    return model, x, y


def relu_net(seed: int = 0, n: int = 40):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return model, x, y


def last_layer_times(model: nn.Sequential, c: float) -> nn.Sequential:
    """The same network with the last layer's weights and bias times c (logits times c)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out[-1].weight.mul_(c)
        out[-1].bias.mul_(c)
    return out


def flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def hand_loss(theta: np.ndarray, x: np.ndarray, y: np.ndarray, k: int, normalise: bool) -> float:
    """Cross-entropy of the linear model with flat parameters ``theta`` (weight then bias).

    On logits centred and divided by their norm (floored at 1e-10) when ``normalise``.
    """
    d = x.shape[1]
    w, b = theta[: k * d].reshape(k, d), theta[k * d :]
    z = x @ w.T + b
    if normalise:
        z = z - z.mean(axis=1, keepdims=True)
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-10)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def hand_average(model, x, y, *, rho, norm, adaptive, normalise, n, seed):
    """The published average case by hand, per draw ``L(w + delta_i) - L(w)``.

    Draw i is ``rho c z_i``, z_i Gaussian (l2) or uniform in [-1, 1] (linf), from a torch
    generator seeded with ``seed``.
    """
    k = model.out_features
    theta = flat(model)
    xs, ys = x.numpy(), y.numpy()
    c = np.abs(theta) if adaptive else np.ones_like(theta)
    gen = torch.Generator().manual_seed(seed)
    clean = hand_loss(theta, xs, ys, k, normalise)
    out = []
    for _ in range(n):
        if norm == "l2":
            z = torch.randn(theta.shape, generator=gen, dtype=torch.float64).numpy()
        else:
            z = (2 * torch.rand(theta.shape, generator=gen, dtype=torch.float64) - 1).numpy()
        out.append(hand_loss(theta + rho * c * z, xs, ys, k, normalise) - clean)
    return np.asarray(out)


class PublishedWrapper(nn.Module):
    """``LogitNormalizationWrapper`` of tml-epfl/sharpness-vs-generalization, as published."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        out = out - out.mean(dim=-1, keepdim=True)
        out_norms = out.norm(dim=-1, keepdim=True)
        out_norms = torch.max(out_norms, 10**-10 * torch.ones_like(out_norms))
        return out / out_norms


def snapshot(model: nn.Module):
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        m.training for m in model.modules()
    ]


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# --------------------------------------------------------------------------- (a) invariance
def test_normalised_logits_are_centred_unit_rows_that_ignore_scale_and_shift():
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = normalize_logits(z)
    torch.testing.assert_close(n.sum(dim=1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(n.norm(dim=1), torch.ones(6, dtype=torch.float64))
    for c in (1e-3, 10.0, 1e4):
        torch.testing.assert_close(normalize_logits(c * z), n, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(normalize_logits(z + 3.0), n, rtol=1e-13, atol=1e-15)
    # rows with equal logits: centred to 0, the floor keeps them 0 (no NaN)
    flat_rows = torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(normalize_logits(flat_rows), torch.zeros(2, 3, dtype=torch.float64))
    # the floor is the published one: norms below 1e-10 are not scaled up to 1
    tiny = torch.tensor([[-1e-12, 1e-12]], dtype=torch.float64)
    torch.testing.assert_close(normalize_logits(tiny), tiny / 1e-10)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_logit_normalisation_makes_sharpness_invariant_to_the_last_layers_scale(norm):
    """Last layer (weights and bias) times c multiplies the logits by c.

    The normalised logits, hence the normalised clean loss and the adaptive worst and
    average cases (same seed, the adaptive perturbation scales with the weights), are those
    of c = 1; the plain ones are not.
    """
    model, x, y = relu_net(0, n=40)
    rho = 0.3 if norm == "l2" else 0.05
    kw = {"rho": rho, "norm": norm, "adaptive": True, "seed": 3}
    res = {}
    for c in (1.0, 10.0):
        scaled = last_layer_times(model, c)
        for ln in (False, True):
            w = worst_case(scaled, CE, (x, y), steps=10, restarts=1, logit_normalize=ln, **kw)
            a = average_case(scaled, CE, (x, y), n_samples=8, logit_normalize=ln, **kw)
            res[c, ln] = (w, a)
    w1, a1 = res[1.0, True]
    w10, a10 = res[10.0, True]
    assert w1.clean_loss == pytest.approx(w10.clean_loss, rel=1e-12)
    assert a1.clean_loss == pytest.approx(a10.clean_loss, rel=1e-12)
    assert w1.value > 0 and w1.value == pytest.approx(w10.value, rel=1e-8)
    assert w1.worst_loss == pytest.approx(w10.worst_loss, rel=1e-10)
    assert a1.value == pytest.approx(a10.value, rel=1e-8)
    np.testing.assert_allclose(a1.samples, a10.samples, rtol=1e-7, atol=1e-13)
    assert w1.logit_normalize and a1.logit_normalize
    # the plain values move with the scale (c = 10: sharper, larger loss differences)
    p1, q1 = res[1.0, False]
    p10, q10 = res[10.0, False]
    assert abs(p10.clean_loss - p1.clean_loss) > 0.05 * p1.clean_loss
    assert abs(p10.value - p1.value) > 0.5 * abs(p1.value)
    assert abs(q10.value - q1.value) > 0.5 * abs(q1.value)
    assert not p1.logit_normalize and not q1.logit_normalize


# --------------------------------------------------------------------------- (b) by hand
def test_logit_normalised_worst_case_against_a_hand_computation_of_a_linear_model():
    model, x, y = linear()
    xs, ys, k = x.numpy(), y.numpy(), model.out_features
    theta = flat(model)
    for norm, adaptive in (("l2", True), ("linf", True), ("l2", False)):
        rho = 0.2 if norm == "l2" else 0.05
        s = worst_case(
            model,
            CE,
            (x, y),
            rho=rho,
            norm=norm,
            adaptive=adaptive,
            steps=10,
            logit_normalize=True,
        )
        clean = hand_loss(theta, xs, ys, k, True)
        worst = hand_loss(theta + s.delta, xs, ys, k, True)
        assert s.clean_loss == pytest.approx(clean, rel=1e-12)
        assert s.worst_loss == pytest.approx(worst, rel=1e-12)
        assert s.value == pytest.approx(worst - clean, rel=1e-9) and s.value > 0
        c = np.abs(theta) if adaptive else np.ones_like(theta)
        u = s.delta / c
        bound = np.linalg.norm(u) if norm == "l2" else np.abs(u).max()
        assert bound <= rho * (1 + 1e-12) and s.delta_norm == pytest.approx(bound)
        # the normalised loss is not the plain one
        assert abs(s.clean_loss - hand_loss(theta, xs, ys, k, False)) > 0.1


def test_the_ascent_follows_the_gradient_of_the_normalised_loss():
    """One l2 step from delta = 0: step 2 rho, projected to rho, mixed 0.75 with 0.

    So delta = 0.75 rho g / ||g||, g the gradient of the hand-computed normalised loss, here by
    central finite differences.
    """
    model, x, y = linear()
    xs, ys, k = x.numpy(), y.numpy(), model.out_features
    theta = flat(model)
    h = 1e-6
    g = np.array(
        [
            (hand_loss(theta + h * e, xs, ys, k, True) - hand_loss(theta - h * e, xs, ys, k, True))
            / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    s = worst_case(model, CE, (x, y), rho=0.1, steps=1, logit_normalize=True)
    np.testing.assert_allclose(s.delta, 0.75 * 0.1 * g / np.linalg.norm(g), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_logit_normalize_equals_the_published_wrapper(norm):
    model, x, y = relu_net(1, n=30)
    wrapped = PublishedWrapper(model)
    kw = {"rho": 0.1 if norm == "l2" else 0.02, "norm": norm, "adaptive": True, "seed": 2}
    ours = worst_case(model, CE, (x, y), steps=6, restarts=1, logit_normalize=True, **kw)
    theirs = worst_case(wrapped, CE, (x, y), steps=6, restarts=1, **kw)
    assert ours.value == pytest.approx(theirs.value, rel=1e-10)
    np.testing.assert_allclose(ours.delta, theirs.delta, rtol=1e-9, atol=1e-14)
    a = average_case(model, CE, (x, y), n_samples=5, m=10, logit_normalize=True, **kw)
    b = average_case(wrapped, CE, (x, y), n_samples=5, m=10, **kw)
    np.testing.assert_allclose(a.batch_values, b.batch_values, rtol=1e-10, atol=1e-15)
    assert a.value == pytest.approx(b.value, rel=1e-10)


# --------------------------------------------------------------------------- (c) m-sharpness
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_m_sharpness_with_m_at_least_n_is_the_plain_value(norm):
    model, x, y = relu_net(2, n=24)
    kw = {"rho": 0.1 if norm == "l2" else 0.02, "norm": norm, "adaptive": True, "seed": 4}
    kw["logit_normalize"] = True
    w = worst_case(model, CE, (x, y), steps=6, restarts=1, **kw)
    a = average_case(model, CE, (x, y), n_samples=6, **kw)
    for m in (24, 100):
        wm = worst_case(model, CE, (x, y), steps=6, restarts=1, m=m, **kw)
        am = average_case(model, CE, (x, y), n_samples=6, m=m, **kw)
        assert wm.value == pytest.approx(w.value, rel=1e-10)
        assert am.value == pytest.approx(a.value, rel=1e-10)
        np.testing.assert_allclose(am.samples, a.samples, rtol=1e-10, atol=1e-15)
        assert am.stderr == pytest.approx(a.stderr, rel=1e-8)
        assert wm.n_batches == am.n_batches == 1 and list(am.batch_sizes) == [24]
        assert am.m == m and a.m is None and a.batch_values is None


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_m_sharpness_is_the_size_weighted_mean_of_separate_per_batch_runs(norm):
    model, x, y = relu_net(3, n=24)
    kw = {"rho": 0.1 if norm == "l2" else 0.02, "norm": norm, "adaptive": True}
    kw["logit_normalize"] = True
    sizes = [10, 10, 4]
    weights = np.array(sizes) / 24
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 24, 10)]
    w = worst_case(model, CE, (x, y), steps=6, restarts=1, m=10, seed=7, **kw)
    wp = [
        worst_case(model, CE, b, steps=6, restarts=1, seed=7 + i, **kw)
        for i, b in enumerate(batches)
    ]
    np.testing.assert_allclose(w.batch_values, [p.value for p in wp], rtol=1e-10)
    assert w.value == pytest.approx(np.dot(weights, [p.value for p in wp]), rel=1e-10)
    assert list(w.batch_sizes) == sizes and w.logit_normalize
    a = average_case(model, CE, (x, y), n_samples=5, m=10, seed=7, **kw)
    ap = [average_case(model, CE, b, n_samples=5, seed=7 + i, **kw) for i, b in enumerate(batches)]
    np.testing.assert_allclose(a.batch_values, [p.value for p in ap], rtol=1e-10)
    assert a.value == pytest.approx(np.dot(weights, [p.value for p in ap]), rel=1e-10)
    np.testing.assert_allclose(a.samples, weights @ np.stack([p.samples for p in ap]), rtol=1e-10)
    assert a.value == pytest.approx(a.samples.mean(), rel=1e-12)
    assert a.stderr == pytest.approx(a.samples.std(ddof=1) / math.sqrt(5), rel=1e-12)
    assert a.clean_loss == pytest.approx(np.dot(weights, [p.clean_loss for p in ap]), rel=1e-12)
    assert a.mean_loss == pytest.approx(np.dot(weights, [p.mean_loss for p in ap]), rel=1e-12)
    assert a.mean_accuracy == pytest.approx(np.dot(weights, [p.mean_accuracy for p in ap]))
    assert a.n_batches == 3 and list(a.batch_sizes) == sizes and a.m == 10
    assert a.cost.passes == pytest.approx(
        sum(p.cost.passes * n / 24 for p, n in zip(ap, sizes, strict=True))
    )


# --------------------------------------------------------------------------- (d) Monte Carlo
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("normalise", [False, True])
def test_average_case_equals_a_hand_monte_carlo_with_the_same_seed(norm, adaptive, normalise):
    model, x, y = linear()
    kw = {"rho": 0.3, "norm": norm, "adaptive": adaptive}
    a = average_case(model, CE, (x, y), n_samples=7, seed=11, logit_normalize=normalise, **kw)
    s = hand_average(model, x, y, normalise=normalise, n=7, seed=11, **kw)
    np.testing.assert_allclose(a.samples, s, rtol=1e-10, atol=1e-14)
    assert a.value == pytest.approx(s.mean(), rel=1e-10)
    assert a.stderr == pytest.approx(s.std(ddof=1) / math.sqrt(7), rel=1e-8)
    assert a.norm == norm and a.logit_normalize == normalise and a.n_batches == 1
    # with m: batch b draws its own noise from seed + b, its own clean loss subtracted
    am = average_case(model, CE, (x, y), n_samples=4, m=5, seed=11, logit_normalize=normalise, **kw)
    per = [
        hand_average(model, x[i : i + 5], y[i : i + 5], normalise=normalise, n=4, seed=11 + b, **kw)
        for b, i in enumerate(range(0, 12, 5))
    ]
    weights = np.array([5, 5, 2]) / 12
    np.testing.assert_allclose(am.batch_values, [p.mean() for p in per], rtol=1e-10, atol=1e-14)
    assert am.value == pytest.approx(np.dot(weights, [p.mean() for p in per]), rel=1e-10)


def test_linf_noise_is_uniform_in_the_box_and_l2_noise_gaussian():
    """Uniform noise for linf, Gaussian for l2, seen through one coordinate.

    L(w + delta) - L(w) for MSE of a bias-free model ``w.x`` with x = e_1, target w_1:
    delta_1^2. E = rho^2 / 3 (uniform) and rho^2 (Gaussian).
    """
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64))
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[1.0]], dtype=torch.float64)
    rho, n = 0.5, 4000
    u = average_case(model, nn.MSELoss(), (x, t), rho=rho, norm="linf", n_samples=n)
    g = average_case(model, nn.MSELoss(), (x, t), rho=rho, norm="l2", n_samples=n)
    assert u.samples.max() <= rho**2 * (1 + 1e-12)
    assert abs(u.value - rho**2 / 3) < 4 * u.stderr
    assert abs(g.value - rho**2) < 4 * g.stderr and g.samples.max() > rho**2


# --------------------------------------------------------------------------- contracts
def test_model_untouched_and_records_round_trip_with_the_new_options(tmp_path):
    model, x, y = relu_net(4, n=16)
    model.train()
    before = snapshot(model)
    results = {
        "worst": worst_case(
            model,
            CE,
            (x, y),
            rho=0.05,
            norm="linf",
            adaptive=True,
            steps=3,
            m=8,
            logit_normalize=True,
        ),
        "average": average_case(
            model,
            CE,
            (x, y),
            rho=0.05,
            norm="linf",
            adaptive=True,
            n_samples=3,
            m=6,
            logit_normalize=True,
        ),
        "average_plain": average_case(model, CE, (x, y), rho=0.05, n_samples=3),
    }
    state, flags = before
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert [m.training for m in model.modules()] == flags
    path = tmp_path / "sharp.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
        for name, result in results.items():
            arrays, attrs = result.to_record()
            s.write_record("r", "probes", name, arrays=arrays, attrs=attrs)
    with Store(path) as s:
        records = {name: s.record("r", "probes", name) for name in results}
    for name, result in results.items():
        cls = type(result)
        back = cls.from_record(records[name])
        for f in dataclasses.fields(cls):
            assert same(getattr(back, f.name), getattr(result, f.name)), (name, f.name)
    assert bool(records["worst"].attrs["logit_normalize"]) is True
    # records written before the options existed read back with the old behaviour's values
    arrays, attrs = results["average_plain"].to_record()
    for key in ("norm", "m", "n_batches", "logit_normalize"):
        attrs.pop(key)
    old = AverageCase.from_record((arrays, attrs))
    assert (old.norm, old.m, old.n_batches, old.logit_normalize) == ("l2", None, 1, False)
    arrays, attrs = results["worst"].to_record()
    attrs.pop("logit_normalize")
    assert WorstCase.from_record((arrays, attrs)).logit_normalize is False


def binary_model():
    gen = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 1).double()
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    return model, x, (x[:, :1] > 0).double()


class Sequence3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3).double()

    def forward(self, x):
        return self.lin(x)[:, None, :].expand(-1, 2, -1)  # (N, 2, K)


BAD = [
    (
        lambda m, d: worst_case(m, CE, d, rho=0.1, logit_normalize="yes"),
        TypeError,
        "worst_case: logit_normalize must be True or False, got 'yes'",
    ),
    (
        lambda m, d: average_case(m, CE, d, rho=0.1, logit_normalize=1),
        TypeError,
        "average_case: logit_normalize must be True or False, got 1",
    ),
    (
        lambda m, d: average_case(m, CE, d, rho=0.1, norm="l1"),
        ValueError,
        "average_case: norm must be one of 'l2', 'linf', got 'l1'",
    ),
    (
        lambda m, d: average_case(m, CE, d, rho=0.1, m=0),
        ValueError,
        "average_case: m must be an int >= 1, got 0",
    ),
    (
        lambda m, d: average_case(m, CE, d, rho=0.1, m=2.5),
        ValueError,
        "average_case: m must be an int",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD, ids=[b[2][:45] for b in BAD])
def test_bad_options_get_one_clear_line(call, exc, match):
    model, x, y = linear(n=6)
    with pytest.raises(exc, match=match) as err:
        call(model, (x, y))
    assert "\n" not in str(err.value)


def test_outputs_that_are_not_logits_get_one_clear_line():
    model, x, t = binary_model()
    before = snapshot(model)
    for probe in (worst_case, average_case):
        with pytest.raises(LogitShapeError) as err:
            probe(model, nn.BCEWithLogitsLoss(), (x, t), rho=0.1, logit_normalize=True)
        msg = str(err.value)
        assert msg.startswith(f"{probe.__name__}: logit_normalize expects classification logits")
        assert "(8, 1)" in msg and "\n" not in msg and isinstance(err.value, ValueError)
    seq = Sequence3d()
    xs = torch.randn(4, 2, dtype=torch.float64)

    def loss(out, y):
        return CE(out.reshape(-1, 3), y.repeat_interleave(2))

    with pytest.raises(LogitShapeError, match=r"shape \(N, K\).*got shape \(4, 2, 3\)"):
        worst_case(seq, loss, (xs, torch.zeros(4, dtype=torch.long)), rho=0.1, logit_normalize=True)
    state, flags = before
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(LogitShapeError, match="normalize_logits: logit_normalize expects"):
        normalize_logits(torch.zeros(3, dtype=torch.float64))


def test_float32_models_stay_float32():
    model, x, y = relu_net(5, n=12)
    model = model.float()
    s = worst_case(model, CE, (x.float(), y), rho=0.1, steps=3, logit_normalize=True, m=5)
    a = average_case(
        model, CE, (x.float(), y), rho=0.1, n_samples=3, norm="linf", logit_normalize=True
    )
    assert math.isfinite(s.value) and math.isfinite(a.value)


# --------------------------------------------------------------------------- (e) spec keys
BASE = """
name = "t"
[base]
model = {name = "mlp", width = 8}
data = {name = "gaussians", n_train = 40, n_test = 40}
train = {epochs = 1, seed = 0}
[probes]
"""


AVERAGE = (  # an inline table is one line in TOML
    '{kind = "average", adaptive = true, logit_normalize = true, m = 64, norm = "linf", '
    "n_samples = 3}"
)


def test_spec_keys_are_the_probe_options():
    s = loads(
        BASE
        + """sharpness = [
    {kind = "worst", logit_normalize = true, m = 64, norm = "linf"},
    """
        + AVERAGE
        + """,
]
measures = {logit_normalize = true, include = ["sharpness"]}
"""
    )
    module, fn, opts = s.probes["sharpness_worst_case"]
    assert (module, fn) == ("sharpness", "worst_case")
    assert opts == {"logit_normalize": True, "m": 64, "norm": "linf", "rho": 0.05}
    module, fn, avg = s.probes["sharpness_average_case_adaptive"]
    assert fn == "average_case" and avg["m"] == 64 and avg["logit_normalize"] is True
    assert s.probes["measures"][2]["logit_normalize"] is True
    # the options the spec gives run as they are
    model, x, y = relu_net(6, n=80)
    w = worst_case(model, CE, (x, y), steps=3, **opts)
    assert w.logit_normalize and w.m == 64 and list(w.batch_sizes) == [64, 16] and w.norm == "linf"
    a = average_case(model, CE, (x, y), **avg)
    assert a.logit_normalize and a.m == 64 and a.norm == "linf" and a.adaptive


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('sharpness = [{kind = "worst", logit_normalise = true}]', "logit_normalise"),
        ('sharpness = [{kind = "epsilon", logit_normalize = true}]', "logit_normalize"),
        ('sharpness = [{kind = "pac_bayes", m = 8}]', "m"),
        ("measures = {logit_normalized = true}", "logit_normalized"),
    ],
)
def test_unknown_spec_keys_are_one_line(extra, key):
    with pytest.raises(ValueError) as err:
        loads(BASE + extra)
    msg = str(err.value)
    assert msg.startswith("sweep spec") and f".{key}: unknown key" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("entry", "exc", "spec_match", "match"),
    [
        (
            '{kind = "worst", logit_normalize = "yes"}',
            TypeError,
            "logit_normalize: must be true or false",
            "worst_case: logit_normalize",
        ),
        ('{kind = "average", norm = "l3"}', ValueError, None, "average_case: norm must be one of"),
        ('{kind = "average", m = 0}', ValueError, "m: must be an integer >= 1", "average_case: m"),
        ('{kind = "worst", m = -3}', ValueError, "m: must be an integer >= 1", "worst_case: m"),
    ],
)
def test_bad_spec_values_are_one_line_errors_before_any_work(entry, exc, spec_match, match):
    """Bad values of the spec's probe options are refused in one line before any run trains.

    Types and ranges are checked when the spec is read (so ``--dry-run`` refuses them); the
    rest (a choice among names) by the probe before any work is done. Called directly, the
    probe refuses every one of them itself.
    """
    bad = BASE + f"sharpness = [{entry}]"
    if spec_match is not None:
        with pytest.raises(exc, match=spec_match) as err:
            loads(bad)
        assert str(err.value).startswith("sweep spec") and "\n" not in str(err.value)
        table = tomllib.loads(f"e = {entry}")["e"]
        good = "{" + f'kind = "{table["kind"]}"' + "}"
        ((_, fn, opts),) = loads(BASE + f"sharpness = [{good}]").probes.values()
        opts = {**opts, **{k: v for k, v in table.items() if k != "kind"}}
    else:
        ((_, fn, opts),) = loads(bad).probes.values()
    probe = {"worst_case": worst_case, "average_case": average_case}[fn]
    model, x, y = linear(n=6)
    with pytest.raises(exc, match=match) as err:
        probe(model, CE, (x, y), **opts)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- measures
def test_measures_add_the_logit_normalised_sharpness_only_when_asked():
    model, x, y = relu_net(7, n=20)
    kw = {"include": ["sharpness"], "steps": 3, "n_samples": 2, "adaptive_rho": 0.3, "seed": 1}
    plain = measures(model, CE, (x, y), **kw)
    assert not set(LOGITNORM) & set(plain.values) and "logit_normalize" not in plain.options
    m = measures(model, CE, (x, y), logit_normalize=True, **kw)
    assert m.options["logit_normalize"] is True
    w = worst_case(model, CE, (x, y), rho=0.3, adaptive=True, steps=3, seed=1, logit_normalize=True)
    a = average_case(
        model, CE, (x, y), rho=0.3, adaptive=True, n_samples=2, seed=1, logit_normalize=True
    )
    assert m.values["sharpness_worst_adaptive_logitnorm"] == pytest.approx(w.value, rel=1e-12)
    assert m.values["sharpness_average_adaptive_logitnorm"] == pytest.approx(a.value, rel=1e-12)
    for name in plain.values:  # the others are unchanged
        assert m.values[name] == pytest.approx(plain.values[name], rel=1e-12), name
    assert m.cost.passes > plain.cost.passes
    # outputs that are no logits (N, K): None, and why
    bm, bx, bt = binary_model()
    b = measures(bm, nn.BCEWithLogitsLoss(), (bx, bt), logit_normalize=True, **kw)
    for name in LOGITNORM:
        assert b.values[name] is None and "logit_normalize expects" in b.skipped[name]
    assert b.values["sharpness_worst_adaptive"] is not None
    with pytest.raises(TypeError, match="measures: logit_normalize must be True or False"):
        measures(model, CE, (x, y), logit_normalize="no", **kw)
