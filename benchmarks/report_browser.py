"""How big is the interactive report of a 60-run study, and how fast does it open in a browser?

Targets: ``report.html`` under 15 MB, open (navigationStart -> loadEventEnd) in under 3 s.

Builds the 60-run study of ``benchmarks/report_speed.py`` (20 configurations x 3 seeds, 30
measures, 30 paths) and gives every run a 2-D loss surface (``pca_2d``, 41 x 41 points, train
and test loss, a 6-snapshot trajectory), the size of a real sweep's surfaces. Writes the
report (``figures=False``: the PNGs are not what is measured) and opens ``report.html`` in
headless Chromium (Debian's ``chromium`` and ``chromium-driver`` through selenium; nothing is
downloaded) ``--repeats`` times, each in a fresh browser. Prints the file's size, where it
goes (plotly.js, the figures' JSON, the rest), and per load: navigationStart ->
DOMContentLoaded, -> loadEventEnd, -> every plotly figure drawn (the page's
``window.landscapeReport.doneAt``), the CPU seconds the browser's processes spent until then
(a measure of the work that a busy machine does not inflate), and the time to draw another
run's surface after a pick. The machine's load average is printed beside the times: wall
times scale with a busy CPU. WebGL runs on SwiftShader (software) in headless Chromium: the
3-D surface costs far more here than on a desktop's GPU.

    .venv/bin/python benchmarks/report_browser.py [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from report_speed import build_file
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from landscape.report import report
from landscape.store.file import Store
from landscape.surfaces.result import Surface

SIZE_MB, OPEN_S = 15.0, 3.0
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
N = 41


def add_surfaces(path: Path, seed: int = 0) -> None:
    """A 41 x 41 ``pca_2d`` surface on every run: a tilted bowl with ripples, and a trajectory."""
    rng = np.random.default_rng(seed)
    x = y = np.linspace(-1.0, 1.0, N)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    with Store(path, "a") as s:
        for run in s.runs():
            a, b = rng.uniform(0.5, 3.0, 2)
            train = 0.01 + a * xx**2 + b * yy**2 + 0.1 * np.sin(5 * xx) * np.cos(4 * yy) ** 2
            grids = {"train_loss": train, "test_loss": 1.3 * train + 0.2}
            surface = Surface(
                x=x,
                y=y,
                directions=rng.normal(size=(2, 16)),
                grids=grids,
                done=np.ones(train.shape, bool),
                bn="keep",
                mode="eval",
                chunk=64,
                vmap=True,
                params=("w",),
                info={"kind": "pca"},
            )
            arrays, attrs, dims = surface.to_record()
            arrays["trajectory_steps"] = np.arange(0, 600, 100)
            arrays["trajectory_coords"] = np.column_stack(
                [np.linspace(-0.9, 0.0, 6), np.linspace(0.8, 0.0, 6)]
            ) + rng.normal(0, 0.02, (6, 2))
            s.write_record(run, "surfaces", "pca_2d", arrays=arrays, attrs=attrs, dims=dims)


def browser() -> webdriver.Chrome:
    """Headless Chromium from the system's packages (selenium's own download is off)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager downloads nothing
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",  # WebGL for the 3-D surfaces without a GPU
        "--use-angle=swiftshader",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait_drawn(driver, timeout: float = 120.0) -> dict:
    """``window.landscapeReport`` once every figure is drawn (or failed)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = driver.execute_script("return window.landscapeReport || null")
        if state and state["doneAt"] is not None:
            return state
        time.sleep(0.05)
    raise TimeoutError(f"figures not drawn within {timeout:.0f} s")


def _cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def open_once(page: Path) -> dict[str, float]:
    """One load of ``page`` in a fresh browser: the times in seconds."""
    driver = browser()
    try:
        root = driver.service.process.pid
        cpu0 = _cpu_seconds(root)
        driver.get(page.as_uri())
        state = wait_drawn(driver)
        cpu = _cpu_seconds(root) - cpu0
        t = driver.execute_script(
            "var t = performance.timing; return [t.domContentLoadedEventEnd - "
            "t.navigationStart, t.loadEventEnd - t.navigationStart]"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        # another run's surface: pick the last run in the surface figure's picker
        pick = driver.execute_script(
            "var s = document.querySelector('.figure-slot select[aria-label^=\"Surface\"]');"
            "if (!s) return null; var plot = s.closest('.figure-slot').querySelector('.plot');"
            "var t0 = performance.now(); s.value = s.options[s.options.length - 1].value;"
            "s.dispatchEvent(new Event('change')); window.__pick = [t0, plot, s.value];"
            "return t0;"
        )
        switched = None
        if pick is not None:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                done = driver.execute_script(
                    "var p = window.__pick; return p[1].getAttribute('data-drawn') === p[2] ? "
                    "performance.now() - p[0] : null"
                )
                if done is not None:
                    switched = done / 1000
                    break
                time.sleep(0.02)
        return {
            "dom": t[0] / 1000,
            "load": t[1] / 1000,
            "drawn": state["doneAt"] / 1000,
            "figures": state["figures"],
            "failed": state["failed"],
            "errors": len(errors),
            "switch": switched if switched is not None else float("nan"),
            "cpu": cpu,
            "plotly": (state["plotlyMs"] or 0) / 1000,
            "each": {k: v / 1000 for k, v in state["drawMs"].items()},
        }
    finally:
        driver.quit()


def parts(page: Path) -> tuple[float, float]:
    """MB of plotly.js and of the figures' JSON in the page."""
    text = page.read_text("utf-8")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", text, flags=re.S)
    plotly = max((len(s) for s in scripts), default=0)
    figures = sum(
        len(m)
        for m in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S)
    )
    return plotly / 1e6, figures / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="loads, each in a fresh browser")
    ap.add_argument("--keep", type=Path, help="copy report.html here")
    args = ap.parse_args()
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        raise SystemExit(
            f"report_browser: needs {CHROMIUM} and {DRIVER} (apt-get install "
            "chromium chromium-driver)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_file(Path(tmp) / "study.h5")
        add_surfaces(path)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = report(path, Path(tmp) / "out", figures=False)
        wrote = time.perf_counter() - t0
        page = r.html
        size = page.stat().st_size / 1e6
        js, figs = parts(page)
        print(
            f"file: {len(r.runs.rows)} runs, a 41x41 surface each (built in {built:.1f} s); "
            f"report written in {wrote:.1f} s"
        )
        print(
            f"report.html: {size:.2f} MB (target < {SIZE_MB:.0f} MB): plotly.js {js:.2f} MB, "
            f"figures' JSON {figs:.2f} MB, the rest {size - js - figs:.2f} MB"
        )
        loads = []
        for i in range(args.repeats):
            load = open_once(page)
            loads.append(load)
            print(
                f"load {i + 1}: DOMContentLoaded {load['dom']:.2f} s, loadEventEnd "
                f"{load['load']:.2f} s, {load['figures']} figures drawn at {load['drawn']:.2f} s "
                f"({load['failed']} failed, {load['errors']} JS errors; {load['cpu']:.1f} CPU s in "
                f"the browser until then); another run's surface "
                f"drawn {load['switch']:.2f} s after the pick; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            )
            each = ", ".join(f"{k} {v:.2f}" for k, v in load["each"].items())
            print(
                f"        running plotly.js {load['plotly']:.2f} s; each figure drawn (s): {each}"
            )
        keys = ("load", "drawn", "switch", "cpu")
        med = {k: float(np.median([x[k] for x in loads])) for k in keys}
        print(
            f"median: open {med['load']:.2f} s (target < {OPEN_S:.0f} s), figures drawn "
            f"{med['drawn']:.2f} s ({med['cpu']:.1f} CPU s), run switch {med['switch']:.2f} s"
        )
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(page, args.keep / "report.html")


if __name__ == "__main__":
    main()
