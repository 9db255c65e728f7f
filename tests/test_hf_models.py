"""Hugging Face models as people bring them: GPT-2, BERT, ViT and ResNet built from tiny configs.

Float64 throughout. Each model's loss, gradient and top Hessian eigenvalues must match an
independent computation: every sequence run on its own, unpadded, its tokens pooled over the
whole dataset (so padding, attention masks and the causal shift cannot leak in), a dense Hessian
by double backward, then ``eigvalsh``. Every probe family then runs on each model, and the bad
inputs of this kind of model give one line.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader

from landscape import Objective
from landscape.engine.terms import causal_lm, causal_lm_loss, counted, token_labels, token_loss
from landscape.surfaces import directions, surface
from probes import hessian, interpolation
from probes.implicit_bias import measures


def _transformers():
    """``transformers`` without torchvision, which does not import beside the CPU torch here."""
    if "transformers" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except (ImportError, RuntimeError):
            sys.modules["torchvision"] = None  # type: ignore[assignment]  # transformers skips it
    return pytest.importorskip("transformers")


transformers = _transformers()
pytestmark = pytest.mark.usefixtures("one_thread")

EIG_TOL = 1e-8
TOL = 1e-10
LENGTHS = [5, 3, 4, 2, 6, 4]  # two batches of 4 and 2, padded to 5 and 6
VOCAB = 11


def pad(rows: list[dict]) -> dict:
    """Right-pad a batch to its longest sequence: id 0, mask 0, label -100."""
    t = max(len(r["input_ids"]) for r in rows)
    out = {}
    for key, fill in (("input_ids", 0), ("attention_mask", 0), ("labels", -100)):
        if key in rows[0] and rows[0][key].ndim == 1:
            out[key] = torch.stack([F.pad(r[key], (0, t - len(r[key])), value=fill) for r in rows])
        elif key in rows[0]:
            out[key] = torch.stack([r[key] for r in rows])
    return out


def sequences(seed: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=gen) for n in LENGTHS]


@dataclass
class Case:
    """A model, its loss, its data, a direct risk over a parameter subset and that subset."""

    model: nn.Module
    loss_fn: Any
    data: Any
    risk: Callable[[dict[str, Tensor]], Tensor]  # the subset's tensors -> the mean loss
    names: list[str]
    tokens: bool  # sequence labels (token accuracy and margins)
    dense: tuple[Tensor, Tensor, Tensor] | None = None  # loss, gradient, Hessian (subset)


def _subset(model: nn.Module, names: list[str]) -> tuple[Tensor, Callable]:
    """The subset flat, in the model's order (as the objective's layout), and its inverse."""
    named = dict(model.named_parameters())
    names = [n for n in named if n in names]
    shapes = [named[n].shape for n in names]
    theta = torch.cat([named[n].detach().reshape(-1) for n in names])

    def unflatten(flat: Tensor) -> dict[str, Tensor]:
        parts = flat.split([s.numel() for s in shapes])
        return {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}

    return theta, unflatten


def call(model: nn.Module, tensors: dict[str, Tensor], **kwargs: Any) -> Any:
    return torch.func.functional_call(model, tensors, (), kwargs, strict=False)


def gpt2() -> Case:
    config = transformers.GPT2Config(
        n_layer=1, n_embd=8, n_head=2, vocab_size=VOCAB, n_positions=8, use_cache=False
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).double().eval()
    seqs = sequences(1)
    rows = [{"input_ids": s, "attention_mask": torch.ones_like(s), "labels": s} for s in seqs]

    def risk(tensors: dict[str, Tensor]) -> Tensor:  # all predicted tokens, pooled
        logits = [call(model, tensors, input_ids=s[None]).logits[0, :-1] for s in seqs]
        return F.cross_entropy(torch.cat(logits), torch.cat([s[1:] for s in seqs]))

    names = [
        "transformer.h.0.attn.c_proj.weight",
        "transformer.ln_f.weight",
        "transformer.ln_f.bias",
    ]
    return Case(model, causal_lm_loss(), DataLoader(rows, 4, collate_fn=pad), risk, names, True)


def bert_config() -> Any:
    return transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=8,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )


def bert_mlm() -> Case:
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(bert_config()).double().eval()
    gen = torch.Generator().manual_seed(2)
    seqs = sequences(2)
    labels = []
    for s in seqs:  # about half the positions predicted, at least one
        keep = torch.rand(len(s), generator=gen) < 0.5
        keep[0] = True
        labels.append(torch.where(keep, s, torch.full_like(s, -100)))
    rows = [
        {"input_ids": s, "attention_mask": torch.ones_like(s), "labels": lab}
        for s, lab in zip(seqs, labels, strict=True)
    ]

    def risk(tensors: dict[str, Tensor]) -> Tensor:
        logits = [call(model, tensors, input_ids=s[None]).logits[0] for s in seqs]
        return F.cross_entropy(torch.cat(logits), torch.cat(labels), ignore_index=-100)

    names = ["cls.predictions.transform.dense.weight", "cls.predictions.bias"]
    loss = counted("model", token_labels())  # BERT's own loss, over its labelled tokens
    return Case(model, loss, DataLoader(rows, 4, collate_fn=pad), risk, names, True)


def bert_classifier() -> Case:
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(bert_config()).double().eval()
    seqs = sequences(3)
    classes = torch.randint(0, 3, (len(seqs),), generator=torch.Generator().manual_seed(3))
    rows = [
        {"input_ids": s, "attention_mask": torch.ones_like(s), "labels": c}
        for s, c in zip(seqs, classes, strict=True)
    ]

    def risk(tensors: dict[str, Tensor]) -> Tensor:  # one term per sequence
        logits = [call(model, tensors, input_ids=s[None]).logits for s in seqs]
        return F.cross_entropy(torch.cat(logits), classes)

    names = ["bert.pooler.dense.weight", "classifier.weight", "classifier.bias"]
    return Case(model, "model", DataLoader(rows, 4, collate_fn=pad), risk, names, False)


def images(n: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=gen)


def vit() -> Case:
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).double().eval()
    x, y = images(6, 4)
    rows = [{"pixel_values": a, "labels": b} for a, b in zip(x, y, strict=True)]

    def risk(tensors: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(call(model, tensors, pixel_values=x).logits, y)

    names = ["vit.layernorm.weight", "classifier.weight", "classifier.bias"]
    return Case(model, "model", DataLoader(rows, batch_size=4), risk, names, False)


def logits_ce(outputs: Any, targets: Tensor) -> Tensor:
    return F.cross_entropy(outputs.logits, targets)


def resnet_model() -> nn.Module:
    config = transformers.ResNetConfig(
        num_channels=1,
        embedding_size=4,
        hidden_sizes=[4, 6],
        depths=[1, 1],
        layer_type="basic",
        num_labels=3,
    )
    torch.manual_seed(0)
    model = transformers.ResNetForImageClassification(config).double()
    with torch.no_grad():  # running statistics that are not the initial 0 and 1
        model.train()(images(16, 9)[0])
    return model.eval()


def resnet() -> Case:
    model = resnet_model()
    x, y = images(6, 5)

    def risk(tensors: dict[str, Tensor]) -> Tensor:
        return logits_ce(torch.func.functional_call(model, tensors, (x,), strict=False), y)

    names = [
        "resnet.encoder.stages.1.layers.0.shortcut.normalization.weight",
        "classifier.1.weight",
    ]
    return Case(model, logits_ce, (x, y), risk, names, False)


CASES = {
    "gpt2": gpt2,
    "bert-mlm": bert_mlm,
    "bert-classifier": bert_classifier,
    "vit": vit,
    "resnet": resnet,
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> Case:
    return CASES[request.param]()


def dense_reference(case: Case) -> tuple[Tensor, Tensor, Tensor]:
    """Loss, gradient and Hessian over the subset, by double backward in float64 (kept)."""
    if case.dense is None:
        case.dense = _dense(case)
    return case.dense


def _dense(case: Case) -> tuple[Tensor, Tensor, Tensor]:
    theta, unflatten = _subset(case.model, case.names)
    with sdpa_kernel(SDPBackend.MATH):
        flat = theta.clone().requires_grad_(True)
        value = case.risk(unflatten(flat))
        (gradient,) = torch.autograd.grad(value, flat)
        h = torch.autograd.functional.hessian(
            lambda t: case.risk(unflatten(t)), theta, vectorize=True
        )
    return value.detach(), gradient, h


def rel(a: Any, b: Any) -> float:
    a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
    return float((a - b).norm() / b.norm())


def test_engine_and_eigenvalues_match_the_direct_computation(case: Case) -> None:
    value, gradient, h = dense_reference(case)
    obj = Objective(case.model, case.loss_fn, case.data, params=case.names)
    assert abs(float(obj.loss()) - float(value)) <= TOL * abs(float(value))
    assert rel(obj.grad(), gradient) <= TOL
    v = torch.randn(len(gradient), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert rel(obj.hvp(None, v), h @ v) <= TOL
    got = hessian.eigenvalues(
        case.model, case.loss_fn, case.data, k=2, params=case.names, tol=1e-12
    )
    want = torch.linalg.eigvalsh((h + h.T) / 2)[-2:]
    assert rel(np.sort(got.values), want) <= EIG_TOL
    assert all(p.grad is None for p in case.model.parameters())
    assert not case.model.training


def test_every_probe_family_runs(case: Case) -> None:
    model, loss_fn, data, names = case.model, case.loss_fn, case.data, case.names
    obj = Objective(model, loss_fn, data, params=names)
    loss = float(obj.loss())
    tr = hessian.trace(
        model, loss_fn, data, method="hutchinson", n_products=6, params=names, check=False
    )
    exact = float(torch.trace(dense_reference(case)[2]))
    assert abs(tr.value - exact) <= 4 * tr.stderr + 1e-8 * abs(exact)
    esd = hessian.density(model, loss_fn, data, params=names, n_vectors=1, steps=4, check=False)
    assert np.isfinite(esd.density).all() and esd.density.max() > 0

    m = measures(
        model, loss_fn, data, steps=1, n_samples=2, pac_bayes_samples=1, params=names, check=False
    )  # the sharpness family: worst- and average-case, plain and adaptive, and PAC-Bayes
    assert abs(m.values["loss"] - loss) <= TOL * loss
    assert all(m.values[k] is not None for k in ("sharpness_worst", "sharpness_average_adaptive"))
    assert m.values["pac_bayes_flatness"] is not None
    assert m.values["accuracy"] is not None
    assert m.values["accuracy"] == obj.evaluate().accuracy
    assert m.values["margin_q10"] is not None and math.isfinite(m.values["noise_trace"])
    if case.tokens:  # token ids have no input norm
        assert "token ids" in m.skipped["margin_normalised_q10"]
    assert "path_norm" in m.skipped

    other = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in other.named_parameters():
            if n in names:
                p.add_(0.05)
    path = interpolation.linear(model, other, loss_fn, data, n=3, params=names, check=False)
    assert abs(path.loss[0] - loss) <= TOL * loss
    assert abs(path.loss[-1] - float(Objective(other, loss_fn, data).loss())) <= TOL * loss

    d = directions.random(model, k=1, params=names, seed=0)
    s = surface(model, loss_fn, data, d, x=[-0.5, 0.0, 0.5], params=names, check=False)
    assert abs(float(s.train_loss[1]) - loss) <= TOL * loss
    assert np.isfinite(s.train_loss).all()
    assert not model.training


def test_token_accuracy_and_margins_follow_the_shift() -> None:
    """GPT-2's accuracy: the logits at t against the token at t+1, padding not counted."""
    c = gpt2()
    obj = Objective(c.model, c.loss_fn, c.data)
    seqs = sequences(1)
    with torch.no_grad():
        logits = [c.model(s[None]).logits[0, :-1] for s in seqs]
    hits = sum(int((lg.argmax(1) == s[1:]).sum()) for lg, s in zip(logits, seqs, strict=True))
    assert obj.evaluate().accuracy == hits / (sum(LENGTHS) - len(LENGTHS))
    from probes.implicit_bias.margins import margins

    got = margins(c.model, c.data, terms=causal_lm())
    want = []
    for lg, s in zip(logits, seqs, strict=True):
        true = lg.gather(1, s[1:, None])[:, 0]
        want.append(true - lg.scatter(1, s[1:, None], -math.inf).max(1).values)
    assert np.abs(np.sort(got.margins) - np.sort(torch.cat(want).numpy())).max() <= TOL
    assert got.n_examples == sum(LENGTHS) - len(LENGTHS)
    no_terms = Objective(c.model, "model", c.data)  # sequence labels, alignment not stated
    assert no_terms.evaluate().accuracy is None
    with pytest.raises(ValueError, match="sequence labels: give the loss a token count"):
        no_terms.accuracy()


