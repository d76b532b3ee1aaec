"""The shape of the code, checked by tools: layers and no cycles (import-linter), lint (ruff), module sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_layer_and_acyclic_contracts_hold():
    """pyproject.toml's import-linter contracts: interfaces -> engine -> use cases -> house -> rules -> parts."""
    result = _run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_import_cycle_anywhere_not_even_inside_functions():
    """Every import counts here, at module level or inside a function, between any two modules."""
    graph = grimp.build_graph("vultus", exclude_type_checking_imports=True, cache_dir=None)
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = []
    for module in sorted(imports):
        for imported in sorted(imports[module]):
            # A cycle through this edge: a way back from the imported module to the importer.
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert not cycles, f"import cycles through: {cycles[:10]}"


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_over_600_lines_and_the_engine_is_wiring():
    sizes = {p.relative_to(REPO / "src"): len(p.read_text().splitlines()) for p in (REPO / "src" / "vultus").rglob("*.py")}
    assert not {str(p): n for p, n in sizes.items() if n > 600}
    assert sizes[Path("vultus/engine.py")] <= 360
