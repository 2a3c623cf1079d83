"""Upgrades of old workflow files to the current format version.

``MIGRATIONS[n]`` turns a version-``n`` document (a plain dict, as parsed from
JSON) into a version ``n + 1`` one. Version 1 is the first released format, so
the chain is empty today; each later format change adds one step here and a
test with a real file of the old version.

Node *types* migrate separately, through ``NodeSpec.migrate``, because only
the node's own spec knows what its old params meant.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

Migration = Callable[[dict[str, Any]], dict[str, Any]]

CURRENT_VERSION = 1
MIGRATIONS: Mapping[int, Migration] = {}


class MigrationError(ValueError):
    """A document's version cannot be brought up to date."""


def migrate(
    data: dict[str, Any],
    current: int = CURRENT_VERSION,
    migrations: Mapping[int, Migration] = MIGRATIONS,
) -> dict[str, Any]:
    """Apply the migration chain from ``data['version']`` up to ``current``."""
    version = data["version"]
    if version > current:
        raise MigrationError(
            f"the file has format version {version}, newer than this program's {current}; "
            "update Diffusion Workbench to open it"
        )
    while version < current:
        if version not in migrations:
            raise MigrationError(f"no migration from format version {version}")
        data = migrations[version](dict(data))
        version += 1
        data["version"] = version
    return data
