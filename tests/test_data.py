"""Tests for landscape.data: built-in datasets, caching, transforms and user data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from landscape import data
from landscape.data import datasets


def assert_same(a: data.Split, b: data.Split) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def check_split(s: data.Split, n_train: int, n_test: int, shape: tuple, classes: int) -> None:
    assert s.x_train.shape == (n_train, *shape) and s.x_test.shape == (n_test, *shape)
    assert s.y_train.shape == (n_train,) and s.y_test.shape == (n_test,)
    assert s.x_train.dtype == s.x_test.dtype == torch.float32
    assert s.y_train.dtype == s.y_test.dtype == torch.int64
    assert s.num_classes == classes
    assert int(s.y_train.min()) >= 0 and int(s.y_train.max()) < classes
    assert s.train[0] is s.x_train and s.test[1] is s.y_test
    d = s.describe()
    assert json.loads(json.dumps(d)) == d
    assert d["n_train"] == n_train and d["input_shape"] == list(shape)


# ----------------------------------------------------------------------------- MNIST-1D


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory):
    """Generate MNIST-1D once for the whole module (about 4 s) into a temporary cache."""
    cache = tmp_path_factory.mktemp("cache")
    np_state = np.random.get_state()
    split = data.mnist1d(cache_dir=cache)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state[1:], after[1:], strict=True)), (
        "global numpy RNG state changed"
    )
    return cache, split


def test_mnist1d_shapes(mnist_cache):
    _, s = mnist_cache
    check_split(s, 4000, 1000, (40,), 10)
    assert set(s.y_train.tolist()) == set(range(10))
    assert s.info["seed"] == 42 and s.info["generator_args"]["seed"] == 42
    assert "url" not in s.info["generator_args"]


def test_mnist1d_cache_is_used(mnist_cache, monkeypatch):
    cache, first = mnist_cache
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    assert files[0].name == f"mnist1d-{first.info['cache_key']}.npz"

    def boom(args):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(datasets, "_generate_mnist1d", boom)
    assert_same(data.mnist1d(cache_dir=cache), first)


def test_mnist1d_env_cache_dir(mnist_cache, monkeypatch):
    cache, first = mnist_cache
    monkeypatch.setenv("LANDSCAPE_CACHE", str(cache))
    monkeypatch.setattr(datasets, "_generate_mnist1d", None)  # would fail if called
    assert_same(data.mnist1d(), first)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_key"])
def test_mnist1d_corrupted_cache_regenerates(mnist_cache, tmp_path, monkeypatch, damage):
    cache, first = mnist_cache
    src = next(cache.glob("mnist1d-*.npz"))
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    if damage == "truncate":
        dst.write_bytes(dst.read_bytes()[:1000])
    elif damage == "garbage":
        dst.write_bytes(b"not a zip file at all")
    else:
        with np.load(dst) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(dst, **{**arrays, "args": np.array("{}")})
    calls = []
    real = {
        k: v.numpy()
        for k, v in (
            ("x", first.x_train),
            ("y", first.y_train),
            ("x_test", first.x_test),
            ("y_test", first.y_test),
        )
    }

    def fake(args):
        calls.append(args)
        return real

    monkeypatch.setattr(datasets, "_generate_mnist1d", fake)
    with pytest.warns(RuntimeWarning, match="regenerating"):
        again = data.mnist1d(cache_dir=tmp_path)
    assert len(calls) == 1 and calls[0]["seed"] == 42
    assert_same(again, first)
    data.mnist1d(cache_dir=tmp_path)  # repaired: loads without a second generation
    assert len(calls) == 1


def test_mnist1d_cache_key_depends_on_seed():
    k = [datasets._mnist1d_key(datasets._mnist1d_args(s)) for s in (0, 1, 42, 42)]
    assert len(set(k)) == 3 and k[2] == k[3]


def test_mnist1d_shuffle_spatial(mnist_cache):
    cache, plain = mnist_cache
    s = data.mnist1d(cache_dir=cache, shuffle_spatial=True)
    perm = torch.tensor(s.info["options"]["permutation"])
    assert sorted(perm.tolist()) == list(range(40)) and not torch.equal(perm, torch.arange(40))
    assert torch.equal(s.x_train, plain.x_train[:, perm])
    assert torch.equal(s.x_test, plain.x_test[:, perm])
    assert torch.equal(s.y_train, plain.y_train)
    assert_same(s, data.mnist1d(cache_dir=cache, shuffle_spatial=True))


# ----------------------------------------------------------------------------- small sets


def test_digits():
    s = data.digits(seed=0)
    check_split(s, 1437, 360, (64,), 10)
    assert 0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1
    counts = torch.bincount(s.y_test, minlength=10)
    assert int(counts.min()) >= 35  # stratified: 36 or so per class
    img = data.digits(seed=0, image=True)
    assert img.x_train.shape == (1437, 1, 8, 8)
    assert torch.equal(img.x_train.reshape(-1, 64), s.x_train)
    assert_same(s, data.digits(seed=0))
    assert not torch.equal(s.y_train, data.digits(seed=1).y_train)


def test_gaussians_separable():
    for dim, seed in ((2, 0), (10, 3), (1, 5)):
        s = data.gaussians(n_train=101, n_test=50, dim=dim, margin=0.2, seed=seed)
        check_split(s, 101, 50, (dim,), 2)
        w = torch.tensor(s.info["direction"])
        assert abs(float(w.norm()) - 1) < 1e-6
        for x, y in (s.train, s.test):
            margins = (2 * y - 1).float() * (x @ w)
            assert float(margins.min()) >= 0.2 - 1e-5
        assert abs(int(s.y_train.sum()) - 50) <= 1  # balanced
    assert_same(data.gaussians(seed=7), data.gaussians(seed=7))
    assert not torch.equal(data.gaussians(seed=7).x_train, data.gaussians(seed=8).x_train)


def test_moons():
    s = data.moons(n_train=60, n_test=40, noise=0.1, seed=0)
    check_split(s, 60, 40, (2,), 2)
    assert_same(s, data.moons(n_train=60, n_test=40, noise=0.1, seed=0))


# ----------------------------------------------------------------------------- transforms


def test_standardize_uses_train_stats_only():
    s = data.moons(n_train=100, n_test=50, seed=1)
    t = data.standardize(s)
    assert torch.allclose(t.x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(t.x_train.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    mean, std = s.x_train.mean(0), s.x_train.std(0, unbiased=False)
    assert torch.allclose(t.x_test, (s.x_test - mean) / std, atol=1e-5)
    step = t.info["transforms"][-1]
    assert step["op"] == "standardize" and np.allclose(step["mean"], mean.numpy())
    # the test set does not leak: changing it leaves the train part alone
    s2 = data.Split(s.x_train, s.y_train, s.x_test * 100, s.y_test, "m", 2)
    assert torch.equal(data.standardize(s2).x_train, t.x_train)
    # constant features (blank pixels in digits) are centred, not divided by zero
    d = data.standardize(data.digits())
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_test).all()


def test_corrupt_labels_exact_and_seeded():
    y = torch.arange(1000) % 10
    out = data.corrupt_labels(y, 0.3, 10, seed=0, exclude_true=True)
    assert int((out != y).sum()) == 300 and out.dtype == y.dtype
    assert torch.equal(y, torch.arange(1000) % 10)  # input untouched
    assert torch.equal(out, data.corrupt_labels(y, 0.3, 10, seed=0, exclude_true=True))
    assert not torch.equal(out, data.corrupt_labels(y, 0.3, 10, seed=1, exclude_true=True))
    loose = data.corrupt_labels(y, 0.3, 10, seed=0)
    assert 200 < int((loose != y).sum()) <= 300  # ~10% of draws keep their label
    assert torch.equal(data.corrupt_labels(y, 0.0, 10, seed=0), y)
    assert int((data.corrupt_labels(y, 0.0015, 10, seed=0, exclude_true=True) != y).sum()) == 2
    assert int(data.corrupt_labels(y, 1.0, 10, seed=0).max()) < 10


def test_corrupt_split():
    s = data.digits()
    c = s.with_corrupted_labels(0.5, seed=3, exclude_true=True)
    step = c.info["transforms"][-1]
    idx = torch.tensor(step["indices"])
    assert len(idx) == round(0.5 * len(s.y_train)) == step["n_changed"]
    assert torch.equal(torch.nonzero(c.y_train != s.y_train).flatten(), idx)
    assert torch.equal(c.y_test, s.y_test) and torch.equal(c.x_train, s.x_train)
    assert_same(c, data.corrupt(s, 0.5, seed=3, exclude_true=True))
    assert "transforms" not in s.info  # the original is not modified


def test_subset():
    s = data.digits()
    a = data.subset(s, n_train=100, seed=0)
    assert a.x_train.shape == (100, 64) and torch.equal(a.x_test, s.x_test)
    assert_same(a, data.subset(s, n_train=100, seed=0))
    assert not torch.equal(a.y_train, data.subset(s, n_train=100, seed=1).y_train)
    rows = {tuple(r.tolist()) for r in s.x_train}
    assert all(tuple(r.tolist()) in rows for r in a.x_train)
    b = data.subset(s, n_train=100, n_test=20, seed=0, stratify=True)
    assert torch.bincount(b.y_train, minlength=10).tolist() == [10] * 10
    assert len(b.y_test) == 20 and b.info["sizes"] == {"train": 100, "test": 20}
    with pytest.raises(ValueError, match=r"subset: n_train must be <= 1437"):
        data.subset(s, n_train=5000)


# ----------------------------------------------------------------------------- your own data


def test_from_arrays_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((30, 5)),
        "y_train": np.arange(30) % 3,
        "x_test": rng.random((10, 5)),
        "y_test": np.arange(10) % 3,
    }
    np.savez(tmp_path / "four.npz", **arrays)
    s = data.from_arrays(tmp_path / "four.npz", name="mine")
    check_split(s, 30, 10, (5,), 3)
    assert s.name == "mine"
    assert np.allclose(s.x_train.numpy(), arrays["x_train"])
    assert np.array_equal(s.y_test.numpy(), arrays["y_test"])

    np.savez(tmp_path / "two.npz", x=rng.random((40, 2, 3)), y=np.arange(40) % 4)
    t = data.from_arrays(str(tmp_path / "two.npz"), test_fraction=0.25, seed=1)
    check_split(t, 30, 10, (2, 3), 4)
    assert set(torch.bincount(t.y_test, minlength=4).tolist()) <= {2, 3}  # stratified
    assert_same(t, data.from_arrays(tmp_path / "two.npz", test_fraction=0.25, seed=1))


def test_from_arrays_npy_pair_and_memory(tmp_path):
    x, y = np.random.default_rng(1).random((50, 4)), (np.arange(50) % 2).astype(np.int32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    s = data.from_arrays((tmp_path / "x.npy", tmp_path / "y.npy"), test_fraction=0.2)
    check_split(s, 40, 10, (4,), 2)
    m = data.from_arrays((x, y), test_fraction=0.2)
    assert_same(s, m)
    assert_same(m, data.from_arrays({"x": x, "y": y}, test_fraction=0.2))


def test_from_arrays_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", inputs=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(ValueError, match=r"expected keys .*found: inputs, labels"):
        data.from_arrays(tmp_path / "bad.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="without pickle"):
        data.from_arrays((tmp_path / "obj.npy", tmp_path / "obj.npy"))
    with pytest.raises(ValueError, match="single .npy"):
        data.from_arrays(tmp_path / "obj.npy")
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(ValueError, match="holds a single array, expected a .npz archive"):
        data.from_arrays(tmp_path / "one.npz")
    with pytest.raises(ValueError, match="x has 3 rows but y has 4"):
        data.from_arrays((np.zeros((3, 2)), np.zeros(4, dtype=int)))
    with pytest.raises(ValueError, match="integer class labels"):
        data.from_arrays((np.zeros((4, 2)), np.array([0.5, 1, 0, 1])))
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\), got 1.5"):
        data.from_arrays((np.zeros((4, 2)), np.zeros(4, dtype=int)), test_fraction=1.5)
    with pytest.raises(TypeError, match="source must be"):
        data.from_arrays(42)


def test_from_dataset():
    ds = torch.utils.data.TensorDataset(torch.randn(50, 3), torch.arange(50) % 5)
    s = data.from_dataset(ds, test_fraction=0.2, seed=0)
    check_split(s, 40, 10, (3,), 5)
    t = data.from_dataset(ds, ds)
    assert torch.equal(t.x_train, ds.tensors[0]) and torch.equal(t.y_test, ds.tensors[1])
    with pytest.raises(TypeError, match="map-style Dataset"):
        data.from_dataset(object())
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        data.from_dataset([torch.zeros(3)] * 4)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: data.corrupt_labels(torch.arange(4), 1.5, 4, seed=0),
            r"corrupt_labels: fraction must be in \[0, 1\], got 1.5",
        ),
        (
            lambda: data.corrupt_labels(torch.arange(4), 0.5, 3, seed=0),
            r"corrupt_labels: labels must lie in \[0, 3\), got values in \[0, 3\]",
        ),
        (lambda: data.corrupt_labels(torch.rand(4), 0.5, 3, seed=0), "1-D integer tensor"),
        (
            lambda: data.corrupt_labels(
                torch.zeros(4, dtype=torch.long), 0.5, 1, seed=0, exclude_true=True
            ),
            "num_classes must be an int >= 2, got 1",
        ),
        (lambda: data.gaussians(dim=0), "gaussians: dim must be an int >= 1, got 0"),
        (lambda: data.gaussians(margin=-1), "gaussians: margin must be a number >= 0, got -1"),
        (lambda: data.moons(noise=-0.1), "moons: noise must be a number >= 0, got -0.1"),
        (lambda: data.digits(test_fraction=0), r"digits: test_fraction must be in \(0, 1\), got 0"),
        (lambda: data.digits(seed=-1), "digits: seed must be an int >= 0, got -1"),
        (lambda: data.mnist1d(seed=1.5), "mnist1d: seed must be an int >= 0, got 1.5"),
        (lambda: data.standardize(data.moons(), eps=0), "standardize: eps must be a number > 0"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_split_validation():
    with pytest.raises(ValueError, match="x_train has shape .3, 2. but y_train has shape .4,."):
        data.Split(torch.zeros(3, 2), torch.zeros(4), torch.zeros(1, 2), torch.zeros(1), "a", 2)
    with pytest.raises(TypeError, match="must be tensors"):
        data.Split(np.zeros((3, 2)), torch.zeros(3), torch.zeros(1, 2), torch.zeros(1), "a", 2)
    s = data.moons(n_train=5, n_test=5).to("cpu", torch.float64)
    assert s.x_train.dtype == torch.float64 and s.y_train.dtype == torch.int64


def test_load_registry():
    assert set(data.DATASETS) == {
        "mnist1d",
        "digits",
        "gaussians",
        "moons",
        "sparse_regression",
        "matrix_sensing",
        "modular_addition",
        "cifar10",
        "cifar100",
        "image_folder",
        "hf_disk",
    }
    assert_same(data.load("gaussians", n_train=20, seed=2), data.gaussians(n_train=20, seed=2))
    assert data.load("Moons", n_train=10).x_train.shape == (10, 2)
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; known: cifar10, cifar100"):
        data.load("cifar11")
    with pytest.raises(
        TypeError,
        match=r"unexpected keyword argument\(s\) n_train; digits "
        r"accepts: test_fraction, seed, image",
    ):
        data.load("digits", n_train=3)


def test_public_names_documented():
    for name in data.__all__:
        obj = getattr(data, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name


def test_modular_addition_is_every_pair_once_with_the_sum_as_label():
    s = data.load("modular_addition", p=7, train_fraction=0.4, seed=3)
    x = np.concatenate([s.x_train.numpy(), s.x_test.numpy()])
    y = np.concatenate([s.y_train.numpy(), s.y_test.numpy()])
    assert len(s.y_train) == round(0.4 * 49) and len(y) == 49 and s.num_classes == 7
    assert (x[:, 2] == 7).all() and s.info["vocab_size"] == 8 and s.info["context_length"] == 3
    assert len({(a, b) for a, b, _ in x.tolist()}) == 49
    np.testing.assert_array_equal(y, (x[:, 0] + x[:, 1]) % 7)
