"""Loading a full-size SD 1.5 checkpoint: ours against diffusers' ``from_single_file`` (issue 10).

The benchmark first writes a full-size SD 1.5 all-in-one ``.safetensors``
file with random weights (about 2.1 GB, fp16): the real original-layout key
names and shapes (U-Net ``model.diffusion_model.…``, VAE
``first_stage_model.…``, CLIP-L ``cond_stage_model.transformer.text_model.…``,
LDM's schedule buffers; the header of ``tests/layouts/files.py``'s
``full_size_specs("sd1")``), the data region filled with N(0, 0.02²) fp16
values streamed in 32 MB chunks. Then it reads the whole file once, so both
loaders see a warm page cache, and times, each in its own fresh Python
process and interleaved (the order alternates between repeats):

(a) ours: ``core.models.families.sd_loader.load_sd(path, "sd1", dtype=float16)``;
(b) diffusers: ``StableDiffusionPipeline.from_single_file(path, config=FOLDER,
    torch_dtype=float16, local_files_only=True)`` with ``tokenizer``,
    ``safety_checker`` and ``feature_extractor`` None, FOLDER a diffusers-style
    config folder made from ``core/models/configs/sd1`` (no network).

Both load the U-Net, the VAE and the CLIP-L text encoder to fp16 on the CPU
and import the same modules before the clock starts (import time excluded).
Per run: the wall time of the load call, the process's RSS just before it,
its peak RSS during it (``/proc/self/status`` VmHWM, reset just before the
call through ``/proc/self/clear_refs``) and ``ru_maxrss`` (printed per run
only: Linux carries the peak of the process before ``exec`` over, so it can
show the parent's peak, e.g. after making the file). The medians and
the ratios (a)/(b) are the figures of merit (target ≤ 1.0 for both). The
first run of each side also hashes the three loaded state dicts (names,
dtypes, shapes, bytes) after the measurement, to show that both loaded the
same weights. Both sides keep the parameters as views of the memory-mapped
file (no copy when the dtype matches), so a load call itself touches only a
few tens of MB of the file; the weights are paged in at first use.

Run: ``python bench/load.py [--repeats N] [--threads T] [--file PATH] [--keep]``
(Linux: it reads ``/proc/self``). ``--file PATH``: use that file, making it
first if it does not exist (it is then kept, to be reused by later runs);
without it the file is made in a temporary folder under /tmp (about 15 s)
and deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_checkpoint import config_folder, make_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
LOADERS = ("ours", "diffusers")


# ------------------------------------------------------------------ the file
# make_checkpoint (the file: real header, random fp16 weights, streamed) and
# config_folder (the diffusers-style SD 1.5 config folder) are shared with
# bench/peer_full.py.

def warm_read(path: Path) -> float:
    """Read the whole file once (into the page cache); its speed in GB/s."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        block = bytearray(64 * MIB)
        while handle.readinto(block):
            pass
    return path.stat().st_size / (time.perf_counter() - started) / 1e9


# -------------------------------------------------- one load, in a child process

