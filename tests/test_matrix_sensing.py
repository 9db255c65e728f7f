"""The matrix-sensing dataset and its probe.

The dataset is ``landscape.data.synthetic.matrix_sensing``, the probe
``probes.implicit_bias.recovery.matrix_recovery`` (``[probes] matrix_recovery`` of a sweep).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape import data
from landscape.data.synthetic import matrix_sensing, matrix_sensing_truth
from landscape.models import SymmetricFactorization
from landscape.sweep.spec import loads
from probes.implicit_bias.recovery import MatrixRecovery, matrix_recovery


def test_dataset_measures_a_low_rank_psd_truth_reproducibly():
    s = data.load("matrix_sensing", n_train=20, n_test=7, dim=6, rank=2, seed=3)
    truth = np.asarray(s.info["truth"])
    assert s.x_train.shape == (20, 6, 6) and s.y_test.shape == (7,) and s.num_classes == 1
    assert s.y_train.dtype == torch.float32
    np.testing.assert_allclose(truth, truth.T)
    eig = np.linalg.eigvalsh(truth)
    assert eig.min() > -1e-12 and np.sum(eig > 1e-9) == 2
    assert np.linalg.norm(truth) == pytest.approx(1.0)
    assert s.info["truth_nuclear_norm"] == pytest.approx(eig.sum())
    a = s.x_train.double().numpy()
    np.testing.assert_allclose(a, a.transpose(0, 2, 1))
    np.testing.assert_allclose(np.einsum("kij,ij->k", a, truth), s.y_train.numpy(), atol=1e-5)
    again = matrix_sensing(n_train=20, n_test=7, dim=6, rank=2, seed=3)
    assert torch.equal(again.x_train, s.x_train) and torch.equal(again.y_test, s.y_test)
    more = matrix_sensing(n_train=50, n_test=1, dim=6, rank=2, seed=3)
    np.testing.assert_array_equal(np.asarray(more.info["truth"]), truth)  # X*: seed only
    np.testing.assert_array_equal(matrix_sensing_truth(dim=6, rank=2, seed=3), truth)
    assert not np.array_equal(matrix_sensing_truth(dim=6, rank=2, seed=4), truth)
    with pytest.raises(ValueError, match="rank"):
        matrix_sensing(dim=3, rank=4)


def test_probe_against_the_truth_and_in_a_sweep_spec():
    s = matrix_sensing(n_train=15, dim=5, rank=1, seed=0)
    truth = np.asarray(s.info["truth"])
    model = SymmetricFactorization(5, init_scale=0.1).double()
    with torch.no_grad():  # U = sqrt of X*: exact
        w, v = np.linalg.eigh(truth)
        model.U.copy_(torch.from_numpy(v * np.sqrt(np.clip(w, 0, None))))
    r = matrix_recovery(model, None, s.train, rank=1, seed=0)
    assert isinstance(r, MatrixRecovery)
    assert r.distance < 1e-12 and r.residual < 1e-5 and r.numerical_rank == 1
    assert r.nuclear_norm == pytest.approx(r.truth_nuclear_norm)
    assert r.effective_rank == pytest.approx(1.0)
    same = matrix_recovery(model, None, s.train, truth=truth.tolist())
    assert same.distance == r.distance
    arrays, attrs = r.to_record()
    assert attrs["probe"] == "ground_truth.matrix_recovery" and "truth" in arrays
    far = matrix_recovery(SymmetricFactorization(5, init_scale=1.0), None, s.train, truth=truth)
    assert far.nuclear_norm == pytest.approx(5.0) and far.relative_distance > 1
    with pytest.raises(ValueError, match="truth"):
        matrix_recovery(model, None, s.train)
    with pytest.raises(ValueError, match="shapes"):
        matrix_recovery(model, None, s.train, truth=np.eye(4))
    sweep = loads(
        'name = "t"\n[base]\nmodel = {name = "symmetric_factorization", n = 5}\n'
        'data = {name = "matrix_sensing", dim = 5}\ntrain = {max_steps = 5}\n'
        "[probes]\nmatrix_recovery = {rank = 1, seed = 0}\n"
    )
    assert sweep.probes["matrix_recovery"] == (
        "implicit_bias.recovery",
        "matrix_recovery",
        {"rank": 1, "seed": 0},
    )
