"""PostgreSQL as the real source: the demo database, a read-only role, types."""

import secrets
from decimal import Decimal

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from platform_ingestion import direct
from platform_shared import settings as s
from platform_shared.demo_data import generate, simulate_day

TABLES = ["customers", "products", "orders", "order_items", "payments", "web_sessions"]


def _read_only_url(admin_url: str, database: str) -> str:
    """A login role that can only read the source database, and never write it."""
    role, password = f"ingest_ro_{database[-8:]}", secrets.token_hex(12)
    engine = sa.create_engine(make_url(admin_url).set(database=database), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"drop role if exists {role}"))
        conn.execute(sa.text(f"create role {role} login password '{password}'"))
        conn.execute(sa.text(f"alter role {role} set default_transaction_read_only = on"))
        conn.execute(sa.text(f"grant usage on schema public to {role}"))
        conn.execute(sa.text(f"grant select on all tables in schema public to {role}"))
    engine.dispose()
    return (
        make_url(admin_url)
        .set(database=database, username=role, password=password)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def pg_ingestion(ingestion, postgres_database, postgres_admin_url, monkeypatch):
    generate(postgres_database, scale=0.05)
    url = _read_only_url(postgres_admin_url, make_url(postgres_database).database)
    monkeypatch.setenv(s.SOURCE_DATABASE_URL, url)
    ingestion.source_url = url
    ingestion.admin_url = postgres_database
    return ingestion


def _writes(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("select pg_stat_force_next_flush()"))
        total = conn.execute(
            sa.text("select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables")
        ).scalar_one()
    engine.dispose()
    return total


def test_the_demo_database_in_postgres_ingests_row_for_row_through_a_read_only_role(pg_ingestion):
    writes = _writes(pg_ingestion.admin_url)
    assert pg_ingestion.run().success
    for table in TABLES:
        pg_ingestion.assert_raw_equals_source(table)
    assert _writes(pg_ingestion.admin_url) == writes  # ingestion never wrote the source


def test_runs_while_the_application_writes_to_postgres_succeed_and_converge(pg_ingestion, writer):
    # The audit's count and keys are read in one REPEATABLE READ snapshot: commits during
    # the load (inserts, updates, hard deletes) never fail it, and arrive in the next run.
    pg_ingestion.runs_during_writes(writer(url=pg_ingestion.admin_url), runs=2)
    for table in TABLES:
        pg_ingestion.assert_raw_equals_source(table)


def test_a_catalog_discovered_in_another_schema_loads_as_written(ingestion, postgres_database, monkeypatch):
    from platform_ingestion.discover import discover

    engine = sa.create_engine(postgres_database)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'create schema app; create table app."Order Lines" (id integer primary key, '
                'sku text, updated_at timestamp); insert into app."Order Lines" values '
                "(1, 'a', '2026-01-01'), (2, '', '2026-01-02');"
                'create table public."Order Lines" (id integer primary key)'
            )
        )
    engine.dispose()
    doc = discover(postgres_database, schema="app")
    assert doc["tables"] == [
        {
            "source": "Order Lines",
            "schema": "app",
            "warehouse_name": "order_lines",
            "primary_key": "id",
            "load": "incremental",
            "cursor": "updated_at",
            "comment": doc["tables"][0]["comment"],
        }
    ]
    ingestion.catalog_path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv(s.SOURCE_DATABASE_URL, postgres_database)
    assert ingestion.run("order_lines").success
    assert ingestion.query("select id, sku from raw.order_lines order by 1") == [(1, "a"), (2, "")]
    assert ingestion.run("order_lines").success  # an hourly run reads the same schema


def test_read_only_role_cannot_write(pg_ingestion):
    engine = sa.create_engine(pg_ingestion.source_url)
    with pytest.raises(sa.exc.DBAPIError, match="read-only|permission denied"):
        with engine.begin() as conn:
            conn.execute(sa.text("delete from orders"))
    engine.dispose()


def test_incremental_loads_from_postgres_follow_updates_and_deletes(pg_ingestion):
    assert pg_ingestion.run().success
    simulate_day(pg_ingestion.admin_url, seed=3)
    assert pg_ingestion.run().success
    for table in TABLES:
        pg_ingestion.assert_raw_equals_source(table)


