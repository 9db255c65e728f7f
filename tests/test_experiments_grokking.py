"""``experiments/grokking.toml`` (Power et al. 2022; Nanda et al. 2023) at tiny scale.

The spec itself, with p = 23 instead of 31, half the pairs for training and 600 steps instead
of 6000, run through the sweep machinery: the ``modular_addition`` dataset builds the
``tiny_transformer`` (vocabulary and context from the data), AdamW with weight decay 1 fits the
training set while test accuracy is still low (memorisation first; at this budget the test
accuracy has not grokked yet: the full run's README section has that), the parameter norm is
recorded along training and falls, lambda_max is recorded along training, and every probe of
``[probes]`` (Hessian eigenvalues, trace, density, measures) runs on attention, embeddings and
LayerNorm.
"""

from __future__ import annotations

import numpy as np
import pytest

from landscape.train.spec import read_toml
from landscape.store.file import Store
from landscape.sweep.spec import expand
from landscape.sweep.run import run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    raw = read_toml("experiments/grokking.toml", "sweep spec")
    raw["base"]["data"].update(p=23, train_fraction=0.5)
    raw["base"]["train"].update(max_steps=600, batch_size=264, history_every=20,
                                snapshot_every=0)
    raw["along"] = {"lambda_max": {"every": 200, "k": 1, "tol": 1e-3},
                    "param_norm": {"every": 20}}
    raw["probes"]["trace"] = {"n_products": 12}
    raw["probes"]["density"] = {"n_vectors": 1, "steps": 12}
    path = tmp_path_factory.mktemp("grokking") / "grokking.h5"
    run_sweep(expand(raw), path)
    with Store(path) as s:
        run = s.runs()[0]
        out = {"history": s.series(run, "history"),
               "norm": s.series(run, "probes/param_norm"),
               "lambda": s.series(run, "probes/lambda_max")}
        for name in ("hessian_eigenvalues", "hessian_trace", "hessian_density", "measures"):
            rec = s.record(run, "probes", name)
            out[name] = (rec.arrays, rec.attrs)
    return out


def test_training_accuracy_reaches_one_while_test_accuracy_is_low(tiny):
    """p = 23, 264 training pairs: train accuracy 1.0 first at step 100 here, test accuracy
    then 0.04 (chance 1/23); 0.21 at step 600, not grokked yet (the full run groks later).
    The norm falls 33.3 -> 14.4 over the 600 steps."""
    h = tiny["history"]
    fitted = np.flatnonzero(h["train_acc"] == 1.0)
    assert len(fitted) > 0
    first = fitted[0]
    assert h["step"][first] <= 300 and h["test_acc"][first] < 0.5, (h["step"][first],
                                                                   h["test_acc"][first])


def test_parameter_norm_and_lambda_max_are_recorded_along_training(tiny):
    norm, lam = tiny["norm"], tiny["lambda"]
    assert norm["step"].tolist() == list(range(0, 601, 20))
    assert norm["dist_init"][0] == 0 and (norm["weights"] <= norm["value"]).all()
    assert norm["value"][-1] < 0.8 * norm["value"][0]       # weight decay 1 shrinks it
    assert lam["step"].tolist() == [0, 200, 400, 600]
    assert np.isfinite(lam["value"]).all() and (lam["value"] > 0).all()


def test_every_probe_runs_on_attention_embeddings_and_layernorm(tiny):
    arrays, attrs = tiny["hessian_eigenvalues"]
    assert {"embed.weight", "layers.0.qkv.weight", "layers.0.ln1.weight", "ln.bias"} <= set(
        attrs["params"])
    assert np.isfinite(arrays["values"]).all() and arrays["values"].max() > 0
    assert np.isfinite(tiny["hessian_trace"][1]["value"])
    density = tiny["hessian_density"][0]["density"]
    assert np.isfinite(density).all() and density.sum() > 0
    arrays, attrs = tiny["measures"]
    values = attrs["values"]
    for name in ("param_norm", "log_prod_spectral", "fisher_rao", "margin_q10",
                 "effective_rank_mean", "sharpness_worst", "sharpness_average_adaptive"):
        assert values[name] is not None and np.isfinite(values[name]), name
    np.testing.assert_allclose(values["param_norm"], tiny["norm"]["value"][-1], rtol=1e-5)
    # the path-norm is defined for Linear/Conv/ReLU networks, not attention or embeddings
    assert values["path_norm"] is None and "Embedding" in attrs["skipped"]["path_norm"]
    assert "layers.0.qkv.weight" in attrs["layers"]
