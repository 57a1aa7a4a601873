"""The layout keeps its promises: imports inside functions are only for heavy or optional modules
(and say so), and loading the pytest plugin does not load torch."""

from __future__ import annotations

import ast
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
