"""The consumer install pinned to its floors: every ``[project].dependencies`` entry of pyproject.toml as ``name==floor``.

``python scripts/floors.py`` prints one requirement a line (``numpy>=1.26`` -> ``numpy==1.26``;
``usearch>=2.26,<3`` -> ``usearch==2.26``; an exact pin stays). A dependency without a ``>=`` or
``==`` floor is an error naming it: every floor is meant to be checked by scripts/check_floors.sh.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floor_pins(pyproject: Path = PYPROJECT) -> list[str]:
    """``name[extras]==floor`` for every dependency of ``[project].dependencies`` in ``pyproject``."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for req in deps:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*(.*)$", req)
        name, spec = m.group(1), m.group(2)
        floor = re.search(r"(?:>=|==)\s*([0-9][^,;\s]*)", spec)
        if floor is None:
            raise SystemExit(f"{pyproject}: [project].dependencies entry {req!r} has no '>=' or '==' floor")
        out.append(f"{name}=={floor.group(1)}")
    return out


if __name__ == "__main__":
    print("\n".join(floor_pins(Path(sys.argv[1]) if len(sys.argv) > 1 else PYPROJECT)))
