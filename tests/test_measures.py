"""measures(): the suite of generalisation measures.

Every family at once equals the measures computed one by one, what does not apply is skipped
with a reason, the model is untouched, and the result round-trips the file unchanged.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.store.file import Store
from probes.implicit_bias import gradient_noise, margins, norms, weight_spectra
from probes.implicit_bias.suite import FAMILIES, Measures, measures
from probes.sharpness import average as average_case
from probes.sharpness import flatness
from probes.sharpness import worst as worst_case

from . import zoo

CE = nn.CrossEntropyLoss()
FAST = {"steps": 3, "n_samples": 3, "pac_bayes_samples": 2}


def relu_problem(n: int = 40, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3)).double()
    init = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():  # labels the model gets right: positive margins
        y = model(x).argmax(1)
    return model, init, x, y


def test_every_family_equals_the_measure_computed_alone():
    model, init, x, y = relu_problem()
    m = measures(model, CE, (x, y), init=init, **FAST)
    v = m.values
    n = norms.norms(model, init=init)
    assert v["log_prod_spectral"] == pytest.approx(n.log_prod_spectral, rel=1e-12)
    assert v["dist_init"] == pytest.approx(n.dist_param_norm, rel=1e-12)
    assert v["dist_init_spectral_sum"] == pytest.approx(float(np.sum(n.dist_spectral)))
    assert v["path_norm"] == pytest.approx(norms.path_norm(model, (5,)), rel=1e-12)
    assert v["fisher_rao"] == pytest.approx(norms.fisher_rao(model, CE, (x, y)).value)
    mg = margins.margins(model, (x, y), init=init)
    assert v["margin_q10"] == pytest.approx(mg.quantile)
    assert mg.quantile > 0 and v["inverse_margin_q10_sq"] == pytest.approx(1 / mg.quantile**2)
    gn = gradient_noise.gradient_noise(model, CE, (x, y))
    assert v["noise_scale"] == pytest.approx(gn.b_simple, rel=1e-10)
    ws = weight_spectra.weight_spectra(model)
    assert v["stable_rank_mean"] == pytest.approx(float(np.mean(ws.stable_rank)))
    w = worst_case.worst_case(model, CE, (x, y), rho=0.5, adaptive=True, steps=3)
    assert v["sharpness_worst_adaptive"] == pytest.approx(w.value, rel=1e-12)
    a = average_case.average_case(model, CE, (x, y), rho=0.05, n_samples=3)
    assert v["sharpness_average"] == pytest.approx(a.value, rel=1e-12)
    pb = flatness.pac_bayes(model, CE, (x, y), n_samples=2, magnitude_aware=True)
    assert v["pac_bayes_flatness_magnitude"] == pytest.approx(pb.flatness, rel=1e-12)
    assert v["accuracy"] is not None and m.skipped.get("alpha_mean")  # 12 x 5: too few
    assert m.layers == n.layers and m.per_layer["spectral"].shape == (2,)
    assert m.options["include"] == list(FAMILIES) and m.cost.passes > 10


def test_what_does_not_apply_is_skipped_with_a_reason():
    model, _, x, _ = relu_problem()
    targets = torch.randn(len(x), 3, dtype=torch.float64)  # regression
    m = measures(model, nn.MSELoss(), (x, targets), include=["norms", "margins", "pac_bayes"])
    for name in ("dist_init", "margin_q10", "pac_bayes_flatness"):
        assert m.values[name] is None and m.skipped[name]
    assert "sharpness_worst" not in m.values and m.values["accuracy"] is None
    tanh = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    m = measures(tanh, CE, (x, torch.zeros(len(x), dtype=torch.long)), include=["norms"])
    assert m.values["path_norm"] is None and "Tanh" in m.skipped["path_norm"]
    wrong = measures(model, CE, (x, (model(x).argmax(1) + 1) % 3), include=["margins"])
    assert wrong.values["margin_q10"] < 0 and wrong.values["inverse_margin_q10_sq"] is None
    assert "not positive" in wrong.skipped["inverse_margin_q10_sq"]


def test_model_untouched_and_record_round_trips(tmp_path):
    model, x, y = zoo.make("cnn_bn", n=16, seed=1)
    model.train()
    state = copy.deepcopy(model.state_dict())
    m = measures(model, CE, (x, y), init=copy.deepcopy(model), **FAST)
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    path = tmp_path / "m.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
        s.write_record(
            "r", "probes", "measures", *(), arrays=m.to_record()[0], attrs=m.to_record()[1]
        )
    with Store(path) as s:
        back = Measures.from_record(s.record("r", "probes", "measures"))
    # Unchanged, not close: a value is a float64 (or None: a skipped measure) stored as an
    # attribute and read back, which keeps every bit, so the margin is zero (a tolerance
    # would hide a write that rounds, e.g. through float32 or a formatted string).
    assert back.values == m.values
    assert back.skipped == m.skipped and back.layers == m.layers
    for k, arr in m.per_layer.items():
        np.testing.assert_array_equal(back.per_layer[k], arr)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"include": ["norms", "curvature"]}, "unknown family 'curvature'"),
        ({"include": "norms"}, "include must be a list"),
        ({"rho": 0}, "rho must be a finite number > 0"),
        ({"steps": 0}, "steps must be an int >= 1"),
    ],
)
def test_bad_input_is_refused_with_one_clear_message(kwargs, match):
    model, _, x, y = relu_problem(n=10)
    with pytest.raises((ValueError, TypeError), match=match):
        measures(model, CE, (x, y), **kwargs)
