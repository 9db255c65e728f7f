"""hessian.eigenvalues and hessian.matrix against dense float64 references.

The Hessian built with torch.autograd.functional.hessian (no vmap) and its numpy eigendecomposition.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from landscape.store.file import Store
from probes.curvature import hessian

from .zoo import make

CE = nn.CrossEntropyLoss()
MODELS = ["mlp", "cnn_bn", "residual", "attention", "buffered_frozen"]


def dense_hessian(model: nn.Module, x, y, loss_fn=CE) -> np.ndarray:
    """Independent of the engine: full batch, eval mode, MATH attention, no vmap."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    theta = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss(t):
        params, i = {}, 0
        for n, p in named:
            params[n] = t[i : i + p.numel()].view_as(p)
            i += p.numel()
        return loss_fn(functional_call(model, params, (x,)), y)

    was = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH):
            h = torch.autograd.functional.hessian(loss, theta)
    finally:
        model.train(was)
    return h.detach().numpy()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    model, x, y = make(request.param)
    h = dense_hessian(model, x, y)
    assert np.linalg.norm(h - h.T) <= 1e-12 * np.linalg.norm(h)
    vals, vecs = np.linalg.eigh(h)
    return request.param, model, x, y, h, vals, vecs


def expected(vals: np.ndarray, which: str, k: int) -> np.ndarray:
    if which == "largest":
        idx = np.arange(len(vals) - k, len(vals))
    elif which == "smallest":
        idx = np.arange(k)
    elif which == "both":
        idx = np.concatenate([np.arange(k), np.arange(len(vals) - k, len(vals))])
    else:
        idx = np.argsort(-np.abs(vals))[:k]
    return np.sort(idx)


@pytest.mark.parametrize("which", hessian.WHICH)
def test_eigenpairs_match_dense(case, which):
    name, model, x, y, h, vals, vecs = case
    k = 3
    r = hessian.eigenvalues(model, CE, (x, y), k=k, which=which, vectors=True, tol=1e-10)
    idx = expected(vals, which, k)
    scale = np.abs(vals).max()
    assert r.values.shape == (len(idx),) and np.all(np.diff(r.values) >= 0)
    np.testing.assert_allclose(
        r.values, np.sort(vals[idx]), rtol=0, atol=1e-8 * scale, err_msg=f"{name} {which}"
    )
    # residuals: honest (recomputed here with the dense matrix); error bounds: below tol
    mine = np.linalg.norm(r.vectors @ h - r.values[:, None] * r.vectors, axis=1)
    np.testing.assert_allclose(r.residuals, mine, rtol=1e-3, atol=1e-13 * scale)
    assert r.converged.all() and r.all_converged, (name, which, r.errors)
    tiny = 10 * np.finfo(np.float64).eps * np.abs(r.values).max() / r.tol
    assert np.all(r.errors <= r.tol * np.maximum(np.abs(r.values), tiny))
    assert np.all(r.errors <= r.residuals)
    np.testing.assert_allclose(np.linalg.norm(r.vectors, axis=1), 1, atol=1e-12)
    # eigenvectors equal the dense ones up to sign where eigenvalues are separated
    for value, v, res in zip(r.values, r.vectors, r.residuals, strict=True):
        j = int(np.argmin(np.abs(vals - value)))
        gap = np.min(np.abs(np.delete(vals, j) - vals[j]))
        if gap < 1e-3 * scale:
            continue
        ref = vecs[:, j]
        err = min(np.linalg.norm(v - ref), np.linalg.norm(v + ref))
        assert err <= 10 * res / gap + 1e-8, (name, which, value, err)
    assert r.cost.hvp > 0 and r.cost.passes > 0 and r.cost.seconds > 0
    assert r.params == tuple(n for n, p in model.named_parameters() if p.requires_grad)


def test_matrix_matches_dense(case):
    name, model, x, y, h, vals, _ = case
    m = hessian.matrix(model, CE, (x, y))
    scale = np.abs(h).max()
    np.testing.assert_allclose(m.matrix, h, rtol=0, atol=1e-10 * scale, err_msg=name)
    np.testing.assert_allclose(m.spectrum, vals, rtol=0, atol=1e-10 * np.abs(vals).max())
    assert m.asymmetry < 1e-12 and m.cost.hvp == h.shape[0] and m.curvature == "hessian"


def test_model_unchanged():
    model, x, y = make("cnn_bn")
    model.train()
    model.body[1].eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    hessian.eigenvalues(model, CE, (x, y), k=2, which="both", vectors=True)
    hessian.matrix(model, CE, (x, y), curvature="ggn")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert flags == [m.training for m in model.modules()]


def test_ggn_is_psd():
    model, x, y = make("mlp")
    m = hessian.matrix(model, CE, (x, y), curvature="ggn")
    scale = m.spectrum.max()
    assert m.spectrum.min() >= -1e-10 * scale
    r = hessian.eigenvalues(model, CE, (x, y), k=2, which="both", curvature="ggn")
    np.testing.assert_allclose(r.values[-2:], m.spectrum[-2:], rtol=1e-8)
    assert r.values.min() >= -1e-10 * scale
    assert r.curvature == "ggn"


