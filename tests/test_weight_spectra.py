"""probes.implicit_bias.weight_spectra against closed forms and synthetic eigenvalues.

Effective and stable rank against closed forms, the power-law fit on synthetic eigenvalues, None
with a reason for small layers, records and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.store.file import Store
from probes.implicit_bias.weight_spectra import (
    WeightSpectra,
    effective_rank,
    fit_power_law,
    weight_spectra,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Mats(nn.Module):
    def __init__(self, **mats: torch.Tensor) -> None:
        super().__init__()
        for name, m in mats.items():
            self.register_parameter(name, nn.Parameter(m.clone()))
        self.bias = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x):
        return x


def pareto(alpha: float, n: int, seed: int, xmin: float = 1.0) -> np.ndarray:
    """N draws of p(x) ~ x^-alpha on [xmin, inf) by inverting the CDF."""
    u = np.random.default_rng(seed).random(n)
    return xmin * (1 - u) ** (-1 / (alpha - 1))


def with_singular_values(s: np.ndarray, shape: tuple[int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], len(s), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.as_tensor(s)) @ v.T


def test_ranks_against_closed_forms():
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(7, 1, generator=g, dtype=torch.float64),
        torch.randn(1, 5, generator=g, dtype=torch.float64),
    )
    diag = torch.diag(torch.tensor([3.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    model = Mats(
        eye=torch.eye(6, dtype=torch.float64) * 2.5,
        rank1=a @ b,
        diag=diag,
        conv=torch.randn(4, 2, 3, generator=g, dtype=torch.float64),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ws = weight_spectra(model)
    assert ws.layers == ("eye", "rank1", "diag", "conv")  # the bias is no layer
    assert ws.shapes == ((6, 6), (7, 5), (4, 4), (4, 6))
    np.testing.assert_allclose(ws.effective_rank[:2], [6.0, 1.0], rtol=1e-10)
    np.testing.assert_allclose(ws.stable_rank[:2], [6.0, 1.0], rtol=1e-10)
    p = np.array([3.0, 1.0, 1.0]) / 5
    assert ws.effective_rank[2] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert ws.stable_rank[2] == pytest.approx(11 / 9)
    np.testing.assert_allclose(
        ws.singular_values[3], torch.linalg.svdvals(model.conv.detach().reshape(4, 6)).numpy()
    )
    assert ws.alpha == (None,) * 4
    assert ws.alpha_reason[0] == (
        "6 eigenvalues (min of the matrix shape (6, 6)); a fit needs at least 50"
    )
    assert np.isnan(effective_rank(np.zeros(3)))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("alpha", [2.0, 3.5])
def test_fit_recovers_a_known_exponent(alpha):
    fit = fit_power_law(pareto(alpha, 5000, seed=1, xmin=0.7))
    assert fit.alpha == pytest.approx(alpha, abs=4 * fit.stderr)
    assert abs(fit.alpha - alpha) < 0.15
    assert fit.xmin >= 0.7 and fit.n_tail >= 10 and 0 < fit.ks_distance < 0.05
    # a lognormal body below a power-law tail: xmin found near where the tail starts
    rng = np.random.default_rng(2)
    body = np.exp(rng.normal(0, 0.3, 3000)) * 0.5
    mixed = fit_power_law(np.concatenate([body[body < 1], pareto(alpha, 2000, seed=3)]))
    assert abs(mixed.alpha - alpha) < 0.25 and mixed.xmin >= 0.8


def test_alpha_of_a_layer():
    lam = np.sort(pareto(3.0, 400, seed=4))[::-1]
    model = Mats(
        w=with_singular_values(np.sqrt(lam), (500, 400), seed=5),
        small=torch.randn(60, 40, dtype=torch.float64),
    )
    ws = weight_spectra(model)
    direct = fit_power_law(lam)
    assert ws.alpha[0] == pytest.approx(direct.alpha, rel=1e-6)
    assert abs(ws.alpha[0] - 3.0) < 0.5 and ws.alpha_reason[0] is None
    assert ws.alpha[1] is None and "40 eigenvalues" in ws.alpha_reason[1]
    rank_deficient = Mats(w=with_singular_values(np.ones(30), (80, 60), seed=6))
    out = weight_spectra(rank_deficient)
    assert out.alpha == (None,) and "30 nonzero eigenvalues" in out.alpha_reason[0]
    flat = weight_spectra(Mats(w=torch.eye(60, dtype=torch.float64)))
    assert flat.alpha == (None,) and "all equal" in flat.alpha_reason[0]


def test_records_round_trip(tmp_path):
    lam = pareto(2.5, 60, seed=7)
    model = Mats(
        w=with_singular_values(np.sqrt(lam), (70, 60), seed=8),
        s=torch.randn(3, 4, dtype=torch.float64),
    )
    ws = weight_spectra(model)
    assert ws.alpha[0] is not None and ws.alpha[1] is None
    with Store(tmp_path / "w.h5", "w") as store:
        arrays, attrs = ws.to_record()
        store.write_record(None, "probes", "ws", arrays=arrays, attrs=attrs)
    with Store(tmp_path / "w.h5") as store:
        back = WeightSpectra.from_record(store.record(None, "probes", "ws"))
    for field in ws.__dataclass_fields__:
        a, b = getattr(ws, field), getattr(back, field)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), field
        elif field == "singular_values":
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        else:
            assert a == b, (field, a, b)


def test_bad_input():
    with pytest.raises(ValueError, match="weight_spectra: min_tail must be an int >= 2"):
        weight_spectra(Mats(), min_tail=1)
    with pytest.raises(ValueError, match="weight_spectra: min_eigenvalues must be an int >= 10"):
        weight_spectra(Mats(w=torch.eye(3)), min_eigenvalues=5)
    with pytest.raises(ValueError, match="weight_spectra: expected at least one layer"):
        weight_spectra(Mats())
    with pytest.raises(ValueError, match="fit_power_law: expected at least 10 positive"):
        fit_power_law([1.0, 2.0, -3.0])
