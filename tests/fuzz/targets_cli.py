"""Fuzz targets: the command line, run in-process through ``app.cli.main.main``.

A case is handled when ``main`` returns (or argparse exits) with status 0,
1 (a node failed, said in one line), 2 (invalid input, said in one line) or
130, having printed no traceback (unless ``-v`` asked for one), through a
stdout that refuses what a UTF-8 terminal refuses. Runs use the three
smallest example workflows, made smaller still (16-pixel images, two
steps), so each takes tens of milliseconds.
"""
from __future__ import annotations

import contextlib
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from hypothesis import strategies as st

from core.workflow.jsondata import copy_value
from tests.fuzz import FuzzTarget
from tests.fuzz.documents import (
    MUTATIONS,
    NUMBERS,
    TEXT,
    example_documents,
    mutated_documents,
    to_text,
    weighted,
)
from tests.fuzz.targets_workflow import (
    CAPS,
    plausible_values,
    registry,
    scratch,
    set_plausible_param,
    spec_params,
)

#: Handled exit statuses (see the ``app.cli.main`` docstring).
HANDLED = (0, 1, 2, 130)
#: Subcommands never run here: the GUI opens a window, train and eval take minutes.
NOT_RUN = ("gui", "train", "eval")

#: The small examples, and the values that keep each run well under a second.
SMALL = ("heat_diffusion.json", "forward-process.json", "ideal-denoiser.json")
#: Parameters naming files or folders: only these values (a fuzzed "/" would walk the disk).
PATH_PARAMS = {"folder": ("", "missing-folder", "a-file"), "path": ("", "missing.png", "a-file")}


def cap_sizes(doc: Any) -> Any:
    """``doc`` with every size, count and step count at most :data:`CAPS`, and
    file parameters from :data:`PATH_PARAMS` (in place; returns ``doc``)."""
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        params = node.get("params") if isinstance(node, dict) else None
        if not isinstance(params, dict):
            continue
        for name, value in list(params.items()):
            if name in CAPS and isinstance(value, (int, float)) and not isinstance(value, bool):
                if value > CAPS[name] and value == value:  # NaN stays: validation refuses it
                    params[name] = CAPS[name]
            elif name in PATH_PARAMS and value not in PATH_PARAMS[name]:
                params[name] = PATH_PARAMS[name][0]
    return doc


def _small_types() -> tuple[str, ...]:
    documents = example_documents()
    return tuple(sorted({node["type"] for name in SMALL for node in documents[name]["nodes"]}))


@lru_cache(maxsize=None)
def small_files() -> dict[str, Path]:
    """The small examples, capped, written once to the scratch folder."""
    files = {}
    for name in SMALL:
        path = scratch() / f"small-{name}"
        path.write_text(to_text(cap_sizes(copy_value(example_documents()[name]))), encoding="utf-8")
        files[name] = path
    (scratch() / "a-file").write_text("a file where a folder is expected\n")
    (scratch() / "a-folder").mkdir(exist_ok=True)
    return files


def caps_as_sets(name: str) -> list[str]:
    """``--set`` arguments that bring every costly parameter of example ``name`` under CAPS."""
    sets = []
    for node in example_documents()[name]["nodes"]:
        spec = registry().get(node["type"])
        for item in spec.params if spec else ():
            if item.name in CAPS:
                sets += ["--set", f"{node['id']}.{item.name}={CAPS[item.name]}"]
    return sets


# -- running main() as a process would -------------------------------------------
def run_cli(argv: Sequence[str]) -> None:
    """Run ``main(argv)`` in the scratch folder; fail unless the outcome is handled."""
    from app.cli.main import main
    from core.checkpoints.library import configured_dirs, set_models_dirs
    from core.checkpoints.pickles import allow_pickles

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    models_dirs = configured_dirs()
    small_files()
    try:
        with contextlib.chdir(scratch()), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr):
            try:
                code = main(list(argv))
            except SystemExit as exit_:  # argparse: a usage error (2) or --help (0)
                code = exit_.code
            stdout.flush()
            stderr.flush()
    finally:
        allow_pickles(None)
        set_models_dirs(models_dirs or None)
    err = stderr.buffer.getvalue().decode("utf-8", "replace")
    assert code in HANDLED, f"exit status {code!r}: {err[-2000:]}"
    assert code == 0 or err.strip(), f"exit status {code} without a message"
    if not {"-v", "--verbose"} & set(argv):
        assert "Traceback" not in err, err[-2000:]


# -- --set strings -------------------------------------------------------------------
def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@st.composite
def set_strings(draw, name: str) -> str:
    """A ``--set`` for example ``name``: mostly a real node (by id or title) and
    parameter with a plausible value; sometimes junk in any part."""
    nodes = [node for node in example_documents()[name]["nodes"] if spec_params(node)]
    node = draw(st.sampled_from(nodes))
    item = draw(st.sampled_from(spec_params(node)))
    target = draw(st.sampled_from([node["id"], node["id"], node.get("title") or node["id"]]))
    param, value = item.name, _as_text(draw(plausible_values(item)))
    junk = draw(st.integers(0, 19))  # 0-4: junk in one part, one time in four
    if junk == 0:
        return draw(TEXT)
    if junk == 1:
        target = draw(TEXT)
    elif junk == 2:
        param = draw(TEXT)
    elif junk == 3:
        value = draw(st.sampled_from(["nan", "-inf", "1e400", " 3 ", "0x10", "1_000", "٣", "",
                                      "9" * 5000]) | NUMBERS.map(str) | TEXT)
    separator = "=" if junk != 4 else draw(st.sampled_from([" = ", "==", ":", ""]))
    return f"{target}.{param}{separator}{value}"


