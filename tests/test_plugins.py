"""Third-party nodes through the ``diffusion_workbench.nodes`` entry-point group."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from core.plugins import ENTRY_POINT_GROUP, load_plugins
from core.registry import DuplicateNodeType, NodeRegistry
from core.workflow import save
from nodes import builtin_specs, default_registry
from tests.stubs import chain, stub_specs

ROOT = Path(__file__).resolve().parents[1]

PLUGIN_MODULE = '''
from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

def _invert(ctx, image):
    return 1 - image

INVERT = NodeSpec("acme.invert", "Invert", "acme", _invert,
                  inputs=(Input("image", PortType.IMAGE),), outputs=(Output("image", PortType.IMAGE),))
NODES = [INVERT]

def register(registry):
    registry.register(NodeSpec("acme.twice", "Twice", "acme", lambda ctx, image: image * 2,
                               inputs=(Input("image", PortType.IMAGE),),
                               outputs=(Output("image", PortType.IMAGE),)))

CLASH = [NodeSpec("acme.fresh", "Fresh", "acme", _invert),
         NodeSpec("image.pattern", "Clash", "acme", _invert)]
NOT_SPECS = [42]
'''


def make_distribution(folder: Path, entries: dict[str, str], module: str = PLUGIN_MODULE) -> Path:
    """A real installed distribution: a module plus a .dist-info with entry points."""
    (folder / "acme_nodes.py").write_text(module)
    (folder / "acme_broken.py").write_text("raise ImportError('acme needs a library you lack')\n")
    info = folder / "acme_nodes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nodes\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
    return folder


def entry(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("acme_nodes", "acme_broken"):
        sys.modules.pop(name, None)


def test_plugins_are_discovered_through_installed_entry_points(plugin_path):
    make_distribution(plugin_path, {"invert": "acme_nodes:NODES", "twice": "acme_nodes:register"})
    registry, problems = default_registry()
    assert problems == []
    assert registry.get("acme.invert").title == "Invert"
    assert registry.get("acme.twice").title == "Twice"
    assert registry.source("acme.invert") == "plugin 'invert'"
    assert registry.get("image.pattern") is not None, "built-ins are still there"


def test_a_broken_plugin_is_reported_and_skipped(plugin_path, caplog):
    make_distribution(plugin_path, {})
    registry = NodeRegistry(builtin_specs())
    problems = load_plugins(registry, [
        entry("broken", "acme_broken:NODES"),
        entry("missing", "acme_nowhere:NODES"),
        entry("good", "acme_nodes:INVERT"),
    ])
    assert [p.plugin for p in problems] == ["broken", "missing"]
    assert "acme needs a library you lack" in str(problems[0])
    assert "acme.invert" in registry, "a good plugin after a broken one still loads"
    assert "plugin 'broken'" in caplog.text


def test_a_plugin_that_clashes_registers_nothing(plugin_path):
    make_distribution(plugin_path, {})
    registry = NodeRegistry(builtin_specs())
    before = len(registry)
    problems = load_plugins(registry, [entry("clash", "acme_nodes:CLASH"),
                                       entry("junk", "acme_nodes:NOT_SPECS")])
    assert len(problems) == 2
    assert "already registered" in problems[0].message
    assert "expected NodeSpec" in problems[1].message
    assert "acme.fresh" not in registry, "all of a plugin's nodes or none"
    assert len(registry) == before


def test_registry_refuses_duplicates_and_resolves_aliases():
    spec = stub_specs(__import__("collections").Counter())[0]
    registry = NodeRegistry([spec])
    with pytest.raises(DuplicateNodeType, match="test.source"):
        registry.register(spec)
    import dataclasses

    renamed = dataclasses.replace(spec, type_id="test.origin", aliases=("test.old_origin",))
    registry.register(renamed)
    assert registry.get("test.old_origin") is registry.get("test.origin")
    assert "test.old_origin" in registry


def test_the_command_line_runs_plugin_nodes(tmp_path):
    plugins = tmp_path / "site"
    plugins.mkdir()
    make_distribution(plugins, {"invert": "acme_nodes:NODES"})
    workflow = chain(
        ("p", "image.pattern", {"width": 16, "height": 16}),
        ("inv", "acme.invert", {}),
        ("save", "image.save", {}),
        links=[("p", "image", "inv", "image"), ("inv", "image", "save", "images")],
    )
    save(workflow, tmp_path / "wf.json")
    env = {**os.environ, "PYTHONPATH": f"{plugins}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "run", str(tmp_path / "wf.json"),
         "--out", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "save_0.png").exists()


def test_plugin_source_has_no_side_effects_at_import():
    """Building the catalogue lists no folders and loads no models."""
    code = textwrap.dedent("""
        import os, sys
        calls = []
        real = os.listdir
        os.listdir = lambda *a: calls.append(a) or real(*a)
        import nodes
        nodes.builtin_specs()
        assert calls == [], calls
        assert 'torch' not in sys.modules, 'the catalogue must not import torch'
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
