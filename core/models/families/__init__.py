"""Loaders for real model families (SD 1.x/2.x, SDXL, SD3, Flux, ControlNet) from the user's files."""
