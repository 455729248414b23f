"""The layers of include/modelwatch hold: import-linter's contracts ([tool.importlinter] in pyproject.toml) and no import cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_library_module_is_much_over_500_lines():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "include" / "modelwatch").rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 550} == {}
