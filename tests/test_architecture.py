"""The package's shape: the import-linter contracts of pyproject.toml hold, and no modules import each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("ragmodels", exclude_type_checking_imports=True, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module != imported and graph.chain_exists(importer=imported, imported=module, as_packages=False):
                cycles.append((module, imported))
    assert not cycles, f"modules that import each other (directly or through others): {cycles[:10]}"


def test_argparse_only_in_the_command_line_layer():
    """Library modules take arguments, not command lines: argparse belongs to the CLI and its subcommands."""
    cli_level = {"ragmodels.cli", "ragmodels.answering", "ragmodels.argtypes"}
    graph = grimp.build_graph("ragmodels", include_external_packages=True, cache_dir=None)
    users = {m for m in graph.find_modules_that_directly_import("argparse") if not m.startswith("ragmodels.commands")}
    assert "ragmodels.cli" in users  # the check sees argparse imports at all
    assert users <= cli_level, sorted(users - cli_level)


def test_the_marginal_is_computed_in_one_module_per_framework():
    """logsumexp (the marginal over passages, the doc posterior) is called only by ragmodels.marginal (PyTorch)
    and tf/marginalization.py (TensorFlow); docstrings may still show the formula."""
    import ast

    src = ROOT / "src" / "ragmodels"
    allowed = {src / "marginal" / "__init__.py", src / "marginal" / "fused.py", src / "tf" / "marginalization.py"}
    callers = set()
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        if any("logsumexp" in name or "reduce_logsumexp" in name for name in names):
            callers.add(path)
    assert callers and callers <= allowed, sorted(str(p.relative_to(src)) for p in callers - allowed)
