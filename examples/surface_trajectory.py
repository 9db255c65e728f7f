"""A 2-D loss surface with the training trajectory drawn over it.

Trains a small MLP on scikit-learn's digits with SGD into a landscape file (its trajectory is
recorded as snapshots), then computes the loss surface on the plane of the trajectory's two
principal directions around the final point (Li et al. 2018) with
:func:`landscape.surfaces.surface_of_run`, which also stores the trajectory projected onto
that plane. :func:`landscape.plot.surface` draws both from the file alone.

The same from the command line::

    landscape surface runs.h5 --run sgd --directions pca --x=-1:1:21 --y=-1:1:21
    landscape plot runs.h5 surface --run sgd --name pca_2d

Run it::

    python examples/surface_trajectory.py [OUT_DIR]

It writes ``surface_trajectory.png`` (and ``surface_trajectory.h5``) into ``OUT_DIR``
(default: the current folder). ``LANDSCAPE_EXAMPLE_SCALE=tiny``: a coarser grid.
"""

import os
import sys
from pathlib import Path

import numpy as np

from landscape import Store, data, models, plot, surfaces
from landscape.train import TrainConfig, fit

TINY = os.environ.get("LANDSCAPE_EXAMPLE_SCALE") == "tiny"
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
POINTS = 7 if TINY else 21


def main() -> None:
    """Train into a file, compute the PCA-plane surface, plot it with its trajectory."""
    OUT.mkdir(parents=True, exist_ok=True)
    file = OUT / "surface_trajectory.h5"
    split = data.digits(seed=0)
    model = models.build("mlp", in_features=64, num_classes=10, width=32, depth=2, seed=0)
    cfg = TrainConfig(
        "sgd", lr=0.3, batch_size=64, epochs=8 if TINY else 30, seed=0, snapshot_every=10
    )
    fit(
        model,
        "cross_entropy",
        split,
        cfg,
        store=str(file),
        run="sgd",
        replace_run=True,
        attrs={"model": model.spec},
    )

    # Where the trajectory lies in its PCA plane: the surface's extent is chosen to hold it.
    with Store(file) as st:
        steps, snapshots = st.trajectory("sgd")  # (T,), (T, P): NumPy, read from the file
        final = st.params("sgd", "final")
    plane = surfaces.trajectories.pca(snapshots, final, k=2)
    coords = surfaces.trajectories.project(snapshots, final, plane)  # (T, 2)
    print(f"{len(steps)} snapshots; PCA explains {np.round(plane.explained_variance, 3)}")
    r = 1.2 * float(np.abs(coords).max())
    grid = np.linspace(-r, r, POINTS)

    s = surfaces.surface_of_run(
        file,
        "sgd",
        directions="pca",
        x=grid,
        y=grid,
        n=400 if TINY else None,  # the first examples of the training set
        data={"name": "digits"},
        replace=True,
    )
    print(
        f"surface {s.train_loss.shape}: train loss {s.train_loss.min():.3f} .. "
        f"{s.train_loss.max():.3f}"
    )

    fig = plot.surface(file, "sgd", "pca_2d", metric="train_loss")
    plot.save(fig, OUT / "surface_trajectory.png")
    print(f"wrote {OUT / 'surface_trajectory.png'}")


if __name__ == "__main__":
    main()
