"""The asset-key scheme, decided here and nowhere else.

Ingested tables are keyed ``raw/<warehouse name>``; the dbt translator and the ML
location ask this module for the keys of the tables they read. Every key prefix of every
location is named here: ``raw/`` (ingestion), ``features/`` and ``ml/`` (ML, also their
warehouse schemas), ``dashboard/`` (the dbt exposures).
"""

from __future__ import annotations

import re

import dagster as dg

RAW_PREFIX = "raw"
# The warehouse schema that ingested tables land in (same word as the key prefix).
RAW_SCHEMA = RAW_PREFIX

# The ML location's keys and warehouse schemas: point-in-time features, and the model's
# assets (model, evaluation, champion, scores, drift).
FEATURES_PREFIX = "features"
ML_PREFIX = "ml"
# The analytics location's dashboards (dbt exposures of type dashboard).
DASHBOARD_PREFIX = "dashboard"

# A catalog table with `history: scd2` also keeps every past state of its rows in
# raw.<warehouse name>_history (columns valid_from / valid_to), part of the same asset.
HISTORY_SUFFIX = "_history"

# Teams, as Dagster owners. CODEOWNERS maps the location folders to the same teams.
PLATFORM_TEAM = "team:platform"
ANALYTICS_TEAM = "team:analytics"
ML_TEAM = "team:ml"
TEAMS = (PLATFORM_TEAM, ANALYTICS_TEAM, ML_TEAM)

# The asset check of each raw table that compares every row with the source (and repairs
# what differs): run by its own schedule, left out of plain loads (`loads_only`).
RECONCILE_CHECK = "matches_source"

_SAFE_PART = re.compile(r"^[A-Za-z0-9_]+$")


def raw_asset_key(table: str) -> dg.AssetKey:
    """The key of the ingested copy of a source table.

    Args:
        table: the table's warehouse name (safe snake_case, as in the catalog).

    Example:
        >>> raw_asset_key("orders").to_user_string()
        'raw/orders'
    """
    if not _SAFE_PART.match(table):
        raise ValueError(
            f"Warehouse table name {table!r} is not a safe asset-key part "
            "(letters, digits, underscores): give it a warehouse name in the catalog."
        )
    return dg.AssetKey([RAW_PREFIX, table])
