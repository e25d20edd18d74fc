"""The chapters teach only public API: no `._private` access into densenet_edu or torchvision."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

from book_build import ROOT, notebooks

WATCHED = ("densenet_edu", "torchvision")


def _is_private(name: str) -> bool:
    """`_x` and `__x` are private; dunders such as `__init__` are part of Python's protocol."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _python_source(cell_source: str) -> str:
    """A code cell without IPython magics and shell escapes, which `ast` cannot parse."""
    return "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in cell_source.splitlines())


def private_uses(sources: list[str]) -> list[str]:
    """Every private name reached through a module of densenet_edu or torchvision.

    `sources` are a notebook's code cells: a module imported in one cell is watched in all.
    """
    tree = ast.Module(body=[], type_ignores=[])
    for source in sources:
        tree.body += ast.parse(_python_source(source)).body
    aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in WATCHED:
                    aliases.add((alias.asname or alias.name).split(".")[0])
                    found += [alias.name for part in alias.name.split(".") if _is_private(part)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in WATCHED:
            module = node.module or ""
            if any(_is_private(part) for part in module.split(".")):
                found.append(module)
            for alias in node.names:
                aliases.add(alias.asname or alias.name)
                if _is_private(alias.name):
                    found.append(f"{module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                found.append(f"{ast.unparse(node)}")
    return found


def test_the_scanner_finds_private_access_and_allows_public_and_dunders():
    cells = [
        "import densenet_edu as de\nimport torchvision\nfrom densenet_edu import train as tr\n"
        "%pip install nothing\n"
        "de.fast._FastDenseBlock\ntorchvision.models.densenet._load_state_dict\n"
        "tr._Step.__call__\nde.DenseNet.__init__\nde.count_macs\nx = object()\nx._private\n"
        "from densenet_edu.fast import _helper\n",
        "de.fast._NextCell",
    ]
    assert sorted(private_uses(cells)) == [
        "de.fast._FastDenseBlock",
        "de.fast._NextCell",
        "densenet_edu.fast._helper",
        "torchvision.models.densenet._load_state_dict",
        "tr._Step",
    ]


@pytest.mark.parametrize("page", notebooks())
def test_no_chapter_reaches_into_private_names(page):
    nb = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    found = private_uses([cell.source for cell in nb.cells if cell.cell_type == "code"])
    assert found == [], f"{page} uses private names: {found}"
