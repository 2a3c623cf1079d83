"""Every node's numeric inputs at their declared minimum and maximum, and every
built-in model at the latent sizes it allows, in small headless workflows
(issue 12). Each run must end in finite images, in a validation problem (that
names node and field), or in a message the workbench raised on purpose —
never in a library's raw exception ("math domain error", "mat1 and mat2
shapes cannot be multiplied", diffusers' ``pos_embed_max_size`` …).

The cases are generated from the node registry, so a new numeric field is
swept without editing this file; a node type with numeric fields and no
workflow here fails :func:`test_every_numeric_field_has_a_workflow`. Sizes are
tiny and runs take one step; the few extremes that cost tens of seconds at
any size (a U-Net at 8192 px, 10,000 steps) run in the slow tests.
"""
from __future__ import annotations

import linecache
from pathlib import Path

import pytest
import torch

from core.diffusion.registry import MAX_TIMESTEPS, SAMPLERS, SCHEDULE_NAMES, SPACINGS
from core.executor import ExecutionFailed, Executor
from core.latent_sizes import LatentSizeError
from core.models.shapes import FLOW_TRANSFORMER_CONFIG, VAE_CONFIG
from core.ports import PortType
from core.validation import ValidationError
from nodes import default_registry
from tests.stubs import chain

ROOT = Path(__file__).resolve().parents[1]
REGISTRY, _ = default_registry()
NUMERIC = (PortType.INT, PortType.FLOAT)
FLOW_MODELS = ("shapes-flow", "shapes-sana")  # sampled on the flow schedule
#: The largest image shapes-flow samples: its position table times patch and VAE downscale.
FLOW_LARGEST = (FLOW_TRANSFORMER_CONFIG["pos_embed_max_size"]
                * FLOW_TRANSFORMER_CONFIG["patch_size"]
                * 2 ** (len(VAE_CONFIG["block_out_channels"]) - 1))


# -- small workflows, each as (nodes, links) -------------------------------------------------
def sampled(model_nodes, model: str, size: int = 8, text: bool = True, vae: bool = True):
    """model → empty latent → one-step schedule → sampler → image → save."""
    flow = any(params.get("name") in FLOW_MODELS for _, _, params in model_nodes)
    schedule = {"steps": 1, "name": "flow" if flow else "scaled_linear"}
    nodes = [*model_nodes,
             ("latent", "latent.empty", {"width": size, "height": size, "batch_size": 1}),
             ("schedule", "diffusion.schedule", schedule),
             ("sampler", "diffusion.sampler", {"guidance": 2.0}),
             ("decode", "vae.decode" if vae else "latent.to_pixels", {}),
             ("save", "image.save", {})]
    links = [(model, "model", "latent", "model"), (model, "model", "sampler", "model"),
             ("latent", "latent", "sampler", "latent"),
             ("schedule", "schedule", "sampler", "schedule"),
             ("sampler", "latent", "decode", "latent"), ("decode", "image", "save", "images")]
    if vae:
        links.append((model, "vae", "decode", "vae"))
    if text:
        nodes += [("positive", "conditioning.encode", {"text": "a red circle"}),
                  ("negative", "conditioning.encode", {"text": ""})]
        links += [(model, "clip", "positive", "clip"), (model, "clip", "negative", "clip"),
                  ("positive", "conditioning", "sampler", "positive"),
                  ("negative", "conditioning", "sampler", "negative")]
    else:
        nodes.append(("positive", "conditioning.text", {"text": ""}))
        links.append(("positive", "conditioning", "sampler", "positive"))
    return nodes, links


def checkpoint(name: str, size: int = 8):
    return sampled([("checkpoint", "model.checkpoint", {"name": name})], "checkpoint", size)


def ideal(size: int = 8):
    return sampled([("model", "model.ideal_denoiser", {"count": 4, "size": size})], "model", size,
                   text=False, vae=False)


def rewired(nodes, links, drop, extra_nodes, extra_links):
    """``nodes``/``links`` with the links ``drop`` says to drop, and more added."""
    return [*nodes, *extra_nodes], [ln for ln in links if not drop(ln)] + list(extra_links)


def between_prompt_and_sampler(node_id: str, type_id: str, base):
    """A conditioning node spliced in between the positive prompt and the sampler."""
    return rewired(*base, lambda ln: ln[0] == "positive" and ln[2] == "sampler",
                   [(node_id, type_id, {})],
                   [("positive", "conditioning", node_id, "conditioning"),
                    (node_id, "conditioning", "sampler", "positive")])