def test_the_models_own_loss_of_gpt2_is_the_token_mean() -> None:
    """GPT-2's ``outputs.loss`` (computed in float32) over tokens, with the terms it needs."""
    c = gpt2()
    theta, unflatten = _subset(c.model, c.names)
    with torch.no_grad():
        want = float(c.risk(unflatten(theta)))
    got = float(Objective(c.model, counted("model", causal_lm()), c.data).loss())
    assert abs(got - want) <= 1e-6 * want
    by_examples = float(Objective(c.model, "model", c.data).loss())
    assert abs(by_examples - want) > 1e-4  # a mean of batch means is not the token mean


def test_resnet_train_mode_uses_batch_statistics() -> None:
    """Train mode: each batch normalised by its own statistics; the model's buffers untouched."""
    model = resnet_model()
    x, y = images(6, 5)
    names = ["classifier.1.weight", "classifier.1.bias"]
    before = {n: b.clone() for n, b in model.named_buffers()}
    obj = Objective(model, logits_ce, (x, y), batch_size=4, mode="train", params=names)
    theta, unflatten = _subset(model, names)

    def risk(flat: Tensor) -> Tensor:
        tensors = {**unflatten(flat), **{n: b.clone() for n, b in model.named_buffers()}}
        model.train()
        try:
            parts = [
                len(xb) * logits_ce(torch.func.functional_call(model, tensors, (xb,)), yb)
                for xb, yb in ((x[:4], y[:4]), (x[4:], y[4:]))
            ]
        finally:
            model.eval()
        return sum(parts) / len(x)

    h = torch.autograd.functional.hessian(risk, theta)
    assert abs(float(obj.loss()) - float(risk(theta).detach())) <= TOL
    eval_loss = float(Objective(model, logits_ce, (x, y), params=names).loss())
    assert abs(float(obj.loss()) - eval_loss) > 1e-3  # the modes differ
    got = hessian.eigenvalues(
        model, logits_ce, (x, y), k=2, params=names, mode="train", batch_size=4, tol=1e-12
    )
    assert rel(np.sort(got.values), torch.linalg.eigvalsh((h + h.T) / 2)[-2:]) <= EIG_TOL
    assert all(torch.equal(b, before[n]) for n, b in model.named_buffers())
    assert not model.training


