"""The top-1 cases of ``hessian_vs_peers.py``: an HF ResNet and an HF GPT-2, at 1e-3.

Each method runs once in a fresh child process (``--child CASE METHOD SETTING``) for its peak
memory: the peak resident size during the run (``VmHWM``, reset after building the model and
data) less the resident size after building them (torch's CPU allocations escape
``tracemalloc``), and its CPU seconds (user + system, all threads; steadier
than wall time on a loaded machine); the timings come from interleaved rounds in the parent.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _timing import samples
from torch import Tensor, nn

from probes.curvature.hessian import eigenvalues

try:  # torchvision does not import beside this CPU torch; transformers skips it when None
    import torchvision  # noqa: F401
except (ImportError, RuntimeError):
    sys.modules["torchvision"] = None  # type: ignore[assignment]
from transformers import GPT2Config, GPT2LMHeadModel, ResNetConfig, ResNetForImageClassification

TOP1_CASES = ("resnet", "gpt2")
PYHESSIAN_MAXITER = 1000
TOL, TIME_TARGET, MEMORY_TARGET = 1e-3, 0.8, 1.0
PYHESSIAN_TOLS = (1e-3, 3e-4, 1e-4, 3e-5)  # looser ones missed 1e-3 on both cases
EIGENTHINGS_STEPS = (8, 10, 12, 16, 24, 32)  # from the largest <= ours' products
METHODS = ("ours", "PyHessian 0.1", "eigenthings 1.0.0a5")


class Logits(nn.Module):
    """An HF model as ``inputs -> logits`` (what PyHessian and eigenthings call)."""

    def __init__(self, model: nn.Module, lm: bool) -> None:
        super().__init__()
        self.model, self.lm = model, lm

    def forward(self, x: Tensor) -> Tensor:
        """Image logits (N, C), or next-token logits (N, T - 1, V)."""
        if self.lm:
            return self.model(input_ids=x).logits[:, :-1]
        return self.model(pixel_values=x).logits


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over every predicted token."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def build(case: str) -> tuple[str, nn.Module, Callable, tuple[Tensor, Tensor]]:
    """(label, model, loss, (inputs, targets)) of a case, from configs only, fixed seeds."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if case == "resnet":
        config = ResNetConfig(
            num_channels=3,
            embedding_size=32,
            hidden_sizes=[32, 64, 128, 200],
            depths=[1, 1, 1, 1],
            layer_type="basic",
            num_labels=10,
        )
        model = Logits(ResNetForImageClassification(config), lm=False).eval()
        x = torch.randn(256, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (256,), generator=gen)
        return "HF ResNet (basic, 1-1-1-1) on 256 x 3x32x32", model, nn.CrossEntropyLoss(), (x, y)
    config = GPT2Config(
        vocab_size=2000,
        n_positions=128,
        n_embd=256,
        n_layer=4,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    config._attn_implementation = "eager"  # SDPA's CPU backward has no double backward
    model = Logits(GPT2LMHeadModel(config), lm=True).eval()
    tokens = torch.randint(0, 2000, (8, 64), generator=gen)
    return (
        "HF GPT-2 (4 x 256, vocab 2000) on 8 x 64 tokens",
        model,
        lm_loss,
        (tokens, tokens[:, 1:]),
    )


def run(case_parts, method: str, setting: float, runners) -> tuple[float, int, bool]:
    """One call of a method -> (top eigenvalue, products, certified to TOL)."""
    _, model, loss_fn, batch = case_parts
    pyhessian_run, eigenthings_run = runners
    if method == "ours":
        r = eigenvalues(model, loss_fn, batch, k=1, tol=setting)
        certified = bool(r.certified and r.errors[-1] <= TOL * abs(r.values[-1]))
        return float(r.values[-1]), r.cost.hvp, certified
    if method == "PyHessian 0.1":
        values, n = pyhessian_run(model, loss_fn, [batch], True, setting, k=1)
    else:
        values, n = eigenthings_run(model, loss_fn, [batch], int(setting), k=1)
    return (float(np.max(values)) if len(values) else float("nan")), n, False


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args, runners) -> None:
    """Run one method once in this fresh process; print its peak memory and result as JSON."""
    case, method, setting = args.child
    parts = build(case)
    gc.collect()
    base = _status_kb("VmRSS")  # resident after building the model and data
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current size
        f.write("5")
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    value, n, certified = run(parts, method, float(setting), runners)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak = (_status_kb("VmHWM") - base) / 1024  # the run's peak over what was built
    out = {"value": value, "products": n, "seconds": seconds, "cpu_s": cpu, "peak_mb": peak}
    print(json.dumps(out | {"certified": certified}))


