"""Backbones, encoders and VAEs: diffusers and transformers classes in tiny
configurations for the built-in models, and the loaders that wrap any of
them into a :class:`core.values.DiffusionModel`."""
