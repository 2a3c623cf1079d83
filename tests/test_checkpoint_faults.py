"""Damaged and hostile model files (issue 12): every loader refuses them with a
CheckpointError naming the file (and the key, the expected and found shape
or dtype), never a raw RuntimeError, AttributeError, RecursionError, OSError,
ValueError, TypeError or KeyError; integer, bool and NaN/inf weights are
refused; a failed save leaves no temporary file. One test per fault class,
plus a small run of the model-file fuzz targets (``tests/fuzz``)."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.checkpoints import CheckpointError, save_checkpoint
from core.models.builtin import (
    MODELS_DIR,
    load_classifier,
    load_controlnet,
    load_model,
    load_vae_handle,
)

CLASSIFIER = MODELS_DIR / "shapes-classifier.safetensors"
WORKBENCH = "diffusion-workbench"


def rewrite(source, target, tensors=None, meta=None, raw_meta=None):
    """``source`` written to ``target`` with ``tensors(dict)`` and ``meta(dict)``
    applied (or the metadata text replaced by ``raw_meta``)."""
    with safe_open(str(source), "pt") as handle:
        text = handle.metadata()[WORKBENCH]
    weights = load_file(str(source))
    weights = tensors(dict(weights)) if tensors else weights
    metadata = json.loads(text)
    if meta:
        meta(metadata)
    save_file(weights, str(target), metadata={WORKBENCH: raw_meta if raw_meta is not None
                                              else json.dumps(metadata)})
    return target


def first_float_key(tensors, skip=0):
    return [k for k, v in tensors.items() if v.is_floating_point() and v.ndim][skip]


# ----------------------------------------------------------- RuntimeError: shapes

def test_a_weight_of_another_shape_is_refused_naming_key_and_both_shapes(tmp_path):
    def reshape(tensors):
        tensors["classifier.conv_in.bias"] = torch.zeros(3, 3, dtype=torch.float16)
        return tensors

    path = rewrite(CLASSIFIER, tmp_path / "shape.safetensors", tensors=reshape)
    with pytest.raises(CheckpointError, match=r"shape\.safetensors: classifier tensor conv_in\."
                                              r"bias has shape \(3, 3\), expected \(32,\)"):
        load_classifier(str(path))


# ----------------------------------------- AttributeError, RecursionError: metadata

@pytest.mark.parametrize("text, reason", [
    ("[1, 2]", "a JSON list, not an object"),
    ('"ldm"', "a JSON str, not an object"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ('{"kind": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32 levels"),
    ('{"name": "\\ud800"}', "not valid Unicode"),
])
def test_metadata_that_is_no_usable_object_is_refused_by_loaders_and_detector(tmp_path, text,
                                                                              reason):
    from core.checkpoints.detect import detect

    path = rewrite(CLASSIFIER, tmp_path / "meta.safetensors", raw_meta=text)
    for read in (lambda: load_model(str(path)), lambda: load_classifier(str(path)),
                 lambda: detect(path)):
        with pytest.raises(CheckpointError, match=rf"meta\.safetensors: .*{reason}"):
            read()


def test_a_header_nested_beyond_the_parsers_stack_is_refused_by_every_reader(tmp_path):
    from core.checkpoints.detect import detect
    from core.models.families.dispatch import load_any_checkpoint
    from core.models.lora import load_lora

    text = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    for read in (lambda: detect(path), lambda: load_any_checkpoint(path),
                 lambda: load_lora(path, {}, {}), lambda: load_model(str(path))):
        with pytest.raises(CheckpointError, match=r"deep\.safetensors: .*nested too deeply"):
            read()


@pytest.mark.parametrize("entry, reason", [
    ({"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}, r"unknown dtype \['F32'\]"),
    ({"dtype": "F32", "shape": [10 ** 30], "data_offsets": [0, 4]}, r"needs 4e\+30 bytes"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0, 2 ** 70]}, r"needs 4 bytes"),
])
def test_a_header_that_lies_about_a_tensor_is_refused_saying_how(tmp_path, entry, reason):
    from core.checkpoints.detect import detect
    from core.checkpoints.safetensors_io import read_tensors

    text = json.dumps({"w": entry})
    path = tmp_path / "lies.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text.encode() + bytes(4))
    for read in (detect, read_tensors):
        with pytest.raises(CheckpointError, match=rf"lies\.safetensors: .*tensor 'w': .*{reason}"):
            read(path)


# ------------------------------------------------ ValueError, TypeError, KeyError

@pytest.mark.parametrize("edit, found", [
    (lambda m: m["components"]["classifier"].__setitem__("config", "x"), "config is a JSON str"),
    (lambda m: m.__setitem__("components", [1]), "TypeError"),
    (lambda m: m["schedule"].__setitem__("name", "nope"), "ValueError: unknown schedule 'nope'"),
    (lambda m: m.pop("schedule"), "KeyError: no 'schedule' entry"),
    (lambda m: m["components"]["classifier"]["config"].__setitem__("norm_num_groups", 7),
     r"ValueError: num_channels \(32\) must be divisible by num_groups \(7\)"),
    (lambda m: m["components"]["classifier"]["config"].__setitem__("block_out_channels", []),
     "IndexError"),
])
def test_metadata_of_the_wrong_kind_is_refused_saying_what_was_found(tmp_path, edit, found):
    path = rewrite(CLASSIFIER, tmp_path / "odd.safetensors", meta=edit)
    with pytest.raises(CheckpointError, match=rf"odd\.safetensors: .*{found}"):
        load_classifier(str(path))


def test_a_config_a_library_validates_itself_is_refused_saying_what_it_found(tmp_path):
    """transformers' configs raise huggingface_hub's own error class, no ValueError."""
    def float_vocabulary(meta):
        meta["components"]["text_encoder"]["config"]["vocab_size"] = 28.5

    shutil.copy(MODELS_DIR / "shapes-vae.safetensors", tmp_path)
    path = rewrite(MODELS_DIR / "shapes-ldm.safetensors", tmp_path / "ldm.safetensors",
                   meta=float_vocabulary)
    with pytest.raises(CheckpointError, match=r"ldm\.safetensors: .*'vocab_size' expected int, "
                                              r"got float"):
        load_model(str(path))


def test_a_config_size_no_weight_could_have_is_refused_before_building(tmp_path):
    def huge(meta):
        meta["components"]["classifier"]["config"]["layers_per_block"] = 10 ** 6

    path = rewrite(CLASSIFIER, tmp_path / "huge.safetensors", meta=huge)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"huge\.safetensors: the classifier's config says "
                                              r"layers_per_block = 1000000, more than any size"):
        load_classifier(str(path))
    assert time.perf_counter() - started < 30  # not a million layers built first


# ------------------------------------------------------------ OSError: the path

def _loaders():
    from core.checkpoints.detect import detect
    from core.models.families.controlnet import load_controlnet_file
    from core.models.families.dispatch import load_any_checkpoint, load_any_vae
    from core.models.families.sd3 import load_sd3
    from core.models.families.text_files import load_text_encoder_file
    from core.models.lora import load_lora
    from core.models.taesd import load_tiny_decoder

    return {"load_model": lambda p: load_model(p), "load_classifier": lambda p: load_classifier(p),
            "load_controlnet": lambda p: load_controlnet(p),
            "load_vae_handle": lambda p: load_vae_handle(p), "detect": detect,
            "load_any_checkpoint": load_any_checkpoint, "load_any_vae": load_any_vae,
            "load_controlnet_file": load_controlnet_file, "load_sd3": load_sd3,
            "load_text_encoder_file": lambda p: load_text_encoder_file(p, "clip_l"),
            "load_lora": lambda p: load_lora(p, {}, {}), "load_tiny_decoder": load_tiny_decoder}


@pytest.mark.parametrize("loader", sorted(_loaders()))
@pytest.mark.parametrize("name", ["x" * 300 + ".safetensors", "~no-such-user-here/m.safetensors"])
def test_a_path_the_system_refuses_is_a_checkpoint_error_naming_it(tmp_path, loader, name):
    given = name if name.startswith("~") else str(tmp_path / name)
    with pytest.raises(CheckpointError, match=r"xxxxxxxx|no-such-user-here"):
        _loaders()[loader](given)


# ------------------------------------------------- integer, bool and NaN/inf weights

@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.uint8])
def test_integer_and_bool_weights_are_refused_naming_key_and_dtype(tmp_path, dtype):
    def recast(tensors):
        key = first_float_key(tensors, 2)
        tensors[key] = tensors[key].to(dtype)
        return tensors

    path = rewrite(CLASSIFIER, tmp_path / "ints.safetensors", tensors=recast)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=rf"ints\.safetensors: classifier tensor \S+ holds "
                                              rf"{name} values where the network has a float"):
        load_classifier(str(path))


def test_integer_weights_in_a_real_checkpoint_are_refused_naming_the_key(tmp_path):
    from core.models.families.dispatch import load_any_vae
    from tests.layouts.files import tiny_vae_file

    made = tiny_vae_file(tmp_path / "vae.safetensors")
    tensors = dict(made.tensors)
    tensors["decoder.conv_out.weight"] = tensors["decoder.conv_out.weight"].to(torch.int16)
    save_file(tensors, str(tmp_path / "int-vae.safetensors"))
    with pytest.raises(CheckpointError, match=r"int-vae\.safetensors: VAE tensor "
                                              r"\S*conv_out\.weight holds int16 values"):
        load_any_vae(tmp_path / "int-vae.safetensors")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_of_a_builtin_file_are_refused_naming_the_key(tmp_path, value):
    def poison(tensors):
        key = first_float_key(tensors, 5)
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[-1] = value
        return tensors

    path = rewrite(CLASSIFIER, tmp_path / "nan.safetensors", tensors=poison)
    with pytest.raises(CheckpointError, match=r"nan\.safetensors: classifier tensor \S+ holds NaN "
                                              r"or infinite values"):
        load_classifier(str(path))


def test_non_finite_weights_of_a_small_real_file_are_refused_naming_the_key(tmp_path):
    """Files up to 512 MiB are checked in full (core/models/families/weights.py
    says why bigger ones are not)."""
    from core.models.families.dispatch import load_any_vae
    from tests.layouts.files import tiny_vae_file

    made = tiny_vae_file(tmp_path / "vae.safetensors")
    half = {k: v.half() for k, v in made.tensors.items()}
    half["encoder.conv_in.bias"][0] = float("inf")
    save_file(half, str(tmp_path / "inf-vae.safetensors"))
    for dtype in (torch.float16, torch.float32):  # used as stored, or cast
        with pytest.raises(CheckpointError, match=r"inf-vae\.safetensors: VAE tensor "
                                                  r"\S*conv_in\.bias holds NaN or infinite"):
            load_any_vae(tmp_path / "inf-vae.safetensors", dtype=dtype)


def test_a_lora_with_integer_or_non_finite_factors_is_refused(tmp_path):
    from core.models.lora import group_layers

    down, up = torch.ones(4, 8), torch.ones(8, 4)
    with pytest.raises(CheckpointError, match=r"lora\.st: x lora_down holds int64 values"):
        group_layers({"x.lora_down.weight": down.long(), "x.lora_up.weight": up}, "lora.st")
    with pytest.raises(CheckpointError, match=r"lora\.st: x lora_up holds NaN or infinite"):
        group_layers({"x.lora_down.weight": down, "x.lora_up.weight": up / 0}, "lora.st")
    with pytest.raises(CheckpointError, match=r"lora\.st: x\.alpha is \(2,\) float32"):
        group_layers({"x.lora_down.weight": down, "x.lora_up.weight": up,
                      "x.alpha": torch.ones(2)}, "lora.st")


# ------------------------------------------------------- names and the file named

def test_a_lone_surrogate_in_a_tensor_name_is_refused_and_inspect_still_answers(tmp_path):
    from app.cli.inspect import run_inspect
    from core.checkpoints.detect import detect

    text = json.dumps({"\ud800w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    path = tmp_path / "surrogate.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text.encode() + bytes(4))
    with pytest.raises(CheckpointError, match=r"surrogate\.safetensors: .*not valid Unicode"):
        detect(path)
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))
    assert run_inspect([str(path)], out=out, err=err) == 2


def test_every_refusal_names_the_file_even_from_a_converter_that_knows_none(tmp_path):
    from core.models.families.flux import load_flux
    from tests.layouts.flux import tiny_flux_transformer

    made = tiny_flux_transformer(tmp_path / "flux.safetensors")
    tensors = dict(made.tensors)
    tensors["vector_in.in_layer.bias"] = torch.zeros(2, 2)
    save_file(tensors, str(tmp_path / "bad-flux.safetensors"))
    with pytest.raises(CheckpointError,
                       match=r"^\S*bad-flux\.safetensors: .*vector_in\.in_layer\.bias"):
        load_flux(tmp_path / "bad-flux.safetensors")


def test_wrong_arguments_and_programming_errors_pass_the_boundary_unchanged(tmp_path):
    from core.checkpoints.boundary import ChoiceError, checkpoint_boundary
    from core.models.families.dispatch import load_any_vae

    with pytest.raises(ChoiceError, match="the VAE kind must be one of"):
        load_any_vae(CLASSIFIER, kind="nope")

    @checkpoint_boundary("model file")
    def buggy(path):
        return undefined_name  # noqa: F821

    with pytest.raises(NameError):
        buggy(tmp_path / "m.safetensors")


# ------------------------------------------------------------------- saving

def test_a_failed_save_removes_its_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import safetensors.torch

    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(4)}, {"kind": "old"})
    before = path.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 100)  # a partial write, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"w": torch.ones(4)}, {"kind": "new"})
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert path.read_bytes() == before


# ------------------------------------------------------------------- fuzzing

@pytest.mark.parametrize("name", ["checkpoint.header", "checkpoint.builtin"])
def test_the_model_file_fuzz_targets_handle_a_small_sample(name):
    from tests.fuzz.targets_checkpoint import TARGETS

    target = next(t for t in TARGETS if t.name == name)

    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target.cases)
    def run(case):
        target.run(case)

    run()
