"""The layout keeps its promises: imports inside functions are only for heavy or optional modules
(and say so), and loading the pytest plugin does not load torch."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import energybench

PACKAGE = Path(energybench.__file__).parent
MARKER = re.compile(r"# deferred: (heavy|optional)\b")  # e.g. "# deferred: heavy (torch)"


def function_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, text) of every import statement inside a function body."""
    found = []
    lines = source.splitlines()
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.append((node.lineno, lines[node.lineno - 1]))
    return found


def unmarked_imports(source: str) -> list[tuple[int, str]]:
    return [(line, text) for line, text in function_level_imports(source) if not MARKER.search(text)]


def test_every_function_level_import_says_why_it_is_deferred():
    unmarked = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in unmarked_imports(path.read_text())
    ]
    assert not unmarked, "move these to the module top, or mark them '# deferred: heavy|optional':\n" + "\n".join(
        unmarked
    )


def test_the_import_check_catches_an_unmarked_import():
    source = "def f():\n    import json\n    import torch  # deferred: heavy\n    import x  # deferred\n"
    assert unmarked_imports(source) == [(2, "    import json"), (4, "    import x  # deferred")]


def test_loading_the_plugin_does_not_import_torch_or_the_report_stack():
    code = (
        "import sys, energybench.harness.plugin; "
        "print(','.join(m for m in ('torch', 'transformers', 'pandas', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"importing the plugin loaded: {done.stdout.strip()}"


def deferred_heavy_targets(source: str) -> list[tuple[int, str, list[str]]]:
    """(line, text, modules) of every ``# deferred: heavy`` import: the modules it loads (for
    ``from package import name``, the submodule where ``name`` is one, else the package)."""
    found = []
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and "# deferred: heavy" in lines[node.lineno - 1]:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                modules = [submodule_or_package(node.module or "", alias.name) for alias in node.names]
            found.append((node.lineno, lines[node.lineno - 1], modules))
    return found


def submodule_or_package(package: str, name: str) -> str:
    try:
        return f"{package}.{name}" if importlib.util.find_spec(f"{package}.{name}") is not None else package
    except ModuleNotFoundError:
        return package


def test_a_deferred_heavy_import_is_not_already_loaded_by_the_plugin():
    """Heavy means the plugin module does not load it: a module that loading the plugin already
    imported costs nothing at the top, so it belongs there."""
    code = "import sys, energybench.harness.plugin; print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    light = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()} ({', '.join(m for m in modules if m in loaded)})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text, modules in deferred_heavy_targets(path.read_text())
        if any(m in loaded for m in modules)
    ]
    assert not light, "not heavy (the plugin already loads it): import at the module top:\n" + "\n".join(light)


def test_the_heavy_check_reads_submodules_and_packages():
    source = (
        "def f():\n    from energybench import catalog  # deferred: heavy\n"
        "    from energybench.catalog import METRICS  # deferred: heavy\n    import torch  # deferred: heavy\n"
    )
    found = [modules for _, _, modules in deferred_heavy_targets(source)]
    assert found == [["energybench.catalog"], ["energybench.catalog"], ["torch"]]


def test_no_function_is_longer_than_a_screen():
    """Functions fit on a screen (60 lines): a longer one is doing more than one job."""
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long
