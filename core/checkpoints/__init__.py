"""Reading and writing model files: safetensors only, never pickles."""
from core.checkpoints.boundary import CheckpointError
from core.checkpoints.safetensors_io import load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]
