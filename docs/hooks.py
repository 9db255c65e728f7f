"""MkDocs hooks: the pages generated from the code at build time, so that they cannot drift.

- ``<!-- generated: cli -->`` in a page becomes the ``--help`` text of ``landscape`` and of
  every subcommand (and sub-subcommand), taken from the command's own parser;
- ``<!-- generated: sweep-spec -->`` and ``<!-- generated: run-spec -->`` become the tables
  and keys of the sweep spec and of the run spec, from their JSON schemas
  (:func:`landscape.sweep.spec.schema`, :func:`landscape.train.schema.schema`);
- ``<!-- generated: gallery -->`` becomes the gallery: for each script of ``examples/``, its
  docstring, the figure it wrote into ``docs/gallery/`` (``make docs`` runs them first) and
  its source.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from landscape.cli.main import _parser
from landscape.sweep.spec import schema as sweep_schema
from landscape.train.schema import schema as run_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GALLERY = ROOT / "docs" / "gallery"
ORDER = ("own_model", "surface_trajectory", "good_vs_bad_minima", "read_with_h5py")
"""The gallery's order (any other example follows, by name)."""
MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")
ROLE = re.compile(r":(?:py:)?[a-z]+:`~?([^`]+)`")


# ------------------------------------------------------------------------------ the CLI
def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _help(parser: argparse.ArgumentParser) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        parser.print_help()
    return out.getvalue().rstrip()


def cli_markdown() -> str:
    """The help of the command and of each subcommand, as Markdown sections."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; a fixed width here
    root = _parser()
    parts = ["## `landscape`", "", "```text", _help(root), "```", ""]

    def walk(parser: argparse.ArgumentParser, prefix: str, depth: int) -> None:
        sub = _subparsers(parser)
        if sub is None:
            return
        for name, child in sub.choices.items():
            command = f"{prefix} {name}"
            parts.extend([f"{'#' * depth} `{command}`", "", "```text", _help(child), "```", ""])
            walk(child, command, min(depth + 1, 4))

    walk(root, "landscape", 2)
    return "\n".join(parts)


# ---------------------------------------------------------------------------- the specs
def _text(s: str) -> str:
    s = ROLE.sub(lambda m: f"`{m[1]}`", s.replace("``", "`"))
    return s.replace("|", "\\|").replace("\n\n", " ").replace("\n", " ").strip()


def _type(prop: dict[str, Any], anchor: str) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor}-{name.lower()})"
    if "anyOf" in prop:
        return " or ".join(_type(p, anchor) for p in prop["anyOf"] if p.get("type") != "null")
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and prop.get("items"):
        return f"array of {_type(prop['items'], anchor)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"table of {_type(prop['additionalProperties'], anchor)}"
    return str(kind)


def _bounds(prop: dict[str, Any]) -> str:
    marks = {
        "minimum": ">=",
        "exclusiveMinimum": ">",
        "maximum": "<=",
        "exclusiveMaximum": "<",
        "minLength": "length >=",
        "minItems": "items >=",
        "maxItems": "items <=",
    }
    found = [f"{sign} {prop[k]}" for k, sign in marks.items() if k in prop]
    if "pattern" in prop:
        found.append(f"matches `{prop['pattern']}`")
    return ", ".join(found)


def _table(obj: dict[str, Any], anchor: str) -> list[str]:
    props = obj.get("properties", {})
    required = set(obj.get("required", ()))
    lines = ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
    for key, prop in props.items():
        default = "required" if key in required else ""
        if "default" in prop:
            default = f"`{json.dumps(prop['default'])}`"
        lines.append(
            f"| `{key}` | {_type(prop, anchor)} | {default} | {_bounds(prop)} | "
            f"{_text(prop.get('description', ''))} |"
        )
    extra = obj.get("additionalProperties")
    if extra is True or isinstance(extra, dict) and not props:
        lines.append("| *other keys* | any |  |  | passed on as they are |")
    return lines


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else []
        for value in node.values():
            out.extend(_refs(value))
        return out
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def spec_markdown(schema: dict[str, Any], anchor: str, heading: str) -> str:
    """The tables of a spec schema: the top level, then every table in the order it appears."""
    defs = schema.get("$defs", {})
    parts = [f"{heading} Top level", "", _text(schema.get("description", "")), ""]
    parts += _table(schema, anchor) + [""]
    order: list[str] = []
    queue = _refs(schema.get("properties", {}))
    while queue:
        name = queue.pop(0)
        if name in order or name not in defs:
            continue
        order.append(name)
        queue.extend(_refs(defs[name].get("properties", {})))
        queue.extend(_refs(defs[name].get("additionalProperties", {})))
    for name in order:
        d = defs[name]
        title = f"{heading} {name} {{ #{anchor}-{name.lower()} }}"
        parts += [title, "", _text(d.get("description", "")), ""]
        parts += _table(d, anchor) + [""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- gallery
def _indented_to_fenced(body: str) -> str:
    """The literal blocks of reST (``::`` then an indented block) as fenced bash blocks."""

    def fence(match: re.Match) -> str:
        code = re.sub(r"^    ", "", match[1], flags=re.M).rstrip()
        return f"\n\n```bash\n{code}\n```\n"

    return re.sub(r"\n\n((?:    .*\n?)+)", fence, body.replace("::\n", ":\n"))


def examples() -> list[Path]:
    """The example scripts, those of :data:`ORDER` first."""
    scripts = sorted(EXAMPLES.glob("*.py"))
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(scripts, key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))


def gallery_markdown() -> str:
    """Each example: its docstring, its figure and its source."""
    parts = []
    for script in examples():
        doc = ast.get_docstring(ast.parse(script.read_text())) or script.stem
        title, _, body = doc.partition("\n")
        body = ROLE.sub(lambda m: f"`{m[1]}`", _indented_to_fenced(body.replace("``", "`")))
        title = title.rstrip(".")
        parts += [f"## {title}", "", body.strip(), ""]
        parts += [f"![{title}](gallery/{script.stem}.png)", ""]
        parts += [
            f'??? example "`examples/{script.name}`"',
            "",
            "    ```python",
            f'    --8<-- "examples/{script.name}"',
            "    ```",
            "",
        ]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill in the generated parts of a page."""

    def fill(match: re.Match) -> str:
        what = match[1]
        if what == "cli":
            return cli_markdown()
        if what == "sweep-spec":
            return spec_markdown(sweep_schema(), "sweep", "###")
        if what == "run-spec":
            return spec_markdown(run_schema(), "run", "###")
        if what == "gallery":
            return gallery_markdown()
        raise ValueError(f"docs: unknown generated part {what!r}")

    return MARKER.sub(fill, markdown)
