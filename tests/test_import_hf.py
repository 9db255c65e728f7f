"""Hugging Face checkpoint folders (``save_pretrained``) imported as runs, then probed.

Tiny GPT-2 and ResNet configs are built and saved in temporary folders (nothing downloads).
The imported run must rebuild to the same model (every weight, tied ones included), its loss
must be Hugging Face's own, and ``landscape probe`` on it must give the top eigenvalue of a
dense float64 Hessian.
"""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from landscape.cli import main
from landscape.engine.params import ParamLayout, select
from landscape.store import Store
from landscape.train import pretrained
from landscape.train.checkpoints import import_run, load_params
from landscape.train.spec import rebuild

pytestmark = pytest.mark.usefixtures("one_thread")


def _transformers():
    """``transformers`` without torchvision, which does not import beside the CPU torch here."""
    if "transformers" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except (ImportError, RuntimeError):
            sys.modules["torchvision"] = None  # type: ignore[assignment]
    return pytest.importorskip("transformers")


def _gpt2(seed: int = 0):
    tf = _transformers()
    config = tf.GPT2Config(
        n_layer=1, n_embd=4, n_head=2, vocab_size=7, n_positions=5, bos_token_id=0,
        eos_token_id=0, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    return tf.GPT2LMHeadModel(config).eval()


def _resnet(seed: int = 0):
    tf = _transformers()
    config = tf.ResNetConfig(
        num_channels=3, embedding_size=2, hidden_sizes=[2, 4], depths=[1, 1], num_labels=3,
        layer_type="basic",
    )  # fmt: skip
    torch.manual_seed(seed)
    model = tf.ResNetForImageClassification(config).eval()
    with torch.no_grad():  # running statistics that are not the defaults
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _dense_top(model, loss_of) -> float:
    """The largest eigenvalue of the float64 Hessian of ``loss_of(outputs)`` in every parameter."""
    model = model.double()
    params = select(model)
    layout = ParamLayout.of(params)
    theta = layout.flatten(params).detach()

    def f(t):
        return loss_of(functional_call(model, layout.unflatten(t), ()))

    with sdpa_kernel(SDPBackend.MATH):  # the fused kernels have no forward-mode AD
        h = torch.func.hessian(f)(theta)
    return float(torch.linalg.eigvalsh((h + h.T) / 2)[-1])


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    hf = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("tokens")
    ids = torch.randint(0, 7, (6, 5), generator=torch.Generator().manual_seed(1))
    hf.Dataset.from_dict({"input_ids": ids.tolist()}).save_to_disk(str(root / "saved"))
    return root / "saved", ids


def test_gpt2_folder_round_trip_and_probe(tmp_path, tokens, capsys) -> None:
    saved, ids = tokens
    model = _gpt2()
    model.save_pretrained(tmp_path / "gpt2")
    start = _gpt2(seed=1)
    start.save_pretrained(tmp_path / "start")
    built, weights, spec = pretrained.load_pretrained(tmp_path / "gpt2")
    assert spec["architecture"] == "GPT2LMHeadModel"
    want = model.state_dict()
    assert set(weights) == set(want)  # lm_head.weight, left out as tied, filled in
    assert all(torch.equal(weights[k], want[k]) for k in want)
    f = tmp_path / "r.h5"
    data = ["--data", "hf_disk", "--data-arg", f"path={saved}", "--data-arg", "y=next_token"]
    argv = ["import", str(f), "--model", str(tmp_path / "gpt2"), "--run", "gpt2", *data]
    assert (
        main([*argv, "--init", str(tmp_path / "start"), "--checkpoint", f"3={tmp_path / 'gpt2'}"])
        == 0
    )
    assert "imported run 'gpt2' (GPT2LMHeadModel" in capsys.readouterr().out
    assert main(["info", str(f)]) == 0
    assert "gpt2  complete  GPT2LMHeadModel" in capsys.readouterr().out
    # the stored run rebuilds the same model, with the data it records
    again, split, loss_fn = rebuild(f, "gpt2", which="final")
    assert all(torch.equal(p, want[n]) for n, p in again.state_dict().items())
    first, _, _ = rebuild(f, "gpt2", which="init")
    assert all(torch.equal(p, start.state_dict()[n]) for n, p in first.state_dict().items())
    step = _gpt2(seed=5)
    load_params(step, f, "gpt2", 3)
    assert all(torch.equal(p, want[n]) for n, p in step.named_parameters())
    # its loss is Hugging Face's own causal-LM loss
    x = torch.cat([split.x_train, split.x_test])
    y = torch.cat([split.y_train, split.y_test])
    with torch.no_grad():
        ours = loss_fn(again(x), y)
        theirs = model(x, labels=x).loss
    assert abs(float(ours) - float(theirs)) < 1e-6
    # landscape probe on the imported run: the top eigenvalue of the dense Hessian
    assert main(["probe", str(f), "--run", "gpt2", "hessian", "--tol", "1e-8"]) == 0
    with Store(f) as s:
        top = float(
            np.asarray(s.record("gpt2", "probes", "hessian_eigenvalues").arrays["values"])[0]
        )
    x_tr, y_tr = split.train
    model64 = _gpt2()
    model64.load_state_dict(want)
    ref = _dense_top(_with_input(model64, x_tr), lambda out: pretrained.cross_entropy(out, y_tr))
    assert abs(top - ref) <= 1e-4 * abs(ref), (top, ref)


class _with_input(torch.nn.Module):
    """``model`` with its inputs fixed: a function of its parameters only."""

    def __init__(self, model, x) -> None:
        super().__init__()
        self.model, self.x = model, x

    def forward(self):
        return self.model(self.x)


def _cifar(root, rng) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir()
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        raw = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 3, 2)] if i != 2 else [0, 1]
        (d / name).write_bytes(pickle.dumps({b"data": raw, b"labels": labels}))


