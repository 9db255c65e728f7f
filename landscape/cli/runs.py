"""``landscape train``, ``info`` and ``import``: the runs of a landscape file.

``train`` trains a model into a file (flags or a TOML run spec, :mod:`landscape.train.spec`),
``info`` lists the runs (:func:`landscape.store.summary.text`), ``import`` brings checkpoints
trained elsewhere in as a run (:mod:`landscape.train.checkpoints`). Part of the ``landscape``
command (:mod:`landscape.cli`).
"""

from __future__ import annotations

import argparse

from landscape.cli.args import data_table, pairs

__all__ = ["add_info_import", "add_train"]


def _train(args: argparse.Namespace) -> int:
    from landscape.train import spec as runspec

    spec = runspec.load(args.config) if args.config else {}
    flags: dict = {
        "model": pairs(args.model_arg, "--model-arg"),
        "data": pairs(args.data_arg, "--data-arg"),
        "optimizer": pairs(args.opt, "--opt"),
        "train": {},
    }
    if args.model:
        flags["model"]["name"] = args.model
    if args.data:
        flags["data"]["name"] = args.data
    if args.optimizer:

        def canonical(name: object) -> str:
            return str(name).strip().lower().replace("-", "_")

        if canonical(spec.get("optimizer", {}).get("name", args.optimizer)) != canonical(
            args.optimizer
        ):
            spec["optimizer"] = {}  # another optimizer: the config's settings do not apply
        flags["optimizer"]["name"] = args.optimizer
    if args.lr is not None:
        flags["optimizer"]["lr"] = args.lr
    for key in (
        "batch_size",
        "max_steps",
        "epochs",
        "target_loss",
        "target_accuracy",
        "seed",
        "history_every",
        "snapshot_every",
        "loss",
        "device",
        "dtype",
    ):
        if getattr(args, key) is not None:
            flags["train"][key] = getattr(args, key)
    spec = runspec.merge(spec, {k: v for k, v in flags.items() if v})
    spec.setdefault("model", {}).setdefault("name", "mlp")
    spec.setdefault("data", {}).setdefault("name", "mnist1d")
    spec.setdefault("optimizer", {}).setdefault("name", "sgd")
    train = spec.setdefault("train", {})
    if "max_steps" not in train and "epochs" not in train:
        train["epochs"] = 10
    result = runspec.execute(
        spec, args.file, run=args.run, replace=args.replace, progress=not args.quiet
    )
    f = result.final
    print(
        f"{args.file}: run {result.run!r} complete after {result.steps} steps "
        f"({result.epochs:.1f} epochs, stopped by {result.stop_reason}, "
        f"{result.seconds:.1f} s): train loss {f['train_loss']:.4g} acc {f['train_acc']:.4g}, "
        f"test loss {f['test_loss']:.4g} acc {f['test_acc']:.4g}"
    )
    asked = result.config.batch_size
    if asked is not None and not result.config.optimizer.full_batch:
        from landscape.store.file import Store

        with Store(args.file) as s:
            n = s.info(result.run).attrs.get("data", {}).get("n_train")
        if isinstance(n, int) and asked > n:
            print(
                f"note: batch size {asked} is more than the {n} training examples: every step "
                f"took the full batch (recorded as batch_size {n})"
            )
    return 0


def _info(args: argparse.Namespace) -> int:
    from landscape.store.summary import text

    print(text(args.file, args.run))
    return 0


