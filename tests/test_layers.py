"""The layers of docs/architecture.md, checked against rtasr's imports: each layer is a folder
(or a few top-level modules), the core stays sans-I/O and never imports the engine, the engine
never imports a transport, the server never imports the evaluation code, and modules inside the
package import each other relatively (an absolute `rtasr.` import would tie a module to the
installed copy, not its own tree)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import rtasr

PACKAGE = Path(rtasr.__file__).parent
TABLE = Path(__file__).parent.parent / "docs" / "architecture.md"
LAYERS = ["base", "core", "dialects", "engine", "server", "eval", "front ends"]


def layers() -> dict[str, tuple[set[str], set[str], set[str]]]:
    """layer -> (its folders `x/` and top-level modules, the layers it may import from, the
    packages it never imports)."""
    found = {}
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or "`" not in cells[1]:
            continue
        name, places, allowed, never = cells
        found[name] = (set(re.findall(r"`([\w/]+)`", places)),
                       {a.strip() for a in allowed.split(",") if a.strip()}, set(never.split()))
    return found


def modules() -> dict[tuple[str, ...], Path]:
    """Every module of the package, as its dotted parts under rtasr (a package's __init__ is
    the package's own parts)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[parts[:-1] if parts[-1] == "__init__" else parts] = path
    return found


def place(parts: tuple[str, ...]) -> str:
    """Where a module is placed in the table: its top folder `x/`, or its own name at the top."""
    if not parts:
        return "__init__"
    return f"{parts[0]}/" if (PACKAGE / parts[0]).is_dir() else parts[0]


def imports(parts: tuple[str, ...], path: Path) -> tuple[set[tuple[str, ...]], set[str], list[str]]:
    """A module's imports: rtasr's own modules (resolved from relative imports), other
    top-level packages, and any absolute import of rtasr itself."""
    own: set[tuple[str, ...]] = set()
    other: set[str] = set()
    absolute: list[str] = []
    package = parts if path.name == "__init__.py" else parts[:-1]
    known = modules()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            target = base + tuple(node.module.split(".")) if node.module else base
            if node.module:
                own.add(target)
            else:  # `from . import x`: x a module (or package), or a name of the package
                own.update((*target, a.name) if (*target, a.name) in known else target
                           for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            other.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            other.update(a.name.split(".")[0] for a in node.names)
    if "rtasr" in other:
        absolute.append(".".join(parts))
    return own, other - {"rtasr"}, absolute


def test_the_table_is_read() -> None:
    table = layers()
    assert list(table) == LAYERS
    assert "core/" in table["core"][0] and "asyncio" in table["core"][2]


def test_every_module_is_in_exactly_one_layer() -> None:
    placed = [p for places, _, _ in layers().values() for p in places]
    wanted = {place(parts) for parts in modules()}
    assert sorted(placed) == sorted(set(placed)), "a module or folder placed twice"
    assert set(placed) == wanted, (f"not placed in docs/architecture.md: "
                                   f"{sorted(wanted - set(placed))}; gone: "
                                   f"{sorted(set(placed) - wanted)}")


def test_every_layer_folder_is_a_package() -> None:
    """setuptools finds packages by their __init__.py: a folder without one would be left out
    of the wheel (and so of the Docker image) while tests from a checkout still pass."""
    folders = {p.parent for p in PACKAGE.rglob("*.py")} - {PACKAGE}
    assert all((f / "__init__.py").is_file() for f in folders), sorted(
        str(f) for f in folders if not (f / "__init__.py").is_file())


def test_modules_import_each_other_relatively() -> None:
    absolute = [name for parts, path in modules().items()
                for name in imports(parts, path)[2]]
    assert not absolute, f"absolute `rtasr.` imports inside the package: {absolute}"


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_what_its_row_allows(layer: str) -> None:
    table = layers()
    owner = {p: name for name, (places, _, _) in table.items() for p in places}
    _, allowed, never = table[layer]
    wrong = []
    for parts, path in sorted(modules().items()):
        if owner.get(place(parts)) != layer:
            continue
        name = ".".join(parts) or "rtasr"
        own, other, _ = imports(parts, path)
        wrong += [f"{name} imports {'.'.join(o)} ({owner.get(place(o))})" for o in sorted(own)
                  if owner.get(place(o)) not in allowed]
        wrong += [f"{name} imports {o}" for o in sorted(other & never)]
    assert not wrong, wrong