def test_vit_mode_does_not_matter_without_batchnorm_or_dropout() -> None:
    c = vit()
    train = Objective(c.model, c.loss_fn, c.data, mode="train")
    assert abs(float(train.loss()) - float(Objective(c.model, c.loss_fn, c.data).loss())) <= TOL


class LossOnly(nn.Module):
    """GPT-2 returning its loss alone: no logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **batch: Tensor) -> dict[str, Tensor]:
        return {"loss": self.model(**batch).loss}


def test_outputs_without_logits_skip_the_measures_that_need_them() -> None:
    c = gpt2()
    model = LossOnly(c.model)
    m = measures(
        model,
        counted("model", causal_lm()),
        c.data,
        include=["norms", "margins", "pac_bayes"],
        params=["model." + n for n in c.names],
    )
    for name in ("accuracy", "margin_q10", "pac_bayes_flatness"):
        assert m.values[name] is None
        assert m.skipped[name].startswith("the outputs have no logits"), name
    assert math.isfinite(m.values["fisher_rao"])


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_inputs_give_one_line() -> None:
    c = gpt2()
    x, y = images(4, 0)
    pixels = DataLoader([{"pixel_values": a, "labels": b} for a, b in zip(x, y, strict=True)], 2)
    with pytest.raises(ValueError) as exc:  # a mapping without the keys the model needs
        Objective(c.model, "model", pixels)
    text = one_line(exc)
    assert text.startswith("the model failed on the first batch of inputs {'pixel_values'")
    assert "its forward takes input_ids" in text
    rows = [{"input_ids": s} for s in sequences(1)]
    with pytest.raises(TypeError) as exc:  # no labels, so no loss
        Objective(c.model, "model", DataLoader(rows, 2, collate_fn=pad))
    assert one_line(exc) == (
        "loss_fn='model' needs outputs with a 'loss' field, got CausalLMOutputWithCrossAttentions"
    )
    with pytest.raises(ValueError) as exc:  # the base model: hidden states, no logits
        Objective(c.model.transformer, token_loss(), c.data)
    text = one_line(exc)
    assert "token loss: expected outputs with logits" in text
    assert "got BaseModelOutputWithPastAndCrossAttentions" in text
    with pytest.raises(TypeError) as exc:  # token terms of per-example labels
        Objective(resnet_model(), counted(logits_ce, causal_lm()), images(4, 0))
    assert one_line(exc) == (
        "token terms: expected integer labels of sequences (N, T) (a tensor, or a mapping batch "
        "with 'labels'), got a torch.int64 tensor of shape (4,)"
    )
