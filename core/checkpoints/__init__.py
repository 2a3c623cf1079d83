"""Reading and writing model files: safetensors only, never pickles."""
from core.checkpoints.safetensors_io import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]
