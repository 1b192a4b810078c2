"""Messages show values, never their placeholders: no plain string in flowcheck/ holds a `{name}` meant for an f-string.

The fault this guards against: an implicitly concatenated message whose second piece lost its `f` prefix
(``f"... in {path} ..." "... into {path}/videos"``), so users read a literal ``{path}``. Every module of the
package is tokenized; a plain (non-f) string literal containing ``{identifier}``, ``{identifier!r}``,
``{identifier:spec}``, ``{a.b}`` or ``{a[0]}`` fails the test, unless it is a docstring (or another bare string
statement) or a template used with ``.format(`` / ``.format_map(`` (directly, or through the name it is
assigned to). Doubled braces (``{{ x }}``, Jinja) are not placeholders.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowcheck.data import tomato
from flowcheck.data.report import DataError

PACKAGE = Path(__file__).resolve().parents[1] / "flowcheck"

PLACEHOLDER = re.compile(r"(?<!\{)\{[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]{}]*\])*(?:![rsa])?(?::[^{}]*)?\}(?!\})")
"""A replacement field naming a variable: ``{x}``, ``{x!r}``, ``{x:>4}``, ``{x.y}``, ``{x[0]}``."""

Position = tuple[int, int]
Extent = tuple[Position, Position]


def _extent(node: ast.AST) -> Extent:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


def _receiver_name(node: ast.AST) -> str | None:
    """The name a ``.format`` receiver is reached through: ``T``, ``self.T``, ``T[k]`` -> ``T``."""
    while isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def allowed_extents(tree: ast.Module) -> list[Extent]:
    """Source extents whose strings may hold placeholders: bare string statements (docstrings) and
    `.format` templates (the receiver itself, or the value assigned to the name it is reached through)."""
    extents: list[Extent] = []
    template_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            extents.append(_extent(node.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("format", "format_map")
        ):
            extents.append(_extent(node.func.value))
            name = _receiver_name(node.func.value)
            if name is not None:
                template_names.add(name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(_receiver_name(t) in template_names for t in targets):
            extents.append(_extent(value))
    return extents


def _inside(start: Position, end: Position, extents: list[Extent]) -> bool:
    return any(lo <= start and end <= hi for lo, hi in extents)


def plain_string_placeholders(source: str) -> Iterator[tuple[int, str]]:
    """(line, placeholder) of every placeholder in a plain string literal of `source` outside the allowed extents."""
    extents = allowed_extents(ast.parse(source))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.STRING:  # f-strings are STRING tokens before Python 3.12, FSTRING_* after
            continue
        prefix = token.string[: len(token.string) - len(token.string.lstrip("rRbBuUfF"))].lower()
        if "f" in prefix or "b" in prefix or _inside(token.start, token.end, extents):
            continue
        value = ast.literal_eval(token.string)
        for match in PLACEHOLDER.finditer(value):
            yield token.start[0], match.group(0)


def test_the_checker_finds_a_lost_f_prefix_and_spares_templates_and_docstrings():
    source = '''
"""Module docstring with {name}."""
TEMPLATE = "hello {name}"
OTHER = {"k": "{x!r} and {y:>3}"}
def f(path, x):
    """Returns {path}."""
    a = f"in {path} " "into {path}/videos"
    b = "{{ jinja }} {0} { not a name } {}"
    c = TEMPLATE.format(name=x) + "{a.b}"
    d = OTHER["k"].format(x=1, y=2)
    e = f"{{literal}}"
    return "{x[0]}".format(x=[1]), a, b, c, d, e
'''
    assert list(plain_string_placeholders(source)) == [(7, "{path}"), (9, "{a.b}")]


def test_no_plain_string_in_the_package_holds_a_placeholder():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {placeholder}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, placeholder in plain_string_placeholders(path.read_text())
    ]
    assert not found, (
        "plain strings with f-string placeholders (users would see the braces; add the missing f prefix, or "
        "use the string with .format): " + "; ".join(found)
    )


def test_tomato_snapshot_without_videos_names_the_real_folder(tmp_path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    with pytest.raises(DataError) as caught:
        tomato.fetch(tmp_path / "cache", snapshot=lambda **_: str(snapshot))
    message = str(caught.value)
    assert "{" not in message
    assert f"the {tomato.HUB_ID} snapshot in {snapshot} has no videos/ folder" in message
    assert message.endswith(f"into {snapshot / 'videos'}")
