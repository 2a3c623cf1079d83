"""Tiny configurations of diffusers' classes for the built-in shapes models.

Sizes were chosen to train in well under an hour on 2 CPU cores (FACTS.md:
a 1.7 M-parameter U-Net on 16×16×4 latents runs about 3.7 it/s at batch 64).
"""
from __future__ import annotations

from typing import Any

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    block_out_channels=(16, 32, 64),  # three levels: 64×64 → 16×16
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    layers_per_block=1, norm_num_groups=8, sample_size=64,
)

# Attention (self and cross) only at 8×8 and 4×4: at 16×16 it doubled the step
# time for little gain on one-shape scenes (1.8 vs 3.5 it/s at batch 64).
LDM_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16, in_channels=4, out_channels=4,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=16,
)


def make_vae(config: dict[str, Any] = VAE_CONFIG):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def make_unet(config: dict[str, Any] = LDM_UNET_CONFIG):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


# shapes-ddpm: the Improved-DDPM setting in pixel space (Nichol & Dhariwal
# 2021): 32×32×3, attention (self and cross) at 16×16 and 8×8 as their CIFAR
# models, GroupNorm, and 6 output channels: ε and the variance interpolant v.
DDPM_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=32, in_channels=3, out_channels=6,
    block_out_channels=(48, 96, 96),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=16,
)

# shapes-controlnet: a copy of the shapes-ldm U-Net's encoder (Zhang et al.
# 2023) whose hint embedding takes 64×64 outlines down to the 16×16 latent
# grid with two stride-2 convolutions.
CONTROLNET_EMBEDDING_CHANNELS = (16, 32, 64)

# shapes-flow: an MMDiT (SD3's SD3Transformer2DModel, adaLN-Zero blocks) over
# 2×2 patches of the 16×16×4 latents: 64 image tokens beside 16 text tokens.
FLOW_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=6,
    attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64,
    caption_projection_dim=128, pooled_projection_dim=64, pos_embed_max_size=16,
)

# shapes-classifier: the encoder half of a U-Net with a timestep embedding
# (Dhariwal & Nichol 2021, §4.1), on 32×32 noisy images: shape and colour.
CLASSIFIER_CONFIG: dict[str, Any] = dict(
    sample_size=32, in_channels=3, block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    layers_per_block=1, norm_num_groups=16, attention_head_dim=16,
    heads={"shape": 3, "color": 6},
)

# shapes-palette: Palette's image-to-image U-Net (Saharia et al. 2022) on
# 32×32 pixels, diffusers' UNet2DModel (no text): y_t and the luminance of the
# source stacked as 3 + 1 input channels; attention at 8×8.
PALETTE_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=32, in_channels=3 + 1, out_channels=3,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    layers_per_block=1, norm_num_groups=8, attention_head_dim=16,
)

# The cascade (Imagen, CDM): a 16×16 pixel base reading a frozen text encoder
# (64-wide states: shapes-t5 or shapes-clip's text tower), attention at 8×8
# and 4×4; and a convolution-only 16 → 64 super-resolution U-Net whose input
# is x_t beside the upsampled picture (3 + 3 channels) and whose class
# embedding, through the timestep projection, reads the augmentation level.
CASCADE_BASE_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16, in_channels=3, out_channels=3,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=16,
)
SR_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=64, in_channels=3 + 3, out_channels=3,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
    layers_per_block=1, norm_num_groups=8, class_embed_type="timestep",
)

# unCLIP (DALL·E 2) on shapes-clip's 64-dimensional embeddings: the prior is
# diffusers' PriorTransformer over [16 text tokens, text embedding, timestep,
# noisy image embedding, final token]; the decoder a 32×32 pixel U-Net that
# adds the image embedding to its timestep embedding ("projection") and
# attends to it as one token at 8×8.
PRIOR_CONFIG: dict[str, Any] = dict(
    num_attention_heads=4, attention_head_dim=16, num_layers=4, embedding_dim=64,
    num_embeddings=16, additional_embeddings=4,
)
UNCLIP_DECODER_CONFIG: dict[str, Any] = dict(
    sample_size=32, in_channels=3, out_channels=3,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=8,
    class_embed_type="projection", projection_class_embeddings_input_dim=64,
)


