"""The resources of the ingestion location (its one module of resources)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import make_url

from platform_shared import Settings, build_warehouse, safe_name
from platform_shared.settings import PII_HASH_KEY, SOURCE_DATABASE_URL


class SourceDatabase(dg.ConfigurableResource):
    """The application database that ingestion reads (and never writes)."""

    url: str


class DltState(dg.ConfigurableResource):
    """Where the per-table dlt pipelines keep their state (their cursors), one folder per
    warehouse (``dlt_state_dir``)."""

    pipelines_dir: str

    @property
    def path(self) -> Path:
        return Path(self.pipelines_dir)


class PiiHasher(dg.ConfigurableResource):
    """The HMAC key for personal-data columns: ``PII_HASH_KEY`` (a secret, so an EnvVar),
    or else a random key kept in ``key_file`` (made on first use, readable by its owner
    only), so that a laptop's ``make run`` hashes with a key too: an unkeyed hash of an
    email is reversed with a dictionary of emails."""

    key: str = ""
    key_file: str = ""

    @property
    def secret(self) -> str:
        if self.key or not self.key_file:
            return self.key
        path = Path(self.key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole under another name, then linked into place: two runs starting at
            # once keep the first one's key, and neither ever reads a half-written file.
            draft = path.with_name(f".{path.name}.{os.getpid()}")
            with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(secrets.token_hex(32))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip()


def dlt_state_dir(settings: Settings) -> Path:
    """The dlt state folder of this warehouse, under ``dlt_pipelines/`` beside the DuckDB file.

    One folder per warehouse: a PostgreSQL warehouse loaded after the DuckDB one shared its
    cursors, extracted only the rows above them, and the audit refused every incremental
    table. A new folder starts from the state dlt keeps in the warehouse itself."""
    root = settings.warehouse_path.parent / "dlt_pipelines"
    if settings.warehouse == "postgres" and settings.warehouse_url:  # (load_settings requires it)
        url = make_url(settings.warehouse_url)
        return root / safe_name(f"postgres_{url.host}_{url.port or 5432}_{url.database}")
    return root / safe_name(f"duckdb_{settings.warehouse_path.stem}")


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    # A URL with a password is passed as an EnvVar, resolved at run time, so the UI
    # shows the variable's name and never the secret.
    url = settings.source_database_url
    return {
        "warehouse": build_warehouse(settings),
        "source_db": SourceDatabase(url=dg.EnvVar(SOURCE_DATABASE_URL) if make_url(url).password else url),
        "dlt_state": DltState(pipelines_dir=str(dlt_state_dir(settings))),
        "pii": PiiHasher(
            key=dg.EnvVar(PII_HASH_KEY) if settings.pii_hash_key_set else "", key_file=str(settings.pii_hash_key_file)
        ),
    }