def _memory() -> dict[str, int]:
    """This process's VmRSS, VmHWM, RssAnon, RssFile in kB."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    return fields


def _digest(module) -> str:
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.detach().contiguous().view(-1).numpy()).cast("B"))
    return digest.hexdigest()


def child(loader: str, path: str, folder: str, threads: int, digest: bool) -> None:
    """Import everything either side needs, then time one load; print a JSON line."""
    import gc
    import resource

    import torch
    import diffusers
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel  # noqa: F401
    from diffusers.loaders import single_file_utils  # noqa: F401
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextConfig, CLIPTextModel  # noqa: F401

    import accelerate  # noqa: F401
    import core.checkpoints.detect  # noqa: F401
    import core.diffusion.denoisers  # noqa: F401
    import core.diffusion.schedules  # noqa: F401
    import core.models.builtin  # noqa: F401
    import core.models.conditioned  # noqa: F401
    import core.models.tokenizers  # noqa: F401
    import core.values  # noqa: F401
    from core.models.families.sd_loader import load_sd

    if threads:
        torch.set_num_threads(threads)
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM := VmRSS, so the peak below is this call's
    except OSError:
        pass
    before = _memory()
    started = time.perf_counter()
    if loader == "ours":
        loaded = load_sd(path, "sd1", dtype=torch.float16)
        parts = {"unet": loaded.model.denoiser.network.unet, "vae": loaded.vae.vae,
                 "text_encoder": loaded.clip.encoders["text_encoder"]}
    else:
        pipe = StableDiffusionPipeline.from_single_file(
            path, config=folder, torch_dtype=torch.float16, local_files_only=True,
            tokenizer=None, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        parts = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    seconds = time.perf_counter() - started
    after = _memory()
    result = {
        "seconds": seconds, "rss_before_kb": before["VmRSS"], "peak_kb": after["VmHWM"],
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "anon_after_kb": after["RssAnon"], "file_after_kb": after["RssFile"],
        "dtypes": sorted({str(p.dtype) for m in parts.values() for p in m.parameters()}),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "threads": torch.get_num_threads(),
    }
    if digest:
        result["digests"] = {name: _digest(module) for name, module in parts.items()}
    print("RESULT " + json.dumps(result), flush=True)


def run_child(loader: str, path: Path, folder: Path, threads: int, digest: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", loader, str(path),
               str(folder), "--threads", str(threads)] + (["--digest"] if digest else [])
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{loader} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


# ------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="loads per side (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--file", type=Path, help="reuse this checkpoint, or make it there")
    parser.add_argument("--keep", action="store_true", help="keep the file made in /tmp")
    parser.add_argument("--child", nargs=3, metavar=("LOADER", "PATH", "FOLDER"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--digest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.threads, args.digest)
        return

    scratch = Path(tempfile.mkdtemp(prefix="bench-load-"))
    kept = Path(tempfile.gettempdir()) / "bench-load-sd15-random-fp16.safetensors"
    path = args.file or (kept if args.keep else scratch / "sd15-random-fp16.safetensors")
    made = False
    try:
        if not path.is_file():
            started = time.perf_counter()
            make_checkpoint(path)
            made = True
            print(f"made {path} in {time.perf_counter() - started:.1f} s")
        folder = config_folder(scratch / "sd15-config")
        size = path.stat().st_size
        speed = warm_read(path)
        print(f"file {path}: {size:,} bytes ({size / 1e9:.2f} GB); warm-up read {speed:.2f} GB/s "
              "(both loaders then read from the page cache)")
        runs: dict[str, list[dict]] = {loader: [] for loader in LOADERS}
        for repeat in range(args.repeats):
            order = LOADERS if repeat % 2 == 0 else LOADERS[::-1]
            for loader in order:
                result = run_child(loader, path, folder, args.threads, digest=repeat == 0)
                runs[loader].append(result)
                mib = {k: v / 1024 for k, v in result.items() if k.endswith("_kb")}
                print(f"  run {repeat + 1} {loader:9s} {result['seconds']:6.3f} s, peak RSS "
                      f"{mib['peak_kb']:6.0f} MiB (+{mib['peak_kb'] - mib['rss_before_kb']:.0f} "
                      f"over {mib['rss_before_kb']:.0f} before; after: anon "
                      f"{mib['anon_after_kb']:.0f}, file-backed {mib['file_after_kb']:.0f}), "
                      f"ru_maxrss {mib['maxrss_kb']:.0f} MiB", flush=True)
        report(runs, size)
    finally:
        if made and not (args.keep or args.file):
            path.unlink(missing_ok=True)
        elif made:
            print(f"kept {path}")
        for item in sorted(scratch.rglob("*"), reverse=True):
            item.unlink() if item.is_file() else item.rmdir()
        scratch.rmdir()


def report(runs: dict[str, list[dict]], size: int) -> None:
    first = runs["ours"][0]
    print(f"torch {first['versions']['torch']}, diffusers {first['versions']['diffusers']}, "
          f"{first['threads']} torch threads; SD 1.5 fp16, {size / 1e9:.2f} GB, "
          f"median of {len(runs['ours'])} fresh processes each")
    medians = {}
    for loader in LOADERS:
        rows = runs[loader]
        medians[loader] = {
            "seconds": statistics.median(r["seconds"] for r in rows),
            "peak": statistics.median(r["peak_kb"] for r in rows) / 1024,
            "delta": statistics.median(r["peak_kb"] - r["rss_before_kb"] for r in rows) / 1024,
        }
        m = medians[loader]
        title = "(a) ours (load_sd)" if loader == "ours" else "(b) diffusers from_single_file"
        print(f"{title:32s} {m['seconds']:6.3f} s, peak RSS {m['peak']:6.0f} MiB "
              f"(+{m['delta']:.0f} MiB during the load); "
              f"dtypes {', '.join(rows[0]['dtypes'])}")
    a, b = medians["ours"], medians["diffusers"]
    print(f"(a)/(b): time {a['seconds'] / b['seconds']:.3f}, peak RSS {a['peak'] / b['peak']:.3f}, "
          f"RSS added by the load {a['delta'] / b['delta']:.3f}")
    ours, theirs = runs["ours"][0]["digests"], runs["diffusers"][0]["digests"]
    same = [name for name in ours if ours[name] == theirs[name]]
    differ = [name for name in ours if ours[name] != theirs[name]]
    print("same weights (state-dict hashes): "
          + (", ".join(same) or "none") + (f"; DIFFERENT: {', '.join(differ)}" if differ else ""))


if __name__ == "__main__":
    main()
