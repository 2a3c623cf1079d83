"""The workflow document (core.workflow.model) and its file format (core.workflow.io)."""
from __future__ import annotations

import copy
import functools
import json
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.workflow.io as wio
from core.images import save_png
from core.workflow import (
    FORMAT_ID,
    Link,
    Node,
    Workflow,
    WorkflowError,
    WorkflowFormatError,
    dumps,
    load,
    loads,
    save,
)
from core.workflow.migrations import CURRENT_VERSION, MigrationError, migrate
from core.paths import DEFAULT_WORKFLOW
from core.workflow.png import PNG_KEY


# -- helpers -------------------------------------------------------------------
def sample_workflow() -> Workflow:
    """Nodes and links added out of order, a non-ASCII title, an unknown type, a ui block."""
    wf = Workflow(ui={"positions": {"b": [10.5, -3], "a": [0, 0]}, "zoom": 1.25})
    wf.add_node(Node("c", "test.output"))
    wf.add_node(Node("b", "test.scale", title="Échelle ✓ 缩放", params={"factor": 2.5}))
    wf.add_node(Node("a", "test.source", params={"value": 1.0, "label": "x"}))
    wf.add_node(Node("p", "plugin.missing", version=3, params={"z": [1, 2], "a": {"k": None}}))
    wf.connect("b", "out", "c", "x")
    wf.connect("a", "out", "b", "x")
    wf.connect("a", "out", "p", "in")
    return wf


def doc(**changes) -> dict:
    """A small valid document as plain data; ``changes`` replace top-level keys."""
    data = {
        "format": FORMAT_ID,
        "version": CURRENT_VERSION,
        "nodes": [
            {"id": "a", "type": "test.source", "version": 1, "params": {"value": 1.0}},
            {"id": "b", "type": "test.output", "version": 1, "params": {}},
        ],
        "links": [{"from": ["a", "out"], "to": ["b", "x"]}],
        "ui": {},
    }
    data.update(changes)
    return data


