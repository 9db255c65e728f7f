"""``landscape probe FILE --run R PROBE``: a probe on a stored run, stored with it (part of the
``landscape`` command, :mod:`landscape.cli`).
"""

from __future__ import annotations

import argparse

from .cli_args import checkpoint, data_table

__all__ = ["add_probe"]


_PROBES = {"hessian": "hessian_eigenvalues", "trace": "hessian_trace",
           "density": "hessian_density"}


def _probe(args: argparse.Namespace) -> int:
    import numpy as np

    from probes import hessian

    from .runspec import rebuild
    from .store import Store

    data, which = data_table(args), checkpoint(args.which_params)
    model, split, loss_fn = rebuild(args.file, args.run, which=which, data=data,
                                    device=args.device)
    x, y = split.train if args.split == "train" else split.test
    if args.n and args.n < len(y):
        x, y = x[:args.n], y[:args.n]
    common = {"curvature": args.curvature}
    if args.probe == "hessian":
        result = hessian.eigenvalues(model, loss_fn, (x, y), k=args.k, which=args.which,
                                     tol=args.tol, **common)
        shown = "eigenvalues " + ", ".join(f"{v:.6g}" for v in np.asarray(result.values))
    elif args.probe == "trace":
        result = hessian.trace(model, loss_fn, (x, y), method=args.method,
                               n_products=args.products, seed=args.seed, **common)
        shown = f"trace {result.value:.6g} +- {result.stderr:.3g} ({result.method})"
    else:
        result = hessian.density(model, loss_fn, (x, y), n_vectors=args.vectors,
                                 steps=args.steps, seed=args.seed, **common)
        shown = (f"density from {result.n_vectors} vectors x {result.steps} steps, nodes in "
                 f"[{np.min(result.nodes):.4g}, {np.max(result.nodes):.4g}]")
    arrays, attrs = result.to_record()
    name = args.name or _PROBES[args.probe]
    attrs = {**attrs, "data": {"split": args.split, "n": len(y), **(data or {})},
             "checkpoint": str(args.which_params)}
    with Store(args.file, "a", timeout=60) as s:
        s.write_record(args.run, "probes", name, arrays=arrays, attrs=attrs)
    print(f"{args.file}: run {args.run!r}: {shown}; {result.n_hvp} products, "
          f"{result.seconds:.2f} s; stored as probes/{name}")
    return 0


def add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="compute a Hessian probe on a stored run and store the result",
        description="Rebuild a run's model (from its recorded spec and stored parameters) and "
        "data, compute a probe and store it under runs/RUN/probes/NAME. PROBE: hessian (top or "
        "bottom eigenvalues by Lanczos), trace (Hutch++ or Hutchinson), density (stochastic "
        "Lanczos quadrature).",
        epilog="example: landscape probe runs.h5 --run sgd hessian --k 5")
    p.add_argument("file")
    p.add_argument("--run", required=True)
    p.add_argument("probe", choices=list(_PROBES))
    p.add_argument("--name", help="name of the stored result (default: hessian_eigenvalues, "
                   "hessian_trace or hessian_density)")
    p.add_argument("--params", dest="which_params", default="final",
                   help="init, final (default) or a trajectory step")
    p.add_argument("--curvature", default="hessian", help="hessian (default) or ggn")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--n", type=int, help="use the first N examples only")
    p.add_argument("--data", help="dataset, for runs that do not record theirs")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE")
    p.add_argument("--device", help="torch device (default: the run's)")
    p.add_argument("--k", type=int, default=1, help="eigenvalues: how many")
    p.add_argument("--which", default="largest", help="largest, smallest, both or magnitude")
    p.add_argument("--tol", type=float, default=1e-6,
                   help="eigenvalues: relative accuracy (error bound)")
    p.add_argument("--method", default="hutch++", help="trace: hutch++ or hutchinson")
    p.add_argument("--products", type=int, default=100, help="trace: products to spend")
    p.add_argument("--vectors", type=int, default=5, help="density: start vectors")
    p.add_argument("--steps", type=int, default=80, help="density: Lanczos steps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run_command=_probe)
