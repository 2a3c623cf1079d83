"""The example workflows, installed as the package ``workbench_workflows``
(see ``setup.py``) so that ``core.paths`` finds them with importlib.resources
wherever the workbench is installed."""