def controlnet():
    return rewired(*checkpoint("shapes-ldm"),
                   lambda ln: ln[2] == "sampler" and ln[3] in ("positive", "negative"),
                   [("scene", "image.shape_scene", {"pixels": 16}),
                    ("cn", "model.controlnet", {"name": "shapes-controlnet"}),
                    ("apply", "conditioning.controlnet", {})],
                   [("positive", "conditioning", "apply", "positive"),
                    ("negative", "conditioning", "apply", "negative"),
                    ("cn", "controlnet", "apply", "controlnet"),
                    ("scene", "outline", "apply", "image"),
                    ("apply", "positive", "sampler", "positive"),
                    ("apply", "negative", "sampler", "negative")])


def guided(loader: str, loader_type: str, guide_type: str):
    """shapes-ddpm steered by a guidance node fed by a loader (classifier, CLIP)."""
    return rewired(*checkpoint("shapes-ddpm"),
                   lambda ln: ln[0] == "checkpoint" and ln[2] == "sampler",
                   [(loader, loader_type, {}), ("guided", guide_type, {})],
                   [("checkpoint", "model", "guided", "model"),
                    (loader, loader, "guided", loader),
                    ("guided", "model", "sampler", "model")])


def unclip():
    """Prior sampler and a picture's embedding, mixed, into the unCLIP decoder."""
    nodes, links = sampled([("checkpoint", "model.checkpoint", {"name": "shapes-unclip"})],
                           "checkpoint", text=False)
    return rewired(nodes, links, lambda ln: ln[0] == "positive",
                   [("clip", "model.noisy_clip", {}), ("prior_model", "model.prior", {}),
                    ("prior", "unclip.prior_sampler", {"batch_size": 1, "steps": 2}),
                    ("pattern", "image.pattern", {"width": 16, "height": 16}),
                    ("encode", "unclip.encode_image", {}), ("mix", "unclip.mix", {}),
                    ("condition", "unclip.embedding_condition", {})],
                   [("prior_model", "prior", "prior", "prior"), ("clip", "clip", "prior", "clip"),
                    ("clip", "clip", "encode", "clip"), ("pattern", "image", "encode", "image"),
                    ("prior", "embedding", "mix", "a"), ("encode", "embedding", "mix", "b"),
                    ("mix", "embedding", "condition", "embedding"),
                    ("condition", "conditioning", "sampler", "positive")])


def palette(size: int = 8):
    """A test pattern as the source of shapes-palette (guidance 1: it has no
    unconditional model, and says so at a higher one)."""
    nodes, links = sampled([("checkpoint", "model.checkpoint", {"name": "shapes-palette"})],
                           "checkpoint", size, text=False)
    nodes = [(i, t, {**p, "guidance": 1.0} if i == "sampler" else p) for i, t, p in nodes]
    return rewired(nodes, links, lambda ln: ln[0] == "positive",
                   [("pattern", "image.pattern", {"width": 16, "height": 16}),
                    ("source", "conditioning.image_concat", {})],
                   [("pattern", "image", "source", "image"),
                    ("source", "conditioning", "sampler", "positive")])


def super_resolution(size: int = 16):
    """A test pattern enlarged by shapes-sr through the image condition, whose
    augmentation level and seed are swept (past the level it was trained
    on, it says so)."""
    nodes, links = sampled([("checkpoint", "model.checkpoint", {"name": "shapes-sr"})],
                           "checkpoint", size, text=False)
    nodes = [(i, t, {**p, "guidance": 1.0} if i == "sampler" else p) for i, t, p in nodes]
    return rewired(nodes, links, lambda ln: ln[0] == "positive",
                   [("pattern", "image.pattern", {"width": 8, "height": 8}),
                    ("source", "conditioning.image_concat", {"augmentation": 0.1})],
                   [("pattern", "image", "source", "image"),
                    ("source", "conditioning", "sampler", "positive")])


