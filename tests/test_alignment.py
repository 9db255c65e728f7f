"""Weight matching (probes.paths.alignment).

The aligned model computes model_b's function, a known permutation is undone exactly, the coordinate
descent is monotone and stops, the given models are untouched, unsupported architectures are refused
by name, and on MNIST-1D the linear-path loss barrier between two SGD solutions drops once they are
aligned.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from landscape import data, models
from landscape.engine.objective import Objective
from landscape.store.file import Store
from landscape.train.fit import TrainConfig, fit
from probes.paths.alignment import WeightMatching, align, hidden_units, permute

# --------------------------------------------------------------------------- helpers


def seeded(seed, fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def randomize_norms(model, seed):
    """Random BatchNorm affine parameters and running statistics.

    A trained net's are not the defaults, so permuting them matters.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def mlp_bn(seed):
    """Linear -> BatchNorm -> ReLU, then Linear -> ReLU -> BatchNorm: both orders."""
    return seeded(
        seed,
        lambda: nn.Sequential(
            nn.Linear(12, 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Linear(16, 20),
            nn.ReLU(),
            nn.BatchNorm1d(20),
            nn.Linear(20, 3),
        ),
    )


def cnn2d(seed):
    return seeded(
        seed,
        lambda: nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 4, 5),
        ),
    )


def build(kind, seed):
    """A model of each supported family, in float64, eval mode, inputs to feed it."""
    if kind == "mlp":
        model = models.build("mlp", in_features=12, num_classes=3, width=16, depth=3, seed=seed)
        shape = (32, 12)
    elif kind == "mlp_bn":
        model, shape = mlp_bn(seed), (32, 12)
    elif kind == "cnn1d_bn":
        model, shape = models.build("cnn1d", batchnorm=True, seed=seed), (32, 40)
    else:
        model, shape = cnn2d(seed), (32, 2, 8, 8)
    model = randomize_norms(model.double(), seed).eval()
    return model, torch.randn(
        shape, dtype=torch.float64, generator=torch.Generator().manual_seed(99)
    )


# producer layer, its BatchNorms, consumer layer, features per channel in the consumer's input
GROUPS = {
    "mlp_bn": [("0", ["1"], "3", 1), ("3", ["5"], "6", 1)],
    "cnn1d_bn": [
        ("features.0", ["features.1"], "features.3", 1),
        ("features.3", ["features.4"], "features.6", 1),
        ("features.6", ["features.7"], "head", 5),
    ],
    "cnn2d_bn": [("0", ["1"], "4", 1), ("4", ["5"], "9", 4)],
}


