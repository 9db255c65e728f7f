"""Built-in synthetic datasets, drawn from a known law.

Separable Gaussians, moons, sparse regression, PSD matrix sensing and modular addition.

Each function returns a :class:`~landscape.data.split.Split` whose ``info`` records the source,
sizes, options and seed, and what a probe needs to know of the truth (the separating
direction, ``beta*``, ``X*``). Nothing downloads. Everything is seeded with its own
``torch.Generator`` or ``numpy.random.Generator``: the same seed gives identical tensors, and
global RNG state is left as it was. The real datasets (MNIST-1D, digits) are in
:mod:`landscape.data.datasets`.

All names here are re-exported by :mod:`landscape.data`, which also has ``load`` by name.

Examples:
    >>> from landscape import data
    >>> split = data.sparse_regression(n_train=40, dim=100, sparsity=5, seed=0)
"""

from __future__ import annotations

import numpy as np

from landscape.data.datasets import _tensor
from landscape.data.split import Split
from landscape.engine.checks import _check_fraction, _check_int, _check_number

__all__ = [
    "gaussians",
    "matrix_sensing",
    "matrix_sensing_truth",
    "modular_addition",
    "moons",
    "sparse_regression",
]


def gaussians(
    *,
    n_train: int = 200,
    n_test: int = 1000,
    dim: int = 2,
    margin: float = 0.1,
    separation: float = 3.0,
    seed: int = 0,
) -> Split:
    """Two linearly separable Gaussian classes, separated by a hyperplane through the origin.

    A random unit direction ``w`` is drawn; class ``c`` in {0, 1} (sign ``s = 2c - 1``) is
    ``N(s * separation / 2 * w, I)`` truncated to ``s * w.x >= margin`` (the component along
    ``w`` is drawn from a truncated normal, the rest from ``N(0, I)``), so every point, train
    and test, lies at least ``margin`` from the plane ``w.x = 0`` (up to float32 rounding).
    Classes are balanced (up to one point). Used for the implicit bias of gradient descent
    on separable data (Soudry et al. 2018).

    Args:
        n_train: number of training points (>= 2).
        n_test: number of test points (>= 1).
        dim: input dimension (>= 1).
        margin: guaranteed distance from the hyperplane (>= 0).
        separation: distance between the class means before truncation (> 0).
        seed: seed of the direction and the points.

    Returns:
        A :class:`Split` with inputs ``(N, dim)`` float32, labels int64 in {0, 1};
        ``info["direction"]`` is the true unit normal ``w``.

    Examples:
        >>> s = gaussians(n_train=50, dim=5, seed=1)
        >>> w = torch.tensor(s.info["direction"])
    """
    fn = "gaussians"
    n_train, n_test = _check_int(fn, "n_train", n_train, 2), _check_int(fn, "n_test", n_test, 1)
    dim, seed = _check_int(fn, "dim", dim, 1), _check_int(fn, "seed", seed)
    from scipy.stats import truncnorm  # noqa: PLC0415 (scipy.stats takes ~0.6 s to import)

    margin = _check_number(fn, "margin", margin)
    separation = _check_number(fn, "separation", separation, strict=True)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % 2)
        z = rng.standard_normal((n, dim))
        t = truncnorm.rvs(
            margin - separation / 2, np.inf, loc=separation / 2, size=n, random_state=rng
        )
        return z - np.outer(z @ w, w) + np.outer((2 * y - 1) * t, w), y

    (x, y), (xt, yt) = draw(n_train), draw(n_test)
    info = {
        "source": "synthetic: truncated Gaussians",
        "sizes": {"train": n_train, "test": n_test},
        "seed": seed,
        "options": {"dim": dim, "margin": margin, "separation": separation},
        "direction": w.tolist(),
        "min_margin_train": float(((2 * y - 1) * (x @ w)).min()),
    }
    return Split(
        _tensor(x, np.float32),
        _tensor(y, np.int64),
        _tensor(xt, np.float32),
        _tensor(yt, np.int64),
        name="gaussians",
        num_classes=2,
        info=info,
    )