def write(tmp_path: Path, content: str | bytes, name: str = "wf.json") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def load_error(path: Path) -> str:
    """The message of the WorkflowFormatError that loading ``path`` raises."""
    with pytest.raises(WorkflowFormatError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    return message


def png_chunks(raw: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the chunk, length of its data) for each PNG chunk."""
    chunks, pos = [], 8
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        chunks.append((raw[pos + 4:pos + 8], pos, length))
        pos += 12 + length
    return chunks


# -- canonical form and round trips ---------------------------------------------
CANONICAL = """{
  "format": "diffusion-workbench.workflow",
  "links": [
    {
      "from": [
        "a",
        "out"
      ],
      "to": [
        "b",
        "x"
      ]
    },
    {
      "from": [
        "b",
        "out"
      ],
      "to": [
        "c",
        "x"
      ]
    }
  ],
  "nodes": [
    {
      "id": "a",
      "params": {
        "label": "x",
        "value": 1.0
      },
      "type": "test.source",
      "version": 1
    },
    {
      "id": "b",
      "params": {
        "factor": 2.5
      },
      "title": "Scale",
      "type": "test.scale",
      "version": 2
    },
    {
      "id": "c",
      "params": {},
      "type": "test.output",
      "version": 1
    }
  ],
  "ui": {
    "a": 1,
    "z": [
      2,
      1
    ]
  },
  "version": 1
}
"""


def test_dumps_is_canonical():
    wf = Workflow(ui={"z": [2, 1], "a": 1})
    wf.add_node(Node("c", "test.output"))
    wf.add_node(Node("b", "test.scale", version=2, title="Scale", params={"factor": 2.5}))
    wf.add_node(Node("a", "test.source", params={"value": 1.0, "label": "x"}))
    wf.connect("b", "out", "c", "x")
    wf.connect("a", "out", "b", "x")
    assert CURRENT_VERSION == 1
    assert dumps(wf) == CANONICAL


def test_save_writes_canonical_utf8_bytes(tmp_path):
    path = tmp_path / "wf.json"
    save(loads(CANONICAL), path)
    assert path.read_bytes() == CANONICAL.encode("utf-8")


def test_load_save_round_trip_is_byte_stable(tmp_path):
    # A hand-written, non-canonical file: compact, keys and nodes and links unsorted.
    messy = json.dumps({
        "version": 1,
        "ui": {"viewport": {"zoom": 0.75, "center": [1.5, -2]}, "groups": [{"name": "Grüße"}]},
        "links": [
            {"to": ["c", "x"], "from": ["b", "out"]},
            {"from": ["a", "out"], "to": ["b", "x"]},
        ],
        "nodes": [
            {"type": "test.output", "id": "c"},
            {"params": {"factor": 2.5, "alpha": -1}, "id": "b", "type": "test.scale",
             "title": "Échelle ✓ 缩放"},
            {"id": "a", "type": "test.source", "version": 1, "params": {"value": 3}},
        ],
        "format": FORMAT_ID,
    }, ensure_ascii=True, separators=(",", ":"))
    source = write(tmp_path, messy, "messy.json")
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"
    save(load(source), first)
    save(load(first), second)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == dumps(load(source))
    # Canonical order: nodes by id, links sorted.
    data = json.loads(text)
    assert [n["id"] for n in data["nodes"]] == ["a", "b", "c"]
    assert [(ln["from"], ln["to"]) for ln in data["links"]] == [
        (["a", "out"], ["b", "x"]), (["b", "out"], ["c", "x"])
    ]
    assert text.splitlines()[1].startswith('  "format"')  # two-space indent, keys sorted


def test_already_canonical_file_is_rewritten_identically(tmp_path):
    path = tmp_path / "wf.json"
    save(sample_workflow(), path)
    before = path.read_bytes()
    save(load(path), path)
    assert path.read_bytes() == before


def test_non_ascii_title_survives(tmp_path):
    path = tmp_path / "wf.json"
    save(sample_workflow(), path)
    loaded = load(path)
    assert loaded.node("b").title == "Échelle ✓ 缩放"
    assert loaded.nodes["b"].params == {"factor": 2.5}
    assert dumps(loaded) == dumps(sample_workflow())


def test_ui_block_is_preserved_untouched(tmp_path):
    ui = {
        "positions": {"a": [12.5, -40], "b": [300, 7.25]},
        "groups": [{"title": "Prompt ✎", "nodes": ["a", "b"], "color": "#ff00aa"}],
        "viewport": {"zoom": 0.8, "center": [0, 0], "nested": {"deep": [True, False, None]}},
        "whatever_the_gui_wants": "kept",
    }
    path = write(tmp_path, json.dumps(doc(ui=copy.deepcopy(ui))))
    loaded = load(path)
    assert loaded.ui == ui
    out = tmp_path / "out.json"
    save(loaded, out)
    assert json.loads(out.read_text(encoding="utf-8"))["ui"] == ui
    assert load(out).ui == ui


def test_unknown_node_type_survives_load_and_save(tmp_path):
    plugin_node = {
        "id": "mystery",
        "type": "plugin.missing",
        "version": 4,
        "title": "From a plugin",
        "params": {"strength": 0.3, "mode": "fancy", "nested": {"list": [1, "two", None]}},
    }
    data = doc()
    data["nodes"].append(plugin_node)
    data["links"] += [
        {"from": ["a", "out"], "to": ["mystery", "anything"]},
        {"from": ["mystery", "result"], "to": ["b", "extra"]},
    ]
    path = write(tmp_path, json.dumps(data))
    loaded = load(path)
    node = loaded.node("mystery")
    assert (node.type, node.version, node.title) == ("plugin.missing", 4, "From a plugin")
    assert node.params == plugin_node["params"]
    assert Link("a", "out", "mystery", "anything") in loaded.links
    assert Link("mystery", "result", "b", "extra") in loaded.links
    out = tmp_path / "out.json"
    save(loaded, out)
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert plugin_node in saved["nodes"]
    assert {"from": ["a", "out"], "to": ["mystery", "anything"]} in saved["links"]
    assert {"from": ["mystery", "result"], "to": ["b", "extra"]} in saved["links"]
    assert dumps(load(out)) == dumps(loaded)


def test_node_defaults_when_keys_are_omitted():
    data = doc(nodes=[{"id": "a", "type": "test.source"}], links=[])
    node = loads(json.dumps(data)).node("a")
    assert (node.version, node.title, node.params) == (1, None, {})


# -- atomic save ------------------------------------------------------------------
@pytest.mark.parametrize("crash", [OSError("simulated crash"), KeyboardInterrupt()])
def test_crash_between_write_and_rename_keeps_the_old_file(tmp_path, monkeypatch, crash):
    path = tmp_path / "wf.json"
    save(sample_workflow(), path)
    before = path.read_bytes()
    changed = sample_workflow()
    changed.node("a").params["value"] = 99.0
    seen = []

    def crashing_replace(src, dst):
        # The new text is fully written to a temp file in the same folder ...
        seen.append(Path(src))
        assert Path(src).parent == tmp_path
        assert Path(src).read_text(encoding="utf-8") == dumps(changed)
        assert Path(dst) == path
        raise crash  # ... and the process dies before the rename.

    monkeypatch.setattr(wio.os, "replace", crashing_replace)
    with pytest.raises(type(crash)):
        save(changed, path)
    assert seen, "save must write a temp file and rename it over the target"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["wf.json"]


def test_successful_save_leaves_no_temp_file(tmp_path):
    path = tmp_path / "wf.json"
    save(sample_workflow(), path)
    save(Workflow(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["wf.json"]
    assert load(path).nodes == {}


def test_save_over_existing_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "wf.json"
    save(sample_workflow(), path)
    os.chmod(path, 0o600)
    save(Workflow(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o640)
    save(sample_workflow(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_new_file_is_readable_by_others(tmp_path):
    path = tmp_path / "new.json"
    save(sample_workflow(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# -- strict reading ---------------------------------------------------------------
def test_invalid_json_names_line_and_column(tmp_path):
    text = '{"format": "diffusion-workbench.workflow",\n  "version": 1,\n  "nodes": [}\n'
    message = load_error(write(tmp_path, text))
    assert "not valid JSON" in message
    assert "line 3" in message and "column 13" in message


def test_loads_names_its_source():
    with pytest.raises(WorkflowFormatError, match=r"^my-source: not valid JSON"):
        loads("{", source="my-source")


def _with_node(**fields) -> dict:
    node = {"id": "a", "type": "test.source", "params": {}}
    node.update(fields)
    return doc(nodes=[node], links=[])


def _with_link(**fields) -> dict:
    link = {"from": ["a", "out"], "to": ["b", "x"]}
    link.update(fields)
    return doc(links=[link])


def _without(key: str) -> dict:
    data = doc()
    del data[key]
    return data


BAD_DOCUMENTS = {
    "top level not an object": ([1, 2], ["top level must be a JSON object"]),
    "wrong format": (doc(format="comfyui.workflow"), ["not a Diffusion Workbench workflow", "'comfyui.workflow'"]),
    "missing format": (_without("format"), ["not a Diffusion Workbench workflow", FORMAT_ID]),
    "missing version": (_without("version"), ["'version' must be a positive integer"]),
    "version as text": (doc(version="1"), ["'version' must be a positive integer"]),
    "version as float": (doc(version=1.0), ["'version' must be a positive integer"]),
    "version as bool": (doc(version=True), ["'version' must be a positive integer"]),
    "version zero": (doc(version=0), ["'version' must be a positive integer"]),
    "newer version": (doc(version=CURRENT_VERSION + 1), [f"version {CURRENT_VERSION + 1}", "update"]),
    "duplicate node ids": (
        doc(nodes=[{"id": "a", "type": "test.source"}, {"id": "a", "type": "test.output"}]),
        ["two nodes have the id 'a'"],
    ),
    "unknown top-level key": (doc(extra=1), ["the document", "unknown key", "'extra'"]),
    "unknown node key": (_with_node(colour="red"), ["node 'a'", "unknown key", "'colour'"]),
    "unknown link key": (_with_link(kind="data"), ["links[0]", "unknown key", "'kind'"]),
    "path traversal id": (_with_node(id="../../etc/passwd"), ["nodes[0]", "'id'", "../../etc/passwd"]),
    "id with a slash": (_with_node(id="a/b"), ["nodes[0]", "'id'", "a/b"]),
    "id with a space": (_with_node(id="a b"), ["nodes[0]", "'id'"]),
    "empty id": (_with_node(id=""), ["nodes[0]", "'id'"]),
    "id too long": (_with_node(id="x" * 65), ["nodes[0]", "'id'"]),
    "id starting with a dash": (_with_node(id="-rf"), ["nodes[0]", "'id'"]),
    "id ending in a newline": (_with_node(id="a\n"), ["nodes[0]", "'id'"]),
    "id not text": (_with_node(id=7), ["nodes[0]", "'id'"]),
    "node not an object": (doc(nodes=["a"]), ["nodes[0] must be an object"]),
    "nodes not a list": (doc(nodes={"a": {}}), ["'nodes' must be a list"]),
    "links not a list": (doc(links={}), ["'links' must be a list"]),
    "ui not an object": (doc(ui=[]), ["'ui' must be an object"]),
    "missing type": (_with_node(type=None), ["node 'a'", "'type'"]),
    "empty type": (_with_node(type=""), ["node 'a'", "'type'"]),
    "node version zero": (_with_node(version=0), ["node 'a'", "'version'"]),
    "title not text": (_with_node(title=3), ["node 'a'", "'title'"]),
    "params a list": (_with_node(params=[1, 2]), ["node 'a'", "'params' must be an object"]),
    "params text": (_with_node(params="value=1"), ["node 'a'", "'params' must be an object"]),
    "from one item": (_with_link(**{"from": ["a"]}), ["links[0]", "'from'"]),
    "from three items": (_with_link(**{"from": ["a", "out", "x"]}), ["links[0]", "'from'"]),
    "from dotted text": (_with_link(**{"from": "a.out"}), ["links[0]", "'from'"]),
    "from with a number": (_with_link(**{"from": ["a", 0]}), ["links[0]", "'from'"]),
    "from missing": ({**doc(), "links": [{"to": ["b", "x"]}]}, ["links[0]", "'from'"]),
    "to an object": (_with_link(to={"node": "b"}), ["links[0]", "'to'"]),
    "link not an object": (doc(links=[["a", "out", "b", "x"]]), ["links[0] must be an object"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_documents_are_refused_with_a_clear_message(tmp_path, case):
    data, expected = BAD_DOCUMENTS[case]
    message = load_error(write(tmp_path, json.dumps(data)))
    for part in expected:
        assert part in message, (part, message)


def test_newer_format_version_says_to_update(tmp_path):
    message = load_error(write(tmp_path, json.dumps(doc(version=CURRENT_VERSION + 5))))
    assert "newer" in message and "update" in message.lower()


def test_duplicate_key_in_an_object_is_refused(tmp_path):
    text = (
        '{"format": "diffusion-workbench.workflow", "version": 1, "links": [], "ui": {},\n'
        ' "nodes": [{"id": "a", "type": "test.source", "params": {"value": 1, "value": 2}}]}'
    )
    message = load_error(write(tmp_path, text))
    assert "'value'" in message and "twice" in message


def test_duplicate_top_level_key_is_refused(tmp_path):
    text = '{"format": "diffusion-workbench.workflow", "version": 1, "version": 1}'
    assert "'version'" in load_error(write(tmp_path, text))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(tmp_path, literal):
    text = json.dumps(doc()).replace('"value": 1.0', f'"value": {literal}')
    assert literal in text
    message = load_error(write(tmp_path, text))
    assert literal.lstrip("-") in message


@pytest.mark.parametrize("literal", ["1e400", "-1e999"])
def test_numbers_too_large_for_a_float_are_refused(tmp_path, literal):
    # Python would read these as inf, and saving would then write "Infinity",
    # a file that this same program refuses to open again.
    text = json.dumps(doc()).replace('"value": 1.0', f'"value": {literal}')
    assert literal in text
    message = load_error(write(tmp_path, text))
    assert literal in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_save_never_writes_a_file_that_load_refuses(tmp_path, value):
    path = tmp_path / "wf.json"
    save(sample_workflow(), path)
    before = path.read_bytes()
    broken = sample_workflow()
    broken.node("a").params["value"] = value
    with pytest.raises(ValueError):
        save(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["wf.json"]


def test_not_utf8_is_refused(tmp_path):
    raw = json.dumps(doc()).encode("utf-8").replace(b'"ui": {}', b'"ui": {"t": "\xff\xfe"}')
    load_error(write(tmp_path, raw))


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "nowhere.json")
    assert "no such file" in message


def test_png_without_workflow_chunk(tmp_path):
    path = save_png(torch.zeros(3, 4, 4), tmp_path / "plain.png")
    message = load_error(path)
    assert "carries no Diffusion Workbench workflow" in message


def _png_with_workflow(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_png(torch.rand(3, 16, 16), tmp_path / "full.png", dumps(sample_workflow()))


def test_png_fixture_is_readable(tmp_path):
    assert dumps(load(_png_with_workflow(tmp_path))) == dumps(sample_workflow())


def test_png_truncated_after_the_workflow_still_gives_the_workflow(tmp_path):
    """The text chunk precedes the pixels and is checksummed: a PNG cut in its
    image data still restores the workflow intact (nothing of the work is lost)."""
    raw = _png_with_workflow(tmp_path).read_bytes()
    chunks = {kind: (pos, length) for kind, pos, length in png_chunks(raw)}
    assert chunks[b"iTXt"][0] < chunks[b"IDAT"][0]
    cut = chunks[b"IDAT"][0] + 8 + chunks[b"IDAT"][1] // 2
    assert dumps(load(write(tmp_path, raw[:cut], "cut.png"))) == dumps(sample_workflow())


@pytest.mark.parametrize("where", ["in header", "in text chunk"])
def test_truncated_png_is_refused(tmp_path, where):
    raw = _png_with_workflow(tmp_path).read_bytes()
    chunks = {kind: (pos, length) for kind, pos, length in png_chunks(raw)}
    assert b"iTXt" in chunks and b"IDAT" in chunks
    cut = {
        "in header": 20,
        "in text chunk": chunks[b"iTXt"][0] + 8 + chunks[b"iTXt"][1] // 2,
    }[where]
    message = load_error(write(tmp_path, raw[:cut], "cut.png"))
    assert "PNG" in message


def test_corrupt_png_text_chunk_is_refused(tmp_path):
    raw = bytearray(_png_with_workflow(tmp_path).read_bytes())
    pos, length = next((p, n) for kind, p, n in png_chunks(bytes(raw)) if kind == b"iTXt")
    raw[pos + 8 + length - 3] ^= 0xFF  # flip a byte of the compressed workflow text
    message = load_error(write(tmp_path, bytes(raw), "corrupt.png"))
    assert "PNG" in message


def test_png_magic_followed_by_garbage_is_refused(tmp_path):
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n" + b"not a png at all" * 4, "fake.png")
    assert "PNG" in load_error(path)


# -- migrations ---------------------------------------------------------------------
def _rename(old: str, new: str, log: list):
    def step(data):
        log.append((old, new, data["version"]))
        data[new] = data.pop(old)
        return data
    return step


def test_migration_chain_applies_in_order_and_sets_version():
    log: list = []
    steps = {1: _rename("nodes_v1", "nodes_v2", log), 2: _rename("nodes_v2", "nodes", log)}
    original = {"format": FORMAT_ID, "version": 1, "nodes_v1": ["n"]}
    result = migrate(original, current=3, migrations=steps)
    assert log == [("nodes_v1", "nodes_v2", 1), ("nodes_v2", "nodes", 2)]
    assert result == {"format": FORMAT_ID, "version": 3, "nodes": ["n"]}
    assert original == {"format": FORMAT_ID, "version": 1, "nodes_v1": ["n"]}  # input untouched


def test_migration_starts_from_the_documents_version():
    log: list = []
    steps = {1: _rename("a", "b", log), 2: _rename("b", "c", log)}
    result = migrate({"version": 2, "b": 1}, current=3, migrations=steps)
    assert log == [("b", "c", 2)]
    assert result == {"version": 3, "c": 1}


def test_current_document_is_not_migrated():
    def never(data):
        raise AssertionError("must not run")
    data = {"version": 3, "x": 1}
    assert migrate(data, current=3, migrations={1: never, 2: never}) == {"version": 3, "x": 1}


def test_missing_migration_step_raises():
    steps = {1: _rename("a", "b", [])}
    with pytest.raises(MigrationError, match="version 2"):
        migrate({"version": 1, "a": 1}, current=3, migrations=steps)


def test_newer_than_current_raises():
    with pytest.raises(MigrationError, match="update"):
        migrate({"version": 4}, current=3, migrations={})


def test_loading_an_old_file_runs_the_migrations(monkeypatch):
    steps = {1: _rename("graph_nodes", "nodes", [])}
    monkeypatch.setattr(wio, "migrate", functools.partial(migrate, current=2, migrations=steps))
    data = doc(version=1)
    data["graph_nodes"] = data.pop("nodes")
    loaded = loads(json.dumps(data))
    assert sorted(loaded.nodes) == ["a", "b"]


def test_a_missing_migration_is_a_format_error(monkeypatch):
    monkeypatch.setattr(wio, "migrate", functools.partial(migrate, current=3, migrations={}))
    with pytest.raises(WorkflowFormatError, match=r"^old\.json: .*no migration from format version 1"):
        loads(json.dumps(doc(version=1)), source="old.json")


# -- workflows in PNG files -------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trip_restores_workflow_and_pixels(tmp_path, channels):
    generator = torch.Generator().manual_seed(channels)
    image = torch.rand(channels, 9, 13, generator=generator) * 1.4 - 0.2  # some out of [0, 1]
    image[:, 0, 0] = torch.tensor([0.0, 0.5, 1.0, 0.2][:channels])
    workflow = sample_workflow()
    text = dumps(workflow)
    path = save_png(image, tmp_path / "out.png", text)

    assert dumps(load(path)) == text

    with Image.open(path) as picture:
        assert picture.text[PNG_KEY] == text
        assert picture.size == (13, 9)
        assert picture.mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        pixels = np.asarray(picture)
    if channels == 1:
        pixels = pixels[:, :, None]
    expected = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(pixels, expected)
    assert list(pixels[0, 0]) == [0, 128, 255, 51][:channels]


def test_png_workflow_with_every_kind_of_value_round_trips(tmp_path):
    workflow = sample_workflow()
    workflow.node("a").params.update({
        "prompt": "a cat\non two lines, \"quoted\" ☃ 🐈 \\ tab\t",
        "big": 2**53 + 1, "small": -1e-300, "flag": False, "nothing": None,
    })
    text = dumps(workflow)
    path = save_png(torch.ones(3, 2, 2), tmp_path / "v.png", text)
    assert dumps(load(path)) == text
    assert load(path).node("a").params["prompt"] == "a cat\non two lines, \"quoted\" ☃ 🐈 \\ tab\t"


# -- editing the model ------------------------------------------------------------------
def test_add_node_refuses_a_duplicate_id():
    wf = Workflow()
    first = wf.add_node(Node("a", "test.source", params={"value": 1.0}))
    with pytest.raises(WorkflowError, match="'a'"):
        wf.add_node(Node("a", "test.output"))
    assert wf.node("a") is first
    assert len(wf.nodes) == 1


@pytest.mark.parametrize(
    "bad_id",
    ["", "a b", "../x", "a/b", "a.b", "-a", "x" * 65, "a\n", "\na", "é", "a\x00"],
)
def test_add_node_refuses_malformed_ids(bad_id):
    wf = Workflow()
    with pytest.raises(WorkflowError):
        wf.add_node(Node(bad_id, "test.source"))
    assert wf.nodes == {}


@pytest.mark.parametrize("good_id", ["a", "_", "0", "KSampler_2", "a-b_c", "x" * 64])
def test_add_node_accepts_plain_ids(good_id):
    wf = Workflow()
    wf.add_node(Node(good_id, "test.source"))
    assert list(wf.nodes) == [good_id]
    assert loads(dumps(wf)).node(good_id).type == "test.source"


def test_connect_replaces_the_link_into_the_same_input():
    wf = sample_workflow()
    wf.add_node(Node("a2", "test.source"))
    wf.connect("a2", "out", "b", "x")
    assert wf.links_into("b") == {"x": Link("a2", "out", "b", "x")}
    assert Link("a", "out", "b", "x") not in wf.links
    assert Link("a", "out", "p", "in") in wf.links  # other links are kept
    assert len(wf.links) == 3


def test_connect_into_another_input_keeps_the_first_link():
    wf = Workflow()
    for node_id, type_id in [("s", "test.source"), ("t", "test.source"), ("sum", "test.add")]:
        wf.add_node(Node(node_id, type_id))
    wf.connect("s", "out", "sum", "a")
    wf.connect("t", "out", "sum", "b")
    assert wf.links_into("sum") == {"a": Link("s", "out", "sum", "a"), "b": Link("t", "out", "sum", "b")}


def test_connect_refuses_unknown_nodes():
    wf = sample_workflow()
    links = list(wf.links)
    with pytest.raises(WorkflowError):
        wf.connect("ghost", "out", "b", "x")
    with pytest.raises(WorkflowError):
        wf.connect("a", "out", "ghost", "x")
    assert wf.links == links


def test_remove_node_removes_its_links():
    wf = sample_workflow()
    wf.remove_node("b")
    assert "b" not in wf.nodes
    assert wf.links == [Link("a", "out", "p", "in")]
    with pytest.raises(WorkflowError):
        wf.remove_node("b")


def test_new_id_gives_fresh_ids():
    wf = Workflow()
    assert wf.new_id("sampler") == "sampler"
    wf.add_node(Node("sampler", "test.source"))
    assert wf.new_id("sampler") == "sampler_2"
    wf.add_node(Node("sampler_2", "test.source"))
    wf.add_node(Node("sampler_4", "test.source"))
    assert wf.new_id("sampler") == "sampler_3"
    assert wf.new_id("other") == "other"


@pytest.mark.parametrize(
    "stem", ["", "My Sampler!", "../../etc/passwd", "-x", "--", "é", "x" * 200, "a\n"]
)
def test_new_id_is_always_a_valid_fresh_id(stem):
    wf = Workflow()
    for _ in range(3):
        node_id = wf.new_id(stem)
        assert node_id not in wf.nodes
        wf.add_node(Node(node_id, "test.source"))  # must not raise
    assert len(wf.nodes) == 3


def test_copy_is_deep():
    original = sample_workflow()
    before = dumps(original)
    clone = original.copy()
    clone.node("a").params["value"] = 42.0
    clone.node("p").params["z"].append(3)
    clone.node("b").title = "changed"
    clone.ui["positions"]["a"][0] = 999
    clone.add_node(Node("new", "test.source"))
    clone.connect("new", "out", "c", "x")
    assert dumps(original) == before
    assert original.node("a").params["value"] == 1.0
    assert "new" not in original.nodes


def test_a_workflow_larger_than_pillows_text_limit_round_trips_through_png(tmp_path):
    """Pillow refuses text chunks over 1 MiB; our own reader does not."""
    import torch

    from core.images import save_png
    from core.workflow import Node, Workflow, dumps, load

    workflow = Workflow(ui={"notes": "".join(chr(0x4E00 + i % 2000) for i in range(600_000))})
    workflow.add_node(Node("n", "x.y", params={"seed": 1}))
    text = dumps(workflow)
    assert len(text.encode()) > 1_500_000
    save_png(torch.rand(3, 4, 4), tmp_path / "big.png", text)
    assert dumps(load(tmp_path / "big.png")) == text


# -- nesting, surrogates, pipes (issue 12) ---------------------------------------------------
def nested(depth: int) -> list:
    """A list nested ``depth`` levels deep (``[[[]]]`` is 3), built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_json_nested_beyond_the_limit_is_refused_naming_the_limit(tmp_path):
    """The JSON parser recursed per level and raised RecursionError at ~1000 levels."""
    from core.workflow.jsondata import MAX_DEPTH

    message = load_error(write(tmp_path, "\n" + "[" * 1000 + "]" * 1000))
    assert f"nested deeper than {MAX_DEPTH} levels" in message and "line 2" in message


def test_a_deep_value_inside_a_valid_document_is_refused(tmp_path):
    data = doc()
    data["nodes"][0]["params"]["value"] = nested(500)
    message = load_error(write(tmp_path, json.dumps(data)))
    assert "nested deeper than" in message


def test_nesting_up_to_the_limit_loads_and_saves_back(tmp_path):
    """The limit is the same on reading and writing: the deepest file that
    loads also saves, and what saves loads again."""
    from core.workflow.jsondata import MAX_DEPTH, PARAM_LEVELS

    data = doc()
    data["nodes"][0]["params"]["value"] = nested(MAX_DEPTH - PARAM_LEVELS)
    workflow = load(write(tmp_path, json.dumps(data)))
    save(workflow, tmp_path / "again.json")
    assert dumps(load(tmp_path / "again.json")) == dumps(workflow)
    data["nodes"][0]["params"]["value"] = nested(MAX_DEPTH - PARAM_LEVELS + 1)
    assert "nested deeper than" in load_error(write(tmp_path, json.dumps(data)))


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    data = doc()
    data["nodes"][0]["params"]["value"] = '[{"\\' + "[" * 5000
    assert load(write(tmp_path, json.dumps(data))).node("a").params["value"].endswith("[[[")


def test_from_data_refuses_deep_data_naming_the_key():
    with pytest.raises(ValueError, match="'ui': nested deeper than"):
        wio.from_data(doc(ui={"x": nested(2000)}))


def test_a_png_whose_workflow_chunk_is_nested_deep_is_refused(tmp_path):
    path = save_png(torch.zeros(3, 2, 2), tmp_path / "deep.png", "[" * 5000 + "]" * 5000)
    assert "nested deeper than" in load_error(path)


def test_copy_does_not_recurse_on_deep_values():
    """Workflow.copy() used copy.deepcopy and raised RecursionError at ~500 levels."""
    workflow = Workflow(ui={"deep": nested(5000)})
    workflow.add_node(Node("a", "test.source", params={"value": nested(5000), "n": 1}))
    clone = workflow.copy()
    value, depth = clone.node("a").params["value"], 1
    while value:
        assert value is not workflow.node("a").params["value"]
        value, depth = value[0], depth + 1
    assert depth == 5000 and clone.ui["deep"] is not workflow.ui["deep"]


def test_saving_a_too_deep_value_names_node_and_field():
    workflow = Workflow()
    workflow.add_node(Node("a", "test.source", params={"value": nested(5000)}))
    with pytest.raises(WorkflowError, match=r"node .a., field .value.: nested deeper than"):
        dumps(workflow)


def test_validation_reports_a_too_deep_value_instead_of_recursing():
    from core.validation import validate
    from tests.stubs import chain, stub_registry

    workflow = chain(("a", "test.source", {"value": nested(5000)}), ("b", "test.output", {}),
                     links=[("a", "out", "b", "x")])
    problems = validate(workflow, stub_registry())
    assert [(p.node_id, p.field, p.kind) for p in problems] == [("a", "value", "bad_value")]
    assert "nested deeper than" in problems[0].message


SURROGATES = "lone \ud800 and \udcff (an undecodable byte from the command line)"


def surrogate_workflow() -> Workflow:
    workflow = sample_workflow()
    workflow.node("b").title = SURROGATES
    workflow.node("a").params.update({"label": SURROGATES, f"key {SURROGATES}": [SURROGATES]})
    workflow.ui["note"] = SURROGATES
    return workflow


def test_lone_surrogates_save_and_load_back_unchanged(tmp_path):
    """Saving raised UnicodeEncodeError: they are written as JSON escapes."""
    workflow = surrogate_workflow()
    save(workflow, tmp_path / "s.json")
    again = load(tmp_path / "s.json")
    assert again.node("b").title == SURROGATES and again.ui["note"] == SURROGATES
    assert again.node("a").params == workflow.node("a").params
    assert dumps(again) == dumps(workflow)
    assert "\\ud800" in (tmp_path / "s.json").read_text(encoding="utf-8")


def test_lone_surrogates_survive_a_png(tmp_path):
    """Writing the output PNG raised UnicodeEncodeError."""
    workflow = surrogate_workflow()
    path = save_png(torch.rand(3, 4, 4), tmp_path / "s.png", dumps(workflow))
    assert load(path).node("b").title == SURROGATES


def test_a_workflow_is_read_once_so_a_fifo_works(tmp_path):
    """load() opened the path twice (PNG sniffing, then reading): a FIFO hung."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    text = dumps(sample_workflow())
    writer = threading.Thread(target=lambda: fifo.write_text(text, encoding="utf-8"), daemon=True)
    loaded: list[Workflow] = []
    reader = threading.Thread(target=lambda: loaded.append(load(fifo)), daemon=True)
    writer.start()
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader's second open, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("load() did not return: it opened the FIFO twice")
    assert loaded and dumps(loaded[0]) == text


def test_a_png_from_a_fifo_loads(tmp_path):
    import threading

    raw = _png_with_workflow(tmp_path).read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    threading.Thread(target=lambda: fifo.write_bytes(raw), daemon=True).start()
    loaded: list[Workflow] = []
    reader = threading.Thread(target=lambda: loaded.append(load(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        with open(fifo, "wb"):
            pass
        pytest.fail("load() did not return")
    assert dumps(loaded[0]) == dumps(sample_workflow())


def test_a_folder_is_refused_with_a_message(tmp_path):
    assert "a folder, not a workflow file" in load_error(tmp_path)


def test_png_save_is_atomic(tmp_path, monkeypatch):
    """A PNG write that dies before the rename keeps the old image whole."""
    path = save_png(torch.zeros(3, 4, 4), tmp_path / "out.png", dumps(sample_workflow()))
    before = path.read_bytes()

    def crashing_replace(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(wio.os, "replace", crashing_replace)
    with pytest.raises(OSError):
        save_png(torch.ones(3, 4, 4), path, dumps(Workflow()))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize("change, message", [
    (lambda n: n.params.update(value=float("nan")), "field 'value': holds nan"),
    (lambda n: n.params.update(value=[1, float("inf")]), "field 'value': holds inf"),
    (lambda n: n.params.update(value={1, 2}), "field 'value': holds a set"),
    (lambda n: n.params.update(value={3: "x"}), "field 'value': has a key of type int"),
    (lambda n: setattr(n, "mode", ""), "'mode' must be text"),
    (lambda n: setattr(n, "type", ""), "'type' must be text"),
])
def test_saving_refuses_what_loading_would_refuse(change, message):
    """Found by fuzzing: a document built in memory saved a file that would not
    open again (an empty mode), or failed with json's bare ValueError (NaN)."""
    workflow = sample_workflow()
    change(workflow.node("a"))
    with pytest.raises(WorkflowError, match="cannot save the workflow") as info:
        dumps(workflow)
    assert "node 'a'" in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("stop", ["abc", [1], 2.5, True, -3])
def test_branching_a_sampler_with_an_invalid_stop_step_names_the_field(stop):
    """Found by fuzzing: int() of the field raised a bare ValueError/TypeError."""
    from core.workflow.branch import SAMPLER_TYPE, branch_at

    workflow = Workflow()
    workflow.add_node(Node("sampler", SAMPLER_TYPE, params={"stop_at_step": stop}))
    with pytest.raises(WorkflowError, match=r"node 'sampler': its 'stop_at_step' must be a whole"):
        branch_at(workflow, "sampler", 2, {})


def test_a_workflow_saved_with_a_byte_order_mark_opens(tmp_path):
    """Some Windows editors write UTF-8 with a BOM; json refused it ("Unexpected UTF-8 BOM")."""
    from core.workflow import dumps, load

    original = load(DEFAULT_WORKFLOW)
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + dumps(original).encode("utf-8"))
    assert load(path) == original
