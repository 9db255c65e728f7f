"""The README's "Your own model" section, run as written (tiny files instead of the user's).

A Hugging Face language model and a vision model from Python (dict batches of a ``DataLoader``
into a probe; CIFAR from its python files), a run spec naming a dataset, and the command line:
``landscape import`` of ``save_pretrained`` folders, then ``landscape probe``.
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from landscape.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def transformers():
    """``transformers`` without torchvision, which does not import beside the CPU torch here."""
    if "transformers" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except (ImportError, RuntimeError):
            sys.modules["torchvision"] = None  # type: ignore[assignment]
    return pytest.importorskip("transformers")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A home folder whose ``~/data`` holds CIFAR-10's python files (tiny)."""
    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        raw = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 4)]
        (d / name).write_bytes(pickle.dumps({b"data": raw, b"labels": labels}, protocol=2))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_language_model_from_python(transformers) -> None:
    import torch
    from torch.utils.data import DataLoader

    from landscape import data
    from probes.curvature import hessian

    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()  # or .from_pretrained("my-gpt2/")
    tokens = torch.randint(0, 100, (16, 16))  # your tokenized text
    rows = data.rows([{"input_ids": t, "labels": t} for t in tokens])  # or a datasets.Dataset
    loader = DataLoader(rows, batch_size=8)  # dict batches: model(**batch)
    top = hessian.eigenvalues(model, "model", loader, k=2)  # "model": the model's own loss
    print(top.values, top.cost)

    assert len(top.values) == 2 and np.all(np.isfinite(top.values)) and top.certified


def test_hf_dataset_rows(transformers, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    import torch

    torch.manual_seed(0)
    tokens = torch.randint(0, 100, (16, 16))
    datasets.Dataset.from_dict(
        {"input_ids": tokens.tolist(), "labels": tokens.tolist()}
    ).save_to_disk(str(tmp_path / "tokens"))
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=100, n_positions=16)
    ).eval()
    # README
    from torch.utils.data import DataLoader

    from landscape import data
    from probes.curvature import hessian

    ds = datasets.load_from_disk(str(tmp_path / "tokens"))  # any datasets.Dataset
    loader = DataLoader(data.rows(ds, ["input_ids", "labels"]), batch_size=8)
    trace = hessian.trace(model, "model", loader, n_products=20)

    assert np.isfinite(trace.value)


def test_vision_model_from_python(transformers, home) -> None:
    import torch.nn.functional as F

    from landscape import data
    from probes import sharpness

    config = transformers.ResNetConfig(
        num_labels=10, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"
    )
    model = transformers.ResNetForImageClassification(config).eval()
    split = data.cifar10("~/data")  # ~/data/cifar-10-batches-py, read without running code
    # or: data.image_folder("photos/train", test_root="photos/val", size=32)
    x, y = split.train
    loss_fn = lambda out, y: F.cross_entropy(out.logits, y)  # noqa: E731 - the README's line
    r = sharpness.worst_case(model, loss_fn, (x[:512], y[:512]), rho=0.05, steps=5)
    print(r.value, r.clean_loss, r.worst_loss)

    assert r.worst_loss >= r.clean_loss


def test_run_spec_names_the_dataset(home) -> None:
    (home / "run.toml").write_text(
        """
[model]
name = "mlp"
[data]
name = "cifar10"        # or cifar100 (labels = "coarse"), image_folder, hf_disk
root = "~/data"
[train]
epochs = 1
"""
    )
    assert main(["train", "runs.h5", "--config", "run.toml", "--run", "mlp", "--quiet"]) == 0


def test_command_line(transformers, home, capsys) -> None:
    datasets = pytest.importorskip("datasets")
    import torch

    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=8)
    )
    gpt2.save_pretrained("my-gpt2")
    tokens = torch.randint(0, 50, (8, 8)).tolist()
    datasets.Dataset.from_dict({"input_ids": tokens}).save_to_disk("tokens")
    config = transformers.ResNetConfig(
        num_labels=10, embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1], layer_type="basic"
    )
    transformers.ResNetForImageClassification(config).save_pretrained("my-resnet")
    # the README's commands
    commands = """
landscape import runs.h5 --model my-gpt2/ --run gpt2 \\
    --data hf_disk --data-arg path=tokens/ --data-arg y=next_token
landscape probe runs.h5 --run gpt2 hessian --k 3
landscape import runs.h5 --model my-resnet/ --run resnet \\
    --data cifar10 --data-arg root=$HOME/data --data-arg standardize=false
landscape probe runs.h5 --run resnet sharpness --kind worst --n 512 --steps 5
landscape info runs.h5
"""
    for line in commands.replace("\\\n", " ").strip().splitlines():
        argv = line.replace("$HOME", str(home)).split()
        assert argv[0] == "landscape"
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert "imported run 'gpt2'" in out and "worst-case l2 sharpness" in out
