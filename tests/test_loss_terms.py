"""Means over loss terms: a token-level loss averages over the data's tokens, whatever the batching.

A tiny causal language model on sequences of unequal lengths, padded per batch (labels -100), in
batches of unequal sizes; every quantity of the objective must equal the direct computation over
the concatenated tokens of the whole dataset (each sequence on its own, unpadded) in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from landscape import Objective
from landscape.engine import hvp as _hvp
from landscape.engine.pointwise import Evaluator, Points
from landscape.engine.terms import (
    Tokens,
    causal_lm,
    causal_lm_loss,
    counted,
    token_labels,
    token_loss,
)

TOL = 1e-10
pytestmark = pytest.mark.usefixtures("one_thread")
V, D = 7, 4
LENGTHS = [5, 3, 6, 2, 4, 6, 3, 5, 2, 4]


class TinyLM(nn.Module):
    """Embedding, a causal running mean, one tanh layer, logits over the vocabulary."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.mix = nn.Linear(D, D)
        self.out = nn.Linear(D, V)

    def forward(self, input_ids: Tensor, attention_mask=None, labels=None):
        h = self.emb(input_ids)
        steps = torch.arange(1, h.shape[1] + 1, dtype=h.dtype, device=h.device)
        h = torch.tanh(self.mix(h.cumsum(1) / steps[:, None]))  # position t sees 0..t only
        logits = self.out(h)
        if labels is None:
            return {"logits": logits}
        shifted = logits[:, :-1].reshape(-1, V)
        return {"logits": logits, "loss": F.cross_entropy(shifted, labels[:, 1:].reshape(-1))}


def make() -> nn.Module:
    torch.manual_seed(0)
    return TinyLM().double()


def sequences() -> list[Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, V, (n,), generator=gen) for n in LENGTHS]


def pad(rows: list[dict]) -> dict:
    """Right-pad a batch to its longest sequence: id 0, mask 0, label -100."""
    t = max(len(r["input_ids"]) for r in rows)
    out = {}
    for key, fill in (("input_ids", 0), ("attention_mask", 0), ("labels", -100)):
        out[key] = torch.stack([F.pad(r[key], (0, t - len(r[key])), value=fill) for r in rows])
    return out


def loader(batch_size: int) -> DataLoader:
    rows = [
        {"input_ids": s, "attention_mask": torch.ones_like(s), "labels": s} for s in sequences()
    ]
    return DataLoader(rows, batch_size=batch_size, collate_fn=pad)


def flat_params(model: nn.Module) -> tuple[list[str], list[torch.Size], Tensor]:
    named = dict(model.named_parameters())
    names = list(named)
    return (
        names,
        [named[n].shape for n in names],
        torch.cat([p.detach().reshape(-1) for p in named.values()]),
    )


def unflatten(names, shapes, flat: Tensor) -> dict[str, Tensor]:
    parts = flat.split([s.numel() for s in shapes])
    return {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}


def token_logits(model: nn.Module, flat: Tensor) -> tuple[Tensor, Tensor]:
    """Logits (M, V) and labels (M,) of every predicted token of the dataset, unpadded."""
    names, shapes, _ = flat_params(model)
    tensors = unflatten(names, shapes, flat)
    logits, labels = [], []
    for s in sequences():
        out = torch.func.functional_call(model, tensors, (s[None],))["logits"][0]
        logits.append(out[:-1])
        labels.append(s[1:])
    return torch.cat(logits), torch.cat(labels)


def risk(model: nn.Module, flat: Tensor) -> Tensor:
    """The mean cross-entropy over all the dataset's predicted tokens."""
    logits, labels = token_logits(model, flat)
    return F.cross_entropy(logits, labels)


@pytest.fixture(scope="module")
def reference() -> dict:
    model = make()
    _, _, theta = flat_params(model)
    theta = theta.clone().requires_grad_(True)
    value = risk(model, theta)
    (gradient,) = torch.autograd.grad(value, theta)
    hessian = torch.autograd.functional.hessian(lambda t: risk(model, t), theta.detach())
    logits, labels = token_logits(model, theta.detach())
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return {
        "loss": value.detach(),
        "grad": gradient,
        "hessian": hessian,
        "v": v,
        "accuracy": float((logits.argmax(1) == labels).double().mean()),
        "n_terms": int(labels.numel()),
    }


def rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


LOSSES = {
    "model": lambda: counted("model", causal_lm()),
    "explicit": causal_lm_loss,
}


@pytest.mark.parametrize("batch_size", [3, 4])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_means_over_tokens_match_the_concatenated_dataset(loss, batch_size, reference) -> None:
    obj = Objective(make(), LOSSES[loss](), loader(batch_size))
    assert obj.n_terms == reference["n_terms"] == sum(LENGTHS) - len(LENGTHS)
    assert abs(float(obj.loss()) - float(reference["loss"])) <= TOL
    value, gradient = obj.loss_and_grad()
    assert abs(float(value) - float(reference["loss"])) <= TOL
    assert rel(gradient, reference["grad"]) <= TOL
    metrics = obj.evaluate()
    assert abs(metrics.loss - float(reference["loss"])) <= TOL
    assert metrics.accuracy == pytest.approx(reference["accuracy"], abs=1e-15)
    assert obj.accuracy() == metrics.accuracy


@pytest.mark.parametrize("strategy", _hvp.STRATEGIES)
def test_hvp_over_tokens(strategy, reference) -> None:
    want = reference["hessian"] @ reference["v"]
    # three batches of 12, 14 and 4 tokens (linearize traces each batch: few batches)
    obj = Objective(make(), causal_lm_loss(), loader(4), hvp=strategy, check=False)
    assert rel(obj.hvp(None, reference["v"]), want) <= TOL
    block = torch.stack([reference["v"], -2 * reference["v"]])
    assert rel(obj.hvp(None, block)[1], -2 * want) <= TOL
    if strategy in _hvp.CACHED:  # loss and gradient from the cached graphs
        value, gradient = obj.loss_and_grad()
        assert abs(float(value) - float(reference["loss"])) <= TOL
        assert rel(gradient, reference["grad"]) <= TOL


