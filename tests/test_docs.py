"""The documentation's checks that need no site build (``make docs`` builds it, strictly).

Every public name has a docstring (``docs/check_docstrings.py``, which is shown to catch a
missing one); every package has an API page; the generated pages hold every subcommand and
every key of the specs' schemas.
"""

import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check():
    return _module("check_docstrings")


@pytest.fixture(scope="module")
def hooks():
    return _module("hooks")


def test_every_public_name_has_a_docstring(check):
    assert check.missing() == []


def test_the_check_finds_a_missing_docstring(check, tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            '''
            """A package."""

            from fakepkg.mod import LIMIT, NAMED, Thing, f

            __all__ = ["LIMIT", "NAMED", "Thing", "f", "g", "mod"]


            def g():
                pass
            '''
        )
    )
    (pkg / "mod.py").write_text(
        textwrap.dedent(
            '''
            """A module."""

            __all__ = ["LIMIT", "NAMED", "Thing", "f"]

            LIMIT = 3
            NAMED = 4
            """Documented as an attribute."""


            class Thing:
                pass


            def f():
                """Documented."""
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = check.missing(("fakepkg",), tmp_path)
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "fakepkg"]:
            del sys.modules[name]
    assert [line.split(":")[0] for line in found] == [
        "fakepkg.LIMIT",
        "fakepkg.Thing",
        "fakepkg.g",
        "fakepkg.mod.LIMIT",
        "fakepkg.mod.Thing",
    ]


def test_every_package_has_an_api_page():
    import inspect

    import landscape
    import probes

    rendered = set()
    for page in DOCS.rglob("*.md"):
        rendered.update(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M))
    packages = [
        f"{top.__name__}.{name}"
        for top in (landscape, probes)
        for name in top.__all__
        if inspect.ismodule(getattr(top, name))
        and getattr(top, name).__name__ == f"{top.__name__}.{name}"  # not an alias
    ]
    assert "landscape.engine" in packages and "probes.curvature" in packages
    assert [p for p in packages if p not in rendered] == []


def test_the_cli_page_holds_every_subcommand(hooks):
    text = hooks.cli_markdown()
    for command in ("demo", "train", "info", "import", "probe", "report", "surface", "path"):
        assert f"## `landscape {command}`" in text
        assert f"usage: landscape {command}" in text
    probe = text.split("## `landscape probe`")[1].split("\n## ")[0]
    assert "hessian" in probe and "sharpness" in probe  # what it measures, from its parser


def test_the_spec_pages_hold_every_key(hooks):
    from landscape.sweep.spec import schema as sweep_schema
    from landscape.train.schema import schema as run_schema

    for schema, anchor in ((sweep_schema(), "sweep"), (run_schema(), "run")):
        text = hooks.spec_markdown(schema, anchor, "###")
        for key in schema["properties"]:
            assert f"| `{key}` |" in text
        for name, d in schema.get("$defs", {}).items():
            assert f"#{anchor}-{name.lower()} }}" in text, name
            for key in d.get("properties", {}):
                assert f"| `{key}` |" in text


def test_the_gallery_shows_every_example(hooks):
    text = hooks.gallery_markdown()
    for script in (ROOT / "examples").glob("*.py"):
        assert f"](gallery/{script.stem}.png)" in text
        assert f'--8<-- "examples/{script.name}"' in text


def test_the_spec_examples_are_valid_specs():
    from landscape import sweep

    blocks = re.findall(r"```toml\n(.*?)```", (DOCS / "sweep-spec.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        assert sweep.loads(block).runs


def test_sphinx_roles_become_cross_references():
    import griffe

    roles = _module("griffe_roles")
    loader = griffe.GriffeLoader(
        search_paths=[str(ROOT)], extensions=griffe.load_extensions(roles.SphinxRoles)
    )
    loader.load("landscape")
    doc = loader.modules_collection["landscape"].docstring.value
    assert ":class:`" not in doc and ":mod:`" not in doc
    # ours: a required reference to the canonical path; a module by its own path
    assert '<autoref identifier="landscape.engine.objective.Objective">' in doc
    assert '<autoref identifier="landscape.store">' in doc
    # not ours: optional, no link and no failure when the site does not document it
    text = roles.SphinxRoles()._rewrite(
        loader.modules_collection["landscape"], "see :func:`torch.func.jvp`", loader
    )
    code = "<code>torch.func.jvp()</code>"
    assert text == f'see <autoref identifier="torch.func.jvp" optional>{code}</autoref>'
    block = roles.MATH.sub(lambda m: "<math>", ".. math:: a = b,\n   c = d.\n\nafter\n")
    assert block == "<math>\nafter\n"
