"""The interactive report.html: its figures against the stored data, its tables, its scripts.

The study file of tests/test_report_study.py with loss surfaces added (two runs with a 2-D
surface, one partly computed and one that needs a log scale, and a 1-D surface). Each figure's
JSON is read back from the page, checked against plotly's schema and compared with the stored
arrays and report.json. The browser's side is tests/test_browser.py.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from landscape.report import Report, interactive, report
from landscape.report.interactive_surfaces import use_log
from landscape.store.file import Store
from landscape.surfaces.result import Surface
from tests.test_report_study import study_runs, write

pytestmark = pytest.mark.usefixtures("one_thread")

SURFACES = {  # run -> (name, 2-D, part computed, log scale)
    "sgd-random-seed0": ("pca_2d", True, False, False),
    "adam-random-seed0": ("pca_2d", True, True, True),
    "sgd-random-seed1": ("random_1d", False, False, False),
}
STEPS = np.arange(0, 50, 10)
COORDS = np.column_stack([np.linspace(-0.8, 0.0, 5), np.linspace(0.7, 0.0, 5)])


def add_surface(path: Path, run: str, name: str, two_d: bool, partial: bool, log: bool) -> None:
    x, y = np.linspace(-1, 1, 11), np.linspace(-1, 1, 13)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    train = 1.0 + xx**2 + 2 * yy**2 + 0.3 * np.sin(3 * xx) * (1 + 0.1 * yy)
    if log:
        train = 10.0 ** (train - 0.5)
    grids = {"train_loss": train, "test_loss": 1.5 * train + 0.2, "train_accuracy": 1 - train / 9}
    done = np.ones(train.shape, bool)
    if partial:
        done[-3:, :] = False
    if not two_d:
        grids, done = {k: v[:, 0] for k, v in grids.items()}, done[:, 0]
    surface = Surface(
        x=x,
        y=y if two_d else None,
        directions=np.zeros((2 if two_d else 1, 3)),
        grids=grids,
        done=done,
        bn="keep",
        mode="eval",
        chunk=8,
        vmap=False,
        params=("w",),
        info={"kind": "pca" if two_d else "random"},
    )
    arrays, attrs, dims = surface.to_record()
    if two_d:
        arrays.update(trajectory_steps=STEPS, trajectory_coords=COORDS)
    with Store(path, "a") as s:
        s.write_record(run, "surfaces", name, arrays=arrays, attrs=attrs, dims=dims)


def build(folder: Path, **kw) -> Report:
    """The study file with :data:`SURFACES`, and its report (few bootstrap samples)."""
    path = write(folder / "study.h5", study_runs())
    for run, spec in SURFACES.items():
        add_surface(path, run, *spec)
    return report(path, folder / "out", figures=False, n_boot=200, n_perm=199, **kw)


def figures(page: str) -> dict[str, list[tuple[str, dict]]]:
    """Each figure of the page by its title: ``(label, figure)`` per version."""
    out = {}
    for slot in re.findall(r'<figure class="figure-slot".*?</figure>', page, re.S):
        title = html.unescape(re.search(r"<figcaption><b>(.*?)\.</b>", slot).group(1))
        labels = [html.unescape(x) for x in re.findall(r"<option [^>]*>(.*?)</option>", slot)]
        labels = labels or [""]
        specs = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', slot)
        assert len(labels) == len(specs)
        out[title] = [(lab, json.loads(s)) for lab, s in zip(labels, specs, strict=True)]
    return out


def decode(a) -> np.ndarray:
    """A plotly binary array (or a list) as float64."""
    if isinstance(a, dict):
        v = np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"]).astype(np.float64)
        return v.reshape([int(n) for n in a["shape"].split(",")]) if "shape" in a else v
    return np.array([np.nan if x is None else x for x in a], dtype=np.float64)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    r = build(tmp_path_factory.mktemp("interactive"))
    return r, r.html.read_text("utf-8"), json.loads(r.json.read_text("utf-8"))


def test_every_figure_follows_plotlys_schema(built):
    go = pytest.importorskip("plotly.graph_objects")
    _, page, _ = built
    found = figures(page)
    assert set(found) == {
        "Configurations",
        "Kendall's tau with the gap",
        "Measures against the gap",
        "Good vs bad minima",
        "Surface pca_2d",
        "Surface random_1d",
    }
    for versions in found.values():
        for _, fig in versions:
            go.Figure(fig)  # raises on a property plotly does not know or a bad value


def test_surfaces_show_the_stored_grids(built):
    r, page, _ = built
    found = figures(page)
    versions = dict(found["Surface pca_2d"])
    assert list(versions) == ["sgd-random-seed0", "adam-random-seed0"]  # the picker's runs
    with Store(r.file) as s:
        for run, fig in versions.items():
            record = s.record(run, "surfaces", "pca_2d")
            done = record.arrays["done"]
            pairs = zip(fig["data"][0:4:2], fig["data"][1:4:2], strict=True)
            for metric, (surface, contour) in zip(("train_loss", "test_loss"), pairs, strict=True):
                want = np.where(done, record.arrays[metric], np.nan)
                log = SURFACES[run][3]
                assert use_log(want) is log
                assert surface["type"] == "surface" and contour["type"] == "contour"
                for trace in (surface, contour):
                    z = decode(trace["z"]).T  # plotly: z[y][x]; stored: [x][y]
                    np.testing.assert_allclose(
                        z, np.log10(want) if log else want, rtol=1e-6, equal_nan=True
                    )
                    np.testing.assert_allclose(decode(trace["x"]), record.arrays["x"], rtol=1e-6)
                    np.testing.assert_allclose(decode(trace["y"]), record.arrays["y"], rtol=1e-6)
                    if log:  # the value itself on hover
                        shown = decode(trace["customdata"]).T
                        np.testing.assert_allclose(shown, want, rtol=1e-6, equal_nan=True)
                        assert "customdata" in trace["hovertemplate"]
            assert np.isnan(decode(fig["data"][0]["z"])).any() == (run == "adam-random-seed0")
            path = fig["data"][4]
            np.testing.assert_allclose(decode(path["x"]), COORDS[:, 0], rtol=1e-6)
            np.testing.assert_allclose(decode(path["y"]), COORDS[:, 1], rtol=1e-6)
            np.testing.assert_allclose(decode(path["customdata"]), STEPS)
            assert run in fig["layout"]["title"]["text"]
    # the menu shows one metric at a time, trajectory and centre always
    menu = versions["sgd-random-seed0"]["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in menu] == ["train loss", "test loss"]
    assert menu[1]["args"][0]["visible"] == [False, False, True, True, True, True]
    ((_, line),) = found["Surface random_1d"]
    with Store(r.file) as s:
        stored = s.record("sgd-random-seed1", "surfaces", "random_1d").arrays
    np.testing.assert_allclose(decode(line["data"][0]["y"]), stored["train_loss"], rtol=1e-6)


def test_study_figures_show_the_intervals_of_report_json(built):
    _, page, doc = built
    found = figures(page)
    ((_, tau),) = found["Kendall's tau with the gap"]
    rows = {r["measure"]: r for r in doc["rankings"] if r["tau"] is not None}
    seen = set()
    for trace in tau["data"]:
        for i, name in enumerate(trace["y"]):
            r = rows[name]
            seen.add(name)
            assert trace["x"][i] == pytest.approx(r["tau"])
            up, down = trace["error_x"]["array"][i], trace["error_x"]["arrayminus"][i]
            if r["ci"] is None:  # e.g. a constant baseline: no bar
                assert up is None and down is None
            else:
                assert trace["x"][i] + up == pytest.approx(r["ci"][1])
                assert trace["x"][i] - down == pytest.approx(r["ci"][0])
            assert (trace["name"] == "baseline") == r["baseline"]
    assert seen == set(rows)
    # top to bottom in the table's order
    assert tau["layout"]["yaxis"]["categoryarray"][::-1] == [
        r["measure"] for r in doc["rankings"] if r["tau"] is not None
    ]
    ((_, configs),) = found["Configurations"]
    rows = [c for c in doc["configs"] if c["n"]]
    gap = next(t for t in configs["data"] if t["name"] == "gap")
    for c, x, y, up, down in zip(
        rows, gap["x"], gap["y"], gap["error_y"]["array"], gap["error_y"]["arrayminus"], strict=True
    ):
        assert x == c["config"] and y == pytest.approx(c["gap"]["mean"])
        if c["gap"]["ci"]:
            assert (y - down, y + up) == pytest.approx(tuple(c["gap"]["ci"]))
        else:  # one seed: no bar
            assert up is None and down is None and c["n"] == 1
    ((_, gvb),) = found["Good vs bad minima"]
    for trace, key in zip(gvb["data"], ("random_init", "bad_init"), strict=True):
        for g, y, up in zip(doc["good_vs_bad"], trace["y"], trace["error_y"]["array"], strict=True):
            assert y == pytest.approx(g[key]["mean"])
            assert y + up == pytest.approx(g[key]["ci"][1])
    versions = dict(found["Measures against the gap"])
    dist = versions["dist_init"]
    runs = {r["run"]: r for r in doc["runs"]}
    for trace in dist["data"]:
        for text, x, y in zip(trace["text"], trace["x"], trace["y"], strict=True):
            r = runs[text.split(" ")[0]]
            assert (x, y) == pytest.approx((r["measures"]["dist_init"], r["metrics"]["gap"]))
            assert r["included"] is (trace["name"] == "included")


def test_page_is_self_contained_with_plotly_once_and_sortable_tables(built):
    _, page, _ = built
    assert page.count('id="plotly-js"') == 1
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"?https?:", page)
    assert "cdn" not in " ".join(re.findall(r"<script[^>]*>", page)).lower()
    tables = re.findall(r'<div class="table">(.*?)</table>', page, re.S)
    assert tables and all('<table class="sortable">' in t for t in tables)
    for t in tables:
        rows = t.count("<tr>") - 1
        assert ('class="filter"' in t) == (rows >= interactive.FILTER_ROWS)


def test_without_interactive_figures_the_tables_still_sort_and_markdown_is_the_same(
    built, tmp_path
):
    r, _, _ = built
    plain = report(r.file, tmp_path, figures=False, interactive=False, n_boot=200, n_perm=199)
    page = plain.html.read_text("utf-8")
    assert 'id="plotly-js"' not in page and 'class="figure-slot"' not in page
    assert '<table class="sortable">' in page and "sortBy" in page
    strip = lambda md: re.sub(r"written [^.]*\.", "", md)  # noqa: E731
    assert strip(plain.markdown.read_text("utf-8")) == strip(r.markdown.read_text("utf-8"))
    assert "figure-slot" not in r.markdown.read_text("utf-8")


def test_without_plotly_the_report_is_static_and_says_why(built, tmp_path, monkeypatch):
    r, _, _ = built
    note = "interactive figures unavailable: No module named 'plotly'"
    monkeypatch.setattr(interactive, "UNAVAILABLE", note)
    monkeypatch.setattr(interactive, "get_plotlyjs", None)
    static = report(r.file, tmp_path, figures=False, n_boot=200, n_perm=199)
    page = static.html.read_text("utf-8")
    assert 'id="plotly-js"' not in page and 'class="figure-slot"' not in page
    assert note in static.notes and html.escape(note) in page


def test_figure_json_is_safe_in_a_script_and_refuses_nan():
    text = interactive.figure_json({"data": [{"type": "scatter", "name": "</script><b>"}]})
    assert "</script" not in text and "<" not in text
    assert json.loads(text)["data"][0]["name"] == "</script><b>"
    a = interactive.typed(np.array([[1.0, np.nan], [3.0, 4.0]]))
    assert a["shape"] == "2, 2"
    np.testing.assert_array_equal(decode(a), [[1.0, np.nan], [3.0, 4.0]])
    with pytest.raises(ValueError):
        interactive.figure_json({"data": [{"x": [float("nan")]}]})
    assert interactive.text("a<b&c") == "a&lt;b&amp;c"  # plotly reads tags and entities