def _import(args: argparse.Namespace) -> int:
    import json
    import os

    from landscape.train.checkpoints import build_model, import_run

    recorded = pairs(args.attr, "--attr")
    data = data_table(args)
    if data:
        recorded["spec"] = {"data": data}
    if os.path.isdir(args.model):
        return _import_pretrained(args, recorded)
    if ":" not in args.model:
        raise ValueError(
            f"--model {args.model!r} is neither a folder (a save_pretrained checkpoint) nor "
            "package.module:factory"
        )
    if args.final is None:
        raise ValueError(
            "--final is required with --model MODULE:FACTORY (a Hugging Face checkpoint "
            "folder as --model holds its own weights)"
        )
    if args.architecture is not None:
        raise ValueError("--architecture applies to a Hugging Face checkpoint folder as --model")
    try:
        kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    except json.JSONDecodeError as err:
        raise ValueError(
            f"--model-kwargs must be a JSON object, got {args.model_kwargs!r} ({err})"
        ) from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model-kwargs must be a JSON object, got {args.model_kwargs!r}")
    checkpoints = {}
    for item in args.checkpoint or ():
        step, sep, path = item.partition("=")
        if not sep or not step.isdigit():
            raise ValueError(f"--checkpoint expects STEP=PATH with an integer step, got {item!r}")
        checkpoints[int(step)] = path
    model = build_model(args.model, kwargs)
    attrs = {"model": {"factory": args.model, "kwargs": kwargs}, **recorded}
    import_run(
        args.file,
        args.run,
        model,
        final=args.final,
        init=args.init,
        checkpoints=checkpoints,
        attrs=attrs,
        replace=args.replace,
    )
    print(f"{args.file}: imported run {args.run!r} ({len(checkpoints)} checkpoints)")
    return 0


def _import_pretrained(args: argparse.Namespace, attrs: dict) -> int:
    """``landscape import FILE --model FOLDER``: a Hugging Face ``save_pretrained`` folder."""
    from landscape.train.pretrained import import_pretrained

    if args.model_kwargs:
        raise ValueError(
            "--model-kwargs applies to --model MODULE:FACTORY; a folder has its config"
        )
    checkpoints = {}
    for item in args.checkpoint or ():
        step, sep, path = item.partition("=")
        if not sep or not step.isdigit():
            raise ValueError(f"--checkpoint expects STEP=FOLDER with an integer step, got {item!r}")
        checkpoints[int(step)] = path
    final = args.final or args.model
    spec = import_pretrained(
        args.file,
        args.run,
        final,
        init=args.init,
        checkpoints=checkpoints,
        architecture=args.architecture,
        attrs=attrs,
        replace=args.replace,
    )
    print(
        f"{args.file}: imported run {args.run!r} ({spec['architecture']} from {final}, "
        f"{len(checkpoints)} checkpoints)"
    )
    return 0