def moons(*, n_train: int = 200, n_test: int = 1000, noise: float = 0.1, seed: int = 0) -> Split:
    """Two interleaving half circles (scikit-learn ``make_moons``), labels {0, 1}.

    Args:
        n_train: number of training points (>= 1).
        n_test: number of test points (>= 1).
        noise: std of Gaussian noise (>= 0).
        seed: seed (``random_state`` of ``make_moons``).

    Returns:
        A :class:`Split` with inputs ``(N, 2)`` float32 and labels int64.

    Examples:
        >>> moons(n_train=100, noise=0.2, seed=0).x_train.shape
        torch.Size([100, 2])
    """
    from sklearn.datasets import make_moons  # noqa: PLC0415 (import cost, see digits)

    n_train, n_test = (
        _check_int("moons", k, v, 1) for k, v in (("n_train", n_train), ("n_test", n_test))
    )
    seed, noise = _check_int("moons", "seed", seed), _check_number("moons", "noise", noise)
    x, y = make_moons(n_samples=n_train + n_test, noise=noise, random_state=seed)
    x, y = _tensor(x, np.float32), _tensor(y, np.int64)
    info = {
        "source": "sklearn.datasets.make_moons",
        "sizes": {"train": n_train, "test": n_test},
        "seed": seed,
        "options": {"noise": float(noise)},
    }
    return Split(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], name="moons", num_classes=2, info=info
    )


def sparse_regression(
    *,
    n_train: int = 40,
    n_test: int = 1000,
    dim: int = 100,
    sparsity: int = 5,
    noise: float = 0.0,
    seed: int = 0,
) -> Split:
    """Underdetermined sparse linear regression ``y = X beta* (+ noise)``, float targets.

    ``beta*`` has ``sparsity`` non-zero entries at random positions, each ``+-1/sqrt(sparsity)``
    with a random sign (so ``||beta*||_2 = 1``); the rows of ``X`` are i.i.d. ``N(0, I_dim)``.
    The training set is the ``n_train`` measurements (``n_train < dim``: infinitely many
    interpolators), the test set ``n_test`` fresh samples of the same law. With ``noise = 0``
    and ``n_train`` large enough for the sparsity (about ``2 k log(dim / k)``), the minimum-l1
    interpolator is ``beta*`` (basis pursuit), the minimum-l2 one is not: the setting of the
    diagonal-network experiments of Woodworth et al. 2020. Load it with ``standardize = false``
    in a run spec: standardising ``X`` breaks ``y = X beta*``.

    Args:
        n_train: number of training samples (>= 1).
        n_test: number of test samples (>= 1).
        dim: input dimension (>= 1).
        sparsity: non-zero entries of ``beta*``, in ``1..dim``.
        noise: std of Gaussian noise added to every target, train and test (>= 0).
        seed: seed of ``beta*``, the inputs and the noise.

    Returns:
        A :class:`Split` with inputs ``(N, dim)`` and targets ``(N,)``, both float32,
        ``num_classes = 1`` (one output); ``info["beta"]`` is ``beta*`` and
        ``info["support"]`` its non-zero positions (sorted).

    Examples:
        >>> s = sparse_regression(n_train=40, dim=100, sparsity=5, seed=0)
        >>> beta = torch.tensor(s.info["beta"]); (s.x_train @ beta - s.y_train).abs().max()

    References:
        Woodworth et al. (2020). Kernel and rich regimes in overparametrized models. COLT.
    """
    fn = "sparse_regression"
    n_train, n_test = _check_int(fn, "n_train", n_train, 1), _check_int(fn, "n_test", n_test, 1)
    dim, seed = _check_int(fn, "dim", dim, 1), _check_int(fn, "seed", seed)
    sparsity = _check_int(fn, "sparsity", sparsity, 1)
    if sparsity > dim:
        raise ValueError(f"{fn}: sparsity must be at most dim={dim}, got {sparsity}")
    noise = _check_number(fn, "noise", noise)
    rng = np.random.default_rng(seed)
    support = np.sort(rng.choice(dim, size=sparsity, replace=False))
    beta = np.zeros(dim)
    beta[support] = rng.choice([-1.0, 1.0], size=sparsity) / np.sqrt(sparsity)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, dim))
        return x, x @ beta + noise * rng.standard_normal(n)

    (x, y), (xt, yt) = draw(n_train), draw(n_test)
    info = {
        "source": "synthetic: sparse linear regression, Gaussian inputs",
        "sizes": {"train": n_train, "test": n_test},
        "seed": seed,
        "options": {"dim": dim, "sparsity": sparsity, "noise": noise},
        "beta": beta.tolist(),
        "support": support.tolist(),
    }
    return Split(
        _tensor(x, np.float32),
        _tensor(y, np.float32),
        _tensor(xt, np.float32),
        _tensor(yt, np.float32),
        name="sparse_regression",
        num_classes=1,
        info=info,
    )


