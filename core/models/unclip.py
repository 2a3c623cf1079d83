"""unCLIP (DALL·E 2, Ramesh et al. 2022): text → CLIP image embedding → image.

Two diffusion models around a CLIP (here shapes-clip, ``noisy_clip.py``):

* the **prior** p(z_i | y) (§2.2) generates a CLIP *image* embedding z_i
  from the caption y: diffusers' ``PriorTransformer``, a causal transformer
  over [text tokens, text embedding, timestep, noisy z_i, a final token]
  whose last output is the denoised z_i (it predicts z_i itself, not ε);
* the **decoder** p(x | z_i) (§2.1) draws the picture from z_i: a U-Net
  that adds a projection of z_i to its timestep embedding and attends to
  it as a token; z_i is set to zero 10 % of the time in training, so the
  zero embedding is its unconditional model for classifier-free guidance.

Embeddings are unit vectors; the diffusion models see them times √D, so
each component has about unit variance (DALL·E 2 normalises its embeddings
the same way). Embeddings travel the graph as (B, D) unit vectors and ride
on a conditioning as ``extras["image_embedding"]``.
"""
from __future__ import annotations

import math

import torch

from core.models.conditioned import for_each_part, inference, module_dtype, _timesteps

EMBEDDING_KEY = "image_embedding"


def embedding_scale(dim: int) -> float:
    """√D: a unit vector times this has components of about unit variance."""
    return math.sqrt(dim)


def slerp(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    """Spherical interpolation of unit vectors (Shoemake 1985), as DALL·E 2
    blends two images' embeddings (§3.2): z = sin((1−θ)ω)/sin ω · a + sin(θω)/sin ω · b."""
    a = torch.nn.functional.normalize(a.double(), dim=-1)
    b = torch.nn.functional.normalize(b.double(), dim=-1)
    a, b = torch.broadcast_tensors(a, b)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1, 1))  # (B, 1)
    sin = torch.sin(omega)
    close = sin.abs() < 1e-6  # (nearly) the same direction: the straight line is exact enough
    safe = torch.where(close, torch.ones_like(sin), sin)
    mixed = torch.where(close, (1 - factor) * a + factor * b,
                        (torch.sin((1 - factor) * omega) * a + torch.sin(factor * omega) * b) / safe)
    return torch.nn.functional.normalize(mixed, dim=-1).float()


def text_mask(ids: torch.Tensor, eos: int) -> torch.Tensor:
    """(B, L) bool: the tokens up to and including each row's first <eos>."""
    first_eos = (ids == eos).int().argmax(dim=1, keepdim=True)  # (B, 1)
    return torch.arange(ids.shape[1], device=ids.device)[None, :] <= first_eos


class PriorNetwork:
    """``PriorTransformer`` as ``network(z_t (B, D, 1, 1), t, cond=…)`` → ẑ_0.

    Each conditioning part carries the caption's CLIP text encoding in
    ``extras["prior_text"]``: (hidden states (1|B, L, D), text embedding
    (1|B, D), mask (1|B, L)), made by :func:`encode_prior_text`."""

    def __init__(self, prior) -> None:
        self.prior = prior

    @inference
    def __call__(self, z_t: torch.Tensor, t: torch.Tensor, cond=None):
        hidden, embedded, masks = [], [], []
        for part, rows in for_each_part(cond, z_t):
            text = part.extras.get("prior_text")
            if text is None:
                raise ValueError("the prior needs a caption: sample it with the Prior sampler node")
            count = z_t[rows].shape[0]
            for store, value in zip((hidden, embedded, masks), text):
                store.append(value.expand(count, *value.shape[1:]))
        dtype = module_dtype(self.prior)
        scale = embedding_scale(z_t.shape[1])
        out = self.prior(z_t.flatten(1).to(dtype), _timesteps(t, z_t, dtype),
                         proj_embedding=(torch.cat(embedded) * scale).to(dtype),
                         encoder_hidden_states=torch.cat(hidden).to(dtype),
                         attention_mask=torch.cat(masks)).predicted_image_embedding
        return out.to(z_t.dtype).view_as(z_t)  # (B, D, 1, 1)