TYPES = """
create table typed (
    id integer primary key, amount numeric(18, 4), ratio double precision, flag boolean,
    day date, at_local timestamp, at_utc timestamptz, label text, doc jsonb, big bigint
);
insert into typed values
    (1, 12345678901234.5678, 0.1, true, '2026-02-28', '2026-03-01 12:00:00',
     '2026-03-01 12:00:00+02', 'Zoë – 東京 ✓', '{"a": [1, 2], "b": null}', 9007199254740993),
    (2, null, null, null, null, null, null, null, null, null);
grant select on typed to public;
"""


def test_types_survive_from_postgres(pg_ingestion):
    engine = sa.create_engine(pg_ingestion.admin_url)
    with engine.begin() as conn:
        conn.execute(sa.text(TYPES))
    engine.dispose()
    pg_ingestion.catalog_path.write_text("tables:\n  - source: typed\n    primary_key: id\n")
    assert pg_ingestion.run("typed").success
    row = pg_ingestion.query(
        "select amount, ratio, flag, day, at_local, at_utc at time zone 'UTC', label, doc, big "
        "from raw.typed where id = 1"
    )[0]
    assert row[0] == Decimal("12345678901234.5678")  # no float rounding
    assert row[1] == 0.1 and row[2] is True and str(row[3]) == "2026-02-28"
    assert str(row[4]) == "2026-03-01 12:00:00" and str(row[5]) == "2026-03-01 10:00:00"
    assert row[6] == "Zoë – 東京 ✓" and row[8] == 9007199254740993
    assert '"a"' in str(row[7])
    assert pg_ingestion.query("select count(*) from raw.typed where id = 2 and amount is null and doc is null") == [
        (1,)
    ]


def test_an_hourly_run_from_postgres_merges_every_type_as_dlt_loads_it(pg_ingestion):
    engine = sa.create_engine(pg_ingestion.admin_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                TYPES + "alter table typed add column updated_at timestamptz not null default '2026-03-01 00:00:00+00';"
            )
        )
    pg_ingestion.catalog_path.write_text(
        "tables:\n  - source: typed\n    primary_key: id\n    load: incremental\n    cursor: updated_at\n"
    )
    assert pg_ingestion.run("typed").success
    with engine.begin() as conn:  # an insert of every type and an update, in another time zone
        conn.execute(
            sa.text(
                "insert into typed select 3, amount, ratio, flag, day, at_local, at_utc, label, doc, big, "
                "'2026-03-02 09:00:00+05' from typed where id = 1;"
                "update typed set amount = 0.0001, flag = false, doc = '[]', updated_at = '2026-03-02 10:00:00+05' "
                "where id = 2;"
            )
        )
    engine.dispose()
    hourly = pg_ingestion.run("typed")
    meta = hourly.get_asset_materialization_events()[0].materialization.metadata
    assert meta["backend"].value == direct.BACKEND and meta["rows_loaded"].value >= 2
    columns = (
        "select column_name, data_type from information_schema.columns where table_name = 'typed' "
        "and table_schema = 'raw' order by ordinal_position"
    )
    merged = pg_ingestion.query(columns), pg_ingestion.query("select * from raw.typed order by id")
    rows = {r[0]: r for r in merged[1]}
    assert rows[2][1] == Decimal("0.0001") and rows[2][3] is False
    assert rows[3][1:-1] == rows[1][1:-1]  # row 3 holds row 1's values of every type
    # dlt, reloading the whole table, gives the same rows and types.
    full = pg_ingestion.run("typed", config={"full_refresh": True})
    assert full.get_asset_materialization_events()[0].materialization.metadata["backend"].value == "connectorx"
    assert (pg_ingestion.query(columns), pg_ingestion.query("select * from raw.typed order by id")) == merged


MORE_TYPES = """
create table more_typed (id integer primary key, u uuid, raw bytea, ints integer[], tags text[],
    span interval, at_time time, exact numeric, updated_at timestamptz not null default '2026-03-01 00:00:00+00');
insert into more_typed values
  (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\xdeadbeef', '{1,2,3}', '{a,"b c"}', '1 mon 2 days 03:04:05.5',
   '12:34:56.789', 12345678901234567890.123456789012, '2026-03-01 00:00:00+00'),
  (2, null, null, null, null, null, null, null, '2026-03-01 00:00:00+00');
grant select on more_typed to public;
"""


