"""Executor overhead: a 50-step loop of a small torch model, run (a) as a plain
Python loop and (b) as a workflow through the executor with events on.

Reports the median time of each and the ratio (b)/(a); the target is ≤ 1.02
on CPU. Run: ``python bench/executor_overhead.py [--model unet|conv] [--repeats N]``.
``unet`` is the shapes-ldm U-Net architecture (random weights) on one 16×16×4
latent, what the workbench actually runs; ``conv`` a three-layer conv net
small enough to expose the executor's fixed cost per run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.events import Step
from core.executor import Executor
from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType
from core.registry import NodeRegistry
from core.workflow import Node, Workflow

STEPS = 50
SHAPE = [1, 4, 32, 32]  # set by main() for the chosen model


def make_model(device: torch.device, channels: int = 64) -> torch.nn.Module:
    """A small conv denoiser-shaped model: (1, 4, 32, 32) in and out."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, channels, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(channels, 4, 3, padding=1),
    )
    return model.to(device).eval()


class ShapesUNet(torch.nn.Module):
    """The shapes-ldm U-Net (random weights) at a fixed timestep and prompt."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        from core.models.shapes import make_unet

        torch.manual_seed(0)
        self.unet = make_unet().to(device).eval()
        self.context = torch.randn(1, 16, 64, device=device)
        self.t = torch.tensor([500], device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x, self.t, encoder_hidden_states=self.context).sample


def start_latent(seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(SHAPE), generator=generator).to(device)


@torch.no_grad()
def plain_loop(model, x: torch.Tensor) -> torch.Tensor:
    for _ in range(STEPS):
        eps = model(x)
        x = x - 0.02 * eps
    return x


def workflow_registry(model) -> NodeRegistry:
    def source(ctx, seed):
        return start_latent(seed, ctx.device)

    @torch.no_grad()
    def loop(ctx, x):
        for index in range(STEPS):
            eps = model(x)
            x = x - 0.02 * eps
            ctx.step(index, STEPS, t=float(STEPS - index), x_t=x, eps=eps)
        return x

    latent = PortType.LATENT
    return NodeRegistry([
        NodeSpec("bench.source", "Source", "bench", source,
                 inputs=(Input("seed", PortType.INT, 0),), outputs=(Output("x", latent),)),
        NodeSpec("bench.loop", "Loop", "bench", loop, inputs=(Input("x", latent),),
                 outputs=(Output("x", latent),), is_output=True),
    ])


def bench_workflow() -> Workflow:
    workflow = Workflow()
    workflow.add_node(Node("source", "bench.source", params={"seed": 0}))
    workflow.add_node(Node("loop", "bench.loop"))
    workflow.connect("source", "x", "loop", "x")
    return workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=("unet", "conv"), default="unet")
    parser.add_argument("--channels", type=int, default=64,
                        help="width of the conv model (64: 42 k params; 192: 346 k)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.model == "unet":
        SHAPE[:] = [1, 4, 16, 16]
        model = ShapesUNet(device)
    else:
        model = make_model(device, args.channels)
    registry = workflow_registry(model)
    workflow = bench_workflow()
    steps_seen = []

    def sink(event):  # what a GUI does with a step: hand the tensors on
        if isinstance(event, Step):
            steps_seen.append(event.index)

    def run_plain():
        out = plain_loop(model, start_latent(0, device))
        _sync(device)
        return out

    def run_workflow():
        result = Executor(registry).run(workflow, on_event=sink, device=args.device, dtype="fp32")
        _sync(device)
        return result.outputs["loop"]["x"]

    assert torch.equal(run_plain(), run_workflow()), "both paths must compute the same thing"
    plain, graph, ratios = [], [], []
    for _ in range(args.repeats):  # interleaved pairs, so drifts in machine load hit both
        plain.append(_timed(run_plain))
        graph.append(_timed(run_workflow))
        ratios.append(graph[-1] / plain[-1])
    a, b = statistics.median(plain), statistics.median(graph)
    params = sum(p.numel() for p in model.parameters())
    print(f"device {device}, model {params / 1e3:.0f} k params, {STEPS} steps, {args.repeats} "
          f"repeats, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"(a) plain loop:          median {a * 1000:8.2f} ms   min {min(plain) * 1000:8.2f} ms")
    print(f"(b) executor + events:   median {b * 1000:8.2f} ms   min {min(graph) * 1000:8.2f} ms")
    print(f"ratio (b)/(a): medians {b / a:.4f}, median of paired ratios "
          f"{statistics.median(ratios):.4f}  (target <= 1.02)")
    fixed, per_step = direct_overhead()
    print(f"executor's own cost, measured with a no-op model: {fixed:.0f} us per run "
          f"+ {per_step:.2f} us per step ({(fixed + STEPS * per_step) / (a * 1e6) * 100:.2f}% of (a))")


def direct_overhead(repeats: int = 300) -> tuple[float, float]:
    """Microseconds the executor itself adds: per run, and per step event."""
    identity = workflow_registry(lambda x: x)
    workflow = bench_workflow()
    with_steps = _median_us(lambda: Executor(identity).run(workflow, on_event=_drop, device="cpu"),
                            repeats)
    source = identity.get("bench.source").fn
    loop = identity.get("bench.loop").fn

    class NoContext:
        device = torch.device("cpu")

        def step(self, *args, **kwargs):
            pass

    bare = _median_us(lambda: loop(NoContext(), source(NoContext(), 0)), repeats)
    from core.executor.context import NodeContext
    from core.executor.control import CancelToken

    ctx = NodeContext("run", "loop", torch.device("cpu"), torch.float32, CancelToken(), None, _drop)
    stepped = _median_us(lambda: loop(ctx, source(ctx, 0)), repeats)
    per_step = (stepped - bare) / STEPS
    return with_steps - stepped, per_step


def _drop(_event) -> None:
    pass


def _median_us(fn, repeats: int) -> float:
    return statistics.median(_timed(fn) for _ in range(repeats)) * 1e6


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
