"""``[resources] threads``: the same spec writes the same numbers on every executor.

In this process, on local workers and on Ray each task runs with the spec's torch threads
(recorded in each run's ``attrs["threads"]``, the spec's ``[resources]`` in
``attrs["sweep"]``); the stored arrays are bit for bit the same. Bad values are refused before
anything runs, in one line.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from landscape.cli.main import main
from landscape.store.file import Store
from landscape.sweep.dist import resources_of
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import loads, schema, with_threads
from landscape.sweep.threads import THREAD_ENV, using_threads, worker_env

from .filecompare import differences

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """
name = "threads"
[base]
model = {name = "mlp", width = 8}
data = {name = "gaussians", n_train = 48, n_test = 48}
train = {epochs = 2, batch_size = 16, seed = 0}
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
[probes]
hessian = {k = 1}
[surfaces.r]
x = [-1.0, 1.0, 3]
[paths]
between = "all"
points = 3
[resources]
threads = 2
"""


def _check_threads(path, threads, resources):
    with Store(path) as s:
        assert s.runs() == ["sgd", "adam"]
        for run in s.runs():
            attrs = s.info(run).attrs
            assert attrs["threads"] == threads, (run, attrs["threads"])
            assert attrs["sweep"].get("resources") == resources


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "in_process.h5"
    before = torch.get_num_threads()
    run_sweep(loads(SPEC), out)
    assert torch.get_num_threads() == before  # restored after each task
    return out


def test_in_process_tasks_use_the_spec_threads_and_restore_them(in_process):
    assert torch.get_num_threads() == 1  # the one_thread fixture's, not the spec's 2
    _check_threads(in_process, 2, {"threads": 2})


def test_local_workers_write_the_numbers_of_in_process(in_process, tmp_path):
    out = tmp_path / "workers.h5"
    run_sweep(loads(SPEC), out, workers=2)
    _check_threads(out, 2, {"threads": 2})
    assert differences(in_process, out) == []


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install '.[ray]')"
)
def test_ray_writes_the_numbers_of_in_process(in_process, tmp_path):
    out = tmp_path / "ray.h5"
    run_sweep(loads(SPEC), out, executor="ray", workers=2)  # a local instance of 2 CPUs
    _check_threads(out, 2, {"threads": 2})
    assert differences(in_process, out) == []


def test_without_threads_a_task_keeps_the_executor_count(tmp_path):
    spec = SPEC.split("[probes]")[0]
    out = tmp_path / "default.h5"
    with using_threads(3):  # in-process: the process's count, as before [resources] threads
        run_sweep(loads(spec), out)
    _check_threads(out, 3, None)


def test_the_cli_override_is_what_is_recorded(tmp_path):
    spec = tmp_path / "t.toml"
    spec.write_text(SPEC.split("[probes]")[0])
    out = tmp_path / "cli.h5"
    args = ["sweep", str(spec), "--out", str(out), "--threads", "3", "--quiet", "--no-report"]
    assert main(args) == 0
    _check_threads(out, 3, {"threads": 3})


@pytest.mark.parametrize(
    ("value", "shown"), [("0", "0"), ("-1", "-1"), ('"two"', "'two'"), ("1.5", "1.5")]
)
def test_bad_threads_are_refused_at_dry_run_in_one_line(value, shown, tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace("threads = 2", f"threads = {value}"))
    out = tmp_path / "bad.h5"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"landscape: error: sweep spec: resources.threads: must be an integer >= 1, got {shown}"
    )
    assert not out.exists()


def test_a_bad_cli_override_is_refused_in_one_line(tmp_path, capsys):
    spec = tmp_path / "t.toml"
    spec.write_text(SPEC)
    args = ["sweep", str(spec), "--out", str(tmp_path / "o.h5"), "--dry-run", "--threads", "0"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "landscape: error: sweep: threads must be an integer >= 1, got 0"
    )
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got True"):
        with_threads(loads(SPEC), True)


def test_the_schema_and_the_ray_cpus():
    field = schema()["$defs"]["ResourcesTable"]["properties"]["threads"]
    assert field["minimum"] == 1 and "executor" in field["description"]
    assert resources_of(loads(SPEC), "sgd") == {"cpus": 2, "gpus": 0}  # Ray: cpus = threads
    both = loads(SPEC.replace("threads = 2", "threads = 2\ncpus = 4"))
    assert resources_of(both, "sgd")["cpus"] == 4


def test_threads_are_set_and_restored_and_interop_threads_where_allowed():
    interop = torch.get_num_interop_threads()
    with using_threads(3):
        assert torch.get_num_threads() == 3
        with using_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == 1  # the one_thread fixture's
    assert torch.get_num_interop_threads() == interop  # in-process: left as it was
    # a fresh process (a worker) gets both; once set, the inter-op count stays, without error
    code = (
        "import torch; from landscape.sweep.threads import set_threads; set_threads(3); "
        "print(torch.get_num_threads(), torch.get_num_interop_threads()); set_threads(2); "
        "print(torch.get_num_threads(), torch.get_num_interop_threads())"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["3", "3", "2", "3"]


def test_worker_env_is_set_for_started_processes_and_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with worker_env(2):
        code = "import os; print(os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])"
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert got.stdout.split() == ["2", "2"]
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ
    with worker_env(None):
        assert os.environ["OMP_NUM_THREADS"] == "7"
    assert THREAD_ENV == ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
