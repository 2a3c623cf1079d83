"""The README's Quick start and CI must not drift apart."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands), "each is one command line"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines


def test_quick_start_installs_cpu_torch_first_and_runs_a_real_workflow():
    launch, test = quick_start_commands()
    for command in (launch, test):
        assert command.index("torch==2.13.0") < command.index("pip install -e")
    workflow = launch.split()[-1]
    assert (ROOT / workflow).is_file()
