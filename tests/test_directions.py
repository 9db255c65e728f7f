"""landscape.surfaces.directions against independent references.

Filter/layer normalisation against per-slice norms of the weights, seeded draws, Gram-Schmidt,
differences, PCA of a trajectory in a known plane, Hessian eigenvectors against a dense float64
Hessian, record round trips and the error messages.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from landscape.engine.params import ParamLayout, no_bias_norm, select
from landscape.models import MLP
from landscape.store.file import Store
from landscape.surfaces import directions as D
from landscape.surfaces import trajectories as T
from probes.curvature.dense import matrix

from .zoo import make

CE = nn.CrossEntropyLoss()


pytestmark = pytest.mark.usefixtures("one_thread")


def cnn_bn(dtype=torch.float32) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 3, 3, bias=False),
            nn.BatchNorm2d(3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3 * 2 * 2, 5),
        )
        with torch.no_grad():  # BatchNorm weights that are not all ones, biases not zero
            for bn in (model[1], model[4]):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    return model.to(dtype)


def mlp(dtype=torch.float32) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return MLP(in_features=6, num_classes=3, width=7, depth=2).to(dtype)


MODELS = {"mlp": mlp, "cnn_bn": cnn_bn}


def pieces(model: nn.Module, vector: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Name -> (direction piece, weight) with the parameter's shape.

    Independent of the module under test: walks named_parameters itself.
    """
    out, i = {}, 0
    for name, p in model.named_parameters():
        out[name] = (vector[i : i + p.numel()].view_as(p), p.detach())
        i += p.numel()
    assert i == vector.numel()
    return out


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k


# ---------------------------------------------------------------------------- random
@pytest.mark.parametrize("name", MODELS)
def test_filter_normalised_slices_have_the_weights_norms(name):
    model = MODELS[name]()
    before = state(model)
    dirs = D.random(model, k=2, seed=0)
    assert dirs.vectors.shape == (2, sum(p.numel() for p in model.parameters()))
    assert dirs.kind == "random" and dirs.normalization == "filter" and dirs.ignore == "biasbn"
    for row in dirs.vectors:
        for pname, (d, w) in pieces(model, row).items():
            if w.ndim >= 2:
                dn = d.reshape(d.shape[0], -1).norm(dim=1)
                wn = w.reshape(w.shape[0], -1).norm(dim=1)
                torch.testing.assert_close(dn, wn, rtol=1e-5, atol=0, msg=pname)
            else:  # biases and BatchNorm weights/biases: exactly zero
                assert torch.count_nonzero(d) == 0, pname
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", MODELS)
def test_not_ignored_vectors_get_whole_tensor_norm(name):
    model = MODELS[name]()
    dirs = D.random(model, k=1, seed=2, ignore=None)
    for pname, (d, w) in pieces(model, dirs.vectors[0]).items():
        if w.ndim <= 1:
            torch.testing.assert_close(d.norm(), w.norm(), rtol=1e-5, atol=0, msg=pname)
            assert torch.count_nonzero(d) == d.numel()


@pytest.mark.parametrize("name", MODELS)
def test_layer_normalisation_matches_each_tensor_norm(name):
    model = MODELS[name]()
    dirs = D.random(model, k=2, seed=0, normalization="layer")
    for row in dirs.vectors:
        for pname, (d, w) in pieces(model, row).items():
            if w.ndim >= 2:
                torch.testing.assert_close(d.norm(), w.norm(), rtol=1e-5, atol=0, msg=pname)
                slices = d.reshape(d.shape[0], -1).norm(dim=1)
                wslices = w.reshape(w.shape[0], -1).norm(dim=1)
                assert not torch.allclose(slices, wslices, rtol=1e-3)  # not filter-wise
            else:
                assert torch.count_nonzero(d) == 0


