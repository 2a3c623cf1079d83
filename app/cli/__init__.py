"""The ``diffusion-workbench`` command."""
