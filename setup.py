"""Which packages the distribution holds, and where they are in the checkout.

pyproject.toml says everything else; this is the one thing it cannot say:
setuptools' ``packages.find`` names packages after their folders, but the
shipped files stay in the top-level ``resources/`` and ``workflows/`` folders
and install as the packages ``workbench_resources`` and ``workbench_workflows``
(``core.paths`` finds them with importlib.resources, in a wheel or an
editable install alike).
"""
from setuptools import find_namespace_packages, setup

DATA_PACKAGES = {"workbench_resources": "resources", "workbench_workflows": "workflows"}

setup(
    packages=[*find_namespace_packages(include=["app*", "core*", "nodes*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
)
