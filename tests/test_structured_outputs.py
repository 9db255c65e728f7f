"""Models returning tuples, dicts or objects with ``.logits``; mapping batches; the model's loss.

Each structured model is the same network as a plain-tensor one; loss, gradient, Hessian-vector
products (every strategy) and the top Hessian eigenvalues must agree with it in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from landscape import Objective
from landscape.engine import hvp as _hvp
from landscape.engine.metrics import correct, logits_of
from landscape.engine.pointwise import Evaluator, Points
from probes.curvature import hessian

TOL = 1e-10
N, D, K = 24, 5, 3


@dataclass
class Output:
    """Like a ``ModelOutput`` without the dict: attributes only."""

    logits: Tensor
    loss: Tensor | None = None


class Net(nn.Module):
    """A small MLP returning its logits as a tensor, tuple, dict or :class:`Output`."""

    def __init__(self, kind: str = "tensor") -> None:
        super().__init__()
        self.kind = kind
        self.body = nn.Sequential(nn.Linear(D, 6), nn.Tanh(), nn.Linear(6, K))

    def forward(self, x: Tensor, labels: Tensor | None = None):
        logits = self.body(x)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        if self.kind == "tensor":
            return logits
        if self.kind == "tuple":
            return (logits, logits.square().sum())
        if self.kind == "dict":
            return {"logits": logits} if loss is None else {"logits": logits, "loss": loss}
        if self.kind == "object":
            return Output(logits, loss)
        return {"hidden": logits}  # no logits


def ce(outputs, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits_of(outputs), targets)


def ce_batch(outputs, batch) -> Tensor:
    return F.cross_entropy(logits_of(outputs), batch["labels"])


def make(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return Net(kind).double()


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(N, D, generator=gen, dtype=torch.float64), torch.randint(
        0, K, (N,), generator=gen
    )


def reference(data, **kw) -> Objective:
    return Objective(make("tensor"), nn.CrossEntropyLoss(), data, **kw)


def close(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def agree(obj: Objective, ref: Objective, strategy: str | None = None) -> float:
    theta = ref.theta
    assert torch.equal(obj.theta, theta)
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(2), dtype=theta.dtype)
    err = close(obj.loss(theta), ref.loss(theta))
    err = max(err, close(obj.grad(theta), ref.grad(theta)))
    if strategy is not None:
        obj.hvp_strategy = ref.hvp_strategy = strategy
        obj.clear_cache(), ref.clear_cache()
    err = max(err, close(obj.hvp(theta, v), ref.hvp(theta, v)))
    return err


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
@pytest.mark.parametrize("strategy", list(_hvp.STRATEGIES))
def test_structured_outputs_match_the_tensor_model(kind, strategy, data) -> None:
    ref = reference(data, batch_size=10)
    obj = Objective(make(kind), ce, data, batch_size=10)
    assert agree(obj, ref, strategy) <= TOL
    m, r = obj.evaluate(), ref.evaluate()
    assert m.accuracy == r.accuracy and abs(m.loss - r.loss) <= TOL
    assert obj.has_accuracy


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_eigenvalues_and_per_example_grads_match(kind, data) -> None:
    ref = hessian.eigenvalues(make("tensor"), nn.CrossEntropyLoss(), data, k=2)
    got = hessian.eigenvalues(make(kind), ce, data, k=2)
    assert close(torch.as_tensor(got.values), torch.as_tensor(ref.values)) <= TOL
    obj, r = Objective(make(kind), ce, data), reference(data)
    a, b = torch.cat(list(obj.per_example_grads())), torch.cat(list(r.per_example_grads()))
    assert close(a, b) <= TOL


def test_ggn_of_dict_outputs(data) -> None:
    obj, ref = Objective(make("dict"), ce, data), reference(data)
    v = torch.randn(
        ref.theta.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    assert close(obj.ggn_vp(None, v), ref.ggn_vp(None, v)) <= TOL


class Rows(Dataset):
    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


@pytest.mark.parametrize("kind", ["tensor", "dict", "object"])
@pytest.mark.parametrize("strategy", list(_hvp.STRATEGIES))
def test_mapping_batches_equal_pairs(kind, strategy, data) -> None:
    x, y = data
    ref = Objective(
        make("tensor"), nn.CrossEntropyLoss(), DataLoader(list(zip(x, y, strict=True)), 7)
    )
    loader = DataLoader(Rows(x, y), batch_size=7)  # batches of 7, 7, 7, 3
    obj = Objective(make(kind), ce_batch, loader)
    assert obj.n_examples == N and obj.batches.n_batches == 4
    assert agree(obj, ref, strategy) <= TOL
    assert obj.evaluate().accuracy == ref.evaluate().accuracy
    a, b = torch.cat(list(obj.per_example_grads())), torch.cat(list(ref.per_example_grads()))
    assert close(a, b) <= TOL


@pytest.mark.parametrize("kind", ["dict", "object"])
def test_model_loss_equals_the_explicit_loss(kind, data) -> None:
    x, y = data
    loader = DataLoader(Rows(x, y), batch_size=7)
    obj = Objective(make(kind), "model", loader)
    ref = Objective(make(kind), ce_batch, loader)
    assert agree(obj, ref, "forward-over-reverse") <= TOL
    got = hessian.eigenvalues(make(kind), "model", loader, k=2)
    want = hessian.eigenvalues(make("tensor"), nn.CrossEntropyLoss(), data, k=2)
    assert close(torch.as_tensor(got.values), torch.as_tensor(want.values)) <= TOL


def test_outputs_without_logits_have_no_accuracy(data) -> None:
    obj = Objective(make("none"), lambda o, t: F.cross_entropy(o["hidden"], t), data)
    assert not obj.has_accuracy and obj.evaluate().accuracy is None
    assert correct({"hidden": torch.zeros(2, 3)}, torch.zeros(2, dtype=torch.long)) is None


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_inputs_give_one_line(data) -> None:
    x, y = data
    with pytest.raises(TypeError) as exc:
        Objective(make("tensor"), "model", data)
    assert one_line(exc) == "loss_fn='model' needs outputs with a 'loss' field, got Tensor"
    with pytest.raises(TypeError) as exc:  # a dict without labels has no loss
        Objective(make("dict"), "model", DataLoader([{"x": r} for r in x], batch_size=8))
    assert one_line(exc) == "loss_fn='model' needs outputs with a 'loss' field, got dict"
    with pytest.raises(ValueError) as exc:
        Objective(make("tensor"), "mine", data)
    assert "loss_fn must be callable or 'model'" in one_line(exc)
    with pytest.raises(ValueError) as exc:  # a mapping without the keys the model needs
        Objective(make("tensor"), ce_batch, DataLoader([{"z": r} for r in x], batch_size=8))
    assert one_line(exc).startswith("the model failed on the first batch")
    with pytest.raises(ValueError) as exc:
        Objective(make("tensor"), ce_batch, DataLoader([{"name": "a"}] * 3, batch_size=None))
    assert "tensor with a batch dimension" in one_line(exc)
    obj = Objective(make("object"), "model", DataLoader(Rows(x, y), batch_size=8))
    with pytest.raises(ValueError) as exc:
        obj.ggn_vp(None, obj.theta)
    assert "pass loss_fn explicitly" in one_line(exc)


def _transformers():
    """``transformers`` without torchvision, which does not import beside the CPU torch here."""
    import sys

    if "transformers" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except (ImportError, RuntimeError):
            sys.modules["torchvision"] = None  # type: ignore[assignment]  # transformers skips it
    return pytest.importorskip("transformers")


def causal_ce(outputs, batch) -> Tensor:
    """The causal language-model loss in the model's dtype (HF's own upcasts to float32)."""
    logits = outputs.logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))


# HF's ForCausalLMLoss computes in float32 (``logits.float()``), so its own loss agrees with a
# float64 reference only to float32 rounding; the explicit float64 loss to 1e-8.
@pytest.mark.parametrize(("loss", "tol"), [("model", 1e-6), ("explicit", 1e-8)])
def test_tiny_gpt2_eigenvalues(loss, tol) -> None:
    transformers = _transformers()
    config = transformers.GPT2Config(
        n_layer=1,
        n_embd=16,
        n_head=2,
        vocab_size=50,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).double().eval()
    ids = torch.randint(0, 50, (12, 8), generator=torch.Generator().manual_seed(4))
    rows = [{"input_ids": r, "attention_mask": torch.ones_like(r), "labels": r} for r in ids]
    loader = DataLoader(rows, batch_size=5)  # 5, 5, 2 sequences
    names = ["transformer.ln_f.weight", "transformer.ln_f.bias", "transformer.h.0.attn.c_proj.bias"]
    loss_fn = "model" if loss == "model" else causal_ce
    got = hessian.eigenvalues(model, loss_fn, loader, k=2, params=names, tol=1e-12)

    # the reference: the batch-size-weighted mean of the loss, a dense Hessian by double backward
    named = dict(model.named_parameters())
    shapes = [named[n].shape for n in names]
    theta = torch.cat([named[n].detach().reshape(-1) for n in names])

    def risk(flat: Tensor) -> Tensor:
        parts = dict(zip(names, flat.split([s.numel() for s in shapes]), strict=True))
        tensors = {n: p.reshape(s) for (n, p), s in zip(parts.items(), shapes, strict=True)}
        total = flat.new_zeros(())
        for batch in loader:
            out = torch.func.functional_call(model, tensors, (), batch, strict=False)
            value = out.loss if loss == "model" else causal_ce(out, batch)
            total = total + len(batch["input_ids"]) * value
        return total / len(ids)

    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        dense = torch.autograd.functional.hessian(risk, theta)
    want = torch.linalg.eigvalsh((dense + dense.T) / 2)[-2:]  # ascending, as the probe gives them
    assert close(torch.as_tensor(got.values).sort().values, want) <= tol
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
def test_margins_take_the_logits(kind, data) -> None:
    from probes.implicit_bias.margins import margins

    got, want = margins(make(kind), data), margins(make("tensor"), data)
    assert np.abs(got.margins - want.margins).max() <= TOL


@pytest.mark.parametrize("use_vmap", [True, False])
@pytest.mark.parametrize("kind", ["dict", "object"])
def test_surface_points_of_mapping_batches(kind, use_vmap, data) -> None:
    x, y = data
    obj = Objective(make(kind), ce_batch, DataLoader(Rows(x, y), batch_size=7))
    ref = Objective(make("tensor"), nn.CrossEntropyLoss(), data)
    d = torch.randn((1, ref.layout.numel), generator=torch.Generator().manual_seed(5))
    coef = np.array([[0.0], [0.3], [-0.3]])
    out = {}
    for name, o in (("got", obj), ("want", ref)):
        with Evaluator({"train": o}, "keep", use_vmap) as evaluate:
            out[name] = evaluate(Points(o.theta, d.double(), coef))
    assert np.abs(out["got"]["train_loss"] - out["want"]["train_loss"]).max() <= TOL
    assert np.array_equal(out["got"]["train_accuracy"], out["want"]["train_accuracy"])