@torch.no_grad()
def encode_prior_text(clip, texts: list[str], device) -> tuple[torch.Tensor, ...]:
    """What the prior reads of captions: CLIP's text token states, its text
    embedding and the token mask."""
    network, tokenizer = clip.network, clip.tokenizer
    ids = tokenizer(texts).to(device)
    hidden = network.text_encoder(input_ids=ids).last_hidden_state  # (B, L, W)
    embedding = network.encode_text(ids)  # (B, D)
    return hidden, embedding, text_mask(ids, network.text_encoder.config.eos_token_id)


def sample_embeddings(prior, clip, prompts: list[str], steps: int, guidance: float, seed: int,
                      device, on_step=None) -> torch.Tensor:
    """Image embeddings (B, D), unit vectors, one per prompt (DALL·E 2 §2.2):
    the prior's reverse process with DDIM over (B, D, 1, 1), guided by
    classifier-free guidance against the empty caption."""
    from core.sampling import run_sampler
    from core.values import Conditioning, SamplingSchedule

    dim = clip.network.config["embed_dim"]
    if prior.latent_channels != dim:
        raise ValueError(f"the prior makes {prior.latent_channels}-dimensional embeddings but "
                         f"this CLIP's are {dim}-dimensional: use the CLIP it was trained with")
    if not prompts or not all(p.strip() for p in prompts):
        raise ValueError("the prior needs a caption to make an embedding from")
    unknown = sorted({w for p in prompts for w in clip.tokenizer.unknown_words(p)})
    if unknown:  # as CLIP guidance: an unknown word would silently read as <unk>
        raise ValueError(f"the prior's CLIP does not know {', '.join(map(repr, unknown))} "
                         f"(it knows: {', '.join(clip.tokenizer.vocabulary[4:])})")
    unique = sorted(set(prompts))
    text = encode_prior_text(clip, [*unique, ""], device)
    rows = torch.tensor([unique.index(p) for p in prompts])
    positive = Conditioning(extras={"prior_text": tuple(t[rows] for t in text)})
    negative = Conditioning(extras={"prior_text": tuple(t[-1:] for t in text)})
    schedule = SamplingSchedule.discrete(prior.schedule, steps, "leading")
    z, _ = run_sampler(prior, schedule, torch.zeros(len(prompts), dim, 1, 1), sampler="ddim",
                       positive=positive, negative=negative, guidance=guidance, seed=seed,
                       device=device, on_step=on_step)
    return torch.nn.functional.normalize(z.flatten(1).float().cpu(), dim=-1)  # (B, D)


class EmbeddingUNet:
    """The unCLIP decoder: diffusers' ``UNet2DConditionModel`` with
    ``class_embed_type="projection"`` (z_i added to the timestep embedding)
    and z_i as its one cross-attention token. A part without an embedding
    gets the zero embedding: the unconditional model."""

    def __init__(self, unet, dim: int) -> None:
        self.unet = unet
        self.dim = dim

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None):
        rows_embeddings = [self._embedding(part, x_t[rows]) for part, rows in for_each_part(cond, x_t)]
        dtype = module_dtype(self.unet)
        z = (torch.cat(rows_embeddings) * embedding_scale(self.dim)).to(x_t.device, dtype)  # (B, D)
        return self.unet(x_t.to(dtype), _timesteps(t, x_t, dtype), encoder_hidden_states=z[:, None],
                         class_labels=z).sample.to(x_t.dtype)

    def _embedding(self, part, x_rows: torch.Tensor) -> torch.Tensor:
        z = part.extras.get(EMBEDDING_KEY) if part is not None else None
        count = x_rows.shape[0]
        if z is None:
            return torch.zeros(count, self.dim, device=x_rows.device)
        if z.shape[-1] != self.dim:
            raise ValueError(f"a {z.shape[-1]}-dimensional embedding for a decoder of "
                             f"{self.dim}: encode with the CLIP the decoder was trained on")
        if len(z) not in (1, count):
            raise ValueError(f"{len(z)} embeddings for a batch of {count}: give one, or one per image")
        return z.to(x_rows.device).expand(count, -1)
