"""The layers of docs/architecture.md, checked against rtasr's imports: the core stays sans-I/O
and never imports the engine, the engine never imports a transport, and every module is placed
in exactly one layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import rtasr

PACKAGE = Path(rtasr.__file__).parent
TABLE = Path(__file__).parent.parent / "docs" / "architecture.md"


def layers() -> dict[str, tuple[set[str], set[str], set[str]]]:
    """layer -> (its modules, the layers it may import from, the packages it never imports)."""
    found = {}
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or "`" not in cells[1]:
            continue
        name, modules, allowed, never = cells
        found[name] = (set(re.findall(r"`([\w]+)`", modules)),
                       {a.strip() for a in allowed.split(",") if a.strip()}, set(never.split()))
    return found


def imports(path: Path) -> tuple[set[str], set[str]]:
    """A module's imports: rtasr's own modules (relative imports) and other top-level packages."""
    own, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            own.update([node.module.split(".")[0]] if node.module  # `from . import x`:
                       else [a.name for a in node.names  # x a module, not __version__
                             if (PACKAGE / f"{a.name}.py").is_file()])
        elif isinstance(node, ast.ImportFrom) and node.module:
            other.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            other.update(a.name.split(".")[0] for a in node.names)
    return own, other


def test_the_table_is_read() -> None:
    table = layers()
    assert set(table) == {"core", "dialects", "engine", "transports", "front ends"}
    assert "session" in table["core"][0] and "asyncio" in table["core"][2]


def test_every_module_is_in_exactly_one_layer() -> None:
    placed = [m for modules, _, _ in layers().values() for m in modules]
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert sorted(placed) == sorted(set(placed)), "a module placed twice"
    assert set(placed) == modules, (f"not placed in docs/architecture.md: "
                                    f"{sorted(modules - set(placed))}; gone: "
                                    f"{sorted(set(placed) - modules)}")


@pytest.mark.parametrize("layer", ["core", "dialects", "engine", "transports", "front ends"])
def test_a_layer_imports_only_what_its_row_allows(layer: str) -> None:
    table = layers()
    owner = {m: name for name, (modules, _, _) in table.items() for m in modules}
    modules, allowed, never = table[layer]
    wrong = []
    for module in sorted(modules):
        own, other = imports(PACKAGE / f"{module}.py")
        wrong += [f"{module} imports {o} ({owner.get(o)})" for o in sorted(own)
                  if owner.get(o) not in allowed]
        wrong += [f"{module} imports {o}" for o in sorted(other & never)]
    assert not wrong, wrong