def test_ggn_equals_hessian_for_linear_least_squares():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Linear(6, 2).double()
    mse = nn.MSELoss()
    hm = hessian.matrix(model, mse, (x, y))
    gm = hessian.matrix(model, mse, (x, y), curvature="ggn")
    np.testing.assert_allclose(gm.matrix, hm.matrix, rtol=0, atol=1e-12)
    for which in ("largest", "smallest"):
        rh = hessian.eigenvalues(model, mse, (x, y), k=3, which=which)
        rg = hessian.eigenvalues(model, mse, (x, y), k=3, which=which, curvature="ggn")
        np.testing.assert_allclose(rg.values, rh.values, rtol=1e-9)
    # closed form: H = (2 / (n * 2)) * [X 1]^T [X 1] (x) I_2 for the mean over n*2 entries
    xa = torch.cat([x, torch.ones(30, 1, dtype=x.dtype)], 1).numpy()
    closed = np.linalg.eigvalsh(xa.T @ xa / 30)
    np.testing.assert_allclose(hm.spectrum, np.sort(np.repeat(closed, 2)), rtol=1e-10)


@pytest.mark.parametrize("which", hessian.WHICH)
def test_error_bounds_hold_at_loose_tolerances(case, which):
    """At a loose tol the stop comes early, and the reported bound still holds.

    The reported bound must still cover the true error, and the true error must be within tol.
    """
    name, model, x, y, h, vals, vecs = case
    for tol in (1e-2, 1e-4, 1e-6):
        r = hessian.eigenvalues(model, CE, (x, y), k=3, which=which, tol=tol)
        exact = np.sort(vals[expected(vals, which, 3)])
        err = np.abs(r.values - exact)
        scale = np.abs(vals).max()
        assert np.all(err <= r.errors * (1 + 1e-6) + 1e-13 * scale), (
            name,
            which,
            tol,
            err,
            r.errors,
        )
        assert r.all_converged and np.all(err <= tol * np.abs(exact) + 1e-13 * scale)


@pytest.mark.parametrize("k", [1, 3])
def test_warm_start_is_cheaper(k):
    model, x, y = make("mlp")
    first = hessian.eigenvalues(model, CE, (x, y), k=k, vectors=True)
    near = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in near.parameters():
            p.add_(1e-4 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    cold = hessian.eigenvalues(near, CE, (x, y), k=k)
    warm = hessian.eigenvalues(near, CE, (x, y), k=k, v0=torch.from_numpy(first.vectors))
    assert warm.all_converged and cold.all_converged
    np.testing.assert_allclose(warm.values, cold.values, rtol=2 * cold.tol)  # each within tol
    assert warm.cost.hvp < cold.cost.hvp, (warm.cost, cold.cost)


def test_seeded_and_budgeted():
    model, x, y = make("mlp")
    a = hessian.eigenvalues(model, CE, (x, y), k=2, seed=1, vectors=True)
    b = hessian.eigenvalues(model, CE, (x, y), k=2, seed=1, vectors=True)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.vectors, b.vectors)
    assert a.cost.hvp == b.cost.hvp
    # a budget too small to converge: flagged, not hidden
    c = hessian.eigenvalues(model, CE, (x, y), k=5, which="smallest", tol=1e-12, max_products=30)
    assert c.cost.hvp <= 30
    assert not c.all_converged


