"""``diffusion-workbench``: open the desktop workbench (no arguments, or
``gui``), run workflows headless, print noise schedules, train and evaluate
the built-in models, list the node types, say what model files are
(``inspect``).

Exit status: 0 success, 1 a node failed while running (or its results could
not be written), 2 an invalid workflow, ``--set``, output folder or device
(``inspect``: a model file unreadable or of an unknown kind), 130 interrupted
(Ctrl-C cancels the run cleanly at the next node or sampler step).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Sequence

from app.cli.outputs import OutputPathError, check_writable_folder, print_path
from app.cli.overrides import OverrideError, apply_overrides
from app.cli.progress import ProgressPrinter
from app.cli.trajectory import StepRecorder
from core import paths
from core.device import DEVICE_CHOICES, DTYPE_CHOICES, DeviceError
from core.diffusion.registry import SAMPLERS, SCHEDULE_NAMES, SPACINGS

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("diffusion_workbench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-workbench",
        description="See and steer diffusion models: run node-graph workflows.",
    )
    parser.add_argument(
        "--models-dir", dest="global_models_dirs", action="append", type=Path, metavar="DIR",
        help="a folder of your model files, listed in the loader nodes (repeatable; "
             "also DIFFUSION_WORKBENCH_MODELS)")
    parser.add_argument(
        "--allow-pickle", action="store_true",
        help="read pickled .ckpt/.pt/.bin model files you trust (with "
             "torch.load(weights_only=True)); refused by default: unpickling can run code")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run a workflow headless and write its images")
    run.add_argument("workflow", type=Path, help="a workflow .json, or a PNG the workbench wrote")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
        help="change a parameter; NODE is a node id or a unique title (repeatable)",
    )
    run.add_argument("--out", type=Path, default=Path("outputs"), help="folder for images")
    run.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    run.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    run.add_argument("--trajectory", type=Path, metavar="DIR",
                     help="also write each sampler's steps as a filmstrip PNG and a GIF")
    run.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    run.set_defaults(handler=_cmd_run)
    schedule = commands.add_parser(
        "schedule", help="print a noise schedule as CSV (t, beta, alpha_bar, sigma, snr)"
    )
    schedule.add_argument("name", help=f"one of {', '.join(SCHEDULE_NAMES)}")
    schedule.add_argument("--timesteps", type=int, default=1000, help="T (default 1000)")
    schedule.add_argument("--zero-snr", action="store_true", help="rescale to zero terminal SNR")
    schedule.add_argument("--steps", type=int, help="only the timesteps N sampling steps visit")
    schedule.add_argument("--spacing", default="leading", help=f"one of {', '.join(SPACINGS)}")
    schedule.set_defaults(handler=_cmd_schedule)
    train = commands.add_parser("train", help="train a built-in model")
    train.add_argument("model", help="shapes-vae, shapes-ldm, shapes-controlnet, shapes-ddpm, "
                                      "shapes-classifier, shapes-flow, shapes-refiner, "
                                      "shapes-clip, shapes-palette, shapes-prior, shapes-unclip, "
                                      "shapes-t5, shapes-cascade-base(-clip), shapes-sr, "
                                      "shapes-dcae, shapes-gemma or shapes-sana")
    train.add_argument("--steps", type=int)
    train.add_argument("--batch", type=int)
    train.add_argument("--out", type=Path, help="the model file to write")
    train.add_argument("--resume", type=Path, help="a .train.pt checkpoint to continue from")
    train.add_argument("--device", default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--weighting", choices=("v", "epsilon"),
                       help="shapes-ldm loss weighting (default v: 1 + 1/SNR, truncated)")
    train.add_argument("--threads", type=int,
                       help="CPU threads (1 avoids thrashing when the cores are shared)")
    train.add_argument("--pool", type=int, help="how many shapes-world images to render")
    train.add_argument("--workers", type=int, default=1, help="processes rendering the pool")
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--lr-decay", choices=("constant", "cosine"), default="constant",
                       help="after warmup: constant, or a cosine to zero at --steps (fine-tunes)")
    train.add_argument("--max-minutes", type=float,
                       help="a time budget: stop early and write the model trained so far")
    train.add_argument("--decoder-only", action="store_true",
                       help="shapes-vae: fine-tune the decoder alone (latents stay the same)")
    train.add_argument("--init", type=Path,
                       help="start from this model file's weights (fine-tuning)")
    train.add_argument("--models-dir", type=Path,
                       help="where the models this one builds on are (default: the shipped ones)")
    train.set_defaults(handler=_cmd_train)
    evaluate = commands.add_parser(
        "eval", help="measure a built-in model's prompt accuracy (ControlNet: IoU; "
                     "classifier, CLIP: the guidance they give; Palette: colourising; "
                     "unCLIP: through its prior; cascade: SR against bicubic; video: per-frame "
                     "attributes, motion, consistency)")
    evaluate.add_argument("model", help="shapes-ldm, shapes-ddpm, shapes-flow, shapes-controlnet, "
                                        "shapes-classifier, shapes-clip, shapes-palette, "
                                        "shapes-unclip, shapes-cascade-base(-clip), "
                                        "shapes-sr, shapes-sana, shapes-video, a path to a "
                                        "model file, or a "
                                        "workflow (.json) whose 'positive' node takes the "
                                        "captions")
    evaluate.add_argument("--base", help="the backbone a ControlNet, classifier or CLIP steers "
                                         "(default: shapes-ldm / shapes-ddpm)")
    evaluate.add_argument("--samples", type=int, default=200, help="held-out prompts")
    evaluate.add_argument("--per-prompt", type=int, default=1,
                          help="images per prompt (2 or more also measures diversity)")
    evaluate.add_argument("--steps", type=int, help="default: the model's example workflow's")
    evaluate.add_argument("--guidance", type=float, default=3.0,
                          help="classifier-free guidance scale g")
    evaluate.add_argument("--scale", type=float, default=3.0,
                          help="classifier or CLIP guidance scale s (for a classifier or CLIP)")
    evaluate.add_argument("--strength", type=float, default=1.0, help="ControlNet strength")
    evaluate.add_argument("--prior", help="unCLIP: the prior file (default shapes-prior)")
    evaluate.add_argument("--prior-guidance", type=float, default=1.0,
                          help="unCLIP: the prior's classifier-free guidance scale")
    evaluate.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
        help="a workflow: change a parameter first (repeatable)")
    evaluate.add_argument("--sr", help="a cascade's base: the super-resolution model after it "
                                       "(default shapes-sr)")
    evaluate.add_argument("--augmentation", type=float, default=0.0,
                          help="super-resolution: the noise conditioning augmentation level")
    evaluate.add_argument("--sampler", help=f"one of {', '.join(SAMPLERS)} (default: the "
                                            "model's example workflow's)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--grid", type=Path, default=Path("eval-grid.png"))
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=_cmd_eval)
    nodes = commands.add_parser("nodes", help="list the node types and their parameters")
    nodes.add_argument("type_id", nargs="?", help="show one node type in full")
    nodes.set_defaults(handler=_cmd_nodes)
    inspect = commands.add_parser(
        "inspect", help="say what model files are (family, variant, parts, dtype, size) "
                        "from their headers alone")
    inspect.add_argument("files", nargs="+", metavar="FILE",
                         help="a .safetensors file, a diffusers folder, or a models-folder name")
    inspect.add_argument("--json", action="store_true", help="print the detections as JSON")
    inspect.set_defaults(handler=_cmd_inspect)
    gui = commands.add_parser("gui", help="open the desktop workbench (the default command)")
    gui.add_argument("file", nargs="?", type=Path, help="a workflow .json or a workbench PNG")
    gui.add_argument("--run", action="store_true", help="run the workflow once it is open")
    gui.add_argument("--screenshot", type=Path, metavar="PATH",
                     help="save a picture of the window (after the run with --run) and exit")
    gui.set_defaults(handler=_cmd_gui)
    return parser


#: What ``diffusion-workbench`` with no arguments opens.
DEFAULT_WORKFLOW = paths.DEFAULT_WORKFLOW


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no arguments: open the workbench on the default workflow
        models_dirs, allow_pickle = args.global_models_dirs, args.allow_pickle
        args = parser.parse_args(["gui", str(DEFAULT_WORKFLOW)])
        args.global_models_dirs, args.allow_pickle = models_dirs, allow_pickle
    if args.allow_pickle:
        from core.checkpoints.pickles import allow_pickles

        allow_pickles(True)
    if args.global_models_dirs:
        from core.checkpoints.library import set_models_dirs

        set_models_dirs(args.global_models_dirs)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `… | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _registry():
    from nodes import default_registry

    registry, problems = default_registry()
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return registry


def _cmd_run(args: argparse.Namespace) -> int:
    from core.executor import Cancelled, CancelToken, ExecutionFailed, Executor
    from core.validation import ValidationError
    from core.workflow import WorkflowError, WorkflowFormatError, dumps, load

    try:
        registry = _registry()
        workflow = apply_overrides(load(args.workflow), registry, args.overrides)
        # Everything the images need is checked before the run, not after it.
        workflow_json = dumps(workflow)
        check_writable_folder(args.out, "--out")
        if args.trajectory:
            check_writable_folder(args.trajectory, "--trajectory")
        executor = Executor(registry)
        token = CancelToken()
        recorder = StepRecorder() if args.trajectory else None
        sink = ProgressPrinter() if recorder is None else recorder.wrapping(ProgressPrinter())
        worker = _Worker(
            lambda: executor.run(
                workflow, on_event=sink, cancel=token,
                device=args.device, dtype=args.dtype, previews=recorder is not None,
            )
        )
        result = worker.wait_or_cancel(token)
    except (WorkflowFormatError, WorkflowError, OverrideError, OutputPathError, ValidationError,
            DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted: the run was cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Cancelled:
        print("the run was cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ExecutionFailed as error:
        if args.verbose:
            log.error("traceback of the failure", exc_info=error.error)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return _write_results(args, result, registry, workflow, workflow_json, recorder)


def _write_results(args, result, registry, workflow, workflow_json: str, recorder) -> int:
    """Write the images (and the trajectory); a failure now (a full disk) is
    reported, not raised: the folders were checked before the run."""
    try:
        written = write_images(result, registry, workflow, args.out, workflow_json)
        if recorder is not None:
            written += recorder.export(args.trajectory)
    except (OSError, ValueError) as error:
        if args.verbose:
            log.error("traceback of the failure", exc_info=error)
        print(f"error: the run finished, but writing its results failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print_path(path)
    return EXIT_OK


def write_images(result, registry, workflow, out_dir: Path, workflow_json: str) -> list[Path]:
    """Write every IMAGE output of every output node as ``<node-id>_<index>.png``
    and every VIDEO output as ``<node-id>_<index>.<its container>``."""
    from core.images import check_image, save_png
    from core.ports import PortType
    from core.video import check_video, save_video

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for node_id, values in sorted(result.outputs.items()):
        spec = registry.get(workflow.nodes[node_id].type)
        for output in spec.outputs:
            value, what = values[output.name], f"output {output.name!r} of node {node_id!r}"
            if output.type is PortType.IMAGE:
                check_image(value, what)
                written += [save_png(image, out_dir / f"{node_id}_{index}.png", workflow_json)
                            for index, image in enumerate(value)]
            elif output.type is PortType.VIDEO:
                check_video(value, what)
                written += [save_video(clip, out_dir / f"{node_id}_{index}.{value.container}",
                                       value.fps, workflow_json)
                            for index, clip in enumerate(value.frames)]
    return written


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from core.device import resolve_device
    from core.training.recipes import run_training

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        options = {"weighting": args.weighting} if args.weighting else {}
        if args.models_dir:
            options["models_dir"] = args.models_dir
        if args.decoder_only:
            options["decoder_only"] = True
        budget = args.max_minutes * 60 if args.max_minutes else None
        path = run_training(args.model, args.steps, args.batch, args.out, args.resume, device,
                            args.seed, pool=args.pool, workers=args.workers, lr=args.lr,
                            max_seconds=budget, init=args.init, lr_decay=args.lr_decay, **options)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted: resume from the last checkpoint with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(path)
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from core.checkpoints import CheckpointError, load_checkpoint
    from core.device import resolve_device
    from core.evaluation import evaluate
    from core.models.builtin import model_file

    common = dict(sampler=args.sampler, seed=args.seed, grid=args.grid)
    try:
        device = resolve_device(args.device)
        if args.model.endswith(".json"):
            return _eval_workflow(args)
        meta = load_checkpoint(model_file(args.model))[1]
        kind = meta.get("kind")
        if kind == "controlnet":
            report = evaluate.evaluate_controlnet(
                args.model, args.base or "shapes-ldm", args.samples, args.steps, args.guidance,
                strength=args.strength, device=device, **common)
        elif kind == "classifier":
            report = evaluate.evaluate_classifier_guidance(
                args.base or "shapes-ddpm", args.model, args.samples, args.per_prompt,
                args.steps, args.scale, device=device, **common)
        elif kind == "clip":
            from core.evaluation.clip_eval import evaluate_clip_guidance

            report = evaluate_clip_guidance(
                args.base or "shapes-ddpm", args.model, args.samples, args.per_prompt,
                args.steps, args.scale, device=device, **common)
        elif kind == "unclip_decoder":
            from core.evaluation.unclip_eval import evaluate_unclip

            report = evaluate_unclip(args.model, args.prior, None, args.samples, args.steps,
                                     args.guidance, args.prior_guidance, device=device, **common)
        elif kind == "super_resolution":
            from core.evaluation.cascade_eval import evaluate_sr

            report = evaluate_sr(args.model, args.samples, args.steps,
                                 augmentation=args.augmentation, device=device, **common)
        elif isinstance(meta.get("cascade"), dict) and meta["cascade"].get("stage") == "base":
            from core.evaluation.cascade_eval import evaluate_cascade

            report = evaluate_cascade(args.model, args.sr or "shapes-sr", args.samples,
                                      args.steps, args.guidance, augmentation=args.augmentation,
                                      device=device, **common)
        elif kind == "video":
            from core.evaluation.video_eval import evaluate_video

            report = evaluate_video(args.model, args.samples, args.steps, args.guidance,
                                    seed=args.seed, device=device, grid=args.grid)
        elif kind == "palette":
            from core.evaluation.palette_eval import evaluate_palette

            report = evaluate_palette(args.model, args.samples, args.steps, device=device,
                                      **common)
        else:
            report = evaluate.evaluate_model(args.model, args.samples, args.per_prompt,
                                             args.steps, args.guidance, device=device, **common)
    except (ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    print(report.table())
    print(f"sample grid: {args.grid}")
    return EXIT_OK


def _eval_workflow(args: argparse.Namespace) -> int:
    """``eval WORKFLOW.json``: a graph of several models (base → refiner)
    measured by running it, each held-out caption in its ``positive`` node."""
    from dataclasses import replace

    from app.cli.overrides import apply_overrides
    from core.evaluation.workflow_eval import evaluate_workflow
    from core.executor import ExecutionFailed, Executor
    from core.workflow import load

    registry = _registry()
    workflow = apply_overrides(load(args.model), registry, args.overrides)
    try:
        report = evaluate_workflow(Executor(registry), workflow, args.samples, args.per_prompt,
                                   seed=args.seed, grid=args.grid, device=args.device)
    except ExecutionFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(replace(report, model=Path(args.model).stem).table())
    print(f"sample grid: {args.grid}")
    return EXIT_OK


def _cmd_schedule(args: argparse.Namespace) -> int:
    from app.cli.schedule_table import schedule_rows

    try:
        rows = schedule_rows(args.name, args.timesteps, args.zero_snr, args.steps, args.spacing)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    print("t,beta,alpha_bar,sigma,snr")
    for row in rows:
        print(",".join(_number(value) for value in row))
    return EXIT_OK


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _cmd_inspect(args: argparse.Namespace) -> int:
    from app.cli.inspect import run_inspect

    return run_inspect(args.files, as_json=args.json)


def _cmd_gui(args: argparse.Namespace) -> int:
    try:  # Qt is imported here only, so the headless commands never load it
        from app.gui.app import run_gui
    except ImportError as error:
        print(f"error: the workbench needs PySide6 and NodeGraphQt ({error})", file=sys.stderr)
        return EXIT_INVALID
    return run_gui(args.file, run=args.run, screenshot=args.screenshot)


def _cmd_nodes(args: argparse.Namespace) -> int:
    registry = _registry()
    if args.type_id:
        spec = registry.get(args.type_id)
        if spec is None:
            print(f"error: unknown node type {args.type_id!r}", file=sys.stderr)
            return EXIT_INVALID
        print(_describe(spec))
        return EXIT_OK
    for category, specs in registry.by_category().items():
        print(f"{category}:")
        for spec in specs:
            print(f"  {spec.type_id:28} {spec.title}")
    return EXIT_OK


def _describe(spec) -> str:
    lines = [f"{spec.type_id} (version {spec.version}): {spec.title}", f"  {spec.description}"]
    for item in spec.inputs:
        facts = [item.type.value]
        if item.is_param:
            facts.append(f"default {item.default!r}")
        if item.choices:
            facts.append("one of " + ", ".join(item.choices))
        if item.min is not None or item.max is not None:
            facts.append(f"range {item.min}..{item.max}")
        if item.optional:
            facts.append("optional")
        lines.append(f"  in  {item.name}: {'; '.join(facts)}")
    for output in spec.outputs:
        lines.append(f"  out {output.name}: {output.type.value}")
    return "\n".join(lines)


class _Worker:
    """Runs the executor off the main thread so Ctrl-C reaches us between steps.

    Completion is signalled with an Event rather than ``Thread.join``: on
    Python 3.11 a join interrupted by KeyboardInterrupt can make the next join
    return while the thread still runs, and exiting then aborts the process.
    """

    def __init__(self, target) -> None:
        self._target = target
        self._result = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name="executor", daemon=True)

    def _main(self) -> None:
        try:
            self._result = self._target()
        except BaseException as error:  # handed to the main thread
            self._error = error
        finally:
            self._done.set()

    def wait_or_cancel(self, token):
        self._thread.start()
        try:
            while not self._done.wait(0.1):
                pass
        except KeyboardInterrupt:
            token.cancel()
            self._done.wait()
            raise
        if self._error is not None:
            raise self._error
        return self._result


if __name__ == "__main__":
    sys.exit(main())
