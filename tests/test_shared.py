"""The shared library: settings, key scheme, catalog validation."""

from pathlib import Path

import pytest

from platform_shared import CatalogError, load_catalog, raw_asset_key, safe_name
from platform_shared import settings as s


def test_relative_paths_resolve_against_the_repo_root(monkeypatch, tmp_path):
    monkeypatch.setenv(s.PLATFORM_ROOT, str(tmp_path))
    monkeypatch.setenv(s.WAREHOUSE_PATH, "wh/w.duckdb")
    monkeypatch.setenv(s.SOURCE_DATABASE_URL, "sqlite:///data/app.db")
    loaded = s.load_settings()
    assert loaded.warehouse_path == tmp_path / "wh" / "w.duckdb"
    assert loaded.source_database_url == f"sqlite:///{tmp_path}/data/app.db"


def test_defaults_live_under_the_repo_root(monkeypatch):
    for name in (s.PLATFORM_ROOT, s.WAREHOUSE_PATH, s.SOURCE_DATABASE_URL, s.INGESTION_CATALOG):
        monkeypatch.delenv(name, raising=False)
    loaded = s.load_settings()
    assert loaded.catalog_path == loaded.root / "ingestion" / "platform_ingestion" / "defs" / "raw_tables" / "defs.yaml"
    assert loaded.warehouse_path == loaded.root / "data" / "warehouse.duckdb"


def test_postgres_urls_pass_through_unchanged():
    url = "postgresql://app:x@127.0.0.1:5432/app"
    assert s.absolute_database_url(url, Path("/x")) == url


def test_raw_keys_follow_the_scheme_and_refuse_unsafe_names():
    assert raw_asset_key("orders").path == ["raw", "orders"]
    with pytest.raises(ValueError, match="order items"):
        raw_asset_key("order items")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("Order Items", "order_items"),
        ("orderItems", "order_items"),
        ("select", "select"),
        ("orders; drop table customers", "orders_drop_table_customers"),
        ("2024", "t_2024"),
    ],
)
def test_safe_names(name, safe):
    assert safe_name(name) == safe


def _catalog(tmp_path, text: str) -> Path:
    path = tmp_path / "catalog.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tables:\n  - source: a\n    primry_key: id\n", r"table 'a'.*unknown key.*primry_key"),
        ("tables:\n  - source: a\n    load: incremental\n    cursor: updated_at\n", r"table 'a'.*needs a primary_key"),
        ("tables:\n  - source: a\n    primary_key: id\n    load: incremental\n", r"table 'a'.*cursor"),
        ("tables:\n  - source: A b\n  - source: a_b\n", r"table 'a_b'.*warehouse name 'a_b'"),
        ("tables:\n  - source: a\n    load: sometimes\n", r"load is 'sometimes'"),
        ("tables: [", r"not valid YAML"),
        ("defaults:\n  overlap_minutes: -5\ntables:\n  - source: a\n", r"defaults: overlap_minutes is -5: .* 0"),
        ("tables:\n  - source: a\n    overlap_minutes: -5\n", r"table 'a': overlap_minutes is -5: .* 0"),
        (
            "tables:\n  - source: a\n    columns:\n      hsh: [b]\n",
            r"table 'a': unknown key 'columns.hsh'; allowed: exclude, hash, select",
        ),
        (
            "tables:\n  - source: a\n    primary_key: [id, 3]\n",
            r"table 'a': primary_key.1 is 3: Input should be a valid string",
        ),
        (
            "tables:\n  - source: a\n    primary_key: email\n    columns:\n      hash: [email, name]\n",
            r"table 'a'.*\['email'\] are part of the primary key and cannot be hashed",
        ),
        ("tables:\n  - source: a\n    schema: 3\n", r"table 'a'.*schema is 3"),
        (
            f"tables:\n  - source: {'e' * 51}\n",
            rf"table '{'e' * 51}': warehouse name .* is 51 bytes long; .* at most 50 bytes, for example '{'e' * 50}'",
        ),
    ],
)
def test_malformed_catalog_names_the_file_the_table_and_the_fix(tmp_path, text, message):
    path = _catalog(tmp_path, text)
    with pytest.raises(CatalogError, match=message) as err:
        load_catalog(path)
    assert str(path) in str(err.value)


def test_missing_catalog_says_which_setting_to_fix(tmp_path):
    with pytest.raises(CatalogError, match="INGESTION_CATALOG"):
        load_catalog(tmp_path / "nope.yml")


def test_the_committed_catalog_is_valid():
    catalog = load_catalog(s.load_settings().catalog_path)
    assert {"customers", "orders", "order_items", "payments", "products", "web_sessions"} <= {
        t.warehouse_name for t in catalog.tables
    }


def test_make_test_s_workers_keep_each_group_together(request):
    """make test runs the suite under pytest-xdist's loadgroup (groups: conftest.py); the
    PostgreSQL tests must share a worker. A pytest that silently drops the groups (9.2 with
    xdist 3.8) would spread them, and they would reset one another's password."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("the suite runs serially (TEST_WORKERS=0): no groups to keep")
    assert request.node.nodeid.endswith("@tests.test_shared"), request.node.nodeid
    # The longest groups are handed out first, in conftest.py's order (not by test count).
    root = str(Path(__file__).resolve().parents[1] / "conftest.py")
    plugins = request.config.pluginmanager.get_plugins()
    longest_first = next(p for p in plugins if getattr(p, "__file__", None) == root).LONGEST_FIRST
    groups = list(dict.fromkeys(item.nodeid.rsplit("@", 1)[-1] for item in request.session.items))
    present = [g for g in longest_first if g in groups]
    assert request.config.option.loadscopereorder is False
    assert groups[: len(present)] == present, groups