def make_prior(config: dict[str, Any] = PRIOR_CONFIG):
    from diffusers import PriorTransformer

    return PriorTransformer(**config)


def make_ddpm_unet(config: dict[str, Any] = DDPM_UNET_CONFIG):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def make_palette_unet(config: dict[str, Any] = PALETTE_UNET_CONFIG):
    from diffusers import UNet2DModel

    return UNet2DModel(**config)


def make_controlnet(unet):
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING_CHANNELS,
        conditioning_channels=3,
    )


def make_flow_transformer(config: dict[str, Any] = FLOW_TRANSFORMER_CONFIG):
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(**config)


# Sana (Xie et al. 2024) in miniature. shapes-dcae: a deep-compression
# autoencoder (diffusers' AutoencoderDC: residual blocks, then an
# EfficientViT block with ReLU linear attention at the deepest level;
# space-to-channel shortcuts around every down- and upsampling, DC-AE §3.1)
# taking 64×64×3 to 8×8×16 — twice shapes-vae's spatial compression per side,
# four times its channels, the same 1,024 numbers. shapes-sana: Sana's
# linear-attention DiT (SanaTransformer2DModel: ReLU linear self-attention,
# cross-attention to the text, Mix-FFN with a 3×3 depthwise convolution, no
# positional embedding) on those latents with 1×1 patches, so the
# autoencoder alone compresses (Sana §2.1): 64 tokens, as shapes-flow's 2×2
# patches of 16×16 latents.
DCAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, latent_channels=16, attention_head_dim=16,
    encoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
    decoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
    encoder_block_out_channels=(32, 64, 64, 128), decoder_block_out_channels=(32, 64, 64, 128),
    encoder_layers_per_block=(1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
    encoder_qkv_multiscales=((), (), (), (5,)), decoder_qkv_multiscales=((), (), (), (5,)),
    decoder_norm_types="rms_norm", decoder_act_fns="silu",
)
SANA_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    in_channels=16, out_channels=16, num_attention_heads=4, attention_head_dim=32,
    num_layers=6, num_cross_attention_heads=4, cross_attention_head_dim=32,
    cross_attention_dim=128, caption_channels=64, mlp_ratio=2.5, sample_size=8, patch_size=1,
)


def make_dcae(config: dict[str, Any] = DCAE_CONFIG):
    from diffusers import AutoencoderDC

    return AutoencoderDC(**config)


def make_sana_transformer(config: dict[str, Any] = SANA_TRANSFORMER_CONFIG):
    from diffusers import SanaTransformer2DModel

    return SanaTransformer2DModel(**config)


# shapes-video: a CogVideoX-style transformer (CogVideoXTransformer3DModel:
# expert adaLN for text and video tokens, full 3-D attention over both,
# 3-D sine-cosine positions) on 8 frames of shapes-vae latents, 2×2 patches:
# 8 × 64 video tokens after 16 text tokens. CogVideoX compresses time 4× with
# its 3-D VAE; here every frame goes through the image VAE, so the temporal
# compression is 1 and the frame count is the latent frame count.
VIDEO_FRAMES = 8
VIDEO_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    num_attention_heads=4, attention_head_dim=32, in_channels=4, out_channels=4,
    time_embed_dim=128, text_embed_dim=64, num_layers=4, sample_width=16, sample_height=16,
    sample_frames=VIDEO_FRAMES, patch_size=2, temporal_compression_ratio=1,
    max_text_seq_length=16,
)


def make_video_transformer(config: dict[str, Any] = VIDEO_TRANSFORMER_CONFIG):
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel(**config)