def video(size: int = 8, frames: int = 2):
    """shapes-video: empty video latent → one flow step → frames decoded → saved."""
    nodes = [("checkpoint", "model.checkpoint", {"name": "shapes-video"}),
             ("latent", "latent.empty_video", {"width": size, "height": size, "frames": frames}),
             ("schedule", "diffusion.schedule", {"steps": 1, "name": "flow"}),
             ("positive", "conditioning.encode", {"text": "a red circle moving left"}),
             ("negative", "conditioning.encode", {"text": ""}),
             ("sampler", "diffusion.sampler", {"guidance": 2.0}),
             ("decode", "vae.decode_video", {}), ("save", "video.save", {})]
    links = [("checkpoint", "model", "latent", "model"), ("checkpoint", "model", "sampler", "model"),
             ("checkpoint", "clip", "positive", "clip"), ("checkpoint", "clip", "negative", "clip"),
             ("checkpoint", "vae", "decode", "vae"), ("latent", "latent", "sampler", "latent"),
             ("schedule", "schedule", "sampler", "schedule"),
             ("positive", "conditioning", "sampler", "positive"),
             ("negative", "conditioning", "sampler", "negative"),
             ("sampler", "latent", "decode", "latent"), ("decode", "video", "save", "video")]
    return nodes, links


def flux_nodes():
    nodes, links = between_prompt_and_sampler("guidance", "flux.guidance",
                                              checkpoint("shapes-flow"))
    return rewired(nodes, links, lambda ln: False, [("shift", "flux.time_shift", {})],
                   [("shift", "shift", "schedule", "shift")])


def lora(path: Path):
    return rewired(*checkpoint("shapes-ldm"),
                   lambda ln: ln[0] == "checkpoint" and (ln[1] == "clip" or ln[2] == "sampler"),
                   [("lora", "model.lora", {"path": str(path)})],
                   [("checkpoint", "model", "lora", "model"),
                    ("checkpoint", "clip", "lora", "clip"),
                    ("lora", "clip", "positive", "clip"), ("lora", "clip", "negative", "clip"),
                    ("lora", "model", "sampler", "model")])


def image_chain(*middle, sources=(("pattern", {}),)):
    """Test patterns (16 px) → the nodes ``middle`` in a row → save."""
    nodes = [(f"src{i}", "image.pattern", {"width": 16, "height": 16, **params})
             for i, (_, params) in enumerate(sources)]
    nodes += [(node_id, type_id, params) for node_id, type_id, params, _ in middle]
    nodes.append(("save", "image.save", {}))
    links, previous = [], None
    for node_id, _type, _params, inputs in middle:
        for port, source in inputs.items():
            links.append((*source, node_id, port) if isinstance(source, tuple)
                         else (previous or "src0", "image", node_id, port))
        previous = node_id
    links.append((previous, "image", "save", "images"))
    return nodes, links


def images_only():
    return {
        "image.pattern": image_chain(("pattern", "image.pattern", {}, {})),
        "image.add_noise": image_chain(("noise", "image.add_noise", {}, {"image": None})),
        "image.blend": image_chain(("blend", "image.blend", {}, {"a": ("src0", "image"),
                                                                  "b": ("src1", "image")}),
                                   sources=(("a", {}), ("b", {"pattern": "rings"}))),
        "image.heat_diffusion": image_chain(("heat", "image.heat_diffusion", {"steps": 2},
                                             {"image": None})),
        "image.resize": image_chain(("resize", "image.resize", {}, {"image": None})),
        "image.shape_scene": image_chain(
            ("scene", "image.shape_scene", {"pixels": 16}, {}),
            ("row", "image.join_row", {}, {"a": ("scene", "image"), "b": ("scene", "outline")})),
        "mask.rectangle": image_chain(("mask", "mask.rectangle", {}, {}),
                                      ("composite", "image.composite", {},
                                       {"base": ("src0", "image"), "overlay": ("src1", "image"),
                                        "mask": ("mask", "mask")}),
                                      sources=(("a", {}), ("b", {"pattern": "rings"}))),
        "diffusion.forward": image_chain(("schedule", "diffusion.schedule", {}, {}),
                                         ("forward", "diffusion.forward", {"t": 3},
                                          {"image": ("src0", "image"),
                                           "schedule": ("schedule", "schedule")})),
    }


MODEL_WORKFLOWS = {"ideal": ideal, "shapes-ldm": lambda: checkpoint("shapes-ldm"),
                   "shapes-ddpm": lambda: checkpoint("shapes-ddpm"),
                   "shapes-flow": lambda: checkpoint("shapes-flow")}
#: Node types each model workflow sweeps (the rest have a workflow of their own).
IN_EVERY_MODEL_WORKFLOW = {"latent.empty": "latent", "diffusion.schedule": "schedule",
                           "diffusion.sampler": "sampler"}


