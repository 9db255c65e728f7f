"""Datasets users have: CIFAR files, class folders, torchvision and Hugging Face datasets.

Each is read in memory or from disk, and named in a run spec. Nothing downloads: every test
builds tiny files in their on-disk formats in a temporary folder.
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from landscape import data
from landscape.engine.batches import Batches, Kwargs
from landscape.train import schema
from landscape.train import spec as runspec


def _torchvision():
    """Torchvision's datasets, or a skip that says why (it fails beside the CPU torch here)."""
    try:
        import torchvision.datasets
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"torchvision does not import here: {type(err).__name__}: {err}")
    return torchvision.datasets


def _hf():
    return pytest.importorskip("datasets")


# --------------------------------------------------------------------------- CIFAR files


def _batch(rng, n: int) -> tuple[dict, np.ndarray, list]:
    """A batch as the published files hold it: their keys read as str by torchvision."""
    raw = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {"batch_label": "tiny", "labels": labels, "data": raw}, raw, labels


def _reference(raw: np.ndarray) -> np.ndarray:
    """Pixel (c, h, w) of row n is raw[n, 1024 c + 32 h + w] / 255, element by element."""
    out = np.empty((len(raw), 3, 32, 32), np.float64)
    for n in range(len(raw)):
        for c in range(3):
            for h in range(32):
                out[n, c, h] = raw[n, 1024 * c + 32 * h : 1024 * c + 32 * h + 32] / 255.0
    return out


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    raws, labels = [], []
    for i in range(1, 6):
        batch, raw, y = _batch(rng, 2 + i % 2)
        # protocol 2, as the published files (bytes go through _codecs.encode)
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
        raws.append(raw)
        labels += y
    batch, raw_te, y_te = _batch(rng, 3)
    (d / "test_batch").write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    return root, np.concatenate(raws), labels, raw_te, y_te


def test_cifar10_reads_the_python_files(cifar10_root) -> None:
    root, raw, labels, raw_te, y_te = cifar10_root
    for where in (root, root / "cifar-10-batches-py"):
        split = data.cifar10(where)
        assert split.x_train.dtype == torch.float32 and split.x_train.shape == (len(raw), 3, 32, 32)
        np.testing.assert_allclose(split.x_train.double().numpy(), _reference(raw), atol=1e-7)
        np.testing.assert_allclose(split.x_test.double().numpy(), _reference(raw_te), atol=1e-7)
        assert split.y_train.tolist() == labels and split.y_test.tolist() == y_te
        assert split.num_classes == 10 and split.info["classes"][9] == "truck"
    same = data.load("cifar10", root=str(root))
    assert torch.equal(same.x_train, split.x_train)


def test_cifar100_fine_and_coarse(tmp_path) -> None:
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(1)
    parts = {}
    for name, n in (("train", 5), ("test", 2)):
        raw = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        # bytes keys, as the published (Python 2) files read with encoding="bytes"
        batch = {b"data": raw, b"fine_labels": fine, b"coarse_labels": coarse}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
        parts[name] = (raw, fine, coarse)
    meta = {b"fine_label_names": [b"f%d" % i for i in range(100)]}
    meta[b"coarse_label_names"] = [b"c%d" % i for i in range(20)]
    (d / "meta").write_bytes(pickle.dumps(meta))
    fine = data.cifar100(tmp_path)
    coarse = data.cifar100(tmp_path, labels="coarse")
    np.testing.assert_allclose(fine.x_train.double().numpy(), _reference(parts["train"][0]), 1e-7)
    assert fine.y_train.tolist() == parts["train"][1] and fine.y_test.tolist() == parts["test"][1]
    assert coarse.y_train.tolist() == parts["train"][2] and coarse.num_classes == 20
    assert fine.num_classes == 100 and coarse.info["classes"][3] == "c3"
    with pytest.raises(ValueError, match="'fine' or 'coarse'"):
        data.cifar100(tmp_path, labels="super")


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo ran > marker",))


def test_cifar_pickles_cannot_run_code(tmp_path, cifar10_root, monkeypatch) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    root = cifar10_root[0] / "cifar-10-batches-py"
    for name in os.listdir(root):
        (d / name).write_bytes((root / name).read_bytes())
    (d / "data_batch_3").write_bytes(pickle.dumps({"data": _Boom(), "labels": [0]}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as exc:
        data.cifar10(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "refused posix.system" in msg and "data_batch_3" in msg
    assert not (tmp_path / "marker").exists()
    (d / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="is not a CIFAR batch"):
        data.cifar10(tmp_path)
    (d / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8)}))
    with pytest.raises(ValueError, match="expected keys data and labels"):
        data.cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        data.cifar10(tmp_path / "elsewhere")


