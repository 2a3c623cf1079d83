"""Headless engine of Diffusion Workbench: workflows, executor, diffusion math.

Nothing in this package imports Qt; the GUI in ``app`` is one client of it,
the command line and plain Python scripts are others.
"""
