"""Import contracts, read from the source (AST) of every module, so a violation fails before it ships.

1. ``quant_batch`` outside ``quant_batch/flows/`` never imports Prefect at module level: the
   library runs without a Prefect server and ``import quant_batch.<x>`` stays light. Imports inside
   a function are allowed only where listed in ``LAZY_PREFECT`` with the reason.
2. The store is the bottom of the pipeline: ``quant_batch/store/`` never imports a stage
   (``corpus``, ``embed``, ``render``, ``enrich``, ``query``, ``flows``, ``cli``), at any level.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "quant_batch"
STAGES = ("corpus", "embed", "render", "enrich", "query", "flows", "cli")

# module -> why it may import prefect inside a function
LAZY_PREFECT = {
    "quant_batch/client/settings.py": "reads the API key from a Prefect Secret block when api.secret_block is set",
    "quant_batch/runs/runner.py": "asks prefect.settings whether a Prefect API is configured, only when a file could set it",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _imports(tree: ast.AST) -> Iterator[tuple[str, bool, int]]:
    """(imported module, at module level, line) for every import statement."""
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) not in nested, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, id(node) not in nested, node.lineno
            for alias in node.names:  # ``from quant_batch import embed`` imports a stage too
                yield f"{node.module}.{alias.name}", id(node) not in nested, node.lineno


def _parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_prefect(name: str) -> bool:
    """Prefect itself, its integrations, or our flows package (which imports Prefect at the top)."""
    return name in ("prefect", "quant_batch.flows") or name.startswith(("prefect.", "prefect_", "quant_batch.flows."))


def test_the_walk_sees_every_kind_of_import():
    tree = ast.parse(
        "import prefect\nfrom prefect.blocks import Secret\n"
        "def f():\n    import prefect_dask\n    from quant_batch import embed\n"
    )
    found = {(name, top) for name, top, _ in _imports(tree)}
    assert ("prefect", True) in found and ("prefect.blocks", True) in found
    assert ("prefect_dask", False) in found and ("quant_batch.embed", False) in found


@pytest.mark.parametrize("path", [p for p in _modules() if "flows" not in p.relative_to(PACKAGE).parts], ids=_rel)
def test_library_never_imports_prefect_at_module_level(path):
    rel = _rel(path)
    for name, top, line in _imports(_parsed(path)):
        if not _is_prefect(name):
            continue
        assert not top, f"{rel}:{line}: module-level import of {name}; import it inside the function that needs it"
        if name.startswith("quant_batch.flows"):
            continue  # the CLI hands a run over to the flows from inside its commands
        assert rel in LAZY_PREFECT, (
            f"{rel}:{line}: imports {name}; only flows/ may (or add it to LAZY_PREFECT with why)"
        )


@pytest.mark.parametrize("path", sorted((PACKAGE / "store").rglob("*.py")), ids=_rel)
def test_store_never_imports_a_stage(path):
    rel = _rel(path)
    for name, _, line in _imports(_parsed(path)):
        parts = name.split(".")
        if parts[0] == "quant_batch" and len(parts) > 1:
            assert parts[1] not in STAGES, (
                f"{rel}:{line}: the store imports {name}; stages import the store, not the reverse"
            )


def test_lazy_prefect_list_is_current():
    """Every LAZY_PREFECT entry still imports Prefect, so the allow-list cannot outlive its reason."""
    for rel in LAZY_PREFECT:
        names = [n for n, _, _ in _imports(_parsed(PACKAGE.parent / rel))]
        assert any(n == "prefect" or n.startswith("prefect.") for n in names), (
            f"{rel} no longer imports prefect; drop it from LAZY_PREFECT"
        )


def _loaded_after(code: str, names: tuple[str, ...]) -> set[str]:
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint(' '.join(n for n in {names!r} if n in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_an_embed_run_loads_nothing_it_does_not_need_before_its_first_call():
    # the CLI's own import stays light (and loads no pyarrow, so quant_batch.allocators can still
    # choose Arrow's pool); an embed run's modules load no image library
    heavy = ("pyarrow", "duckdb", "prefect", "PIL", "numpy")
    assert _loaded_after("import quant_batch.cli", heavy) == set()
    embed_path = "import quant_batch.cli, quant_batch.api, quant_batch.embed.run, quant_batch.client.factory"
    assert "PIL" not in _loaded_after(embed_path, heavy)