def matrix_sensing_truth(*, dim: int = 10, rank: int = 2, seed: int = 0) -> np.ndarray:
    """The low-rank PSD matrix ``X*`` that :func:`matrix_sensing` with the same ``seed`` measures.

    ``X* = W W^T / ||W W^T||_F`` with ``W`` (``dim x rank``) i.i.d. ``N(0, 1)``, so
    ``||X*||_F = 1``. It depends on ``dim``, ``rank`` and ``seed`` only, not on the
    measurements.

    Args:
        dim: size of ``X*`` (>= 1).
        rank: rank of ``X*``, in ``1..dim``.
        seed: the seed of :func:`matrix_sensing`.

    Returns:
        ``X*``, ``(dim, dim)`` float64.
    """
    fn = "matrix_sensing"
    dim, seed = _check_int(fn, "dim", dim, 1), _check_int(fn, "seed", seed)
    rank = _check_int(fn, "rank", rank, 1)
    if rank > dim:
        raise ValueError(f"{fn}: rank must be at most dim={dim}, got {rank}")
    truth_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
    w = truth_rng.standard_normal((dim, rank))
    x = w @ w.T
    return x / np.linalg.norm(x)


def matrix_sensing(
    *, n_train: int = 40, n_test: int = 200, dim: int = 10, rank: int = 2, seed: int = 0
) -> Split:
    """PSD matrix sensing: ``y_i = <A_i, X*>`` for a low-rank PSD ``X*``, float targets.

    The setting of Gunasekar et al. 2017.
    ``X*`` is :func:`matrix_sensing_truth` (rank ``rank``, ``||X*||_F = 1``); each ``A_i`` is a
    symmetric Gaussian matrix ``(G + G^T) / 2`` with ``G`` i.i.d. ``N(0, 1)``, so that
    ``E <A, X>^2 = ||X||_F^2`` for every symmetric ``X``. The training set is the ``n_train``
    measurements (with ``n_train < dim (dim + 1) / 2`` the symmetric matrices fitting them
    form an affine space of positive dimension), the test set ``n_test`` fresh ones. ``X*``,
    the training and the test measurements come from three independent streams of ``seed``
    (``numpy.random.SeedSequence(seed).spawn(3)``), so ``X*`` does not change with the sizes.
    Inputs are the matrices ``(N, dim, dim)``, which ``landscape.models.SymmetricFactorization``
    and ``DeepMatrixFactorization`` measure as ``<A_i, X>``. Load it with ``standardize =
    false`` in a run spec: standardising the ``A_i`` breaks ``y = <A, X*>``.

    Args:
        n_train: number of training measurements (>= 1).
        n_test: number of test measurements (>= 1).
        dim: size of ``X*`` (>= 1).
        rank: rank of ``X*``, in ``1..dim``.
        seed: seed of ``X*`` and the measurements.

    Returns:
        A :class:`Split` with inputs ``(N, dim, dim)`` and targets ``(N,)``, both float32,
        ``num_classes = 1``; ``info["truth"]`` is ``X*`` (a list of rows, float64) and
        ``info["truth_nuclear_norm"]`` its nuclear norm (its trace).

    Examples:
        >>> s = matrix_sensing(n_train=40, dim=10, rank=2, seed=0)
        >>> truth = torch.tensor(s.info["truth"])      # or matrix_sensing_truth(seed=0, ...)

    References:
        Gunasekar, Woodworth, Bhojanapalli, Neyshabur, Srebro, "Implicit regularization in
        matrix factorization", NeurIPS 2017.
    """
    fn = "matrix_sensing"
    n_train, n_test = _check_int(fn, "n_train", n_train, 1), _check_int(fn, "n_test", n_test, 1)
    truth = matrix_sensing_truth(dim=dim, rank=rank, seed=seed)
    streams = np.random.SeedSequence(seed).spawn(3)

    def draw(stream: np.random.SeedSequence, n: int) -> tuple[np.ndarray, np.ndarray]:
        g = np.random.default_rng(stream).standard_normal((n, dim, dim))
        a = (g + g.transpose(0, 2, 1)) / 2
        return a, np.einsum("kij,ij->k", a, truth)

    (x, y), (xt, yt) = draw(streams[1], n_train), draw(streams[2], n_test)
    info = {
        "source": "synthetic: PSD matrix sensing, symmetric Gaussian measurements",
        "sizes": {"train": n_train, "test": n_test},
        "seed": seed,
        "options": {"dim": dim, "rank": rank},
        "truth": truth.tolist(),
        "truth_nuclear_norm": float(np.trace(truth)),
    }
    return Split(
        _tensor(x, np.float32),
        _tensor(y, np.float32),
        _tensor(xt, np.float32),
        _tensor(yt, np.float32),
        name="matrix_sensing",
        num_classes=1,
        info=info,
    )