def test_resnet_folder_probed_on_cifar(tmp_path, capsys) -> None:
    _cifar(tmp_path, np.random.default_rng(0))
    model = _resnet()
    model.save_pretrained(tmp_path / "resnet")
    f = tmp_path / "r.h5"
    argv = ["import", str(f), "--model", str(tmp_path / "resnet"), "--run", "resnet"]
    argv += [
        "--data",
        "cifar10",
        "--data-arg",
        f"root={tmp_path}",
        "--data-arg",
        "standardize=false",
    ]
    assert main(argv) == 0
    again, split, loss_fn = rebuild(f, "resnet")
    want = model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in again.state_dict().items())  # buffers too
    x, y = split.train
    with torch.no_grad():
        assert abs(float(loss_fn(again(x), y)) - float(F.cross_entropy(model(x).logits, y))) < 1e-6
    assert main(["probe", str(f), "--run", "resnet", "hessian", "--n", "3", "--tol", "1e-8"]) == 0
    assert "stored as probes/hessian_eigenvalues" in capsys.readouterr().out
    with Store(f) as s:
        top = float(
            np.asarray(s.record("resnet", "probes", "hessian_eigenvalues").arrays["values"])[0]
        )
    ref = _dense_top(
        _with_input(model, x[:3].double()), lambda out: F.cross_entropy(out.logits, y[:3])
    )
    assert abs(top - ref) <= 1e-4 * abs(ref), (top, ref)


def _error(argv, capsys) -> str:
    capsys.readouterr()  # what came before (save_pretrained's progress bars)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_folders_are_one_line(tmp_path, capsys) -> None:
    f = str(tmp_path / "r.h5")
    model = _gpt2()
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in _error(
        ["import", f, "--model", str(tmp_path / "empty"), "--run", "a"], capsys
    )
    model.save_pretrained(tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    err = _error(["import", f, "--model", str(tmp_path / "noweights"), "--run", "a"], capsys)
    assert "has no model.safetensors" in err and "config.json" in err
    (tmp_path / "noweights" / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    err = _error(["import", f, "--model", str(tmp_path / "noweights"), "--run", "a"], capsys)
    assert "pickled .bin weights are not read" in err
    model.save_pretrained(tmp_path / "odd")
    config = json.loads((tmp_path / "odd" / "config.json").read_text())
    (tmp_path / "odd" / "config.json").write_text(json.dumps({**config, "architectures": ["Nope"]}))
    assert "unknown architecture 'Nope'" in _error(
        ["import", f, "--model", str(tmp_path / "odd"), "--run", "a"], capsys
    )
    (tmp_path / "odd" / "config.json").write_text(json.dumps({**config, "n_embd": 6}))
    err = _error(["import", f, "--model", str(tmp_path / "odd"), "--run", "a"], capsys)
    assert "checkpoint does not fit the model" in err and "size mismatch" in err
    (tmp_path / "odd" / "config.json").write_text(json.dumps({**config, "n_layer": 2}))
    err = _error(["import", f, "--model", str(tmp_path / "odd"), "--run", "a"], capsys)
    assert "weights do not fit the model the config describes: missing" in err
    (tmp_path / "odd" / "config.json").write_text("{not json")
    assert "is not JSON" in _error(
        ["import", f, "--model", str(tmp_path / "odd"), "--run", "a"], capsys
    )
    err = _error(["import", f, "--model", "pkg.mod:fn", "--run", "a"], capsys)
    assert "--final is required" in err
    err = _error(["import", f, "--model", str(tmp_path / "typo"), "--run", "a"], capsys)
    assert "is neither a folder (a save_pretrained checkpoint) nor package.module:factory" in err
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pretrained.load_pretrained(tmp_path / "nowhere")


def test_safetensors_files_for_a_factory_model(tmp_path) -> None:
    from safetensors.torch import save_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    import_run(tmp_path / "r.h5", "a", model, final=tmp_path / "w.safetensors")
    copy = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    load_params(copy, tmp_path / "r.h5", "a")
    assert all(
        torch.equal(p, q) for p, q in zip(copy.parameters(), model.parameters(), strict=True)
    )
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        import_run(tmp_path / "r.h5", "b", model, final=tmp_path / "bad.safetensors")
