"""``landscape probe FILE --run R PROBE``: a probe on a stored run, stored with it.

Part of the ``landscape`` command, :mod:`landscape.cli`.

PROBE: ``hessian`` (top or bottom eigenvalues), ``trace``, ``density``, ``sharpness``
(``--kind worst|average|epsilon|pac-bayes``) or ``measures`` (every implicit-bias and
generalisation measure, :func:`probes.implicit_bias.measures`). Each runner returns the result
and a one-line summary; the result is written under ``runs/<run>/probes/<name>`` and its cost
(``result.cost``) printed. A result of that name made with other settings (its ``settings``
attr) is refused unless ``--replace``; one made with the same settings is kept, nothing computed
(the rule of :meth:`landscape.store.file.Store.same_settings`, as for surfaces).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from landscape.cli.args import checkpoint, data_table

__all__ = ["PROBES", "add_probe"]

_KINDS = {
    "worst": "worst_case",
    "average": "average_case",
    "epsilon": "epsilon",
    "pac-bayes": "pac_bayes",
}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _hessian(args: argparse.Namespace, model: Any, loss_fn: Any, data: Any) -> tuple:
    import numpy as np

    from probes.curvature import hessian

    r = hessian.eigenvalues(
        model, loss_fn, data, k=args.k, which=args.which, tol=args.tol, curvature=args.curvature
    )
    return r, "eigenvalues " + ", ".join(f"{v:.6g}" for v in np.asarray(r.values))


def _trace(args: argparse.Namespace, model: Any, loss_fn: Any, data: Any) -> tuple:
    from probes.curvature import hessian

    r = hessian.trace(
        model,
        loss_fn,
        data,
        method=args.method,
        n_products=args.products,
        seed=args.seed,
        curvature=args.curvature,
    )
    return r, f"trace {r.value:.6g} +- {r.stderr:.3g} ({r.method})"


def _density(args: argparse.Namespace, model: Any, loss_fn: Any, data: Any) -> tuple:
    import numpy as np

    from probes.curvature import hessian

    r = hessian.density(
        model,
        loss_fn,
        data,
        n_vectors=args.vectors,
        steps=_or(args.steps, 80),
        seed=args.seed,
        curvature=args.curvature,
    )
    return r, (
        f"density from {r.n_vectors} vectors x {r.steps} steps, nodes in "
        f"[{np.min(r.nodes):.4g}, {np.max(r.nodes):.4g}]"
    )


def _sharpness(args: argparse.Namespace, model: Any, loss_fn: Any, data: Any) -> tuple:
    from probes import sharpness

    kind, common = args.kind, {"seed": args.seed}
    if kind == "worst":
        r = sharpness.worst_case(
            model,
            loss_fn,
            data,
            rho=_or(args.rho, 0.05),
            norm=args.norm,
            adaptive=args.adaptive,
            steps=_or(args.steps, 20),
            restarts=args.restarts,
            m=args.m,
            **common,
        )
        shown = (
            f"worst-case {'adaptive ' if args.adaptive else ''}{args.norm} sharpness "
            f"{r.value:.6g} at rho {r.rho:g} (loss {r.clean_loss:.6g} -> "
            f"{r.worst_loss:.6g})"
        )
    elif kind == "average":
        r = sharpness.average_case(
            model,
            loss_fn,
            data,
            rho=_or(args.rho, 0.05),
            adaptive=args.adaptive,
            n_samples=_or(args.samples, 100),
            **common,
        )
        shown = (
            f"average-case {'adaptive ' if args.adaptive else ''}sharpness "
            f"{r.value:.6g} +- {r.stderr:.3g} at rho {r.rho:g}"
        )
    elif kind == "epsilon":
        r = sharpness.epsilon(
            model,
            loss_fn,
            data,
            eps=args.eps,
            subspace=args.subspace,
            max_iter=_or(args.steps, 10),
            **common,
        )
        shown = f"epsilon-sharpness {r.value:.6g} (eps {args.eps:g})"
    else:
        r = sharpness.pac_bayes(
            model,
            loss_fn,
            data,
            target=args.target,
            magnitude_aware=not args.plain,
            n_samples=_or(args.samples, 10),
            **common,
        )
        shown = (
            f"PAC-Bayes sigma {r.sigma:.6g}, flatness {r.flatness:.6g} "
            f"({'plain' if args.plain else 'magnitude-aware'} noise)"
        )
    return r, shown


def _measures(args: argparse.Namespace, model: Any, loss_fn: Any, data: Any) -> tuple:
    from landscape.train.spec import stored_params
    from probes.implicit_bias.suite import measures

    init = None if args.no_init else stored_params(args.file, args.run, model)
    include = None if args.include is None else [f.strip() for f in args.include.split(",")]
    r = measures(
        model,
        loss_fn,
        data,
        init=init,
        include=include,
        rho=_or(args.rho, 0.05),
        adaptive_rho=args.adaptive_rho,
        steps=_or(args.steps, 20),
        n_samples=_or(args.samples, 20),
        seed=args.seed,
    )
    known = sum(v is not None for v in r.values.values())
    return r, f"{known} measures ({len(r.skipped)} skipped)"


PROBES: dict[str, tuple[Callable[..., tuple], Callable[[argparse.Namespace], str]]] = {
    "hessian": (_hessian, lambda a: "hessian_eigenvalues"),
    "trace": (_trace, lambda a: "hessian_trace"),
    "density": (_density, lambda a: "hessian_density"),
    "sharpness": (
        _sharpness,
        lambda a: (
            f"sharpness_{_KINDS[a.kind]}"
            + ("_adaptive" if a.adaptive and a.kind in ("worst", "average") else "")
        ),
    ),
    "measures": (_measures, lambda a: "measures"),
}
"""Probe name -> (runner, default stored name)."""


def _probe(args: argparse.Namespace) -> int:
    from landscape.engine import distributed as dist
    from landscape.store.file import Store
    from landscape.train.spec import rebuild

    group = dist.launched(args.device)  # under torchrun: each rank a shard, rank 0 writes
    data, which = data_table(args), checkpoint(args.which_params)
    model, split, loss_fn = rebuild(args.file, args.run, which=which, data=data, device=args.device)
    x, y = split.train if args.split == "train" else split.test
    if args.n and args.n < len(y):
        x, y = x[: args.n], y[: args.n]
    runner, default_name = PROBES[args.probe]
    name = args.name or default_name(args)
    where = {"split": args.split, "n": len(y), **(data or {})}
    options = {
        "probe": args.probe,
        "checkpoint": str(args.which_params),
        "data": where,
        **_settings(args),
    }
    with Store(args.file) as s:
        held = s.same_settings(args.run, "probes", name, options, replace=args.replace)
    if held:
        print(
            f"{args.file}: run {args.run!r}: probes/{name} is already stored with these "
            "settings; nothing computed (--replace computes it again)"
        )
        return 0
    block = dist.shard(len(y), group=group)
    shard = (x[block.start : block.stop], y[block.start : block.stop])
    result, shown = runner(args, model, loss_fn, shard)
    if dist.rank(group) != 0:
        return 0
    arrays, attrs = result.to_record()
    attrs = {**attrs, "data": where, "checkpoint": str(args.which_params), "settings": options}
    with Store(args.file, "a", timeout=60) as s:
        s.same_settings(args.run, "probes", name, options, replace=args.replace)
        s.write_record(args.run, "probes", name, arrays=arrays, attrs=attrs)
    print(f"{args.file}: run {args.run!r}: {shown}; {_cost(result.cost)}; stored as probes/{name}")
    return 0


_SETTINGS: dict[str, dict[str, Any]] = {
    "hessian": {"k": None, "which": None, "tol": None, "curvature": None},
    "trace": {"method": None, "products": None, "seed": None, "curvature": None},
    "density": {"vectors": None, "steps": 80, "seed": None, "curvature": None},
    "worst": {
        "rho": 0.05,
        "norm": None,
        "adaptive": None,
        "steps": 20,
        "restarts": None,
        "m": None,
        "seed": None,
    },
    "average": {"rho": 0.05, "adaptive": None, "samples": 100, "seed": None},
    "epsilon": {"eps": None, "subspace": None, "steps": 10, "seed": None},
    "pac-bayes": {"target": None, "plain": None, "samples": 10, "seed": None},
    "measures": {
        "include": None,
        "no_init": None,
        "rho": 0.05,
        "adaptive_rho": None,
        "steps": 20,
        "samples": 20,
        "seed": None,
    },
}
"""Probe (sharpness: kind) -> the options that make its result, with defaults of those that
default to None on the command line."""


def _settings(args: argparse.Namespace) -> dict:
    """The options of ``args`` that make the probe's result, defaults filled in."""
    which = args.kind if args.probe == "sharpness" else args.probe
    out = {"kind": args.kind} if args.probe == "sharpness" else {}
    for key, default in _SETTINGS[which].items():
        out[key] = _or(getattr(args, key), default)
    return out