def test_none_normalisation_keeps_the_draw_and_zero_weights_give_zero_slices():
    model = mlp()
    layout = ParamLayout.of(select(model))
    theta = layout.flatten(select(model))
    d = torch.randn(layout.numel)
    assert torch.equal(D.normalize(d, theta, layout, "none", None), d)
    zeroed = theta.clone()
    zeroed[:6] = 0  # the first row of the first weight
    out = D.normalize(d, zeroed, layout, "filter", "biasbn")
    assert torch.count_nonzero(out[:6]) == 0 and torch.count_nonzero(out[6:42]) == 36
    block = D.normalize(torch.stack([d, 2 * d]), theta, layout)  # rows on their own
    torch.testing.assert_close(block[0], block[1])
    assert torch.equal(block[0], D.normalize(d, theta, layout))


def test_seeds_reproduce_differ_and_leave_the_global_rng_alone():
    model = cnn_bn()
    rng = torch.get_rng_state()
    a, b = D.random(model, seed=3), D.random(model, seed=3)
    c = D.random(model, seed=4)
    assert torch.equal(rng, torch.get_rng_state())
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.allclose(a.vectors, c.vectors)
    assert not torch.allclose(a.vectors[0], a.vectors[1])
    assert a.seed == 3 and c.seed == 4


def test_params_filter_selects_the_span():
    model = cnn_bn()
    dirs = D.random(model, params=no_bias_norm, ignore=None)
    names = [n for n, p in model.named_parameters() if p.ndim >= 2]
    assert dirs.params == tuple(names)
    assert dirs.vectors.shape[1] == sum(dict(model.named_parameters())[n].numel() for n in names)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_the_model(dtype):
    dirs = D.random(mlp(dtype))
    assert dirs.vectors.dtype == dtype and dirs.center.dtype == dtype
    assert dirs.vectors.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_directions_on_the_gpu():
    model = cnn_bn().cuda()
    before = state(model)
    dirs = D.random(model, seed=7)
    assert dirs.vectors.is_cuda and dirs.center.is_cuda
    assert torch.equal(dirs.vectors, D.random(model, seed=7).vectors)
    # drawn on the CPU: the same directions as the CPU model's, up to the normalisation
    torch.testing.assert_close(dirs.vectors.cpu(), D.random(cnn_bn(), seed=7).vectors)
    for row in dirs.vectors.cpu():  # normalised the same way
        for pname, (d, w) in pieces(cnn_bn(), row).items():
            if w.ndim >= 2:
                torch.testing.assert_close(
                    d.reshape(d.shape[0], -1).norm(dim=1),
                    w.reshape(w.shape[0], -1).norm(dim=1),
                    msg=pname,
                )
            else:
                assert torch.count_nonzero(d) == 0
    r = D.orthogonalize(dirs.vectors[1], dirs.vectors[0])
    assert r.is_cuda and abs(float(r @ dirs.vectors[0])) <= 1e-5 * float(r.norm() ** 2)
    assert_unchanged(model, before)
    f64, x, y = make("mlp", n=20)
    top = D.hessian(f64.cuda(), CE, (x.cuda(), y.cuda()), k=2, tol=1e-10)
    cpu = D.hessian(f64.cpu(), CE, (x, y), k=2, tol=1e-10)
    assert top.vectors.is_cuda and top.vectors.dtype == torch.float64
    np.testing.assert_allclose(top.eigenvalues, cpu.eigenvalues, rtol=1e-8)
    traj, center, basis, coords = plane_trajectory()
    plane = T.pca(torch.from_numpy(traj).cuda(), torch.from_numpy(center).cuda())
    assert plane.vectors.is_cuda
    np.testing.assert_allclose(
        T.project(torch.from_numpy(traj).cuda(), plane.center, basis), coords, atol=1e-10
    )
    back = D.Directions.from_record(dirs.to_record(), device="cuda")
    assert torch.equal(back.vectors, dirs.vectors)


