"""The list of code locations, read from its one source: the dg workspace (``dg.toml``)
and each project's ``[tool.dg.project]``. Tools, benchmarks and tests read it here; the
files that cannot (workspace.yaml, deploy files, CODEOWNERS) are compared with it by
``tests/test_deploy_manifests.py``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    name: str  # the code location's name (code_location_name)
    path: str  # its folder, relative to the repository root
    module: str  # the module that holds its definitions (code_location_target_module)
    package: str  # its root module
    project: str  # its Python project (pyproject.toml's name)

    @property
    def defs_import(self) -> str:
        return f"from {self.module} import defs"


def locations(root: Path) -> list[Location]:
    """The workspace's code locations, in dg.toml's order (the order runs take: the
    ingestion location first, since the others read its tables).

    Example:
        >>> from platform_shared.settings import load_settings
        >>> [loc.name for loc in locations(load_settings().root)][:1]
        ['ingestion']
    """
    workspace = tomllib.loads((root / "dg.toml").read_text())
    found = []
    for project in workspace["workspace"]["projects"]:
        pyproject = tomllib.loads((root / project["path"] / "pyproject.toml").read_text())
        dg = pyproject["tool"]["dg"]["project"]
        found.append(
            Location(
                name=dg["code_location_name"],
                path=project["path"],
                module=dg["code_location_target_module"],
                package=dg["root_module"],
                project=pyproject["project"]["name"],
            )
        )
    return found
