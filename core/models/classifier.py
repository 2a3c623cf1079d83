"""A noise-aware classifier p(y | x_t, t) for classifier guidance.

Dhariwal & Nichol 2021 (§4.1) guide an unconditional diffusion model with
the gradient of a classifier trained on *noisy* images: the encoder half of
the diffusion U-Net, with the same timestep embedding, pooled into logits.
This is that network assembled from diffusers' own U-Net blocks (the
library has no classifier class); nothing here is a new architecture.
It answers several questions at once, one head each (shape, colour).

Pooling: ``"mean"`` averages the last feature map (what the classifier
needs: *what* is drawn); ``"spatial"`` first reduces it to a few channels
with a 1×1 convolution and keeps every cell, so a head can also read
*where* things are (the noise-aware CLIP's image tower, ``noisy_clip.py``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


POOLINGS = ("mean", "spatial")


class NoisyClassifier(nn.Module):
    """``forward(x_t, t) -> {head: logits (B, classes)}`` for VP-scaled x_t."""

    def __init__(self, sample_size: int, in_channels: int, block_out_channels, down_block_types,
                 layers_per_block: int, norm_num_groups: int, attention_head_dim: int,
                 heads: dict[str, int], pooling: str = "mean", spatial_channels: int = 16) -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps
        from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block

        super().__init__()
        self.config: dict[str, Any] = dict(
            sample_size=sample_size, in_channels=in_channels,
            block_out_channels=list(block_out_channels), down_block_types=list(down_block_types),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups,
            attention_head_dim=attention_head_dim, heads=dict(heads),
        )
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        if pooling != "mean":  # the shipped classifier's config stays as it was
            self.config.update(pooling=pooling, spatial_channels=spatial_channels)
        self.pooling = pooling
        width = block_out_channels[0]
        time_dim = width * 4
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, time_dim)
        self.conv_in = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
        blocks, channels = [], width
        for index, (kind, out) in enumerate(zip(down_block_types, block_out_channels)):
            blocks.append(get_down_block(
                kind, num_layers=layers_per_block, in_channels=channels, out_channels=out,
                temb_channels=time_dim, add_downsample=index < len(block_out_channels) - 1,
                resnet_eps=1e-5, resnet_act_fn="silu", resnet_groups=norm_num_groups,
                attention_head_dim=attention_head_dim, downsample_padding=1,
            ))
            channels = out
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = UNetMidBlock2D(channels, time_dim, resnet_groups=norm_num_groups,
                                        attention_head_dim=attention_head_dim)
        self.norm_out = nn.GroupNorm(norm_num_groups, channels)
        features = channels
        if pooling == "spatial":
            self.reduce = nn.Conv2d(channels, spatial_channels, kernel_size=1)
            cells = (sample_size // 2 ** (len(block_out_channels) - 1)) ** 2
            features = spatial_channels * cells
        self.heads = nn.ModuleDict({name: nn.Linear(features, count) for name, count in heads.items()})

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(x_t.dtype))  # (B, 4W)
        h = self.conv_in(x_t)
        for block in self.down_blocks:
            h, _ = block(h, emb)
        h = self.mid_block(h, emb)
        h = torch.nn.functional.silu(self.norm_out(h))  # (B, C, h, w)
        if self.pooling == "mean":
            pooled = h.mean(dim=(2, 3))  # (B, C)
        else:
            pooled = self.reduce(h).flatten(1)  # (B, spatial_channels · h · w)
        return {name: head(pooled) for name, head in self.heads.items()}


def make_classifier(config: dict[str, Any]) -> NoisyClassifier:
    return NoisyClassifier(**config)


class ClassTarget:
    """log p(y | x_t) of chosen classes, summed over heads: what classifier
    guidance climbs. ``targets`` maps a head to a label name (or a list of
    names, one per batch row), or to None for "any" (that head is left out).
    The noise level σ is mapped to the classifier's own timestep, so any VE
    model with a matching data space can be guided."""

    def __init__(self, network: NoisyClassifier, labels: dict[str, list[str]], schedule,
                 targets: dict[str, Any]) -> None:
        self.network = network
        self.schedule = schedule
        self.indices: dict[str, torch.Tensor] = {}
        for head, names in targets.items():
            if names is None:
                continue
            rows = [names] if isinstance(names, str) else list(names)
            for name in rows:
                if head not in labels or name not in labels[head]:
                    known = ", ".join(labels.get(head, [])) or "none"
                    raise ValueError(f"the classifier has no {head} {name!r} (it knows: {known})")
            self.indices[head] = torch.tensor([labels[head].index(n) for n in rows])
        if not self.indices:
            raise ValueError("choose at least one class to guide toward")

    def __call__(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = self.schedule.sigma_to_t(sigma.detach().to("cpu", torch.float64))
        logits = self.network(x_t, t.to(device=x_t.device, dtype=x_t.dtype))
        total = 0
        for head, index in self.indices.items():
            if len(index) not in (1, x_t.shape[0]):
                raise ValueError(f"{len(index)} {head} targets for a batch of {x_t.shape[0]}: "
                                 "give one, or one per image")
            log_p = torch.log_softmax(logits[head], dim=1)  # (B, classes)
            index = index.to(x_t.device).expand(x_t.shape[0])
            total = total + log_p.gather(1, index[:, None])[:, 0]
        return total  # (B,)