def test_tiny_model_uses_dense_path():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 1), nn.Tanh()).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(10, 1, generator=gen, dtype=torch.float64)
    mse = nn.MSELoss()
    ref = np.linalg.eigvalsh(dense_hessian(model, x, y, mse))
    r = hessian.eigenvalues(model, mse, (x, y), k=3, vectors=True)
    np.testing.assert_allclose(r.values, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert r.vectors.shape == (3, 3) and r.all_converged
    r = hessian.eigenvalues(model, mse, (x, y), k=1, which="both")
    np.testing.assert_allclose(r.values, ref[[0, 2]], rtol=0, atol=1e-12 * np.abs(ref).max())
    with pytest.raises(ValueError, match=r"eigenvalues: k must be at most P=3"):
        hessian.eigenvalues(model, mse, (x, y), k=4)
    with pytest.raises(ValueError, match=r"eigenvalues: 2k must be at most P=3"):
        hessian.eigenvalues(model, mse, (x, y), k=2, which="both")


def test_bad_arguments():
    model, x, y = make("mlp")
    data = (x, y)
    with pytest.raises(ValueError, match=r"eigenvalues: k must be an int >= 1, got 0"):
        hessian.eigenvalues(model, CE, data, k=0)
    with pytest.raises(ValueError, match=r"eigenvalues: k must be an int >= 1, got 2.0"):
        hessian.eigenvalues(model, CE, data, k=2.0)
    with pytest.raises(
        ValueError,
        match=r"eigenvalues: which must be one of .*'largest'.*"
        r"got 'top'",
    ):
        hessian.eigenvalues(model, CE, data, which="top")
    with pytest.raises(
        ValueError,
        match=r"eigenvalues: curvature must be one of .*'ggn'.*"
        r"got 'nope'",
    ):
        hessian.eigenvalues(model, CE, data, curvature="nope")
    with pytest.raises(ValueError, match=r"eigenvalues: tol must be a number in \(0, 1\)"):
        hessian.eigenvalues(model, CE, data, tol=0)
    with pytest.raises(ValueError, match=r"eigenvalues: max_products must be an int >= 1"):
        hessian.eigenvalues(model, CE, data, max_products=0)
    with pytest.raises(ValueError, match=r"eigenvalues: k must be at most P=132"):
        hessian.eigenvalues(model, CE, data, k=133)
    with pytest.raises(
        ValueError,
        match=r"eigenvalues: v0 must be a tensor \(P,\) or \(j, P\) "
        r"with P=132.*got \(5,\)",
    ):
        hessian.eigenvalues(model, CE, data, v0=torch.ones(5))
    with pytest.raises(ValueError, match=r"eigenvalues: v0 must be finite"):
        hessian.eigenvalues(model, CE, data, v0=torch.zeros(132))
    with pytest.raises(ValueError, match=r"matrix: curvature must be one of"):
        hessian.matrix(model, CE, data, curvature="nope")
    with pytest.raises(
        ValueError,
        match=r"matrix: P=132 parameters is above max_params=100: "
        r"the dense matrix would take .* GB; use "
        r"eigenvalues/density, or raise max_params",
    ):
        hessian.matrix(model, CE, data, max_params=100)


def test_records_round_trip(tmp_path):
    model, x, y = make("residual")
    r = hessian.eigenvalues(model, CE, (x, y), k=2, which="both", vectors=True)
    bare = hessian.eigenvalues(model, CE, (x, y), k=1)
    m = hessian.matrix(model, CE, (x, y), curvature="ggn")
    path = tmp_path / "probes.h5"
    with Store(path, "w") as store:
        for name, result in (("eig", r), ("bare", bare), ("matrix", m)):
            arrays, attrs = result.to_record()
            store.write_record(None, "probes", name, arrays=arrays, attrs=attrs)
    with Store(path) as store:
        back = {n: store.record(None, "probes", n) for n in ("eig", "bare", "matrix")}
    pairs = [
        (r, hessian.Eigenvalues.from_record(back["eig"])),
        (bare, hessian.Eigenvalues.from_record(back["bare"])),
        (m, hessian.Matrix.from_record(back["matrix"])),
    ]
    for before, after in pairs:
        for field in before.__dataclass_fields__:
            a, b = getattr(before, field), getattr(after, field)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), field
            else:
                assert type(a) is type(b) and a == b, (field, a, b)
    assert pairs[1][1].vectors is None
    with pytest.raises(ValueError, match="Matrix.from_record: record 'eig' holds"):
        hessian.Matrix.from_record(back["eig"])


def test_layer_blocks_equal_the_dense_diagonal_blocks(tmp_path):
    from landscape.store.file import Store
    from probes.curvature.blocks import BlockEigenvalues, layer_blocks

    model, x, y = make("mlp", n=15)
    loss = nn.CrossEntropyLoss()
    full = hessian.matrix(model, loss, (x, y)).matrix
    result = hessian.eigenvalues(model, loss, (x, y), k=2, blocks="layer", tol=1e-10)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    offsets = np.cumsum([0] + [sizes[n] for n in names])
    where = dict(zip(names, zip(offsets[:-1], offsets[1:], strict=True), strict=True))
    assert list(result.blocks) == list(layer_blocks(model))
    for block, r in result.blocks.items():
        idx = np.concatenate([np.arange(*where[n]) for n in layer_blocks(model)[block]])
        exact = np.linalg.eigvalsh(full[np.ix_(idx, idx)])
        np.testing.assert_allclose(r.values, exact[-2:], rtol=1e-8, atol=1e-12)
    assert result.cost.hvp == sum(r.cost.hvp for r in result.blocks.values())
    with Store(tmp_path / "b.h5", "a") as s:
        s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
        s.write_record(
            "r", "probes", "blocks", arrays=result.to_record()[0], attrs=result.to_record()[1]
        )
        back = BlockEigenvalues.from_record(s.record("r", "probes", "blocks"))
    assert list(back.blocks) == list(result.blocks) and back.cost == result.cost
    for block, r in result.blocks.items():
        np.testing.assert_array_equal(back.blocks[block].values, r.values)
        assert back.blocks[block].cost == r.cost and back.blocks[block].params == r.params
    with pytest.raises(ValueError, match="params or blocks"):
        hessian.eigenvalues(model, loss, (x, y), blocks="layer", params=names[:1])
