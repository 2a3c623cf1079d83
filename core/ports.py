"""The closed set of port types that links carry between nodes.

Names are permanent: they are written into workflow files and plugins rely on
them, so a type may be added but never renamed (see DESIGN.md, Principles).
"""
from __future__ import annotations

from enum import Enum


class PortType(str, Enum):
    """What flows along a link. The GUI colours ports by this value."""

    # Primitives: shown as editable parameters unless a link feeds them.
    INT = "INT"
    FLOAT = "FLOAT"
    STRING = "STRING"
    BOOLEAN = "BOOLEAN"
    # Rich values produced and consumed by nodes.
    MODEL = "MODEL"
    CLIP = "CLIP"
    CONDITIONING = "CONDITIONING"
    SCHEDULE = "SCHEDULE"
    LATENT = "LATENT"
    IMAGE = "IMAGE"
    MASK = "MASK"
    VAE = "VAE"
    CONTROLNET = "CONTROLNET"
    NOISE = "NOISE"
    TRAJECTORY = "TRAJECTORY"
    CLASSIFIER = "CLASSIFIER"
    # A noise-aware contrastive image/text model (CLIP whose image side reads
    # x_t at any t); not the text encoder a checkpoint's CLIP output carries.
    NOISY_CLIP = "NOISY_CLIP"
    # unCLIP: a diffusion prior (caption → image embedding) and the CLIP
    # image embeddings it makes, (B, D) unit vectors.
    PRIOR = "PRIOR"
    EMBEDDING = "EMBEDDING"
    # Clips of frames (core.video.Video): (B, T, 3, H, W) in [0, 1] and a frame rate.
    VIDEO = "VIDEO"
    # Accepts or offers anything (debug and inspection nodes).
    ANY = "ANY"

    @property
    def is_primitive(self) -> bool:
        return self in _PRIMITIVES


_PRIMITIVES = frozenset({PortType.INT, PortType.FLOAT, PortType.STRING, PortType.BOOLEAN})


def compatible(source: PortType, target: PortType) -> bool:
    """Whether an output of type ``source`` may feed an input of type ``target``."""
    return source == target or PortType.ANY in (source, target)