# ---------------------------------------------------------------------------- orthogonalize
def test_orthogonalize_leaves_zero_inner_products_and_no_rescaling():
    g = torch.Generator().manual_seed(0)
    d, a, b = torch.randn(3, 200, generator=g, dtype=torch.float64)
    r = D.orthogonalize(d, a, torch.stack([b, a + b]))  # dependent others are fine
    for o in (a, b):
        assert abs(float(o @ r)) <= 1e-12 * float(o.norm() * r.norm())
    q, _ = torch.linalg.qr(torch.stack([a, b]).T)
    torch.testing.assert_close(r, d - q @ (q.T @ d))  # d's orthogonal part, not rescaled
    f32 = D.orthogonalize(d.float(), a.float())
    assert f32.dtype == torch.float32
    assert abs(float(a.float() @ f32)) <= 1e-5 * float(a.norm() * f32.norm())


def test_orthogonalize_errors():
    d = torch.randn(10, dtype=torch.float64)
    with pytest.raises(ValueError, match="lies in the span"):
        D.orthogonalize(2 * d, d)
    with pytest.raises(ValueError, match="at least one"):
        D.orthogonalize(d)
    with pytest.raises(ValueError, match="must be nonzero"):
        D.orthogonalize(d, torch.zeros(10, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"others must be a floating \(T, P\) array .*P=10"):
        D.orthogonalize(d, torch.randn(9, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        D.orthogonalize(d, torch.randn(10))


# ---------------------------------------------------------------------------- difference
def test_difference_of_two_models_and_vectors():
    a, b = mlp(), mlp()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.1)
    before_a, before_b = state(a), state(b)
    diff = D.difference(a, b)
    flat = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in (a, b)]
    torch.testing.assert_close(diff.vectors[0], flat[1] - flat[0])
    assert torch.equal(diff.center, flat[0]) and diff.kind == "difference"
    assert diff.params == tuple(n for n, _ in a.named_parameters())
    assert_unchanged(a, before_a)
    assert_unchanged(b, before_b)
    arrays = D.difference(flat[0].numpy(), flat[1].numpy())
    torch.testing.assert_close(arrays.vectors, diff.vectors)
    only = D.difference(a, b, params=["layers.0.weight"])
    assert only.vectors.shape == (1, 42)


def test_difference_errors():
    a = mlp()
    with pytest.raises(ValueError, match="the direction is zero.*same point"):
        D.difference(a, copy.deepcopy(a))
    with pytest.raises(ValueError, match="same parameters"):
        D.difference(a, MLP(in_features=6, num_classes=3, width=8, depth=2))
    with pytest.raises(TypeError, match="two models or two flat vectors"):
        D.difference(a, torch.zeros(3))
    with pytest.raises(ValueError, match=r"b must be a floating \(P,\) array .*P=3"):
        D.difference(torch.zeros(3), torch.ones(4))


def test_stored_difference(tmp_path):
    path = tmp_path / "cmp.h5"
    rng = np.random.default_rng(0)
    init, mid, final, other = rng.standard_normal((4, 6))
    with Store(path, "a") as s:
        for run, end in (("sgd", final), ("adam", other)):
            s.create_run(run, names=["w", "b"], shapes=[(2, 2), (2,)], init=init)
            s.append_trajectory(run, [5], mid[None])
            s.set_final(run, end, status="complete")
    d = D.stored_difference(path, "sgd", which_a="init")
    np.testing.assert_array_equal(d.vectors[0].numpy(), final - init)
    assert d.params == ("w", "b") and d.shapes == ((2, 2), (2,))
    assert d.options == {"run_a": "sgd", "which_a": "init", "run_b": "sgd", "which_b": "final"}
    with Store(path) as s:
        d2 = D.stored_difference(s, "sgd", "adam", which_a=5).to(dtype=torch.float32)
    np.testing.assert_allclose(d2.vectors[0].numpy(), other - mid, rtol=1e-6)
    assert d2.vectors.dtype == torch.float32 and d2.center.dtype == torch.float32
    np.testing.assert_allclose(d2.center.numpy(), mid, rtol=1e-6)


# ---------------------------------------------------------------------------- pca, project
def plane_trajectory(t=30, p=50, seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((p, 2)))[0].T  # (2, P) orthonormal
    coords = rng.standard_normal((t, 2)) * [3.0, 1.0]
    coords[-1] = 0  # the last checkpoint is the centre
    center = rng.standard_normal(p)
    return center + coords @ basis, center, basis, coords


def test_pca_recovers_a_known_plane_and_project_its_coordinates():
    traj, center, basis, coords = plane_trajectory()
    plane = T.pca(traj, center, k=2)
    assert plane.kind == "pca" and plane.vectors.dtype == torch.float64
    v = plane.vectors.numpy()
    np.testing.assert_allclose(v @ v.T, np.eye(2), atol=1e-12)
    angles = scipy.linalg.subspace_angles(v.T, basis.T)
    assert np.max(angles) < 1e-8
    assert plane.explained_variance[0] > plane.explained_variance[1]
    assert abs(plane.explained_variance.sum() - 1) < 1e-12
    xy = T.project(traj, center, plane)
    np.testing.assert_allclose(xy @ v, coords @ basis, atol=1e-10)  # same points
    np.testing.assert_allclose(T.project(traj, center, basis), coords, atol=1e-10)
    skew = np.array([[1.0, 0.5], [0.2, 2.0]]) @ basis  # not orthogonal nor unit
    np.testing.assert_allclose(T.project(traj, center, skew) @ skew, coords @ basis, atol=1e-10)
    np.testing.assert_allclose(T.project(traj[0], center, basis), coords[0], atol=1e-10)


def test_pca_does_not_subtract_the_mean_and_follows_the_centre_dtype():
    rng = np.random.default_rng(1)
    u = rng.standard_normal(20)
    u /= np.linalg.norm(u)
    center = rng.standard_normal(20)
    traj = center + np.linspace(1, 2, 8)[:, None] * u  # a ray from the centre: one direction
    one = T.pca(torch.from_numpy(traj).float(), torch.from_numpy(center).float(), k=1)
    assert one.vectors.dtype == torch.float32
    np.testing.assert_allclose(np.abs(one.vectors[0].numpy() @ u), 1, rtol=1e-5)
    np.testing.assert_allclose(one.explained_variance, [1.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"spans around the centre \(1, from 8"):
        T.pca(traj, center, k=2)


def test_pca_and_project_errors():
    traj, center, basis, _ = plane_trajectory()
    with pytest.raises(
        ValueError,
        match=r"trajectory must be a floating \(T, P\) array with "
        r"P=50.*got \(30, 49\)",
    ):
        T.pca(traj[:, :49], center)
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        T.pca(traj, center, k=0)
    with pytest.raises(ValueError, match="must be finite"):
        T.pca(np.full_like(traj, np.nan), center)
    with pytest.raises(TypeError, match="torch.Tensor or numpy array, got list"):
        T.pca(traj.tolist(), center)
    with pytest.raises(ValueError, match="linearly independent directions, got 2 of rank 1"):
        T.project(traj, center, np.stack([basis[0], 2 * basis[0]]))
    with pytest.raises(ValueError, match=r"points must be .*P=50"):
        T.project(traj[:, 1:], center, basis)


# ---------------------------------------------------------------------------- hessian
def test_hessian_directions_are_unit_eigenvectors_of_the_dense_hessian():
    model, x, y = make("mlp", n=20)
    before = state(model)
    top = D.hessian(model, CE, (x, y), k=2, tol=1e-12)
    assert top.kind == "hessian" and top.vectors.dtype == torch.float64
    h = matrix(model, CE, (x, y))
    full = (h.matrix + h.matrix.T) / 2
    values, vectors = np.linalg.eigh(full)
    np.testing.assert_allclose(top.eigenvalues, values[::-1][:2], rtol=1e-10)
    for lam, v, u in zip(top.eigenvalues, top.vectors.numpy(), vectors.T[::-1], strict=False):
        assert abs(np.linalg.norm(v) - 1) < 1e-12
        assert np.linalg.norm(full @ v - lam * v) <= 1e-6 * values[-1]  # H v = lambda v
        assert abs(u @ v) >= 1 - 1e-10  # the dense eigenvector, up to sign
    assert top.options["converged"] and top.options["which"] == "largest"
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(top.center, theta)
    assert_unchanged(model, before)
    low = D.hessian(model, CE, (x, y), k=1, which="smallest", params=["0.weight"])
    assert low.params == ("0.weight",) and low.vectors.shape == (1, 56)
    with pytest.raises(ValueError, match="vectors cannot be passed"):
        D.hessian(model, CE, (x, y), vectors=False)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        D.hessian(model, CE, (x, y), k=0)


# ---------------------------------------------------------------------------- records
def test_record_round_trip_through_the_store(tmp_path):
    model, x, y = make("mlp", n=20)
    traj, center, _, _ = plane_trajectory(p=sum(p.numel() for p in model.parameters()))
    results = {
        "random": D.random(model, seed=5, ignore=None, normalization="layer"),
        "hessian": D.hessian(model, CE, (x, y), k=2),
        "pca": T.pca(traj, center),
        "difference": D.difference(center, traj[0]),
    }
    with Store(tmp_path / "dirs.h5", "a") as s:
        for name, r in results.items():
            arrays, attrs = r.to_record()
            s.write_record(None, "surfaces", name, arrays=arrays, attrs=attrs)
    with Store(tmp_path / "dirs.h5") as s:
        back = {
            name: D.Directions.from_record(s.record(None, "surfaces", name)) for name in results
        }
    for name, r in results.items():
        b = back[name]
        assert torch.equal(b.vectors, r.vectors) and b.vectors.dtype == r.vectors.dtype
        assert torch.equal(b.center, r.center)
        for key in ("kind", "params", "shapes", "normalization", "ignore", "seed", "options"):
            assert getattr(b, key) == getattr(r, key), (name, key)
        for key in ("explained_variance", "eigenvalues"):
            if getattr(r, key) is None:
                assert getattr(b, key) is None
            else:
                np.testing.assert_array_equal(getattr(b, key), getattr(r, key))
    f32 = D.Directions.from_record(results["random"].to_record(), dtype=torch.float32)
    assert f32.vectors.dtype == torch.float32 and f32.center.dtype == torch.float32
    with pytest.raises(ValueError, match="holds probe 'hessian.trace', not 'directions'"):
        D.Directions.from_record(({}, {"probe": "hessian.trace"}))
    with pytest.raises(TypeError, match="Record or an \\(arrays, attrs\\) pair, got list"):
        D.Directions.from_record([])


# ---------------------------------------------------------------------------- errors
def test_error_messages():
    model = mlp()
    layout = ParamLayout.of(select(model))
    theta = layout.flatten(select(model))
    with pytest.raises(
        ValueError, match="normalization must be one of 'filter', 'layer', 'none', got 'unit'"
    ):
        D.random(model, normalization="unit")
    with pytest.raises(ValueError, match="ignore must be one of 'biasbn', None, got 'bias'"):
        D.random(model, ignore="bias")
    with pytest.raises(ValueError, match="random: k must be an int >= 1, got 0"):
        D.random(model, k=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        D.random(model, seed=-1)
    with pytest.raises(
        ValueError,
        match=rf"direction of shape \({layout.numel},\).*got shape "
        r"\(3,\)",
    ):
        D.normalize(torch.zeros(3), theta, layout)
    with pytest.raises(TypeError, match="dtype torch.float32"):
        D.normalize(theta.double(), theta, layout)
    with pytest.raises(ValueError, match="direction is zero.*every parameter is ignored"):
        D.normalize(torch.zeros_like(theta), theta, layout)
    biases = nn.Sequential(nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="direction is zero"):
        D.random(biases)
    assert D.random(biases, ignore=None).vectors.shape == (2, 6)
    with pytest.raises(TypeError, match="expected model to be a torch.nn.Module"):
        D.random(theta)
    with pytest.raises(ValueError, match=r"vectors must be a \(k, P\) tensor"):
        D.Directions(vectors=torch.zeros(3), kind="custom")
    with pytest.raises(ValueError, match="kind must be one of"):
        D.Directions(vectors=torch.zeros(1, 3), kind="weird")