def workflows_for(type_id: str, lora_file: Path) -> list[tuple[str, str, tuple]]:
    """(workflow name, node id, (nodes, links)) that hold a node of ``type_id``."""
    if type_id in IN_EVERY_MODEL_WORKFLOW:
        return [(name, IN_EVERY_MODEL_WORKFLOW[type_id], make())
                for name, make in MODEL_WORKFLOWS.items()]
    single = {
        "model.ideal_denoiser": ("ideal", "model", ideal),
        "conditioning.controlnet": ("controlnet", "apply", controlnet),
        "model.classifier_guidance": ("classifier", "guided", lambda: guided(
            "classifier", "model.classifier", "model.classifier_guidance")),
        "model.clip_guidance": ("clip", "guided", lambda: guided(
            "clip", "model.noisy_clip", "model.clip_guidance")),
        "unclip.prior_sampler": ("unclip", "prior", unclip),
        "unclip.mix": ("unclip", "mix", unclip),
        "conditioning.sdxl": ("sdxl", "sdxl", lambda: between_prompt_and_sampler(
            "sdxl", "conditioning.sdxl", checkpoint("shapes-ldm"))),
        "flux.guidance": ("flux", "guidance", flux_nodes),
        "flux.time_shift": ("flux", "shift", flux_nodes),
        "model.lora": ("lora", "lora", lambda: lora(lora_file)),
        "conditioning.image_concat": ("shapes-sr", "source", super_resolution),
        "latent.empty_video": ("video", "latent", video),
        "vae.decode_video": ("video", "decode", video),
    }
    if type_id in single:
        name, node_id, make = single[type_id]
        return [(name, node_id, make())]
    images = images_only()
    if type_id in images:
        nodes, links = images[type_id]
        node_id = next(n for n, t, _ in nodes if t == type_id and n != "src0")
        return [("images", node_id, (nodes, links))]
    return []


def numeric_fields():
    return [(spec.type_id, item) for spec in sorted(REGISTRY, key=lambda s: s.type_id)
            for item in spec.params if item.type in NUMERIC]


#: Extremes that take tens of seconds at any size: the slow test runs them.
SLOW = {("shapes-ldm", "latent", "width", 8192), ("shapes-ddpm", "latent", "width", 8192)}
#: Left out: a U-Net's other axis is the same code; 10,000 shapes-flow steps
#: (about 3 minutes) are 10,000 calls of a network that one step already ran,
#: and the steps themselves run on the ideal denoiser in
#: :func:`test_the_most_steps_run_where_a_schedule_allows_them`.
SKIPPED = {("shapes-ldm", "latent", "height", 8192), ("shapes-ddpm", "latent", "height", 8192),
           ("shapes-flow", "schedule", "steps", 10000)}


def extreme_cases(lora_file: Path):
    """(case id, workflow with the value set) for every numeric field's min and max."""
    for type_id, item in numeric_fields():
        for workflow_name, node_id, (nodes, links) in workflows_for(type_id, lora_file):
            for value in (item.min, item.max):
                value = int(value) if item.type is PortType.INT else float(value)
                set_nodes = [(i, t, {**p, item.name: value} if i == node_id else p)
                             for i, t, p in nodes]
                yield (workflow_name, node_id, item.name, value), chain(*set_nodes, links=links)


def model_size_cases():
    """Every built-in model at the smallest and largest latent size it allows
    (sizes past those are the Empty latent's extremes, swept above)."""
    cases = {("ideal", 8): ideal(8), ("ideal", 24): ideal(24),
             ("shapes-flow", FLOW_LARGEST): checkpoint("shapes-flow", FLOW_LARGEST),
             **{(name, 8): checkpoint(name, 8)
                for name in ("shapes-ldm", "shapes-ddpm", "shapes-flow")},
             ("shapes-palette", 8): palette(8), ("shapes-palette", 64): palette(64),
             ("shapes-sr", 8): super_resolution(8), ("shapes-sr", 128): super_resolution(128),
             ("shapes-cascade-base", 8): checkpoint("shapes-cascade-base", 8),
             ("shapes-sana", 8): checkpoint("shapes-sana", 8),
             ("shapes-sana", 256): checkpoint("shapes-sana", 256),
             ("shapes-video", 8): video(8), ("shapes-video", 256): video(256, frames=4)}
    for case, (nodes, links) in cases.items():
        yield case, chain(*nodes, links=links)


