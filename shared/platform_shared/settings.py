"""Every setting of the platform, read from environment variables in this one module.

Values are read late (when a function is called, never at import) and relative
paths are resolved against the repo root: dbt runs from its own folder and
connectorx reads ``sqlite:///data/app.db`` as ``/data/app.db``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

# Environment variable names, imported wherever a name is needed (tests, docs checks).
PLATFORM_ROOT = "PLATFORM_ROOT"
SOURCE_DATABASE_URL = "SOURCE_DATABASE_URL"
WAREHOUSE_PATH = "WAREHOUSE_PATH"
# Which warehouse: "duckdb" (the file at WAREHOUSE_PATH, the default) or "postgres" (the
# server at WAREHOUSE_URL, for locations deployed on separate hosts).
WAREHOUSE = "WAREHOUSE"
WAREHOUSE_URL = "WAREHOUSE_URL"
# Steps that may use a server warehouse at once, all locations together (its pool's limit).
WAREHOUSE_CONCURRENCY = "WAREHOUSE_CONCURRENCY"
INGESTION_CATALOG = "INGESTION_CATALOG"
# The catalog of source tables: the ingestion location's raw-tables component file.
DEFAULT_CATALOG = "ingestion/platform_ingestion/defs/raw_tables/defs.yaml"
MODEL_DIR = "MODEL_DIR"
DAGSTER_HOME = "DAGSTER_HOME"
# A secret: the key of the HMAC that hashes personal-data columns. Unset locally: a random
# key is made once and kept beside the warehouse (``pii_hash_key_file``), never committed.
PII_HASH_KEY = "PII_HASH_KEY"
# Where alerts go: a webhook URL (JSON POST) when set, else appended to ALERT_LOG.
ALERT_WEBHOOK_URL = "ALERT_WEBHOOK_URL"
ALERT_LOG = "ALERT_LOG"
# The webserver whose GraphQL API holds the global graph (impact of a failure).
DAGSTER_WEBSERVER_URL = "DAGSTER_WEBSERVER_URL"
# Runs and their event logs older than this many days are deleted (purge_old_runs job).
PURGE_RUNS_AFTER_DAYS = "PURGE_RUNS_AFTER_DAYS"

# The folder that holds workspace.yaml; with an editable install this file sits at
# <root>/shared/platform_shared/settings.py.
_DEFAULT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    root: Path
    # As set; ``source_database_url`` is what to connect to.
    source_database_url_setting: str = field(repr=False)
    warehouse: str
    warehouse_path: Path
    warehouse_url: str | None
    catalog_path: Path
    model_dir: Path
    dagster_home: Path
    pii_hash_key_set: bool
    # The local key when PII_HASH_KEY is unset: under data/, beside the warehouse file.
    pii_hash_key_file: Path
    alert_webhook_url: str | None
    alert_log: Path
    webserver_url: str
    purge_runs_after_days: float

    @cached_property
    def source_database_url(self) -> str:
        # Resolved on first use: it needs SQLAlchemy (half a second to import), which the
        # locations that never read the source (analytics, ML) then do not load.
        return absolute_database_url(self.source_database_url_setting, self.root)


def _absolute(path: str | Path, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root / p).resolve()


def absolute_database_url(url: str, root: Path) -> str:
    """Rewrite a SQLite URL with a relative file path to an absolute one; others pass through."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(_absolute(parsed.database, root))).render_as_string(hide_password=False)


def load_settings() -> Settings:
    """Read the settings from the environment now.

    Example:
        >>> load_settings().warehouse_path.name
        'warehouse.duckdb'
    """
    root = Path(os.getenv(PLATFORM_ROOT, str(_DEFAULT_ROOT))).resolve()
    warehouse = os.getenv(WAREHOUSE, "duckdb")
    if warehouse not in ("duckdb", "postgres"):
        raise ValueError(f"{WAREHOUSE}={warehouse!r}: expected duckdb or postgres")
    warehouse_url = os.getenv(WAREHOUSE_URL) or None
    warehouse_path = _absolute(os.getenv(WAREHOUSE_PATH, "data/warehouse.duckdb"), root)
    if warehouse == "postgres" and not warehouse_url:
        raise ValueError(f"{WAREHOUSE}=postgres needs {WAREHOUSE_URL}=postgresql://user:password@host:port/db")
    return Settings(
        root=root,
        source_database_url_setting=os.getenv(SOURCE_DATABASE_URL, "sqlite:///data/app.db"),
        warehouse=warehouse,
        warehouse_path=warehouse_path,
        warehouse_url=warehouse_url,
        catalog_path=_absolute(os.getenv(INGESTION_CATALOG, DEFAULT_CATALOG), root),
        model_dir=_absolute(os.getenv(MODEL_DIR, "data/models"), root),
        dagster_home=_absolute(os.getenv(DAGSTER_HOME, ".dagster"), root),
        pii_hash_key_set=bool(os.getenv(PII_HASH_KEY)),
        pii_hash_key_file=warehouse_path.parent / "pii_hash.key",
        alert_webhook_url=os.getenv(ALERT_WEBHOOK_URL) or None,
        alert_log=_absolute(os.getenv(ALERT_LOG, "data/alerts.log"), root),
        webserver_url=os.getenv(DAGSTER_WEBSERVER_URL, "http://127.0.0.1:3000"),
        purge_runs_after_days=float(os.getenv(PURGE_RUNS_AFTER_DAYS, "30")),
    )