def measure_memory(case: str, method: str, setting: float) -> dict[str, Any]:
    """Peak memory of one run of ``method`` in a fresh process (see the module docstring)."""
    cmd = [sys.executable, sys.argv[0], "--child", case, method, repr(setting)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed in its child process:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ladder(
    parts, method: str, settings: tuple[float, ...], runners, rel: Callable[[float], float]
) -> tuple[float, bool]:
    """The first of ``settings`` within TOL of the reference, and whether one was.

    Stops at that setting (each step is a full run); the last setting when none reaches TOL.
    """
    for setting in settings:
        if rel(run(parts, method, setting, runners)[0]) <= TOL:
            return setting, True
    return settings[-1], False


class _Decided(Exception):
    """PyHessian's ladder is decided: no more products needed."""


def pyhessian_ladder(parts, tols: tuple[float, ...], rel: Callable[[float], float]):
    """The first of ``tols`` at which PyHessian ends within TOL, from ONE run.

    Its power iteration is the same sequence of Rayleigh quotients whatever ``tol`` (it only
    decides where to stop: at the first relative change below ``tol``, returning the previous
    quotient), so one run, recorded, replays every setting; it stops as soon as the ladder is
    decided. The setup is that of ``pyhessian_run`` (seed 0, one batch). Returns (tol, reached).
    """
    _, model, loss_fn, batch = parts
    ph = importlib.import_module("pyhessian.hessian")
    torch.manual_seed(0)
    model.zero_grad(set_to_none=True)
    peer = ph.hessian(model, loss_fn, data=batch, cuda=False)
    inner, quotients, outcome = ph.hessian_vector_product, [], {}

    def recorded(grads, params, v):
        hv = inner(grads, params, v)
        quotients.append(float(ph.group_product(hv, v)))
        if len(quotients) >= 2:
            before, now = quotients[-2], quotients[-1]
            for tol in tols:
                if tol not in outcome and abs(before - now) / (abs(before) + 1e-6) < tol:
                    outcome[tol] = rel(before) <= TOL
            for tol in tols:  # in ladder order: the first undecided one waits
                if tol not in outcome:
                    break
                if outcome[tol]:
                    raise _Decided
        return hv

    ph.hessian_vector_product = recorded
    try:
        peer.eigenvalues(maxIter=PYHESSIAN_MAXITER, tol=min(tols), top_n=1)
    except _Decided:
        pass
    finally:
        ph.hessian_vector_product = inner
    reached = [tol for tol in tols if outcome.get(tol)]
    return (reached[0], True) if reached else (tols[-1], False)


def top1_main(args, pyhessian_run, eigenthings_run) -> None:
    """The ResNet or GPT-2 case: choose, time, measure and print (or be a child)."""
    runners = (pyhessian_run, eigenthings_run)
    if args.child:
        child(args, runners)
        return
    case = args.only
    parts = build(case)
    label, model, loss_fn, batch = parts
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU; "
        f"load average {load}; {args.repeats} interleaved repeats, median (min-max)"
    )
    ref = eigenvalues(model, loss_fn, batch, k=1, tol=1e-6, certify="float64")
    truth, bound = float(ref.values[-1]), float(ref.errors[-1])
    print(
        f"\n{label}: {n_params} parameters; reference top eigenvalue {truth:.8g} "
        f"(ours, tol=1e-6, float64-certified to {bound / abs(truth):.1e} relative)"
    )

    def rel(value: float) -> float:
        return abs(value - truth) / abs(truth)

    # the peers' cheapest settings: short ladders, each stopped at the first that reaches TOL
    ours_products = run(parts, "ours", TOL, runners)[1]
    tol, ph_ok = pyhessian_ladder(parts, PYHESSIAN_TOLS, rel)
    start = max([s for s in EIGENTHINGS_STEPS if s <= ours_products], default=EIGENTHINGS_STEPS[0])
    steps, et_ok = ladder(
        parts,
        "eigenthings 1.0.0a5",
        tuple(s for s in EIGENTHINGS_STEPS if s >= start),
        runners,
        rel,
    )
    chosen: dict[str, tuple[str, float]] = {
        "ours": (f"tol={TOL:g} (certified)", TOL),
        "PyHessian 0.1": (f"tol={tol:g}" + ("" if ph_ok else " (1e-3 NOT reached)"), tol),
        "eigenthings 1.0.0a5": (
            f"max_iter={steps:g}" + ("" if et_ok else " (1e-3 NOT reached)"),
            steps,
        ),
    }
    memory = {name: measure_memory(case, name, setting) for name, (_, setting) in chosen.items()}
    fns = {
        name: (lambda s=setting, n=name: run(parts, n, s, runners))
        for name, (_, setting) in chosen.items()
    }
    times = samples(fns, args.repeats, warmup=False)  # the ladders warmed every method up
    print(
        f"  {'':<21}{'setting':<36}{'seconds':>9}{'(min-max)':>16}{'CPU s':>8}{'products':>10}"
        f"{'peak MB':>9}{'rel err':>10}"
    )
    median = {}
    for name, (setting, _) in chosen.items():
        got, t = memory[name], times[name]
        median[name] = statistics.median(t)
        mark = " certified" if got["certified"] else ""
        print(
            f"  {name:<21}{setting:<36}{median[name]:>9.3f}{f'({min(t):.3f}-{max(t):.3f})':>16}"
            f"{got['cpu_s']:>8.2f}{got['products']:>10}{got['peak_mb']:>9.0f}"
            f"{rel(got['value']):>10.1e}{mark}"
        )
    fastest = min(METHODS[1:], key=median.__getitem__)
    t_ratio = median["ours"] / median[fastest]
    m_ratio = memory["ours"]["peak_mb"] / max(memory[fastest]["peak_mb"], 1.0)
    print(
        f"  {case}: time ratio ours/faster peer ({fastest}) {t_ratio:.2f} "
        f"(target {TIME_TARGET}: {'met' if t_ratio <= TIME_TARGET else 'NOT met'}), "
        f"memory ratio {m_ratio:.2f} "
        f"(target {MEMORY_TARGET}: {'met' if m_ratio <= MEMORY_TARGET else 'NOT met'})"
    )