def test_terms_given_to_the_objective_or_measures(reference) -> None:
    """``terms=`` directly, instead of a loss that carries it."""
    from probes.implicit_bias import measures

    obj = Objective(make(), "model", loader(3), terms=causal_lm())
    assert abs(float(obj.loss()) - float(reference["loss"])) <= TOL
    m = measures(make(), "model", loader(3), include=["margins"], terms=causal_lm())
    assert abs(m.values["loss"] - float(reference["loss"])) <= TOL
    assert m.values["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-15)
    assert m.values["margin_min"] is not None and "token ids" in m.skipped["margin_normalised_q10"]
    m = measures(make(), "model", loader(3), include=["margins"])  # alignment not stated
    assert m.values["margin_min"] is None
    assert m.skipped["margin_min"].startswith("sequence labels: give the loss a token count")


def test_without_terms_the_mean_is_over_examples(reference) -> None:
    """The default weights batches by examples: a different number, as it should be."""
    obj = Objective(make(), "model", loader(3))
    assert obj.n_terms == obj.n_examples == len(LENGTHS)
    assert abs(float(obj.loss()) - float(reference["loss"])) > 1e-3


def test_ggn_over_tokens(reference) -> None:
    model = make()
    _, _, theta = flat_params(model)
    logits, labels = token_logits(model, theta)
    m = labels.numel()

    def outputs(t: Tensor) -> Tensor:
        return token_logits(model, t)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(outputs, theta)  # (M V, P)
    h_out = torch.autograd.functional.hessian(
        lambda z: F.cross_entropy(z.reshape(m, V), labels), logits.reshape(-1)
    )
    want = jac.T @ (h_out @ (jac @ reference["v"]))
    obj = Objective(make(), causal_lm_loss(), loader(4))
    assert rel(obj.ggn_vp(None, reference["v"]), want) <= TOL


class Logits(nn.Module):
    """The tiny model on a tensor of ids, returning its logits as a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.lm = make()

    def forward(self, x: Tensor) -> Tensor:
        return self.lm(x)["logits"]


def padded_pairs() -> tuple[Tensor, Tensor]:
    """Ids padded once to the longest sequence, and labels -100 on the padding."""
    seqs, t = sequences(), max(LENGTHS)
    ids = torch.stack([F.pad(s, (0, t - len(s))) for s in seqs])
    return ids, torch.stack([F.pad(s, (0, t - len(s)), value=-100) for s in seqs])


def test_tensor_pairs_rebatched_and_surface_points(reference) -> None:
    """Tensor data padded once: the count per batch still varies; merged batches agree."""
    obj = Objective(Logits(), causal_lm_loss(), padded_pairs(), batch_size=3)
    assert abs(float(obj.loss()) - float(reference["loss"])) <= TOL
    assert obj.evaluate().accuracy == pytest.approx(reference["accuracy"], abs=1e-15)
    merged = obj.rebatched(4)
    assert merged.n_terms == reference["n_terms"]
    assert abs(float(merged.loss()) - float(reference["loss"])) <= TOL
    d = torch.randn((1, obj.layout.numel), generator=torch.Generator().manual_seed(6)).double()
    coef = np.array([[0.0], [0.2]])
    for use_vmap in (True, False):
        with Evaluator({"train": obj}, "keep", use_vmap) as evaluate:
            got = evaluate(Points(obj.theta, d, coef))
        assert abs(got["train_loss"][0] - float(reference["loss"])) <= TOL
        assert got["train_accuracy"][0] == pytest.approx(reference["accuracy"], abs=1e-15)
        assert abs(got["train_loss"][1] - float(obj.loss(obj.theta + 0.2 * d[0]))) <= TOL


def test_m_sharpness_parts_are_weighted_by_terms(reference) -> None:
    from probes.sharpness import average_case

    out = average_case(Logits(), causal_lm_loss(), padded_pairs(), rho=1e-3, n_samples=2, m=4)
    assert abs(out.clean_loss - float(reference["loss"])) <= TOL


def test_a_batch_without_terms_counts_nothing(reference) -> None:
    rows = [
        {"input_ids": s, "attention_mask": torch.ones_like(s), "labels": s} for s in sequences()
    ]
    rows.append(
        {
            "input_ids": torch.tensor([1]),
            "attention_mask": torch.tensor([1]),
            "labels": torch.tensor([-100]),
        }
    )
    data = DataLoader(rows, batch_size=5, collate_fn=pad)  # the last batch: one sequence, no term
    for cache in (True, False):
        obj = Objective(make(), causal_lm_loss(), data, cache=cache)
        assert obj.n_terms == reference["n_terms"]
        assert abs(float(obj.loss()) - float(reference["loss"])) <= TOL
        assert rel(obj.grad(), reference["grad"]) <= TOL


def test_token_labels_do_not_shift() -> None:
    """Masked-LM style: labels in place, -100 where nothing is predicted."""
    labels = torch.tensor([[1, -100, 2], [-100, -100, 0]])
    assert int(token_labels()(labels)) == 3
    assert int(causal_lm()(labels)) == 2  # from the second position on: -100, 2 | -100, 0
    logits = torch.randn(2, 3, 4, dtype=torch.float64)
    want = F.cross_entropy(logits.reshape(-1, 4), labels.reshape(-1))  # HF's masked-LM loss
    assert abs(float(token_loss()(logits, {"labels": labels}) - want)) <= 1e-15
    x, y = Tokens(shift=False).align(logits, labels)
    assert x.shape == (3, 4) and y.tolist() == [1, 2, 0]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_term_counts_give_one_line() -> None:
    with pytest.raises(TypeError) as exc:
        Objective(make(), "model", loader(3), terms=lambda batch: 2.5)
    assert one_line(exc).startswith("terms must give a batch's number of loss terms")
    with pytest.raises(TypeError) as exc:
        Objective(make(), "model", loader(3), terms=3)
    assert one_line(exc) == "terms must be callable or None, got int"
    rows = [{"input_ids": torch.tensor([1, 2]), "labels": torch.tensor([1, -100])}] * 3
    with pytest.raises(ValueError) as exc:
        Objective(make(), counted("model", causal_lm()), DataLoader(rows, batch_size=2))
    assert "hold no loss terms" in one_line(exc)
    with pytest.raises(TypeError) as exc:
        Objective(make(), counted("model", causal_lm(key="targets")), loader(3))
    assert one_line(exc).startswith("token terms: expected integer labels")