class _Dataset(argparse.Action):
    """``--data NAME``: its help lists the registry's datasets, read when the help is shown.

    The registry (:data:`landscape.data.sources.DATASETS`) imports torch; building the parser
    does not, so ``landscape info`` and friends start without it.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)

    @property
    def help(self) -> str:
        from landscape.data.sources import DATASETS

        return "dataset: " + ", ".join(DATASETS)

    @help.setter
    def help(self, value: str | None) -> None:
        pass


def add_train(sub: argparse._SubParsersAction) -> None:
    """Add ``landscape train`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "train",
        help="train a model into a landscape file",
        description="Train a model with one optimizer and record it as a run of FILE: initial "
        "and final parameters, trajectory snapshots, history (losses, accuracies, learning rate, "
        "gradient norm, time). Settings come from --config (TOML: tables [model], [data], "
        "[optimizer], [train]) and/or the flags, which win. Defaults: an MLP on MNIST-1D, SGD, "
        "10 epochs.",
        epilog="example: landscape train runs.h5 --model cnn1d --optimizer adam --lr 0.01 "
        "--epochs 50 --run adam",
    )
    p.add_argument("file", help="the landscape file (.h5), created if missing")
    p.add_argument("--config", help="a TOML run spec")
    p.add_argument("--run", help="name of the run in the file (default: the optimizer's name)")
    p.add_argument("--replace", action="store_true", help="replace a complete run of that name")
    p.add_argument("--model", help="model name: mlp, cnn1d, resnet, linear, ...")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model argument")
    p.add_argument("--data", action=_Dataset)  # its help: the registry of datasets
    p.add_argument(
        "--data-arg",
        action="append",
        metavar="KEY=VALUE",
        help="dataset option, e.g. label_noise=0.2 or n_train=1000",
    )
    p.add_argument(
        "--optimizer",
        help="gd, sgd, momentum, nesterov, adam, adamw, sam, label_noise_sgd, sign_descent",
    )
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument(
        "--opt",
        action="append",
        metavar="KEY=VALUE",
        help="optimizer setting, e.g. momentum=0.9 or schedule=cosine",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", dest="max_steps", type=int, help="stop after this many steps")
    p.add_argument("--epochs", type=float, help="stop after this many epochs")
    p.add_argument("--target-loss", type=float, help="stop at this training loss")
    p.add_argument("--target-accuracy", type=float, help="stop at this training accuracy")
    p.add_argument("--seed", type=int, help="seed of the model's init and the batch order")
    p.add_argument(
        "--history-every",
        type=int,
        metavar="STEPS",
        help="steps between history rows (0: the first and last steps only)",
    )
    p.add_argument(
        "--snapshot-every",
        type=int,
        metavar="STEPS",
        help="steps between trajectory snapshots (0: the first and last steps only)",
    )
    p.add_argument("--loss", help="cross_entropy (default), mse or logistic")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--dtype", help="float32 (default), float64, float16 or bfloat16")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run_command=_train)


def add_info_import(sub: argparse._SubParsersAction) -> None:
    """Add ``landscape info`` and ``landscape import`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "info",
        help="list the runs of a landscape file",
        description="The runs of FILE as a table: status, model, optimizer, "
        "steps, final metrics, and what each holds (snapshots, history, probes, "
        "surfaces, paths).",
    )
    p.add_argument("file")
    p.add_argument("--run", help="also print this run's settings in full")
    p.set_defaults(run_command=_info)
    p = sub.add_parser(
        "import",
        help="bring your own checkpoints into a landscape file as a run",
        description="Build the model with your code (--model package.module:factory, called "
        "with --model-kwargs), load state_dict files into it (torch.load with "
        "weights_only=True, or .safetensors) and store them as a complete run. Or give a "
        "Hugging Face checkpoint folder as --model (config.json and model.safetensors, as "
        "save_pretrained writes it): the model is built from its config, its weights read "
        "from safetensors; --init and --checkpoint are then folders too.",
        epilog="examples: landscape import runs.h5 --model mynets:resnet20 --model-kwargs "
        "'{\"num_classes\": 10}' --final sgd.pt --init init.pt --checkpoint 1000=sgd_1000.pt "
        "--run sgd; landscape import runs.h5 --model gpt2-finetuned/ --data hf_disk "
        "--data-arg path=tokens/ --data-arg y=next_token --run gpt2",
    )
    p.add_argument("file")
    p.add_argument(
        "--model", required=True, metavar="MODULE:FACTORY|FOLDER", help="factory or HF folder"
    )
    p.add_argument("--model-kwargs", metavar="JSON")
    p.add_argument(
        "--final",
        help="state_dict file of the final model (required with a factory; default: the "
        "--model folder)",
    )
    p.add_argument("--init", help="the initial model's state_dict or folder (default: as built)")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="STEP=PATH",
        help="a state_dict (or folder) along training (repeat)",
    )
    p.add_argument(
        "--architecture",
        help="HF folder: the transformers class (default: the config's architectures)",
    )
    p.add_argument("--data", help="the run's dataset, recorded so that probes need no --data")
    p.add_argument(
        "--data-arg", action="append", metavar="KEY=VALUE", help="a dataset option (repeat)"
    )
    p.add_argument("--run", required=True)
    p.add_argument("--replace", action="store_true")
    p.add_argument(
        "--attr",
        action="append",
        metavar="KEY=VALUE",
        help="a setting to record with the run, e.g. optimizer=sgd",
    )
    p.set_defaults(run_command=_import)