@st.composite
def set_cases(draw) -> list[str]:
    name = draw(st.sampled_from(SMALL))
    sets = []
    for _ in range(draw(st.integers(1, 3))):
        sets += ["--set", draw(set_strings(name))]
    return ["run", str(small_files()[name]), "--out", "out", *caps_as_sets(name), *sets]


# -- whole documents through a run ---------------------------------------------------
RUN_MUTATIONS = (set_plausible_param,) * 9 + MUTATIONS


@st.composite
def run_documents(draw) -> str:
    """A small example with a few mutations (mostly plausible values), capped,
    written to a file: its path."""
    doc = draw(mutated_documents(SMALL, types=_small_types(), mutations=RUN_MUTATIONS, most=2))
    path = scratch() / "mutated.json"
    path.write_text(to_text(cap_sizes(doc), ensure_ascii=True), encoding="utf-8")
    return str(path)


def run_document(path: str) -> None:
    run_cli(["run", path, "--out", "out"])


# -- argument vectors ------------------------------------------------------------------
OUT_PATHS = st.sampled_from([
    "out", "out/nested/deeper", "a-file", "a-file/sub", "a-folder", "out-\udcff", "out-\ud800",
    "x" * 300, "", ".", "/proc/1/x", "/dev/null", "nul\x00l",
])
WORKFLOW_PATHS = st.one_of(
    st.sampled_from(["missing.json", "a-folder", "a-file", "", "/dev/null", "nul\x00l", "x" * 300,
                     "-", "out-\ud800"]),
    st.sampled_from(SMALL).map(lambda name: str(small_files()[name])),
)
JUNK = TEXT.filter(lambda token: token not in NOT_RUN)


@st.composite
def run_argv(draw) -> list[str]:
    """``run`` with its options in any order: mostly valid values, some junk."""
    name = draw(st.sampled_from(SMALL))
    workflow = str(small_files()[name])
    groups = [[draw(weighted((3, st.just(workflow)), (1, WORKFLOW_PATHS)))]]
    for _ in range(draw(st.integers(0, 2))):
        groups.append(["--set", draw(set_strings(name))])
    out = st.one_of(st.just("out"), st.just("out/nested"), OUT_PATHS)
    options = {
        "--out": out, "--trajectory": out,
        "--device": st.one_of(st.sampled_from(["auto", "cpu"]),
                              st.sampled_from(["cuda", "cuda:7", "mps", "tpu", "", "CPU"]), JUNK),
        "--dtype": st.one_of(st.sampled_from(["auto", "fp32", "fp16", "bf16"]),
                             st.sampled_from(["float64", "", "FP32"]) | JUNK),
    }
    for option in draw(st.lists(st.sampled_from(sorted(options)), max_size=4)):
        groups.append([option, draw(options[option])])
    extra = draw(st.integers(0, 7))
    if extra == 0:
        groups.append([draw(st.sampled_from(["--help", "--set", "--out", "--dev", "-x"]) | JUNK)])
    elif extra < 3:
        groups.append([draw(st.sampled_from(["-v", "--verbose"]))])
    argv = ["run"] + [token for group in draw(st.permutations(groups)) for token in group]
    return argv + caps_as_sets(name)


@st.composite
def other_argv(draw) -> list[str]:
    """``schedule``, ``nodes``, ``inspect``, an unknown command, global options."""
    command = draw(st.sampled_from(["schedule", "nodes", "inspect", "unknown"]))
    prefix: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        prefix = draw(st.sampled_from([["--allow-pickle"], ["--models-dir", "a-folder"],
                                       ["--models-dir", "missing"], ["--models-dir", "a-file"]]))
    if command == "schedule":
        names = st.sampled_from(["linear", "scaled_linear", "cosine", "sigmoid", "flow"]) | JUNK
        argv = ["schedule", draw(names)]
        numbers = st.integers(-5, 3000).map(str) | st.sampled_from(["1e3", "", "x", "99999999999"])
        options = st.sampled_from(["--timesteps", "--steps", "--spacing"])
        for option in draw(st.lists(options, max_size=3)):
            value = draw(st.sampled_from(["leading", "trailing", "linspace", "karras"]) | JUNK) \
                if option == "--spacing" else draw(numbers)
            argv += [option, value]
        if draw(st.booleans()):
            argv.append("--zero-snr")
    elif command == "nodes":
        types = st.sampled_from(sorted(spec.type_id for spec in registry()))
        argv = ["nodes"] + draw(st.lists(types | JUNK, max_size=2))
    elif command == "inspect":
        files = st.sampled_from(["missing.safetensors", "a-file", "a-folder", "out-\ud800",
                                 "x" * 300,
                                 "small-heat_diffusion.json", "shapes-ldm"]) | JUNK
        argv = ["inspect"] + draw(st.lists(files, min_size=1, max_size=2))
        if draw(st.booleans()):
            argv.append("--json")
    else:
        argv = [draw(JUNK.filter(lambda token: not token.startswith("-")) | st.just("runn"))]
        argv += draw(st.lists(JUNK, max_size=2))
    return prefix + argv


TARGETS = [
    FuzzTarget("cli.set", set_cases(), run_cli),
    FuzzTarget("cli.run_document", run_documents(), run_document),
    FuzzTarget("cli.run_argv", run_argv(), run_cli),
    FuzzTarget("cli.other_argv", other_argv(), run_cli),
]