def test_uuid_bytea_arrays_interval_time_and_unbounded_numeric_round_trip_from_postgres(pg_ingestion):
    # connectorx panicked on interval ("not implemented") and failed on numeric without a
    # precision ("decimal scale is not equal to expected scale"): both are read as text,
    # PostgreSQL's own exact notation. uuid arrives as text, bytea as a blob, arrays as JSON
    # (dlt's type for lists).
    engine = sa.create_engine(pg_ingestion.admin_url)
    with engine.begin() as conn:
        conn.execute(sa.text(MORE_TYPES))
    pg_ingestion.catalog_path.write_text(
        "tables:\n  - source: more_typed\n    primary_key: id\n    load: incremental\n    cursor: updated_at\n"
    )
    assert pg_ingestion.run("more_typed").success
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into more_typed select 3, u, raw, ints, tags, span, at_time, exact, "
                "'2026-03-02 00:00:00+00' from more_typed where id = 1"
            )
        )
    engine.dispose()
    hourly = pg_ingestion.run("more_typed")
    assert hourly.get_asset_materialization_events()[0].materialization.metadata["backend"].value == direct.BACKEND
    types = dict(
        pg_ingestion.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'more_typed'"
        )
    )
    assert {c: types[c] for c in ("u", "raw", "ints", "tags", "span", "at_time", "exact")} == {
        "u": "VARCHAR",
        "raw": "BLOB",
        "ints": "JSON",
        "tags": "JSON",
        "span": "VARCHAR",
        "at_time": "TIME",
        "exact": "VARCHAR",
    }
    expected = (
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        b"\xde\xad\xbe\xef",
        "[1,2,3]",
        '["a","b c"]',
        "1 mon 2 days 03:04:05.5",
        "12:34:56.789",
        "12345678901234567890.123456789012",
    )
    rows = pg_ingestion.query(
        "select id, u, raw, ints::varchar, tags::varchar, span, at_time::varchar, exact from raw.more_typed order by id"
    )
    assert rows == [(1, *expected), (2, *[None] * 7), (3, *expected)]


def test_reconciling_while_the_application_writes_to_postgres_succeeds_and_converges(pg_ingestion, writer, monkeypatch):
    # Each range of keys is read on its own connection (its own snapshot), while the
    # application commits to PostgreSQL.
    monkeypatch.setenv(s.PII_HASH_KEY, "test-only-key")
    assert pg_ingestion.run().success
    pg_ingestion.reconciles_during_writes(writer(url=pg_ingestion.admin_url), TABLES)


def test_reconcile_from_postgres_repairs_what_the_cursor_missed_every_type_included(pg_ingestion):
    """A PostgreSQL source (the production case), the demo tables and the types above: an
    update stamped with an old updated_at and a hard delete, repaired by reconciling; then
    nothing differs (every type hashes as the load staged it)."""
    from platform_ingestion.reconcile import reconcile_table
    from platform_shared import Warehouse, load_catalog

    engine = sa.create_engine(pg_ingestion.admin_url)
    with engine.begin() as conn:
        conn.execute(sa.text(MORE_TYPES))
    catalog = pg_ingestion.catalog_path.read_text()
    pg_ingestion.catalog_path.write_text(
        catalog + "  - source: more_typed\n    primary_key: id\n    load: incremental\n    cursor: updated_at\n"
    )
    assert pg_ingestion.run("orders", "more_typed").success
    with engine.begin() as conn:
        conn.execute(sa.text("update orders set status = 'returned', updated_at = '2020-01-01' where order_id = 3"))
        conn.execute(
            sa.text("update more_typed set span = '5 days', tags = '{x}', updated_at = '2020-01-01' where id = 1")
        )
    engine.dispose()

    def reconcile(table: str) -> tuple[int, int, int, int]:
        found, _ = reconcile_table(
            load_catalog(pg_ingestion.catalog_path).table(table),
            warehouse=Warehouse(path=str(pg_ingestion.warehouse)),
            source_url=pg_ingestion.source_url,
            hash_key="test-only-key",
        )
        return found.missing, found.extra, found.different, found.raw_unlike_source

    assert reconcile("orders") == (0, 0, 1, 1)
    assert reconcile("more_typed") == (0, 0, 1, 1)
    assert reconcile("orders") == (0, 0, 0, 0) and reconcile("more_typed") == (0, 0, 0, 0)
    pg_ingestion.assert_raw_equals_source("orders")
    assert pg_ingestion.query("select span, tags::varchar from raw.more_typed where id = 1") == [("5 days", '["x"]')]
