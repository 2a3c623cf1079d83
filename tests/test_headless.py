"""core/ and nodes/ must import and run with Qt unavailable (DESIGN.md layers)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_QT_AND_IMPORT_EVERYTHING = textwrap.dedent("""
    import importlib, pkgutil, sys

    QT = ("PySide6", "PySide2", "PyQt5", "PyQt6", "shiboken6", "NodeGraphQt", "qtpy")

    class BlockQt:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in QT:
                raise ImportError(f"Qt is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockQt())
    imported = []
    for package_name in ("core", "nodes"):
        package = importlib.import_module(package_name)
        imported.append(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            importlib.import_module(info.name)
            imported.append(info.name)

    from app.cli.main import main
    from nodes import default_registry
    registry, _ = default_registry()
    assert len(registry) > 0
    code = main(["run", sys.argv[1], "--out", sys.argv[2], "--set", "blur.steps=2"])
    assert code == 0, code
    leaked = [m for m in sys.modules if m.split(".")[0] in QT]
    assert not leaked, leaked
    print(len(imported), "modules")
""")


def test_core_and_nodes_import_and_run_without_qt(tmp_path):
    workflow = ROOT / "workflows" / "heat_diffusion.json"
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_QT_AND_IMPORT_EVERYTHING, str(workflow), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    count = int(done.stdout.split()[-2])
    assert count >= 15, done.stdout  # the walk really visited the packages
