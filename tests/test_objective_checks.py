"""The Objective's guards: the determinism check, the model left untouched, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from landscape import DeterminismError, Objective

from .zoo import make

CE = nn.CrossEntropyLoss()


def loader(x, y, **kw):
    return DataLoader(TensorDataset(x, y), **kw)


class Augmented(Dataset):
    """Adds fresh noise to every input each time it is read."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


def test_determinism_check_fires_on_shuffle_with_drop_last():
    model, x, y = make("mlp", n=50)
    torch.manual_seed(0)
    with pytest.raises(DeterminismError, match="drop_last"):
        Objective(model, CE, loader(x, y, batch_size=8, shuffle=True, drop_last=True))


def test_determinism_check_fires_on_random_augmentation():
    model, x, y = make("mlp", n=40)
    for cache in (True, False):
        with pytest.raises(DeterminismError, match="augmentation"):
            Objective(model, CE, DataLoader(Augmented(x, y), batch_size=16), cache=cache)


def test_determinism_check_fires_on_dropout_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 3)).double()
    _, x, y = make("mlp")
    with pytest.raises(DeterminismError, match="dropout"):
        Objective(model, CE, (x, y), mode="train")
    Objective(model, CE, (x, y))  # eval mode: dropout off, quiet
    Objective(model, CE, (x, y), mode="train", check=False)  # accepted when asked


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_determinism_check_quiet_on_deterministic_setups(dtype):
    model, x, y = make("cnn_bn", n=103, dtype=dtype)
    torch.manual_seed(0)
    Objective(model, CE, (x, y))
    Objective(model, CE, loader(x, y, batch_size=10))
    # a shuffling loader without drop_last: weighted batches give the same mean
    Objective(model, CE, loader(x, y, batch_size=10, shuffle=True), cache=False)
    Objective(model, CE, loader(x, y, batch_size=10, shuffle=True), cache=True)
    # train mode BatchNorm on fixed batches is deterministic too
    Objective(model, CE, (x, y), mode="train", batch_size=32)


def test_train_mode_batchnorm_on_shuffled_batches_fires():
    model, x, y = make("cnn_bn", n=60)
    torch.manual_seed(0)
    with pytest.raises(DeterminismError, match="BatchNorm in train mode on batches"):
        Objective(model, CE, loader(x, y, batch_size=16, shuffle=True), mode="train", cache=False)


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def assert_same(model, snap):
    state, modes, req = snapshot(model)
    assert modes == snap[1] and req == snap[2]
    assert state.keys() == snap[0].keys()
    for k in state:
        assert torch.equal(state[k], snap[0][k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", ["cnn_bn", "attention", "tied", "buffered_frozen"])
def test_model_unchanged_after_every_call(name, mode):
    model, x, y = make(name)
    model.train()
    model.body[1].eval() if name == "cnn_bn" else None  # a mixed-mode model
    snap = snapshot(model)
    obj = Objective(model, CE, (x, y), mode=mode, batch_size=8)
    theta = obj.theta + 0.1
    v = torch.randn_like(theta)
    for call in (
        lambda: obj.loss(theta),
        lambda: obj.loss_and_grad(theta),
        lambda: obj.hvp(theta, v),
        lambda: obj.hvp(theta, torch.stack([v, v])),
        lambda: obj.ggn_vp(theta, v),
        lambda: obj.evaluate(theta),
        lambda: list(obj.per_example_grads(theta)) if mode == "eval" else None,
    ):
        call()
        assert_same(model, snap)


def test_bad_inputs_raise_clear_errors():
    model, x, y = make("mlp")
    with pytest.raises(ValueError, match="scalar"):
        Objective(model, nn.CrossEntropyLoss(reduction="none"), (x, y))
    with pytest.raises(ValueError, match="empty"):
        Objective(model, CE, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="empty"):
        Objective(model, CE, loader(x[:0], y[:0], batch_size=4))
    with pytest.raises(ValueError, match="one entry per example"):
        Objective(model, CE, (x, y[:-1]))
    frozen = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Objective(frozen, CE, (torch.randn(4, 3), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(TypeError, match="nn.Module"):
        Objective("model", CE, (x, y))
    with pytest.raises(TypeError, match="DataLoader"):
        Objective(model, CE, {"x": x, "y": y})
    with pytest.raises(TypeError, match="callable"):
        Objective(model, None, (x, y))
    with pytest.raises(ValueError, match="mode"):
        Objective(model, CE, (x, y), mode="inference")
    with pytest.raises(ValueError, match="hvp must be"):
        Objective(model, CE, (x, y), hvp="newton")
    xn = x.clone()
    xn[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        Objective(model, CE, (xn, y))
    obj = Objective(model, CE, (x, y))
    p = obj.layout.numel
    with pytest.raises(ValueError, match=rf"shape \({p},\)"):
        obj.loss(torch.zeros(p + 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype torch.float64"):
        obj.grad(torch.zeros(p, dtype=torch.float32))
    with pytest.raises(ValueError, match=rf"shape \({p},\)"):
        obj.hvp(None, torch.zeros(p - 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"\(k, {p}\)"):
        obj.hvp(None, torch.zeros(2, p - 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        obj.loss([0.0] * p)
    with pytest.raises(ValueError, match="not finite"):
        obj.loss(torch.full((p,), float("inf"), dtype=torch.float64))
    with pytest.raises(TypeError, match="pair or a mapping"):
        Objective(model, CE, DataLoader([[x[0], y[0], y[0]]] * 3, batch_size=None))
    # a mapping batch goes in as model(**batch): a model without those arguments fails in one line
    with pytest.raises(ValueError, match="model failed on the first batch.*keyword argument 'x'"):
        Objective(model, CE, DataLoader([{"x": x[0], "y": y[0]}] * 3, batch_size=None))
