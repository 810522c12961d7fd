"""`make location NAME=finance TEAM=finance`: a new team's code location, wired everywhere.

Writes ``<name>/`` as a dg project (``pyproject.toml``, ``definitions.py``, a ``defs/``
folder with one asset that reads ``raw/orders``) and adds the location to every list of
locations: dg.toml (the one list), the workspace files of `dagster dev` and of the
deployment, compose, Helm values, a Dockerfile, CODEOWNERS, the root uv workspace and the
team to ``platform_shared.keys.TEAMS``. Then `uv lock && make locks envs check`.

Written by hand because `dg scaffold` and `create-dagster project` know a dg workspace but
not the deployment files that must agree with it (tests/test_deploy_manifests.py). The
deployment files are templated from the ml_features location's, names and port replaced.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from platform_shared.workspace import locations

REPO = Path(__file__).resolve().parents[1]

TEMPLATE = "ml_features"  # the location whose deployment files are copied

PYPROJECT = """[project]
name = "{project}"
version = "0.1.0"
description = "Code location of the {team} team."
requires-python = ">=3.11,<3.12"
dependencies = [
    "platform-shared",
    "dagster==1.13.27",
]

[dependency-groups]
dev = ["pytest>=8"]

[tool.uv.sources]
platform-shared = {{ workspace = true }}

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["{package}"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{package}"
code_location_target_module = "{package}.definitions"
code_location_name = "{name}"
"""

DEFINITIONS = '''"""The {name} code location: its defs/ folder."""

from pathlib import Path

import dagster as dg

from platform_shared import build_warehouse, load_settings
from platform_shared.location import location_definitions


@dg.definitions
def defs() -> dg.Definitions:
    settings = load_settings()
    return location_definitions(
        "{name}", Path(__file__).parent, resources={{"warehouse": build_warehouse(settings)}}, automated=True
    )
'''

EXAMPLE = '''"""A first asset of the {team} team: orders per day, from the ingested raw/orders.
Replace it with the team's own; keys of other locations come from platform_shared.keys."""

from datetime import timedelta

import dagster as dg

from platform_shared import Warehouse, load_settings, raw_asset_key, table_metadata, warehouse_pool
from platform_shared.automation import on_upstream_update


@dg.asset(
    key=["{name}", "orders_per_day"],
    deps=[raw_asset_key("orders")],
    group_name="{name}",
    owners=["team:{team}"],
    kinds={{"table"}},
    pool=warehouse_pool(load_settings()),
    automation_condition=on_upstream_update(),
    # Stale (and alerted on) when not updated for a day: raw/orders loads hourly.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=24)),
)
def orders_per_day(warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        conn.execute("create schema if not exists {name}").fetchall()
        conn.execute("drop table if exists {name}.orders_per_day").fetchall()
        conn.execute(
            "create table {name}.orders_per_day as select cast(created_at as date) as day, "
            "count(*) as orders from raw.orders group by 1"
        ).fetchall()
        return dg.MaterializeResult(metadata=table_metadata(conn, "{name}", "orders_per_day"))
'''


TEST = '''"""The {name} location loads, and its assets read what they should."""

import dagster as dg

from {package}.definitions import defs


def test_orders_per_day_reads_the_ingested_orders():
    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey(["{name}", "orders_per_day"]))
    assert node.parent_keys == {{dg.AssetKey(["raw", "orders"])}} and node.owners == ["team:{team}"]
'''


def _replace(text: str, old: dict[str, str]) -> str:
    for a, b in old.items():
        text = text.replace(a, b)
    return text


def _insert_before(text: str, marker: str, block: str) -> str:
    if marker not in text:
        raise SystemExit(f"cannot place the new location: {marker!r} not found")
    return text.replace(marker, block + marker, 1)


def add_location(root: Path, name: str, team: str) -> list[Path]:
    """Write the location and add it to every list; returns the files written."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or not re.fullmatch(r"[a-z][a-z0-9_]*", team):
        raise SystemExit(f"NAME {name!r} and TEAM {team!r}: lower-case letters, digits and underscores")
    existing = locations(root)
    if name in [loc.name for loc in existing] or (root / name).exists():
        raise SystemExit(f"{name}: a location or folder of that name exists")
    template = next(loc for loc in existing if loc.name == TEMPLATE)
    package, project, service = f"platform_{name}", f"platform-{name.replace('_', '-')}", name.replace("_", "-")
    port, template_port = 4000 + len(existing), 4000 + existing.index(template)
    # Longest first: the service name (ml-features) holds the project's (platform-ml).
    names = {
        TEMPLATE.replace("_", "-"): service,
        template.name: name,
        template.package: package,
        template.project: project,
        str(template_port): str(port),
    }
    written = []

    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    values = {"name": name, "team": team, "package": package, "project": project}
    write(root / name / "pyproject.toml", PYPROJECT.format(**values))
    write(root / name / package / "__init__.py", "")
    write(root / name / package / "definitions.py", DEFINITIONS.format(**values))
    write(root / name / package / "defs" / "__init__.py", "")
    write(root / name / package / "defs" / f"{name}.py", EXAMPLE.format(**values))
    write(root / name / "tests" / "test_definitions.py", TEST.format(**values))

    def edit(relative: str, change) -> None:
        path = root / relative
        write(path, change(path.read_text()))

    edit("dg.toml", lambda t: t.rstrip("\n") + f'\n\n[[workspace.projects]]\npath = "{name}"\n')
    edit(
        "workspace.yaml",
        lambda t: (
            t.rstrip("\n") + f"\n  - python_module:\n      module_name: {package}.definitions"
            f"\n      location_name: {name}\n"
        ),
    )
    edit(
        "deploy/workspace.yaml",
        lambda t: (
            t.rstrip("\n") + f"\n  - grpc_server:\n      host: localhost\n"
            f"      port: {port}\n      location_name: {name}\n"
        ),
    )
    edit(
        "deploy/compose-workspace.yaml",
        lambda t: (
            t.rstrip("\n") + f"\n  - grpc_server:\n      host: {service}\n"
            f"      port: {port}\n      location_name: {name}\n"
        ),
    )
    dockerfile = (root / "deploy" / "docker" / f"{TEMPLATE}.Dockerfile").read_text()
    write(root / "deploy" / "docker" / f"{name}.Dockerfile", _replace(dockerfile, names))

    def compose(text: str) -> str:
        start = text.index(f"\n  {TEMPLATE.replace('_', '-')}:\n") + 1
        block = text[start : text.index("\n\n", start) + 2]
        text = _insert_before(text, "volumes:\n  postgres-data:", _replace(block, names))
        waits = f"      {TEMPLATE.replace('_', '-')}:\n        condition: service_healthy\n"  # webserver, daemon
        return text.replace(waits, waits + f"      {service}:\n        condition: service_healthy\n", 1)

    edit("deploy/docker-compose.yaml", compose)

    def helm(text: str) -> str:
        server = (
            f"      - host: {TEMPLATE.replace('_', '-')}\n        port: {template_port}\n        name: {TEMPLATE}\n"
        )
        text = text.replace(
            server, server + f"      - host: {service}\n        port: {port}\n        name: {name}\n", 1
        )
        start = text.index(f"    - name: {TEMPLATE.replace('_', '-')}\n")
        block = text[start : text.index("\n\n", start) + 2]
        return text.replace(block, block + _replace(block, names), 1)

    edit("deploy/helm/values.yaml", helm)
    edit("CODEOWNERS", lambda t: t.rstrip("\n") + f"\n/{name}/".ljust(21) + f"@example-org/{team}\n")

    def pyproject(text: str) -> str:
        text = text.replace('    "platform-ml",\n', f'    "platform-ml",\n    "{project}",\n', 1)
        # Its tests, its types and its imports, as the other locations'.
        text = re.sub(r"(testpaths = \[[^\]]*)\]", rf'\1, "{name}/tests"]', text, count=1)
        text = text.replace(
            '    "ml_features/platform_ml",\n', f'    "ml_features/platform_ml",\n    "{name}/{package}",\n', 1
        )
        text = text.replace('"platform_ml", "tools"', f'"platform_ml", "{package}", "tools"', 1)
        return re.sub(r"(members = \[[^\]]*)\]", rf'\1, "{name}"]', text, count=1)

    edit("pyproject.toml", pyproject)
    edit(
        "pyproject.toml",
        lambda t: t.replace(
            "platform-ml = { workspace = true }\n",
            f"platform-ml = {{ workspace = true }}\n{project} = {{ workspace = true }}\n",
            1,
        ),
    )
    keys = "shared/platform_shared/keys.py"
    if f'"team:{team}"' not in (root / keys).read_text():
        edit(
            keys,
            lambda t: t.replace(
                "TEAMS = (PLATFORM_TEAM, ANALYTICS_TEAM, ML_TEAM",
                f'TEAMS = (PLATFORM_TEAM, ANALYTICS_TEAM, ML_TEAM, "team:{team}"',
                1,
            ),
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("name", help="the location's name and folder (snake_case)")
    parser.add_argument("--team", required=True, help="the owning team (team:<team>, @example-org/<team>)")
    args = parser.parse_args(argv)
    for path in add_location(REPO, args.name, args.team):
        print(f"wrote {path.relative_to(REPO)}")
    print("next: uv lock && make locks envs check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
