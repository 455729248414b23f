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


def test_a_planted_violation_breaks_the_contracts(tmp_path):
    """The contracts bite: a drift module importing the judge, and a serving module importing storage, are both reported."""
    import os
    import shutil

    shutil.copytree(ROOT / "include" / "modelwatch", tmp_path / "include" / "modelwatch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "include" / "modelwatch" / "drift" / "univariate.py", "a") as f:
        f.write("\nimport modelwatch.judge.stage  # planted\n")
    with open(tmp_path / "include" / "modelwatch" / "serving" / "layout.py", "a") as f:
        f.write("\nimport modelwatch.storage.s3  # planted\n")
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "include")}
    result = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "modelwatch.drift.univariate -> modelwatch.judge.stage" in result.stdout
    assert "modelwatch.serving.layout -> modelwatch.storage.s3" in result.stdout