# -- what counts as an honest outcome ---------------------------------------------------------
def raised_on_purpose(error: BaseException) -> tuple[bool, str]:
    """Whether our own code raised ``error`` with a ``raise`` statement (not a
    library, not an arithmetic accident in our code), and where."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return False, "no traceback"
    file = frame.tb_frame.f_code.co_filename
    line = linecache.getline(file, frame.tb_lineno).strip()
    ours = Path(file).resolve().is_relative_to(ROOT) and ".venv" not in Path(file).parts
    return ours and line.startswith("raise"), f"{file}:{frame.tb_lineno}: {line}"


def outcome(executor: Executor, workflow, case) -> str:
    """'ran', 'refused' (validation) or 'explained' (a message raised on purpose);
    a raw failure or a non-finite image fails the test."""
    try:
        result = executor.run(workflow, device="cpu", previews=False)
    except ValidationError:
        return "refused"
    except ExecutionFailed as failure:
        on_purpose, where = raised_on_purpose(failure.error)
        assert on_purpose, f"{case}: raw failure: {failure}\n  raised at {where}"
        return "explained"
    for values in result.outputs.values():
        for value in values.values():
            if isinstance(value, torch.Tensor):
                assert torch.isfinite(value).all(), f"{case}: an output holds NaN or inf"
    return "ran"


@pytest.fixture(scope="module")
def executor():
    """One executor for the module: the built-in models load once and stay cached."""
    return Executor(REGISTRY)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    from tests.test_controlnet_lora import shapes_ldm_lora

    return shapes_ldm_lora(tmp_path_factory.mktemp("lora") / "shapes-lora.safetensors")


# -- the sweep ------------------------------------------------------------------------------
def test_every_numeric_field_has_a_workflow(lora_file):
    missing = sorted({type_id for type_id, _ in numeric_fields()
                      if not workflows_for(type_id, lora_file)})
    assert missing == [], f"add a workflow for {missing} to workflows_for() in this file"


def test_every_numeric_extreme_runs_or_says_why(executor, lora_file):
    seen = {}
    for case, workflow in extreme_cases(lora_file):
        if case not in SLOW | SKIPPED:
            seen[case] = outcome(executor, workflow, case)
    assert len(seen) > 150
    assert list(seen.values()).count("ran") > len(seen) / 2  # the extremes mostly just work


def test_every_built_in_model_samples_the_sizes_it_allows(executor):
    for case, workflow in model_size_cases():
        assert outcome(executor, workflow, case) == "ran"


@pytest.mark.slow
@pytest.mark.parametrize("kind, schedule", [("diffusion", {"spacing": "karras"}),
                                            ("flow matching", {"name": "flow"})])
def test_the_most_steps_run_where_a_schedule_allows_them(executor, kind, schedule):
    """The most steps (and a stop at the last of them) on a closed-form model,
    diffusion and flow: Karras spacing and the flow grid pick any N (the other
    spacings refuse N > T with a message)."""
    nodes, links = ideal()
    most = REGISTRY.get("diffusion.schedule").input("steps").max
    nodes = [(i, t, {**p, "steps": most, **schedule} if i == "schedule"
              else {**p, "stop_at_step": most, "sampler": "euler"} if i == "sampler"
              else {**p, "parameterization": kind} if i == "model" else p) for i, t, p in nodes]
    assert outcome(executor, chain(*nodes, links=links), (kind, most)) == "ran"


@pytest.mark.slow
@pytest.mark.parametrize("slow_case", sorted(SLOW), ids=lambda case: "-".join(map(str, case)))
def test_the_costly_extremes_run_or_say_why(executor, lora_file, slow_case):
    [workflow] = [flow for case, flow in extreme_cases(lora_file) if case == slow_case]
    assert outcome(executor, workflow, slow_case) in ("ran", "explained")


# -- the three faults of the issue, each at its root ----------------------------------------
def test_the_largest_timesteps_run_on_every_schedule_spacing_and_sampler(executor):
    """The Schedule node's largest T on every named schedule (zero SNR or not),
    spacing and diffusion sampler gives finite images. (T = 100000 was allowed
    and gave "math domain error" in DPM++ 2M: ᾱ_T underflows, σ_max is NaN.)"""
    base = ideal()
    most = REGISTRY.get("diffusion.schedule").input("timesteps").max
    for name in SCHEDULE_NAMES:
        for zero_snr in (False, True):
            for spacing in SPACINGS:
                for sampler, info in SAMPLERS.items():
                    if "ve" not in info.parameterizations:
                        continue
                    nodes = [(i, t, {**p, "timesteps": most, "name": name, "steps": 2,
                                     "zero_snr": zero_snr, "spacing": spacing} if i == "schedule"
                              else {**p, "sampler": sampler} if i == "sampler" else p)
                             for i, t, p in base[0]]
                    case = (name, zero_snr, spacing, sampler)
                    assert outcome(executor, chain(*nodes, links=base[1]), case) == "ran"
    assert most == MAX_TIMESTEPS  # the node's range is the schedules' limit


def test_timesteps_past_the_maximum_are_refused_before_running(executor):
    nodes, links = checkpoint("shapes-ldm")
    nodes = [(i, t, {**p, "timesteps": 100000} if i == "schedule" else p) for i, t, p in nodes]
    with pytest.raises(ValidationError) as refused:
        executor.run(chain(*nodes, links=links), device="cpu")
    [problem] = refused.value.problems
    assert (problem.node_id, problem.field) == ("schedule", "timesteps")
    assert f"maximum {MAX_TIMESTEPS}" in problem.message


def test_make_schedule_says_how_many_timesteps_it_takes():
    from core.diffusion.schedules import make_schedule

    for name in SCHEDULE_NAMES:
        with pytest.raises(ValueError, match=f"at most {MAX_TIMESTEPS} timesteps, not 100000"):
            make_schedule(name, 100000, zero_snr=True)


def _failure(executor, nodes, links) -> ExecutionFailed:
    with pytest.raises(ExecutionFailed) as failed:
        executor.run(chain(*nodes, links=links), device="cpu", previews=False)
    assert isinstance(failed.value.error, LatentSizeError), failed.value
    return failed.value


def test_an_ideal_denoiser_refuses_a_latent_of_another_size_at_the_empty_latent(executor):
    """Height 130 with 32 px images gave "mat1 and mat2 shapes cannot be multiplied"."""
    nodes, links = ideal(32)
    nodes = [(i, t, {**p, "height": 130} if i == "latent" else p) for i, t, p in nodes]
    failure = _failure(executor, nodes, links)
    assert failure.node_id == "latent"
    assert "exactly 32×32 px" in str(failure) and "32×130 px" in str(failure)


def test_a_flow_model_refuses_a_latent_past_its_position_table(executor):
    """192 px gave diffusers' "Height (24) cannot be greater than `pos_embed_max_size`"."""
    failure = _failure(executor, *checkpoint("shapes-flow", 192))
    assert failure.node_id == "latent"
    assert f"at most {FLOW_LARGEST}×{FLOW_LARGEST} px" in str(failure)
    assert "192×192 px" in str(failure) and "multiples of 8 px" in str(failure)


