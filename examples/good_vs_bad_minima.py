"""Good and bad minima from a sweep: does an optimizer escape a bad initialisation?

A miniature of the study in ``experiments/optimizers.toml``: SGD and Adam train a small MLP
on 100 of scikit-learn's digits, each from a random initialisation and from a *bad* one (the
same network first fitted to random labels, Liu et al. 2020), two seeds each, all to the same
training loss (``[stop]``). Every minimum gets the implicit-bias measures and the straight
line to the bad minimum of the same optimizer and seed. :func:`landscape.report.report`
then groups the seeds into configurations, compares good with bad minima optimizer by
optimizer and ranks the measures against the generalisation gap (Kendall's tau with
bootstrap intervals and permutation p-values). :func:`landscape.plot.measure_vs_gap` draws
one measure against the gap, a point a run.

The same from the command line, with the spec in a file::

    landscape sweep spec.toml --out sweep.h5
    landscape report sweep.h5

Run it::

    python examples/good_vs_bad_minima.py [OUT_DIR]

It writes ``good_vs_bad_minima.png``, ``good_vs_bad_minima.h5`` and the report
(``good_vs_bad_minima_report/``) into ``OUT_DIR`` (default: the current folder).
``LANDSCAPE_EXAMPLE_SCALE=tiny``: fewer bootstrap samples and permutations.
"""

import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from landscape import plot, sweep
from landscape.report import report

TINY = os.environ.get("LANDSCAPE_EXAMPLE_SCALE") == "tiny"
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")

SPEC = """
name = "good_vs_bad"
description = "SGD vs Adam x {random, bad} init x 2 seeds, to train CE 0.05"

[base]
model = {name = "mlp", width = 16, depth = 1}
data = {name = "digits", n_train = 100, n_test = 360}
train = {batch_size = 25, snapshot_every = 50, history_every = 50}

[stop]                      # every run trained to the same training loss
train_loss = 0.05
max_steps = 400

[[runs]]
name = "sgd"
optimizer = {name = "sgd", lr = 0.5}

[[runs]]
name = "adam"
optimizer = {name = "adam", lr = 0.02}

[grid]
init = ["random", "random_labels"]
"train.seed" = [0, 1]

[init.random_labels]        # the bad minimum: fitted to random labels first
optimizer = {name = "adam", lr = 0.01}
batch_size = 25
epochs = 20
target_accuracy = 1.0

[probes]
measures = {include = ["norms", "margins", "sharpness"], steps = 3, n_samples = 3}

[paths]
between = "init"            # each good minimum to the bad one of the same optimizer and seed
kind = ["linear"]
points = 7
"""


def main() -> None:
    """Run the tiny sweep, build its report, print good vs bad, plot a measure vs the gap."""
    OUT.mkdir(parents=True, exist_ok=True)
    file = OUT / "good_vs_bad_minima.h5"
    planned = sweep.loads(SPEC)
    print(f"{len(planned.runs)} runs: {', '.join(r.name for r in planned.runs)}")
    t0 = time.perf_counter()

    def say(line: str) -> None:
        print(f"{time.perf_counter() - t0:6.1f} s  {line}")

    sweep.run_sweep(planned, file, say=say)  # resumes: a second call finds nothing to do

    rep = report(
        file,
        OUT / "good_vs_bad_minima_report",
        figures=False,
        n_boot=200 if TINY else 2000,
        n_perm=199 if TINY else 9999,
    )
    print("test accuracy, random init vs bad init (mean [95% interval] over seeds):")
    for row in rep.study["good_vs_bad"]:
        good, bad, diff = row["random_init"], row["bad_init"], row["difference"]
        print(
            f"  {row['optimizer']}: {good['mean']:.3f} vs {bad['mean']:.3f}; "
            f"difference {diff['mean']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
        )
    print("measures ranked against the generalisation gap (Kendall tau):")
    for r in rep.study["rankings"][:6]:
        if r["tau"] is not None:
            lo, hi = r["ci"]
            tau, p = r["tau"], r.get("p_adjusted")
            adjusted = "-" if p is None else f"{p:.2f}"
            print(f"  {r['measure']:28s} tau {tau:+.2f} [{lo:+.2f}, {hi:+.2f}], adj. p {adjusted}")
    print(f"report: {rep.markdown}")

    draw(rep.study, OUT / "good_vs_bad_minima.png")
    # one measure against the gap, a point a run, from the file alone
    plot.save(plot.measure_vs_gap(file, "dist_init"), OUT / "good_vs_bad_minima_dist_init.png")
    print(f"wrote {OUT / 'good_vs_bad_minima.png'}")


def draw(study: dict, path: Path) -> None:
    """Good vs bad test accuracy per optimizer, and the measures' taus with their intervals."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[1, 1.6])
    rows = study["good_vs_bad"]
    for i, row in enumerate(rows):
        for j, (key, label) in enumerate(
            (("random_init", "random init"), ("bad_init", "bad init"))
        ):
            s = row[key]
            lo, hi = s["ci"] if s["ci"] else (s["mean"], s["mean"])
            ax0.errorbar(
                i + 0.15 * (2 * j - 1),
                s["mean"],
                yerr=[[s["mean"] - lo], [hi - s["mean"]]],
                fmt="o" if j == 0 else "s",
                color=f"C{j}",
                capsize=4,
                label=label if i == 0 else None,
            )
    ax0.set_xticks(range(len(rows)), [r["setting"].get("optimizer", r["optimizer"]) for r in rows])
    ax0.set(ylabel="test accuracy (mean, 95% interval)", title="good vs bad minima")
    ax0.legend()
    ranked = [r for r in study["rankings"] if r["tau"] is not None and r["ci"]][:12][::-1]
    for i, r in enumerate(ranked):
        lo, hi = r["ci"]
        ax1.plot([lo, hi], [i, i], color="0.6")
        ax1.plot(r["tau"], i, "o", color="C3" if r.get("baseline") else "C2")
    ax1.set_yticks(range(len(ranked)), [r["measure"] for r in ranked], fontsize=8)
    ax1.axvline(0, color="0.3", lw=0.8)
    ax1.set(
        xlabel="Kendall tau with the generalisation gap (95% bootstrap interval)",
        title="measures vs the gap (red: baselines)",
        xlim=(-1.05, 1.05),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