def modular_addition(
    *, p: int = 53, train_fraction: float = 0.3, seed: int = 0, equals: bool = True
) -> Split:
    """Modular addition ``a + b mod p`` over all ``p * p`` pairs, as token sequences.

    The grokking task of Power et al. 2022 and Nanda et al. 2023.
    Inputs are integer token ids ``[a, b, =]`` (``a, b`` in ``0..p-1``, the ``=`` token is
    ``p``), targets ``(a + b) mod p``. A random ``train_fraction`` of the pairs is the training
    set, the rest the test set. For :class:`landscape.models.TinyTransformer`: ``info``
    records ``vocab_size`` (``p + 1``, or ``p`` without ``=``) and ``context_length`` (3 or 2),
    which a run spec passes to the model; the inputs are not standardised (integer inputs never
    are).

    Args:
        p: the modulus (>= 2).
        train_fraction: fraction of the pairs for training, in (0, 1).
        seed: seed of the split.
        equals: append the ``=`` token.

    Returns:
        A :class:`Split` with inputs ``(N, 3)`` (or ``(N, 2)``) int64 and labels int64,
        ``num_classes = p``.

    Examples:
        >>> s = modular_addition(p=23, train_fraction=0.4, seed=0)
        >>> s.x_train.shape, s.num_classes
        (torch.Size([212, 3]), 23)
    """
    fn = "modular_addition"
    p, seed = _check_int(fn, "p", p, 2), _check_int(fn, "seed", seed)
    train_fraction = _check_fraction(fn, "train_fraction", train_fraction, closed=False)
    grid_a, grid_b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = grid_a.ravel(), grid_b.ravel()
    cols = [a, b] + ([np.full_like(a, p)] if equals else [])
    x, y = np.stack(cols, 1), (a + b) % p
    n_train = min(max(int(round(train_fraction * p * p)), 1), p * p - 1)
    order = np.random.default_rng(seed).permutation(p * p)
    tr, te = np.sort(order[:n_train]), np.sort(order[n_train:])
    info = {
        "source": "synthetic: modular addition (a + b) mod p, all pairs",
        "sizes": {"train": len(tr), "test": len(te)},
        "seed": seed,
        "options": {"p": p, "train_fraction": train_fraction, "equals": bool(equals)},
        "vocab_size": p + 1 if equals else p,
        "context_length": x.shape[1],
    }
    tokens, labels = _tensor(x, np.int64), _tensor(y, np.int64)
    return Split(
        tokens[tr],
        labels[tr],
        tokens[te],
        labels[te],
        name="modular_addition",
        num_classes=p,
        info=info,
    )
