"""The shipped files (built-in models, tokenizers, example workflows) travel as
package data: found through ``core.paths`` (importlib.resources), in an
editable install and in a wheel installed away from the checkout."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from core import paths
from core.models.builtin import BUILTIN_NAMES

ROOT = Path(__file__).resolve().parents[1]
#: What building the distribution reads (pyproject.toml names README.md).
SOURCES = ("app", "core", "nodes", "resources", "workflows", "setup.py", "pyproject.toml",
           "README.md")
#: A path built from a module's own location toward the shipped folders.
SOURCE_RELATIVE = re.compile(r"__file__.*\n?.*[\"'](resources|workflows)[\"']")


def test_core_paths_name_the_shipped_files():
    for name in BUILTIN_NAMES:
        assert (paths.MODELS_DIR / f"{name}.safetensors").is_file(), name
    assert (paths.TOKENIZERS_DIR / "clip" / "bpe_simple_vocab_16e6.txt.gz").is_file()
    assert (paths.TOKENIZERS_DIR / "t5" / "tokenizer.json").is_file()
    assert paths.DEFAULT_WORKFLOW.is_file()
    assert len(list(paths.WORKFLOWS_DIR.glob("*.json"))) >= 10


def test_no_module_finds_the_shipped_files_beside_its_source():
    """A module that builds ``Path(__file__)…/"resources"`` works in a checkout
    and finds nothing in an installed wheel: every one goes through core.paths."""
    offenders = []
    for package in ("app", "core", "nodes"):
        for file in sorted((ROOT / package).rglob("*.py")):
            if SOURCE_RELATIVE.search(file.read_text(encoding="utf-8")):
                offenders.append(str(file.relative_to(ROOT)))
    assert offenders == []


def test_a_missing_data_package_says_to_reinstall():
    with pytest.raises(ModuleNotFoundError, match=r"'no_such_data' .* reinstall"):
        paths.package_folder("no_such_data")


# -- a real install, away from the checkout ---------------------------------------------------
def _copy_sources(target: Path) -> Path:
    """The files a build reads, copied, so build/ and egg-info never land in the checkout."""
    target.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def _venv_on_this_site(folder: Path) -> Path:
    """A fresh venv that sees this interpreter's packages (torch, diffusers,
    setuptools, pip: nothing is downloaded) through a .pth path entry, which
    adds the folder to sys.path without running its .pth files: this
    checkout's own editable install stays invisible there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([str(folder / "bin" / "python"), "-c", where],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "workbench-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return folder / "bin"


def _run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _pip(bin_dir: Path, *arguments, cwd: Path) -> None:
    _run([bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index",
          "--no-build-isolation", "-q", *arguments], cwd)


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_an_installed_workbench_runs_its_default_workflow_from_anywhere(tmp_path, editable):
    """Build from a copy of the sources, install into a fresh venv, then, from a
    folder outside any checkout: the shipped files resolve inside the install,
    the default workflow writes an image, and the node types are listed."""
    started = time.perf_counter()
    sources = _copy_sources(tmp_path / "src")
    bin_dir = _venv_on_this_site(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if editable:
        _pip(bin_dir, "-e", sources, cwd=elsewhere)
        home = sources
    else:
        _run([bin_dir / "python", "-m", "pip", "wheel", "--no-deps", "--no-index",
              "--no-build-isolation", "-q", "-w", tmp_path / "dist", sources], elsewhere)
        wheel = next((tmp_path / "dist").glob("diffusion_workbench-*.whl"))
        names = zipfile.ZipFile(wheel).namelist()
        assert "workbench_resources/models/shapes-ldm.safetensors" in names
        assert "workbench_workflows/txt2img.json" in names
        _pip(bin_dir, wheel, cwd=elsewhere)
        home = tmp_path / "venv"
    where = _run([bin_dir / "python", "-c",
                  "import core, core.paths as p; print(core.__file__); print(p.MODELS_DIR); "
                  "print(p.DEFAULT_WORKFLOW)"], elsewhere).stdout.split()
    assert all(Path(line).is_relative_to(home) for line in where), where
    out = elsewhere / "out"
    _run([bin_dir / "diffusion-workbench", "run", where[2], "--out", out,
          "--set", "schedule.steps=2", "--set", "latent.batch_size=1"], elsewhere)
    assert sorted(p.suffix for p in out.iterdir()) == [".png"]
    listed = _run([bin_dir / "diffusion-workbench", "nodes"], elsewhere).stdout
    assert "diffusion.sampler" in listed and "model.checkpoint" in listed
    print(f"{'editable' if editable else 'wheel'} install and run: "
          f"{time.perf_counter() - started:.1f} s")
