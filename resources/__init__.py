"""The built-in model weights and tokenizer files, installed as the package
``workbench_resources`` (see ``setup.py``) so that ``core.paths`` finds them
with importlib.resources wherever the workbench is installed."""