def _cost(cost: Any) -> str:
    """A result's :class:`~landscape.engine.cost.Cost` in words.

    The curvature products (where there are any), the passes over the data and the wall time.
    """
    products = cost.hvp + cost.ggn_vp
    spent = f"{products} products, " if products else ""
    return f"{spent}{cost.passes:.0f} passes, {cost.seconds:.2f} s"


def add_probe(sub: argparse._SubParsersAction) -> None:
    """Register ``landscape probe`` on the subcommands of the ``landscape`` parser."""
    p = sub.add_parser(
        "probe",
        help="compute a probe on a stored run and store the result",
        description="Rebuild a run's model (from its recorded spec and stored parameters) and "
        "data, compute a probe and store it under runs/RUN/probes/NAME. PROBE: hessian (top or "
        "bottom eigenvalues by Lanczos), trace (Hutch++ or Hutchinson), density (stochastic "
        "Lanczos quadrature), sharpness (worst-case, average-case, Keskar's epsilon or "
        "PAC-Bayes: --kind), measures (every norm, margin, spectrum, gradient-noise, "
        "sharpness and flatness measure at once).",
        epilog="examples: landscape probe runs.h5 --run sgd hessian --k 5; "
        "landscape probe runs.h5 --run sgd sharpness --kind worst --adaptive --rho 0.5; "
        "landscape probe runs.h5 --run sgd measures --include norms,margins",
    )
    p.add_argument("file")
    p.add_argument(
        "--run",
        "--run-name",
        dest="run",
        required=True,
        help="the run (--run-name: the same, for torchrun, which takes --run for its own)",
    )
    p.add_argument("probe", choices=list(PROBES))
    p.add_argument(
        "--name",
        help="name of the stored result (default: hessian_eigenvalues, "
        "hessian_trace, hessian_density, sharpness_<kind>[_adaptive], measures)",
    )
    p.add_argument(
        "--params",
        dest="which_params",
        default="final",
        help="init, final (default) or a trajectory step",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a stored result of that name made with other settings",
    )
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--n", "--n-examples", dest="n", type=int, help="use the first N examples only")
    p.add_argument("--data", help="dataset, for runs that do not record theirs")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE")
    p.add_argument("--device", help="torch device (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument(
        "--steps",
        type=int,
        help="density: Lanczos steps (80); sharpness/measures: "
        "ascent steps (20); epsilon: L-BFGS-B iterations (10)",
    )
    p.add_argument(
        "--samples",
        type=int,
        help="average-case draws (100; measures 20); PAC-Bayes draws per bisection step (10)",
    )
    h = p.add_argument_group("hessian, trace, density")
    h.add_argument("--curvature", default="hessian", help="hessian (default) or ggn")
    h.add_argument("--k", type=int, default=1, help="eigenvalues: how many")
    h.add_argument("--which", default="largest", help="largest, smallest, both or magnitude")
    h.add_argument(
        "--tol", type=float, default=1e-6, help="eigenvalues: relative accuracy (error bound)"
    )
    h.add_argument("--method", default="hutch++", help="trace: hutch++ or hutchinson")
    h.add_argument("--products", type=int, default=100, help="trace: products to spend")
    h.add_argument("--vectors", type=int, default=5, help="density: start vectors")
    s = p.add_argument_group("sharpness, measures")
    s.add_argument("--kind", choices=list(_KINDS), default="worst", help="sharpness: which")
    s.add_argument("--rho", type=float, help="radius (default 0.05)")
    s.add_argument("--norm", default="l2", help="worst case: l2 (default) or linf")
    s.add_argument("--adaptive", action="store_true", help="scale the ball by |w|")
    s.add_argument("--restarts", type=int, default=0, help="worst case: random restarts")
    s.add_argument("--m", type=int, help="worst case: m-sharpness over batches of M examples")
    s.add_argument("--eps", type=float, default=1e-3, help="epsilon: the box size")
    s.add_argument("--subspace", type=int, help="epsilon: a random subspace of this dimension")
    s.add_argument(
        "--target", type=float, default=0.1, help="PAC-Bayes: the drop in training accuracy"
    )
    s.add_argument(
        "--plain", action="store_true", help="PAC-Bayes: plain noise instead of magnitude-aware"
    )
    s.add_argument(
        "--include",
        help="measures: comma-separated families (default all: norms,"
        "margins,spectra,noise,sharpness,pac_bayes)",
    )
    s.add_argument(
        "--adaptive-rho",
        type=float,
        default=0.5,
        help="measures: radius of the adaptive sharpness (default 0.5)",
    )
    s.add_argument(
        "--no-init",
        action="store_true",
        help="measures: without the run's initialisation (no distances)",
    )
    p.set_defaults(run_command=_probe)
