"""What a bad load does: fail its own asset with a clear reason, and keep the last good copy."""

import pytest

from platform_ingestion.assets import is_transient
from platform_ingestion.loading import SourceTableMissing

EVENTS_CATALOG = """
tables:
  - source: events
    primary_key: event_id
  - source: products
    primary_key: product_id
"""


@pytest.fixture
def events(ingestion):
    """A source table with no key constraint, so bad rows can exist."""
    ingestion.sql(
        "create table events (event_id integer, kind text, payload text, created_at timestamp);"
        "insert into events values (1, 'click', '{\"a\": 1}', '2026-01-01 10:00:00'),"
        " (2, 'view', null, '2026-01-01 11:00:00');"
    )
    ingestion.catalog_path.write_text(EVENTS_CATALOG)
    assert ingestion.run("events").success
    return ingestion


def test_a_duplicate_primary_key_fails_the_audit_and_keeps_the_last_good_copy(events):
    events.sql("insert into events values (2, 'dupe', null, '2026-01-02 00:00:00')")
    result = events.run("events")
    assert not result.success
    message = events.failure_message(result)
    assert "'events' failed its audit" in message and "more than one row" in message
    assert events.query("select count(*) from raw.events") == [(2,)]
    assert events.query("select count(*) from raw_stage.events") == [(3,)]  # kept aside


def test_a_null_primary_key_fails_the_audit(events):
    events.sql("insert into events values (null, 'orphan', null, '2026-01-02 00:00:00')")
    result = events.run("events")
    assert not result.success
    assert "'events' failed its audit: 1 row(s) with a null primary key (\"event_id\")" in events.failure_message(
        result
    )
    assert events.query("select count(*) from raw.events") == [(2,)]


def test_a_new_source_column_appears_in_the_warehouse(events):
    events.sql("alter table events add column channel text; update events set channel = 'web'")
    result = events.run("events")
    assert result.success
    assert events.query("select distinct channel from raw.events") == [("web",)]
    assert result.get_asset_materialization_events()[0].materialization.metadata["columns_added"].value == "channel"


def test_a_dropped_column_fails_with_a_clear_message_before_any_work(events):
    events.sql("alter table events drop column payload")
    result = events.run("events")
    assert not result.success
    assert "['payload'] were dropped or renamed" in events.failure_message(result)
    assert [c for (c, *_) in events.query("describe raw.events")].count("payload") == 1


def test_a_dropped_column_follows_the_ignore_policy(events):
    events.catalog_path.write_text(
        EVENTS_CATALOG.replace("primary_key: event_id", "primary_key: event_id\n    on_column_dropped: ignore")
    )
    events.sql("alter table events drop column payload; insert into events values (3, 'buy', '2026-01-03 00:00:00')")
    result = events.run("events")
    assert result.success
    assert result.get_asset_materialization_events()[0].materialization.metadata["columns_dropped"].value == "payload"
    # The column stays in the warehouse, empty from now on; the rows are the source's.
    assert events.query("select event_id, kind, payload from raw.events order by 1") == [
        (1, "click", None),
        (2, "view", None),
        (3, "buy", None),
    ]


def test_a_retyped_column_fails_until_a_full_refresh(events):
    events.sql(
        "alter table events rename to old_events;"
        "create table events (event_id integer, kind integer, payload text, created_at timestamp);"
        "insert into events select event_id, 7, payload, created_at from old_events; drop table old_events;"
    )
    result = events.run("events")
    assert not result.success
    assert "kind TEXT -> INTEGER" in events.failure_message(result)
    assert events.run("events", config={"full_refresh": True}).success
    assert events.query("select distinct kind from raw.events") == [(7,)]


def test_a_missing_source_table_fails_only_its_own_asset_naming_it(events):
    events.sql("drop table events")
    result = events.run()
    assert events.failed_steps(result) == {"raw__events"}
    assert "Source table 'events'" in events.failure_message(result) and "dropped or renamed" in events.failure_message(
        result
    )
    assert events.query("select count(*) from raw.events") == [(2,)]
    assert events.query("select count(*) from raw.products")[0][0] > 0
    # Not retried: a retry cannot bring the table back.
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_only_transient_errors_are_retried():
    assert is_transient(RuntimeError("could not connect to server: Connection refused"))
    assert is_transient(RuntimeError("wrapper")) is False
    wrapped = RuntimeError("pipeline step failed")
    wrapped.__cause__ = TimeoutError("timed out")
    assert is_transient(wrapped)
    assert not is_transient(SourceTableMissing("connection refused in the message, but final"))
    assert not is_transient(RuntimeError('password authentication failed for user "app"'))
