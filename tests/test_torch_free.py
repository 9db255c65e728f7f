"""Reading a file needs no torch.

The store, the report, the plots and every family's result types import and read records in a fresh
interpreter without importing torch.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .conftest import WAIT

RESULTS = (
    "probes.curvature.results",
    "probes.sharpness.results",
    "probes.implicit_bias.results",
    "probes.paths.results",
)

READ = textwrap.dedent("""
    import os, sys, tempfile
    import numpy as np
    import landscape.store, landscape.report, landscape.plot
    import probes.curvature.results, probes.sharpness.results
    import probes.implicit_bias.results, probes.paths.results
    import probes, probes.curvature, probes.sharpness, probes.implicit_bias, probes.paths
    from landscape.engine.cost import Cost
    from landscape.store import Store
    from probes.curvature.results import Density, Eigenvalues
    from probes.implicit_bias.results import Measures
    from probes.paths.results import Path
    from probes.sharpness import WorstCase  # the lazy package gives the result type

    d = tempfile.mkdtemp()
    f = os.path.join(d, "r.h5")
    results = {
        ("probes", "hessian_density"): Density(
            grid=np.linspace(0, 3, 7), density=np.ones(7), nodes=np.array([[0.5, 2.0]]),
            weights=np.array([[0.5, 0.5]]), width=0.1, steps=2, n_vectors=1,
            cost=Cost(hvp=2), curvature="hessian", seed=0, n_params=3),
        ("probes", "hessian_eigenvalues"): Eigenvalues(
            values=np.array([2.0]), vectors=None, residuals=np.zeros(1), errors=np.zeros(1),
            converged=np.ones(1, bool), which="largest", k=1, tol=1e-6, curvature="hessian",
            params=("w",), cost=Cost(hvp=5)),
        ("probes", "measures"): Measures(values={"param_norm": 1.0}, skipped={},
                                         layers=("w",), per_layer={"frobenius": np.ones(1)}),
        ("paths", "linear_init_final"): Path(
            kind="linear", alphas=np.linspace(0, 1, 3), loss=np.array([0.1, 0.5, 0.1]),
            accuracy=None, test_loss=None, test_accuracy=None, buffers="none", mode="eval",
            params=("w",), cost=Cost(loss_evals=3), info={}),
    }
    with Store(f, "w") as s:
        s.create_run("a", names=["w"], shapes=[(3,)], init=np.zeros(3))
        s.set_final("a", np.ones(3), status="complete")
        for (kind, name), r in results.items():
            arrays, attrs = r.to_record()
            s.write_record("a", kind, name, arrays=arrays, attrs=attrs)
    with Store(f) as s:
        for (kind, name), r in results.items():
            back = type(r).from_record(s.record("a", kind, name))
            assert back.cost == r.cost, name
    landscape.plot.density(f, ["a"], "hessian_density")
    landscape.plot.path(f, "runs/a/paths/linear_init_final")
    landscape.report.report(f, os.path.join(d, "report"))
    assert WorstCase.__module__ == "probes.sharpness.results"
    from probes.curvature import ClassMeanOverlap, PreconditionedSharpness  # lazy: no torch
    assert ClassMeanOverlap.__module__ == PreconditionedSharpness.__module__
    assert ClassMeanOverlap.__module__ == "probes.curvature.results"
    print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
""")


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_reading_a_file_imports_no_torch():
    assert _run(READ) == "[]"


def test_each_results_module_alone_imports_no_torch():
    for module in RESULTS:
        code = f"import sys, {module}; print('torch' in sys.modules)"
        assert _run(code) == "False", module


def test_plot_surfaces_imports_no_torch():
    code = "import sys, landscape.plot.surfaces; print('torch' in sys.modules)"
    assert _run(code) == "False"