def test_the_sampler_checks_a_latent_that_no_empty_latent_made(executor):
    """An encoded image meets the model only at the sampler: the same check there."""
    nodes, links = rewired(*checkpoint("shapes-flow"), lambda ln: "latent" in (ln[0], ln[2]),
                           [("big", "image.pattern", {"width": 192, "height": 192}),
                            ("encode", "vae.encode", {})],
                           [("big", "image", "encode", "image"),
                            ("checkpoint", "vae", "encode", "vae"),
                            ("encode", "latent", "sampler", "latent")])
    nodes = [n for n in nodes if n[0] != "latent"]
    failure = _failure(executor, nodes, links)
    assert failure.node_id == "sampler" and "at most" in str(failure)


def test_the_sampler_names_a_latent_with_the_wrong_channels(executor):
    """An Empty latent without a model makes SD's 4 channels; the ideal denoiser has 3."""
    nodes, links = rewired(*ideal(), lambda ln: ln[2] == "latent", [], [])
    failure = _failure(executor, nodes, links)
    assert failure.node_id == "sampler"
    assert "3-channel latents" in str(failure) and "4 channels" in str(failure)


def test_the_ideal_denoiser_itself_names_a_wrong_shape():
    from core.diffusion.ideal import IdealDenoiser

    denoiser = IdealDenoiser(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"images are 3×8×8 but x is 3×130×8"):
        denoiser(torch.zeros(1, 3, 130, 8), 1.0)