# --------------------------------------------------------------------------- class folders


def _png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """train/<class>/*.png and val/<class>/*.png, 4 x 5 RGB images with known pixels."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(2)
    pixels: dict[str, list] = {"train": [], "val": []}
    for part, n in (("train", 4), ("val", 2)):
        for cls in ("cat", "ant", "bee"):  # classes are sorted: ant, bee, cat
            for i in range(n):
                a = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
                _png(root / part / cls / f"img{i}.png", a)
                pixels[part].append((sorted(("cat", "ant", "bee")).index(cls), f"{cls}{i}", a))
        (root / part / "ant" / "notes.txt").write_text("not an image")
    return root, pixels


def test_image_folder(folders) -> None:
    root, pixels = folders
    split = data.image_folder(root / "train", test_root=root / "val")
    assert split.info["classes"] == ["ant", "bee", "cat"] and split.num_classes == 3
    for part, x, y in (
        ("train", split.x_train, split.y_train),
        ("val", split.x_test, split.y_test),
    ):
        want = sorted(pixels[part], key=lambda t: (t[0], t[1]))
        assert y.tolist() == [t[0] for t in want]
        ref = np.stack([t[2].transpose(2, 0, 1) / 255.0 for t in want])
        np.testing.assert_allclose(x.double().numpy(), ref, atol=1e-7)
    assert split.x_train.shape == (12, 3, 4, 5)
    gray = data.image_folder(root / "train", mode="L", size=3, test_fraction=0.25, seed=1)
    assert gray.x_train.shape[1:] == (1, 3, 3) and len(gray.y_train) + len(gray.y_test) == 12
    assert sorted(gray.y_test.tolist()) == [0, 1, 2]  # stratified
    again = data.load("image_folder", root=str(root / "train"), mode="L", size=3, seed=1)
    assert torch.equal(
        again.x_test, data.image_folder(root / "train", mode="L", size=3, seed=1).x_test
    )


def test_image_folder_errors(tmp_path) -> None:
    _png(tmp_path / "a" / "x.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "b" / "y.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="give size=N"):
        data.image_folder(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "z.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read .*z.png as an image"):
        data.image_folder(tmp_path, size=4)
    with pytest.raises(ValueError, match="no class folders"):
        data.image_folder(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        data.image_folder(tmp_path / "nowhere")


def test_from_dataset_takes_pillow_images(folders) -> None:
    root, pixels = folders
    items = [(Image.fromarray(a), k) for k, _, a in pixels["train"]]
    split = data.from_dataset(items, test_fraction=0.25, seed=0)
    assert split.x_train.shape[1:] == (3, 4, 5) and split.x_train.max() <= 1


# --------------------------------------------------------------------------- torchvision


def test_torchvision_datasets_give_the_same_tensors(cifar10_root, folders, monkeypatch) -> None:
    tv = _torchvision()
    root = cifar10_root[0]
    # tiny files: not the published checksums
    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(sys.modules[tv.CIFAR10.__module__], "check_integrity", lambda *a: True)
    split = data.from_dataset(tv.CIFAR10(str(root), train=True), tv.CIFAR10(str(root), train=False))
    ours = data.cifar10(root)
    assert torch.equal(split.x_train, ours.x_train) and torch.equal(split.y_test, ours.y_test)
    imgs = folders[0]
    split = data.from_dataset(
        tv.ImageFolder(str(imgs / "train")), tv.ImageFolder(str(imgs / "val"))
    )
    ours = data.image_folder(imgs / "train", test_root=imgs / "val")
    assert torch.equal(split.x_train, ours.x_train) and torch.equal(split.y_train, ours.y_train)


# --------------------------------------------------------------------------- Hugging Face


def test_hf_rows_give_mapping_batches() -> None:
    hf = _hf()
    ids = torch.randint(0, 9, (7, 5), generator=torch.Generator().manual_seed(0))
    ds = hf.Dataset.from_dict(
        {"input_ids": ids.tolist(), "labels": ids.tolist(), "text": ["a"] * 7}
    )
    rows = data.rows(ds, ["input_ids", "labels"])
    loader = DataLoader(rows, batch_size=3)
    batches = Batches(loader, device=torch.device("cpu"), dtype=torch.float32)
    got = list(batches)
    assert isinstance(got[0].inputs, Kwargs) and [b.n for b in got] == [3, 3, 1]
    assert torch.equal(torch.cat([b.inputs["input_ids"] for b in got]), ids)
    with pytest.raises(ValueError, match="no column 'mask'"):
        data.rows(ds, ["mask"])
    with pytest.raises(TypeError, match="tokenize it"):
        rows = data.rows(ds)
        rows[0]
    with pytest.raises(TypeError, match="mappings"):
        data.rows([1, 2])


def _image_dataset(hf, n: int, seed: int):
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(n)]
    labels = [i % 3 for i in range(n)]
    features = hf.Features({"img": hf.Image(), "label": hf.ClassLabel(names=["a", "b", "c"])})
    ds = hf.Dataset.from_dict(
        {"img": [Image.fromarray(a) for a in arrays], "label": labels}, features=features
    )
    return ds, arrays, labels


def test_from_hf_images_and_classes() -> None:
    hf = _hf()
    ds, arrays, labels = _image_dataset(hf, 9, 0)
    test, t_arrays, t_labels = _image_dataset(hf, 3, 1)
    split = data.from_hf(hf.DatasetDict({"train": ds, "test": test}))
    ref = np.stack([a.transpose(2, 0, 1) / 255.0 for a in arrays])
    np.testing.assert_allclose(split.x_train.double().numpy(), ref, atol=1e-7)
    assert split.y_train.tolist() == labels and split.y_test.tolist() == t_labels
    assert split.num_classes == 3 and split.info["classes"] == ["a", "b", "c"]
    held = data.from_hf(ds, test_fraction=1 / 3, seed=0)
    assert sorted(held.y_test.tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="no column 'image'"):
        data.from_hf(ds, x="image")
    with pytest.raises(TypeError, match="datasets.Dataset"):
        data.from_hf([(1, 2)])


def test_from_hf_next_token_targets() -> None:
    hf = _hf()
    ids = torch.randint(0, 11, (6, 4), generator=torch.Generator().manual_seed(3))
    split = data.from_hf(hf.Dataset.from_dict({"input_ids": ids.tolist()}), y="next_token")
    x = torch.cat([split.x_train, split.x_test])
    y = torch.cat([split.y_train, split.y_test])
    for row, target in zip(x, y, strict=True):
        assert target[:-1].tolist() == row[1:].tolist() and target[-1] == data.IGNORE_INDEX
    assert sorted(map(tuple, x.tolist())) == sorted(map(tuple, ids.tolist()))
    assert split.info["vocab_size"] == int(ids.max()) + 1 and split.info["context_length"] == 4
    floats = hf.Dataset.from_dict({"input_ids": [[0.5, 1.0]] * 3})
    with pytest.raises(ValueError, match="integer tokens"):
        data.from_hf(floats, y="next_token")


# --------------------------------------------------------------------------- run specs


def test_run_specs_name_the_datasets(tmp_path, cifar10_root, folders) -> None:
    hf = _hf()
    ds, _, _ = _image_dataset(hf, 12, 4)
    hf.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'[model]\nname = "mlp"\nwidth = 8\n[data]\nname = "cifar10"\nroot = "{cifar10_root[0]}"\n'
        "[train]\nmax_steps = 2\nbatch_size = 4\n"
    )
    spec = runspec.load(toml)
    schema.check(spec, complete=True)
    model, split, *_ = runspec.build(spec)
    assert split.name == "cifar10" and model.spec["kwargs"]["in_features"] == 3072
    result = runspec.execute(spec, tmp_path / "r.h5", run="c10")
    assert result.steps == 2
    for table in (
        {
            "name": "image_folder",
            "root": str(folders[0] / "train"),
            "test_root": str(folders[0] / "val"),
        },
        {"name": "hf_disk", "path": str(tmp_path / "saved"), "x": "img", "test_fraction": 0.25},
    ):
        run = {"model": {"name": "mlp"}, "data": table, "train": {"max_steps": 1}}
        _, split, *_ = runspec.build(run)
        assert split.x_train.shape[1:] in ((3, 4, 5), (3, 4, 4)) and split.num_classes == 3
    bad = {
        "model": {"name": "mlp"},
        "data": {"name": "cifar10", "path": "x"},
        "train": {"epochs": 1},
    }
    with pytest.raises(ValueError, match=r"data.path: unknown key; allowed: .*root"):
        schema.check(bad, complete=True)
    del bad["data"]["path"]
    with pytest.raises(ValueError, match=r"^run spec: data.root: required by dataset 'cifar10'$"):
        schema.check(bad, complete=True)
    with pytest.raises(TypeError, match=r"load\('hf_disk'\): hf_disk needs path"):
        data.load("hf_disk")
    with pytest.raises(ValueError, match="not a dataset saved with save_to_disk"):
        data.hf_disk(str(tmp_path))
    assert "datasets" in sys.modules  # the saved dataset was read with the package
