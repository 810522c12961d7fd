"""A newcomer adds a source table, a dbt model on it and an ML asset on the model, as the
README says (its "Add a source table / a dbt model / an ML asset"), in a copy of the repo:
`make check`'s graph then has the three, wired across the three locations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from platform_shared.demo_data import generate
from platform_shared.settings import SOURCE_DATABASE_URL
from tests.test_new_location import copy_repo

TABLE = """    - source: coupons
      primary_key: coupon_id
      load: incremental
      cursor: updated_at
      description: Discount codes.
"""
MODEL = """with

source as (
    select * from {{ source('app', 'coupons') }}
)

select coupon_id, code, percent_off, updated_at from source
"""
ML_ASSET = '''"""What share of the coupons give more than 20% off."""

import dagster as dg

from platform_shared.keys import ML_PREFIX, ML_TEAM


@dg.asset(key=[ML_PREFIX, "deep_discount_share"], deps=[dg.AssetKey(["stg_app__coupons"])], owners=[ML_TEAM])
def deep_discount_share() -> None:
    """Computed by the ML team from the coupons staging model."""
'''


def _run(args: list, cwd: Path, env: dict) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def test_a_table_a_model_and_an_ml_asset_added_as_the_readme_says_join_the_graph(tmp_path):
    copy = tmp_path / "repo"
    copy_repo(copy)
    source = f"sqlite:///{tmp_path}/app.db"
    generate(source, scale=0.05)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.executescript(
            "create table coupons (coupon_id integer primary key, code varchar(20) not null, "
            "percent_off integer not null, updated_at datetime not null);"
            "insert into coupons values (1, 'WELCOME', 10, '2026-06-01 00:00:00'), "
            "(2, 'VIP', 30, '2026-06-02 00:00:00');"
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(copy / p) for p in ("shared", "ingestion", "analytics_dbt", "ml_features")),
        "PLATFORM_ROOT": str(copy),
        SOURCE_DATABASE_URL: source,
    }
    env.pop("INGESTION_CATALOG", None)

    # A source table: a `tables:` entry in the raw-tables component.
    catalog = copy / "ingestion" / "platform_ingestion" / "defs" / "raw_tables" / "defs.yaml"
    catalog.write_text(catalog.read_text().rstrip("\n") + "\n" + TABLE)
    # A dbt model: on the new source (named among the sources), under analytics_dbt/models/.
    staging = copy / "analytics_dbt" / "models" / "staging" / "app"
    sources = staging / "_app__sources.yml"
    sources.write_text(
        sources.read_text().replace(
            "      - name: web_sessions\n", "      - name: web_sessions\n      - name: coupons\n"
        )
    )
    (staging / "stg_app__coupons.sql").write_text(MODEL)
    # An ML asset: in ml_features/platform_ml/defs/, keys from platform_shared.keys.
    (copy / "ml_features" / "platform_ml" / "defs" / "deep_discount_share.py").write_text(ML_ASSET)

    # `make check` prepares the manifest (make setup), then checks the global graph.
    dagster_dbt = Path(sys.executable).parent / "dagster-dbt"
    _run(
        [dagster_dbt, "project", "prepare-and-package", "--file", "platform_analytics/project.py"],
        copy / "analytics_dbt",
        env,
    )
    out = _run([sys.executable, "-m", "tools.check_graph", "--workspace", copy / "workspace.yaml"], copy, env)
    assert "OK, 0 warnings:" in out, out
    graph = _run(
        [
            sys.executable,
            "-m",
            "tools.impact",
            "raw/coupons",
            "--format",
            "json",
            "--workspace",
            copy / "workspace.yaml",
        ],
        copy,
        env,
    )
    for key, location in [("stg_app__coupons", "analytics_dbt"), ("ml/deep_discount_share", "ml_features")]:
        assert f'"{key}"' in graph and f'"{location}"' in graph, graph