def scramble(model, kind, seed):
    """A copy of ``model`` with each hidden layer's units permuted by hand.

    Unit i of the copy is unit q[i] of the model; returns the copy and the permutations q, by layer.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)
    qs = {}
    for producer, norms, consumer, block in GROUPS[kind]:
        q = torch.as_tensor(rng.permutation(state[f"{producer}.weight"].shape[0]))
        qs[producer] = q.numpy()
        for key in [f"{producer}.weight", f"{producer}.bias"] + [
            f"{n}.{a}" for n in norms for a in ("weight", "bias", "running_mean", "running_var")
        ]:
            if key in state:
                state[key] = state[key][q]
        w = state[f"{consumer}.weight"]
        state[f"{consumer}.weight"] = w.reshape(w.shape[0], len(q), block, *w.shape[2:])[
            :, q
        ].reshape(w.shape)
    out = build(kind, 0)[0]
    out.load_state_dict(state)
    return out, qs


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def assert_untouched(model, snap):
    state, training, grads = snapshot(model)
    assert state.keys() == snap[0].keys()
    assert all(torch.equal(state[k], snap[0][k]) for k in state)
    assert training == snap[1] and grads == snap[2]


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def linear_barrier(model_a, model_b, xy, n=11):
    """Max over alpha of L((1 - alpha) a + alpha b) minus the chord between the ends' losses.

    The loss from Objective.evaluate at the interpolated flat vectors.
    """
    obj = Objective(model_a, nn.CrossEntropyLoss(), xy, check=False)
    ta, tb = flat(model_a), flat(model_b)
    alphas = np.linspace(0, 1, n)
    loss = np.array([obj.evaluate((1 - t) * ta + t * tb).loss for t in alphas])
    return float(np.max(loss - ((1 - alphas) * loss[0] + alphas * loss[-1]))), loss


# --------------------------------------------------------------------------- function kept


@pytest.mark.parametrize("kind", ["mlp", "mlp_bn", "cnn1d_bn", "cnn2d_bn"])
def test_aligned_model_computes_model_b(kind):
    a, x = build(kind, 0)
    b, _ = build(kind, 1)
    result = align(a, b, seed=0)
    new = result.model
    assert new is not b and not new.training
    assert all(p.dtype == torch.float64 for p in new.parameters())
    assert list(result.perms) == list(hidden_units(b))
    assert any(not np.array_equal(p, np.arange(len(p))) for p in result.perms.values())
    with torch.no_grad():
        torch.testing.assert_close(new(x), b(x), rtol=0, atol=1e-12)
    # the running statistics moved with their channels
    got, old = new.state_dict(), b.state_dict()
    for producer, norms, _, _ in GROUPS.get(kind, []):
        for norm in norms:
            for stat in ("running_mean", "running_var"):
                key = f"{norm}.{stat}"
                assert torch.equal(got[key], old[key][result.perms[producer]]), key


def test_hidden_layers_of_the_reference_models():
    mlp = models.build("mlp", in_features=40, num_classes=10, width=7, depth=2, seed=0)
    assert hidden_units(mlp) == {"layers.0": 7, "layers.2": 7}
    cnn = models.build("cnn1d", batchnorm=True, channels=[4, 5, 6], seed=0)
    assert hidden_units(cnn) == {"features.0": 4, "features.3": 5, "features.6": 6}


@pytest.mark.parametrize("kind", ["mlp_bn", "cnn1d_bn", "cnn2d_bn"])
def test_a_known_permutation_is_undone_exactly(kind):
    a, x = build(kind, 0)
    b, qs = scramble(a, kind, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=1e-12)  # the scramble is exact
    result = align(a, b, seed=1)
    assert result.converged
    for name, q in qs.items():
        np.testing.assert_array_equal(result.perms[name], np.argsort(q))
    got, want = result.model.state_dict(), a.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    # at the match, J is the squared norm of model_a's matched tensors
    assert result.objective_after == pytest.approx(
        sum(float((want[k] ** 2).sum()) for k in result.matched), rel=1e-12
    )
    # matched: the weights and biases of the layers and the BatchNorms' affine parameters
    assert set(result.matched) == {k for k in want if k.endswith(("weight", "bias"))}


# --------------------------------------------------------------------------- the descent


def test_objective_never_decreases_and_the_descent_stops():
    a = models.build("mlp", in_features=10, num_classes=4, width=24, depth=4, seed=0).double()
    b = models.build("mlp", in_features=10, num_classes=4, width=24, depth=4, seed=1).double()
    result = align(a, b, max_iter=100, seed=0)
    assert result.converged and 2 <= result.iterations < 100
    assert len(result.objective) == result.iterations + 1
    assert np.all(np.diff(result.objective) >= 0)
    assert result.objective[0] == result.objective_before
    assert result.objective[-1] == result.objective_after > result.objective_before
    # J recomputed from the aligned model: the sum of the matched inner products
    sa, sn = a.state_dict(), result.model.state_dict()
    j = sum(float((sa[k] * sn[k]).sum()) for k in result.matched)
    assert j == pytest.approx(result.objective_after, rel=1e-12)
    # a fixed point: aligning the aligned model again changes nothing, in one sweep
    again = align(a, result.model, seed=5)
    assert again.iterations == 1 and again.converged
    assert all(np.array_equal(p, np.arange(len(p))) for p in again.perms.values())
    # a budget of one sweep is respected
    one = align(a, b, max_iter=1, seed=0)
    assert one.iterations == 1 and not one.converged
    assert one.objective_after <= result.objective_after
    # the seed only orders the layers: each seed reaches a coordinate-wise maximum
    other = align(a, b, seed=7)
    assert other.converged and other.objective_after >= result.objective_before


def test_given_models_are_untouched_and_share_nothing():
    a, x = build("cnn1d_bn", 0)
    b, _ = build("cnn1d_bn", 1)
    b.train()
    snaps = snapshot(a), snapshot(b)
    result = align(a, b)
    assert_untouched(a, snaps[0])
    assert_untouched(b, snaps[1])
    assert result.model.training  # the copy keeps model_b's mode
    ptrs = {t.data_ptr() for t in b.state_dict().values()}
    assert not ptrs & {t.data_ptr() for t in result.model.state_dict().values()}


# --------------------------------------------------------------------------- refused


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x))) + x))


class Sliced(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.out = nn.Linear(4, 4), nn.Linear(2, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc1(x))[:, :2])


def shared():
    layer = nn.Linear(4, 4)
    return nn.Sequential(layer, nn.ReLU(), layer, nn.Linear(4, 2))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: models.build("resnet", seed=0), r"'blocks\.0' \(_Block\) is a container other"),
        (
            lambda: models.build("tiny_transformer", vocab_size=7, context_length=4, seed=0),
            r"'layers' \(ModuleList\) is a container other",
        ),
        (Residual, r"Residual combines 2 tensors in 'add'"),
        (Sliced, r"applies 'getitem' between its layers"),
        (
            lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
            r"'1' \(LayerNorm\) is not a layer that align knows",
        ),
        (
            lambda: nn.Sequential(nn.Conv1d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)),
            r"'0' \(Conv1d\) is a grouped or transposed convolution",
        ),
        (
            lambda: nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Conv1d(4, 4, 1), nn.Linear(4, 2)),
            r"'2' \(Conv1d\) is a convolution after a Linear",
        ),
        (shared, r"'2' \(Linear\) is the module '0' used twice"),
    ],
)
def test_unsupported_architectures_are_refused_by_name(make, match):
    model = make()
    with pytest.raises(ValueError, match=r"^align: .*" + match):
        align(model, make())


def test_bad_arguments():
    a, _ = build("mlp", 0)
    wide = models.build("mlp", in_features=12, num_classes=3, width=17, depth=3, seed=0)
    with pytest.raises(ValueError, match="align: model_a and model_b must have the same arch"):
        align(a, wide)
    with pytest.raises(TypeError, match="align: model_b must be a torch.nn.Module, got dict"):
        align(a, dict(a.state_dict()))
    with pytest.raises(ValueError, match="align: max_iter must be an int >= 1, got 0"):
        align(a, a, max_iter=0)
    with pytest.raises(ValueError, match=r"permute: perms\['layers.0'\] must be a permutation"):
        permute(a, {"layers.0": np.zeros(16), "layers.2": np.arange(16), "layers.4": np.arange(16)})
    with pytest.raises(ValueError, match="permute: perms must be a dict with one permutation"):
        permute(a, {"layers.0": np.arange(16)})


# --------------------------------------------------------------------------- records


def test_record_round_trip_and_permute(tmp_path):
    a, x = build("cnn1d_bn", 0)
    b, _ = build("cnn1d_bn", 1)
    result = align(a, b, seed=2)
    arrays, attrs = result.to_record()
    assert attrs["probe"] == "interpolation.align"
    json.dumps(attrs)
    with Store(tmp_path / "align.h5", "w") as store:
        store.write_record(None, "probes", "align", arrays=arrays, attrs=attrs)
    with Store(tmp_path / "align.h5") as store:
        back = WeightMatching.from_record(store.record(None, "probes", "align"))
    assert back.model is None and list(back.perms) == list(result.perms)
    assert all(
        np.array_equal(back.perms[k], result.perms[k]) and back.perms[k].dtype == np.int64
        for k in result.perms
    )
    for name in (
        "iterations",
        "converged",
        "objective_before",
        "objective_after",
        "matched",
        "max_iter",
        "seed",
        "cost",
    ):
        assert getattr(back, name) == getattr(result, name), name
    np.testing.assert_array_equal(back.objective, result.objective)
    rebuilt = permute(b, back.perms)
    got, want = rebuilt.state_dict(), result.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="WeightMatching.from_record: the record holds probe 'x'"):
        WeightMatching.from_record((arrays, {**attrs, "probe": "x"}))


# --------------------------------------------------------------------------- the science


@pytest.fixture(scope="module")
def two_sgd_solutions():
    """Two MLPs (2 hidden layers of 256) trained by SGD on MNIST-1D from different seeds.

    The seeds set the initialisation and the batch order.
    """
    split = data.mnist1d()

    def train(seed):
        model = models.build("mlp", in_features=40, num_classes=10, width=256, depth=2, seed=seed)
        fit(
            model,
            "cross_entropy",
            split.train,
            TrainConfig("sgd", lr=0.1, max_steps=500, seed=seed, history_every=0, snapshot_every=0),
        )
        return model

    return split, train(0), train(1)


def test_alignment_lowers_the_linear_barrier_between_sgd_solutions(two_sgd_solutions):
    split, a, b = two_sgd_solutions
    result = align(a, b, seed=0)
    x, y = split.train
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), b(x), rtol=0, atol=1e-4)
    before, loss_before = linear_barrier(a, b, split.train)
    after, loss_after = linear_barrier(a, result.model, split.train)
    assert loss_before[-1] == pytest.approx(loss_after[-1], abs=1e-5)  # the same end point
    assert before > 0.3, f"the naive barrier is {before:.3f}: not a test of anything"
    assert after < 0.35 * before, f"barrier {before:.3f} -> {after:.3f}"
    test_before, _ = linear_barrier(a, b, split.test)
    test_after, _ = linear_barrier(a, result.model, split.test)
    assert test_after < 0.35 * test_before, f"test barrier {test_before:.3f} -> {test_after:.3f}"
