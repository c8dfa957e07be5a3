"""Every module and every public function, class and method of the package says what it does."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "geocodec"


def _missing() -> list[str]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        tree = ast.parse(p.read_text(), filename=str(p))
        rel = p.relative_to(PKG.parent)
        if p.name != "__main__.py" and not ast.get_docstring(tree):
            out.append(f"{rel}: module")
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if not ast.get_docstring(node):
                    out.append(f"{rel}:{node.lineno} {node.name}")
                if isinstance(node, ast.ClassDef):
                    out += [f"{rel}:{m.lineno} {node.name}.{m.name}" for m in node.body
                            if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")
                            and not ast.get_docstring(m)]
    return out


def test_public_names_have_docstrings():
    missing = _missing()
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)
